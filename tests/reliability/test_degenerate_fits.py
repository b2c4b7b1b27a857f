"""Degenerate fits: a clear refusal or a documented floor, never a silent absurd result.

* ``--k 0`` or negative: refused before any work;
* more free parameters than rows (``K d(d+1)/2 + K d + K - 1`` > complete rows) in ``fit`` and ``bic``:
  refused naming the file, the K and the largest K the rows determine
  (xsift.methods.model_selection.check_free_parameters);
* a property equal up to rounding: the mixture's min-max transform does not stretch it (it stays ~0,
  its variance reg_covar: xsift.data.features), the naive-Bayes KDE refuses it naming the property
  (a bandwidth of its rounding noise gave outlier measures ~4.5 lower than the same catalogue's)."""
import numpy as np
import pandas as pd
import pytest

from reliability_checks import refused
from xsift.cli import main
from xsift.data.io import write_table


@pytest.fixture
def cat(tmp_path, catalogue):
    write_table(catalogue(), tmp_path / "cat.parquet")
    return tmp_path / "cat.parquet"


@pytest.mark.parametrize("k", ["0", "-2"])
def test_k_zero_or_negative_is_refused(tmp_path, capsys, cat, k):
    code = main(["fit", str(cat), "--out", str(tmp_path / "model"), "--k", k])
    refused(code, capsys.readouterr().err, f"n_components {k}", "positive")
    assert not (tmp_path / "model").exists()


def test_more_free_parameters_than_rows_is_refused_in_fit_and_bic(tmp_path, capsys, catalogue):
    from xsift.kernels.gmm import n_parameters
    small = tmp_path / "small.parquet"
    df = catalogue().iloc[:400]
    write_table(df, small)
    code = main(["fit", str(small), "--out", str(tmp_path / "model"), "--k", "6"])
    line = refused(code, capsys.readouterr().err, "small.parquet", "K=6", f"{n_parameters(6, 12)} free parameters")
    # the largest K the rows determine (oracle: the parameter count against the complete rows)
    from xsift.data.features import raw_feature_columns
    complete = int(df[raw_feature_columns("csc")].notna().all(axis=1).sum())
    most = max(k for k in range(1, 7) if n_parameters(k, 12) <= complete)
    assert f"use --k {most} or less" in line and f"{complete} usable rows" in line
    assert not (tmp_path / "model").exists()
    code = main(["bic", str(small), "--k", "2..8", "--out", str(tmp_path / "bic")])
    refused(code, capsys.readouterr().err, "small.parquet", "free parameters", f"use --k {most} or less")
    assert not (tmp_path / "bic").exists() or not any((tmp_path / "bic").iterdir())


def test_a_feature_equal_up_to_rounding_is_not_stretched():
    from xsift.data.features import FeatureTransform
    rng = np.random.default_rng(0)
    feats = pd.DataFrame({f: rng.uniform(0.1, 1.0, 500) for f in
                          FeatureTransform.from_preset("csc").features})
    feats["powlaw_gamma"] = 1.7 * (1 + rng.uniform(-1, 1, 500) * 1e-12)     # rounding noise around 1.7
    t = FeatureTransform.from_preset("csc").fit(feats)
    X = t.transform(feats)
    j = t.features.index("powlaw_gamma")
    np.testing.assert_allclose(X[:, j], feats["powlaw_gamma"] - feats["powlaw_gamma"].min(), atol=1e-15)
    assert np.ptp(X[:, j]) < 1e-11
    k = t.features.index("bb_kt")                      # log + min-max, a real range
    assert np.ptp(X[:, k]) == pytest.approx(1.0)       # a real range is still scaled to [0, 1]


def test_naive_bayes_refuses_a_property_equal_up_to_rounding(tmp_path, capsys, catalogue):
    df = catalogue()
    df["hard_hm"] = 0.3 + np.arange(len(df)) * 1e-17
    write_table(df, tmp_path / "cat.parquet")
    code = main(["nb", "fit", str(tmp_path / "cat.parquet"), "--out", str(tmp_path / "nb")])
    refused(code, capsys.readouterr().err, "cat.parquet", "'hard_hm'", "beyond rounding")
    assert not (tmp_path / "nb").exists()
