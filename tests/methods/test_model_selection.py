"""`xsift bic` on the simulator's output, checked against scikit-learn and NumPy."""
import numpy as np
import pandas as pd
import pytest
from sklearn.mixture import GaussianMixture

from xsift.cli import main
from xsift.errors import XsiftError
from xsift.config import load_preset
from xsift.methods.model_selection import catalog_features, parse_k_range
from xsift.simulate import write_simulated_catalog
from xsift.kernels.gmm import choose_k


def test_parse_k_range():
    assert parse_k_range("2..20") == list(range(2, 21))
    assert parse_k_range("2..10:4") == [2, 6, 10]
    assert parse_k_range("6,3, 9") == [3, 6, 9]
    for bad in ("2..3", "x..y", "0..5", "2..9:0", ""):
        with pytest.raises(XsiftError, match="--k"):
            parse_k_range(bad)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    write_simulated_catalog(out, 2500, n_shards=2, seed=3)
    return out


def test_bic_cli_writes_table_figure_and_choice(catalog, tmp_path, capsys):
    out = tmp_path / "bic"
    rc = main(["bic", str(catalog), "--k", "2..5", "--repeats", "2", "--sample", "1500", "--seed", "1", "--groups", "1",
               "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    table = pd.read_csv(out / "bic.csv")
    assert list(table.columns[:5]) == ["k", "bic_mean", "bic_std", "gradient", "bic_min"]
    assert table["k"].tolist() == [2, 3, 4, 5]
    np.testing.assert_allclose(table["gradient"], np.gradient(table["bic_mean"], table["k"]))
    chosen = choose_k({"ks": table["k"].to_numpy(), "bic_mean": table["bic_mean"].to_numpy()})
    assert f"chosen K = {chosen}" in printed
    assert "dropped for missing features" in printed
    assert (out / "bic.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "manifest.json").exists()
    assert not list(out.glob(".*.tmp"))

    # the same subset fitted by scikit-learn: its best BIC at K = 2 over three seeds matches our best
    # repeat's (independent k-means starts find the same best optimum)
    X, counts = catalog_features(str(catalog), load_preset("csc"))
    assert counts["rows_used"] + counts["rows_incomplete_dropped"] + counts["rows_untransformable_dropped"] == 2500
    rng = np.random.default_rng(1)
    X = X[np.sort(rng.choice(len(X), 1500, replace=False))]
    sk = min(GaussianMixture(2, covariance_type="full", random_state=r).fit(X).bic(X) for r in range(3))
    assert abs(table["bic_min"].iloc[0] - sk) <= 1e-6 * abs(sk)
    assert table["bic_min"].iloc[0] <= table["bic_mean"].iloc[0]


def test_bic_cli_rejects_too_few_rows(catalog, tmp_path, capsys):
    rc = main(["bic", str(catalog), "--k", "2..20", "--sample", "10", "--out", str(tmp_path / "x")])
    assert rc == 2
    assert "need at least as many rows as components" in capsys.readouterr().err
