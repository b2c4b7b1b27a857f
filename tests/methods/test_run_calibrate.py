"""``xsift run --calibrate``: the fit and temperature of ``xsift validate --calibrate`` in one command,
the catalogue classified with the calibrated model."""
import json

import numpy as np
import pandas as pd
import pytest

from xsift.cli import main
from xsift.data.io import write_table
from xsift.methods.persistence import load_model
from xsift.simulate import simulate_catalog


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runcal")
    write_table(simulate_catalog(3000, seed=4), tmp / "cat.parquet")
    cat = str(tmp / "cat.parquet")
    common = ["--k", "3", "--quiet", "--format", "csv"]
    assert main(["run", cat, "--out", str(tmp / "cal"), "--calibrate", "--split-seed", "3", "--no-figures",
                 *common]) == 0
    assert main(["validate", cat, "--out", str(tmp / "val"), "--calibrate", "--split-seed", "3", "--no-figures",
                 "--k", "3", "--quiet"]) == 0
    assert main(["run", cat, "--out", str(tmp / "plain"), "--no-figures", *common]) == 0
    return tmp


def _apply_temperature_oracle(p, T):
    """p^(1/T) renormalised per row, in plain NumPy."""
    q = np.power(p, 1.0 / T)
    return q / q.sum(axis=1, keepdims=True)


def test_run_calibrate_fits_what_validate_fits(runs):
    cal = load_model(runs / "cal" / "model")
    val = load_model(runs / "val" / "model")
    assert cal.temperature_ is not None and cal.temperature_ > 0
    assert cal.temperature_ == val.temperature_                    # same split, same fit, same temperature
    assert cal.model_hash == val.model_hash                         # the same model, temperature included
    manifest = json.loads((runs / "cal" / "manifest.json").read_text())
    assert manifest["model_hash"] == cal.model_hash
    # the hash covers the temperature: the same model without it has another hash
    raw_hash = cal.model_hash
    cal.temperature_ = None
    assert cal.model_hash != raw_hash


def test_run_calibrate_writes_scaled_probabilities_and_ece(runs):
    cal = load_model(runs / "cal" / "model")
    classes = list(cal.classes_)
    written = pd.read_csv(runs / "cal" / "detection_level.csv")
    # the same fitted model without its temperature classifies the catalogue: the uncalibrated run
    T = cal.temperature_
    cal.temperature_ = None
    raw = cal.classify(pd.read_parquet(runs / "cat.parquet")).detections
    assert written["obsid"].tolist() == raw["obsid"].tolist() and written["name"].tolist() == raw["name"].tolist()
    np.testing.assert_allclose(written[classes].to_numpy(), _apply_temperature_oracle(raw[classes].to_numpy(), T),
                               rtol=1e-9, atol=1e-12, equal_nan=True)
    assert (written["predicted_class"].fillna("") == raw["predicted_class"].fillna("")).all()

    manifest = json.loads((runs / "cal" / "manifest.json").read_text())
    c = manifest["calibration"]
    val = json.loads((runs / "val" / "manifest.json").read_text())["counts"]
    assert c["temperature"] == pytest.approx(T, rel=1e-12)
    assert c["ece_raw"] == pytest.approx(val["ece"], rel=1e-12)
    assert c["ece_calibrated"] == pytest.approx(val["ece_calibrated"], rel=1e-12)
    assert c["ece_calibrated"] < c["ece_raw"]
    assert c["split"]["by"] == "source" and c["split"]["sources_on_both_sides"] == 0
    assert c["split"]["seed"] == 3 and c["held_out_detections"] == val["test"]
    assert manifest["config"]["calibrate"] is True and manifest["config"]["split_seed"] == 3


def test_run_calibrate_writes_the_validation_tables_validate_writes(runs):
    """The held-out validation the temperature was fitted on lands in RUN/validation, equal to what
    `xsift validate` with the same split writes, and the manifest lists it."""
    for name in ("metrics_classes.csv", "confusion_classes_counts.csv", "reliability.csv", "test_predictions.csv"):
        ours, theirs = pd.read_csv(runs / "cal" / "validation" / name, comment="#"), \
            pd.read_csv(runs / "val" / name, comment="#")
        pd.testing.assert_frame_equal(ours, theirs)
    manifest = json.loads((runs / "cal" / "manifest.json").read_text())
    assert any(k.startswith("validation/") for k in manifest["outputs"])
    assert manifest["config"]["calibrate_by"] == "brier"


def test_run_without_calibrate_is_unchanged(runs):
    plain = load_model(runs / "plain" / "model")
    assert plain.temperature_ is None
    manifest = json.loads((runs / "plain" / "manifest.json").read_text())
    assert "calibration" not in manifest and manifest["config"]["calibrate"] is False
    # fitted on every label: it classifies the held-out sources' labelled detections as references,
    # so it is a different fit from the calibrated run's (trained without them)
    assert plain.model_hash != load_model(runs / "cal" / "model").model_hash
