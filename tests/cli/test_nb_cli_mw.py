"""`xsift nb validate` and the shipped ready model `csc-mw` on the real multiwavelength tables: metrics
checked against scikit-learn on the written predictions, a table lacking columns validated and classified
with the properties it has, the classification of a raw CSC table against a model fitted from scratch on
those properties, and the rebuilt model's content hash against the shipped one."""
import fnmatch
import json
import pathlib
import sys
import tomllib

import numpy as np
import pandas as pd
import pytest

from xsift.cli import main

from shared_data import shared_file

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_nb_validate_metrics_match_sklearn_and_absent_columns_are_listed(tmp_path, capsys):
    from sklearn.metrics import confusion_matrix, f1_score, precision_score, recall_score
    df = pd.read_csv(shared_file("muwclass", "td_multiwavelength_2023.csv"))
    table = tmp_path / "no_2mass.csv"
    df.drop(columns=["Jmag", "Hmag", "Kmag", "e_Jmag"]).to_csv(table, index=False)
    out = tmp_path / "val"
    assert main(["nb", "validate", str(table), "--config", "nb_csc_mw", "--out", str(out), "--folds", "3",
                 "--seed", "2", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "using 14 of 18 properties" in text and "log_fx_fj (Jmag)" in text and "h_k (Hmag, Kmag)" in text
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["properties"]["properties_absent"]) == {"log_fx_fj", "g_j", "j_h", "h_k"}
    pred = pd.read_csv(out / "predictions.csv", comment="#")
    classes = ["AGN", "YSO", "LM-STAR", "HM-STAR", "NS", "CV", "HMXB", "LMXB"]
    assert list(metrics["classes"]) == classes and len(pred) == len(df)
    assert sorted(pred["fold"].unique()) == [0, 1, 2]
    y, p = pred["true_class"], pred["predicted_class"]
    for name, fn in (("f1", f1_score), ("recall", recall_score), ("precision", precision_score)):
        expect = fn(y, p, labels=classes, average=None, zero_division=np.nan)
        got = [metrics["classes"][c][name] for c in classes]
        np.testing.assert_allclose(np.nan_to_num(got, nan=-1), np.nan_to_num(expect, nan=-1), atol=1e-12)
    assert metrics["macro_f1"] == pytest.approx(np.mean([metrics["classes"][c]["f1"] for c in classes]))
    counts = pd.read_csv(out / "confusion_classes_counts.csv", comment="#").set_index("true_class")
    np.testing.assert_array_equal(counts[classes].to_numpy(), confusion_matrix(y, p, labels=classes))
    # aggregated classes from the summed probabilities of the written predictions
    groups = {"AGN": ["AGN"], "Star": ["YSO", "LM-STAR", "HM-STAR"], "XRB": ["HMXB", "LMXB"], "CV": ["CV"],
              "NS": ["NS"]}
    summed = pd.DataFrame({g: pred[m].sum(axis=1) for g, m in groups.items()})
    of = {c: g for g, m in groups.items() for c in m}
    xrb = f1_score(y.map(of), summed.idxmax(axis=1), labels=["XRB"], average=None)[0]
    assert metrics["aggregated"]["classes"]["XRB"]["f1"] == pytest.approx(xrb, abs=1e-12)
    for name in ("confusion_classes.png", "confusion_classes_counts.png", "confusion_aggregated.png",
                 "reliability.png", "reliability.csv", "manifest.json"):
        assert (out / name).stat().st_size > 0, name
    assert 0 <= metrics["ece"] <= 1
    # nb fit on the same table: fitted with the 14 properties it has, listed in the manifest
    assert main(["nb", "fit", str(table), "--config", "nb_csc_mw", "--out", str(tmp_path / "model"), "--quiet"]) == 0
    assert "using 14 of 18 properties" in capsys.readouterr().out
    fitted = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert set(fitted["properties"]["properties_absent"]) == {"log_fx_fj", "g_j", "j_h", "h_k"}


def test_classify_a_raw_csc_table_with_the_shipped_model(tmp_path, capsys):
    """The raw CSC observation_source table has 6 of the model's 18 properties (under its own column
    names, the preset's aliases); the result equals a model fitted from scratch on those 6 properties."""
    from xsift.config import load_preset
    from xsift.data.schema import match_columns
    from xsift.methods.naive_bayes import NaiveBayesKDE
    from xsift.methods.nb_validation import preset_for_columns
    raw = shared_file("csc_raw", "observation_source_lmxb.csv")
    out = tmp_path / "run"
    assert main(["nb", "classify", str(raw), "--model", "csc-mw", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "using 6 of 18 properties: abs_b, hr_ms, hr_hm, hr_hs, gamma, var_intra_prob" in text
    assert "Fcsc_s <- flux_aper_s" in text and "log_fx_fg (Gmag)" in text
    got = pd.read_parquet(out / "nb_classification.parquet")
    # oracle: the preset reduced to the raw table's columns, fitted on the training set
    preset = load_preset("nb_csc_mw")
    from xsift.data.io import read_catalog
    table, _ = match_columns(read_catalog(raw), preset.feature_columns, preset.aliases)
    reduced, facts = preset_for_columns(preset, table.columns)
    assert len(facts["properties_used"]) == 6
    train = pd.read_csv(shared_file("muwclass", "td_multiwavelength_2023.csv"))
    oracle = NaiveBayesKDE(reduced).fit(train).predict_proba(table)
    classes = list(preset.classes.order)
    assert len(got) == len(table) == 735
    np.testing.assert_allclose(got[classes].to_numpy(), oracle, rtol=0, atol=1e-10)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["properties"]["properties_used"] == facts["properties_used"]
    # aggregated classes: the largest of the summed member posteriors
    groups = {"AGN": ["AGN"], "Star": ["YSO", "LM-STAR", "HM-STAR"], "XRB": ["HMXB", "LMXB"], "CV": ["CV"],
              "NS": ["NS"]}
    summed = pd.DataFrame({g: got[m].sum(axis=1) for g, m in groups.items()})
    assert (got["aggregated_class"] == summed.idxmax(axis=1)).all()
    np.testing.assert_allclose(got["aggregated_probability"], summed.max(axis=1), rtol=0, atol=1e-12)


def test_the_shipped_model_is_package_data():
    from xsift.models import MODELS_DIR, resolve_model, shipped_models
    assert "csc-mw" in shipped_models() and resolve_model("csc-mw") == MODELS_DIR / "csc-mw"
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "xsift.models" in cfg["tool"]["setuptools"]["packages"]
    globs = cfg["tool"]["setuptools"]["package-data"]["xsift.models"]
    for name in ("model.npz", "model.json"):
        assert any(fnmatch.fnmatch(f"csc-mw/{name}", g) for g in globs), name
    info = json.loads((MODELS_DIR / "csc-mw" / "model.json").read_text())["info"]["fit"]["provenance"]
    assert info["preset"] == "nb_csc_mw" and info["data_file"] == "td_multiwavelength_2023.csv"
    assert info["options"]["missing_likelihood"] is True and info["date"]


@pytest.mark.slow
def test_rebuilt_model_hash_equals_the_shipped_one(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from build_csc_mw_model import build
    finally:
        sys.path.pop(0)
    from xsift.methods.persistence import read_model
    shipped = json.loads((ROOT / "engine" / "models" / "csc-mw" / "model.json").read_text())["hash"]
    digest = build(shared_file("muwclass", "td_multiwavelength_2023.csv"), tmp_path / "csc-mw")
    assert digest == shipped
    read_model(tmp_path / "csc-mw", kind="naive_bayes")          # and it reads back (hash checked)


def test_load_model_takes_a_shipped_models_name():
    """`xsift.load_model("csc-mw")` gives the shipped naive-Bayes model, as `--model csc-mw` does on the
    command line: the eight MUWCLASS classes of its preset."""
    import xsift
    from xsift.config import load_preset
    model = xsift.load_model("csc-mw")
    assert model.kind == "naive_bayes"
    assert list(model.classes_) == list(load_preset("nb_csc_mw").classes.order)
