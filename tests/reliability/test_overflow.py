"""Values that overflow the precision (a 1e200 sentinel in float64, 1.6e38 in float32) never give NaN
probabilities beside a predicted class: the schema check makes a number beyond 1e150 missing
(``beyond_range_to_missing``), the classifier a transformed value its kernels' precision cannot square
(``beyond_precision_to_missing``); every row of the detection-level table has finite probabilities
summing to 1 or none and ``no_usable_class``, and every classified source lands in exactly one of the
uniquely-classified and ambiguous tables (oracle: the distinct names of the classified rows)."""
import json

import numpy as np
import pandas as pd
import pytest

from xsift.cli import main
from xsift.data.features import raw_feature_columns
from xsift.data.io import write_table


@pytest.mark.parametrize("precision, tolerance", [pytest.param("float64", 1e-9, marks=pytest.mark.slow),
                                                   ("float32", 1e-5)])
def test_sentinels_are_missing_and_every_source_is_voted_once(tmp_path, catalogue, fitted_model, precision,
                                                            tolerance):
    model, _ = fitted_model
    df = catalogue()
    rows = df.index[df["main_type"].isna() & df[raw_feature_columns("csc")].notna().all(axis=1)][:4]
    df.loc[rows[0], "powlaw_gamma"] = 1e200          # beyond float64's square root
    df.loc[rows[1], "var_sigma_b"] = 1e200
    df.loc[rows[2], "powlaw_gamma"] = 1.6e38         # a float32 sentinel: squares overflow in float32
    df.loc[rows[3], "hard_hm"] = -1.6e38
    write_table(df, tmp_path / "cat.parquet")
    run = tmp_path / "run"
    assert main(["classify", str(tmp_path / "cat.parquet"), "--model", str(model), "--out", str(run),
                 "--precision", precision, "--missing", "marginalise", "--no-figures", "--quiet"]) == 0

    report = json.loads((run / "manifest.json").read_text())["classify"]
    assert report["schema"]["beyond_range_to_missing"] == {"powlaw_gamma": 1, "var_sigma_b": 1}
    if precision == "float32":
        assert report["beyond_precision_to_missing"] == 2      # the two 1.6e38 values
    else:
        assert "beyond_precision_to_missing" not in report

    det = pd.read_parquet(run / "detection_level.parquet")
    from xsift.methods.cluster_then_label import ClusterThenLabel
    classes = [str(c) for c in ClusterThenLabel.load(model).classes_]
    probs = det[classes].to_numpy(dtype=np.float64)
    none = det["no_usable_class"].astype(bool).to_numpy()
    assert np.isfinite(probs[~none]).all()
    assert np.allclose(probs[~none].sum(axis=1), 1.0, atol=tolerance)
    assert det.loc[~none, "predicted_class"].notna().all() and det.loc[none, "predicted_class"].isna().all()
    assert np.isnan(probs[none]).all()
    # the sentinel rows are classified on their other features (marginalised over the missing one)
    assert set(df.loc[rows, "name"]) <= set(det.loc[~none, "name"])

    tables = [pd.read_parquet(run / f"{t}.parquet") for t in ("uniquely_classified", "ambiguous")]
    names = pd.concat([t["name"] for t in tables])
    assert not names.duplicated().any()
    assert set(names) == set(det.loc[~none, "name"])
