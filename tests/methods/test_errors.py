"""ClusterThenLabel with measurement errors (``errors=True``, ``--errors``; issue 18).

Oracles: finite differences of the fitted transform (error propagation), a plain-NumPy per-row computation
(np.linalg.pinv of the observed sub-block of Sigma_c + S_i, the XD marginal responsibilities by
np.linalg.slogdet/solve) on the estimator's own fitted arrays, the model without errors (all S_i = 0),
and the simulator's truth (true values vs reported ones).
"""
import json

import numpy as np
import pandas as pd
import pytest
from scipy.special import logsumexp

from xsift.config import load_preset
from xsift.data.features import FeatureTransform, derive_features, feature_errors
from xsift.errors import SchemaError
from xsift.methods.cluster_then_label import ClusterThenLabel
from xsift.simulate import ERROR_FEATURES, simulate_catalog

PRESET = load_preset("csc")
CLASSES = list(PRESET.classes.order)
KEY = ["name", "obsid"]


@pytest.fixture(scope="module")
def catalogue():
    """A simulated catalogue with measurement errors and missing bands, a model without errors, and one with
    errors on the same mixture (``gmm=``, scikit-learn's, fitted on the transformed complete rows: no XD
    fit here, so the default suite stays fast; its class covariances deconvolved, its classification the
    errors path)."""
    from sklearn.mixture import GaussianMixture
    df = simulate_catalog(2000, seed=31, errors=True)
    feats = derive_features(df, PRESET)
    ok = np.isfinite(feats.to_numpy()).all(axis=1)
    X = FeatureTransform.from_preset(PRESET).fit(feats[ok]).transform(feats[ok])
    gm = GaussianMixture(3, random_state=2, max_iter=200).fit(X)
    plain = ClusterThenLabel(n_components=3, gmm=gm).fit(df)
    with_errors = ClusterThenLabel(n_components=3, errors=True, gmm=gm).fit(df)
    return df, with_errors, plain


@pytest.fixture(scope="module")
def xd_fitted():
    """A model fitted with errors from scratch: extreme deconvolution (heavy: slow tests only)."""
    df = simulate_catalog(4000, seed=31, errors=True)
    return (df, ClusterThenLabel(n_components=3, seed=2, errors=True).fit(df),
            ClusterThenLabel(n_components=3, seed=2).fit(df))


def test_transform_errors_are_the_derivative_of_the_transform(catalogue):
    df, model, _ = catalogue
    feats = derive_features(df, PRESET)
    sigma = feature_errors(df, PRESET)
    t = model.transform_
    got = t.transform_errors(feats, sigma)
    h = 1e-6
    for j, f in enumerate(t.features):
        x = feats[[f]].to_numpy()[:, 0]
        ok = np.isfinite(x) & (x > 1e-3)
        step = np.zeros_like(feats.to_numpy())
        step[:, j] = h
        up = t.transform(feats.to_numpy() + step)[:, j]
        down = t.transform(feats.to_numpy() - step)[:, j]
        slope = (up - down) / (2 * h)
        s = sigma[f].to_numpy()
        expect = np.where(np.isfinite(s), s, 0.0) * np.abs(slope)
        np.testing.assert_allclose(got[ok, j], expect[ok], rtol=1e-6, atol=1e-12)
        assert np.isnan(got[~np.isfinite(x), j]).all()
        if f not in ERROR_FEATURES:
            assert (got[ok, j] == 0).all()                    # variability features: exact


@pytest.mark.slow
def test_fit_uses_extreme_deconvolution_and_saves_errors(xd_fitted, tmp_path):
    df, model, plain = xd_fitted
    assert model.fit_report_["gmm"]["extreme_deconvolution"] is True
    assert "extreme_deconvolution" not in plain.fit_report_["gmm"]
    # XD's covariances are the deconvolved ones: on the noisy features, narrower than the mixture of the
    # measured values (the weighted total variance of the hardness ratio hard_ms is smaller)
    j = model.feature_names_.index("hard_ms")

    def total_var(g):
        m = np.sum(g.weights * g.means[:, j])
        return np.sum(g.weights * (g.covariances[:, j, j] + (g.means[:, j] - m) ** 2))
    assert total_var(model.gmm_) < total_var(plain.gmm_)
    digest = model.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["meta"]["errors"] is True and "errors" not in plain._meta()    # plain models keep their hashes
    loaded = ClusterThenLabel.load(tmp_path / "m")
    assert loaded.errors is True and loaded.model_hash == digest
    assert set(PRESET.error_columns) <= set(loaded.wanted_columns())
    assert not set(PRESET.error_columns) & set(plain.wanted_columns())


def oracle(model, df):
    """Per row, in NumPy: cluster = argmax_k log w_k N(x_o | mu_ko, V_k,oo + S_i,oo); distance to class c
    (x - mu_kc)_o^T pinv((Sigma_kc + S_i)_oo) (x - mu_kc)_o; softmin over the usable classes."""
    feats = derive_features(df, PRESET)
    X = model.transform_.transform(feats)
    S = model.transform_.transform_errors(feats, feature_errors(df, PRESET)) ** 2
    g = model.gmm_
    cov = np.linalg.pinv(model.class_precisions_, rcond=1e-15)
    out = np.full((len(df), len(CLASSES)), np.nan)
    for i in range(len(df)):
        o = np.isfinite(X[i])
        Si = np.diag(np.where(o, S[i], 0.0))
        logp = [np.log(g.weights[k]) - 0.5 * (np.linalg.slogdet((g.covariances[k] + Si)[np.ix_(o, o)])[1]
                + (X[i, o] - g.means[k, o]) @ np.linalg.solve((g.covariances[k] + Si)[np.ix_(o, o)],
                                                               X[i, o] - g.means[k, o]))
                for k in range(len(g.weights))]
        k = int(np.argmax(logp))
        mask = model.class_mask_[k]
        if not mask.any():
            continue
        d = np.array([(X[i, o] - model.class_means_[k, c, o]) @ np.linalg.pinv((cov[k, c] + Si)[np.ix_(o, o)], rcond=1e-15)
                      @ (X[i, o] - model.class_means_[k, c, o]) for c in range(len(CLASSES))])
        lp = np.where(mask, -d, -np.inf)
        out[i] = np.exp(lp - logsumexp(lp))
    return out


def test_class_covariances_are_deconvolved(catalogue):
    """Each (cluster, class) covariance is the references' sample covariance minus their mean noise
    (negative eigenvalues set to 0): recomputed in NumPy from the clusters of the noise-convolved mixture."""
    df, model, plain = catalogue
    feats = derive_features(df, PRESET)
    ok = np.isfinite(feats.to_numpy()).all(axis=1)
    X = model.transform_.transform(feats)[ok]
    S = model.transform_.transform_errors(feats, feature_errors(df, PRESET))[ok] ** 2
    from xsift.kernels.xd import xd_e_step
    from xsift.methods.cluster_then_label import reference_labels
    labels = reference_labels(df, PRESET)[0][ok]
    cluster = np.argmax(xd_e_step(model.gmm_, X, S)[0], axis=1)
    np.testing.assert_array_equal(model.cluster_table(df)["cluster"].to_numpy(), cluster)   # the same clusters
    k, c = np.argwhere(model.class_mask_ & (model.class_counts_ > 30))[0]
    sel = (cluster == k) & (labels == c)
    np.testing.assert_allclose(model.class_means_[k, c], X[sel].mean(axis=0), rtol=1e-12)
    lam, V = np.linalg.eigh(np.cov(X[sel].T) - np.diag(S[sel].mean(axis=0)))
    np.testing.assert_allclose(model.class_precisions_[k, c], np.linalg.pinv((V * np.maximum(lam, 0)) @ V.T),
                               rtol=1e-6, atol=1e-6 * np.abs(model.class_precisions_[k, c]).max())


def test_probabilities_equal_a_per_row_numpy_oracle(catalogue):
    df, model, _ = catalogue
    rows = df.iloc[:200]
    proba = model.set_params(missing="marginalise").predict_proba(rows)
    ref = oracle(model, rows)
    assert (~np.isfinite(derive_features(rows, PRESET).to_numpy())).any(axis=1).sum() > 20   # incomplete rows in
    np.testing.assert_array_equal(np.isnan(proba), np.isnan(ref))
    np.testing.assert_allclose(proba, ref, rtol=0, atol=1e-8)


def test_without_errors_in_the_table_errors_change_nothing(catalogue):
    """All S_i = 0 (bounds of zero width): the errors path gives exactly the model's probabilities without
    errors, in every missing mode."""
    df, _, plain = catalogue
    exact = df.copy()
    for f in ERROR_FEATURES:
        exact[f"{f}_lolim"] = exact[f]
        exact[f"{f}_hilim"] = exact[f]
    for mode in ("marginalise",):        # median/drop take the same routing (rows without noise: the plain path)
        a, ra = plain.set_params(missing=mode, errors=False).classify_frame(exact)
        b, rb = plain.set_params(missing=mode, errors=True).classify_frame(exact)
        pd.testing.assert_frame_equal(a, b)
        assert rb["classified_with_errors"] == 0 and rb["errors"] is True
    plain.set_params(errors=False, missing="marginalise")


def test_errors_need_the_error_columns(catalogue):
    df, model, _ = catalogue
    with pytest.raises(SchemaError, match=r"cat\.csv: column 'hard_hm_lolim' \(error of feature 'hard_hm'\) not found.*"
                                          r"turn them off \(errors=False; --no-errors when classifying\)"):
        model.classify(df.drop(columns=["hard_hm_lolim"]), source="cat.csv")


@pytest.mark.slow
def test_cli_fit_classify_with_errors(tmp_path, capsys):
    from xsift.cli import main
    df = simulate_catalog(2500, seed=32, errors=True)
    df.to_parquet(tmp_path / "cat.parquet")
    assert main(["fit", str(tmp_path / "cat.parquet"), "--out", str(tmp_path / "m"), "--k", "3", "--errors",
                 "--quiet"]) == 0
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["config"]["errors"] is True and manifest["config"]["missing"] == "marginalise"
    assert main(["classify", str(tmp_path / "cat.parquet"), "--model", str(tmp_path / "m"), "--out",
                 str(tmp_path / "r"), "--quiet", "--no-figures"]) == 0
    run = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert run["config"]["errors"] is True
    model = ClusterThenLabel.load(tmp_path / "m")
    det = model.classify(df).detections
    assert len(det) == int(df["main_type"].isna().sum() + df["main_type"].isin(PRESET.classes.uninformative).sum())
    capsys.readouterr()
    df.drop(columns=["bb_kt_hilim"]).to_parquet(tmp_path / "bad.parquet")
    assert main(["classify", str(tmp_path / "bad.parquet"), "--model", str(tmp_path / "m"), "--out",
                 str(tmp_path / "r2"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bb_kt_hilim" in err[0] and "Traceback" not in err[0]
    assert "--no-errors" in err[0]
    # --no-errors: the same table classified without the errors, as the model with errors=False does
    assert main(["classify", str(tmp_path / "bad.parquet"), "--model", str(tmp_path / "m"), "--out",
                 str(tmp_path / "r3"), "--quiet", "--no-figures", "--no-errors"]) == 0
    got = pd.read_parquet(tmp_path / "r3" / "detection_level.parquet")
    plain = model.set_params(errors=False).classify(df.drop(columns=["bb_kt_hilim"])).detections
    assert json.loads((tmp_path / "r3" / "manifest.json").read_text())["config"]["errors"] is False
    np.testing.assert_array_equal(got["predicted_class"].astype(str), plain["predicted_class"].astype(str))


def test_reversed_error_bounds_are_counted_not_used(catalogue, tmp_path, capsys):
    """A row whose upper bound lies below its lower bound has no usable error: counted per feature in the
    fit and classify reports (and printed by the command line), its variance 0, as a row without error."""
    df, model, _ = catalogue
    bad = df.copy()
    rows = np.flatnonzero(bad["main_type"].isna().to_numpy())[:7]
    lo, hi = bad["hard_hm_lolim"].to_numpy().copy(), bad["hard_hm_hilim"].to_numpy().copy()
    lo[rows], hi[rows] = hi[rows], lo[rows]
    bad["hard_hm_lolim"], bad["hard_hm_hilim"] = lo, hi
    swapped = int((np.isfinite(lo) & np.isfinite(hi) & (hi < lo)).sum())
    assert swapped == int((np.isfinite(lo[rows]) & np.isfinite(hi[rows]) & (hi[rows] < lo[rows])).sum()) > 0
    report = model.classify(bad, source="bad.csv").report["classify"]
    assert report["negative_errors_ignored"] == {"hard_hm": swapped}
    sigma = feature_errors(bad, PRESET)
    assert np.isnan(sigma["hard_hm"].to_numpy()[rows][np.isfinite(lo[rows]) & np.isfinite(hi[rows])]).all()
    assert "negative_errors_ignored" not in model.classify(df, source="ok.csv").report["classify"]
    from xsift.cli import main
    path = tmp_path / "bad.parquet"
    bad.to_parquet(path)
    model.save(tmp_path / "m")
    assert main(["classify", str(path), "--model", str(tmp_path / "m"), "--out", str(tmp_path / "r"),
                 "--no-figures"]) == 0
    assert f"{swapped:,} measurement error(s) negative" in capsys.readouterr().out
