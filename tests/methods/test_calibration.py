"""Temperature scaling: the optax fit against scipy on the same NLL, its application to probabilities,
and the temperature saved with both methods' models (hashed, loaded, applied by predict_proba/classify)."""
import json

import numpy as np
import pytest
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, logsumexp

from xsift.errors import XsiftError
from xsift.kernels.calibration import fit_log_temperature, temperature_brier, temperature_nll
from xsift.methods.calibration import apply_temperature, fit_temperature, set_temperature


def _nll_numpy(z, y, T):
    """Plain NumPy NLL of the true classes at temperature T; -inf entries are ruled-out classes."""
    zz = np.where(np.isfinite(z), z / T, -np.inf)
    return float(np.mean(logsumexp(zz, axis=1) - zz[np.arange(len(y)), y]))


def _overconfident(n=4000, L=6, true_T=3.0, seed=0, ruled_out=0.1):
    """Log-probabilities whose classes were drawn from softmax(logits / true_T): over-confident by true_T.
    A share of classes other than the true one are ruled out (-inf), as excluded classes in a cluster."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, L)) * 4
    p = np.exp(log_softmax(logits / true_T, axis=1))
    y = (p.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    z = log_softmax(logits, axis=1)
    out = rng.random((n, L)) < ruled_out
    out[np.arange(n), y] = False
    z = np.where(out, -np.inf, z)
    return z - logsumexp(z, axis=1, keepdims=True), y


def test_nll_kernel_equals_plain_numpy():
    z, y = _overconfident(500)
    for T in (0.5, 1.0, 2.7):
        assert temperature_nll(z, y, T) == pytest.approx(_nll_numpy(z, y, T), rel=1e-12)


def _brier_numpy(z, y, T):
    """Plain NumPy Brier score at temperature T: q = softmax(z / T) over the usable classes."""
    zz = np.where(np.isfinite(z), z / T, -np.inf)
    q = np.exp(zz - logsumexp(zz, axis=1, keepdims=True))
    onehot = np.eye(z.shape[1])[y]
    return float(np.mean(np.sum((q - onehot) ** 2, axis=1)))


def test_brier_kernel_equals_plain_numpy_even_with_ruled_out_true_classes():
    z, y = _overconfident(500)
    z[:5, :] = -np.inf
    z[:5, (y[:5] + 1) % z.shape[1]] = 0.0          # the true class ruled out: allowed in the Brier score
    for T in (0.5, 1.0, 2.7):
        assert temperature_brier(z, y, T) == pytest.approx(_brier_numpy(z, y, T), rel=1e-12)


def test_brier_fit_equals_scipy_bounded_minimum_and_default_objective_is_brier():
    z, y = _overconfident(3000, true_T=3.0, seed=7)
    T, score, _, _ = fit_log_temperature(z, y, objective="brier")
    ref = minimize_scalar(lambda s: _brier_numpy(z, y, np.exp(s)), bounds=(np.log(0.05), np.log(20)),
                          method="bounded", options={"xatol": 1e-10})
    assert T == pytest.approx(np.exp(ref.x), rel=1e-4)
    assert score == pytest.approx(ref.fun, rel=1e-9)
    fit = fit_temperature(np.exp(z), y)
    assert fit.objective == "brier" and fit.temperature == pytest.approx(T, rel=1e-10)
    assert fit.brier_calibrated <= fit.brier_raw
    with pytest.raises(XsiftError, match="objective 'ece'"):
        fit_temperature(np.exp(z), y, "ece")


@pytest.mark.parametrize("true_T", [0.6, 3.0])
def test_fitted_temperature_equals_scipy_minimize_scalar(true_T):
    z, y = _overconfident(3000, true_T=true_T, seed=int(true_T * 10))
    T, nll, _, converged = fit_log_temperature(z, y)
    ref = minimize_scalar(lambda s: _nll_numpy(z, y, np.exp(s)), bracket=(-3, 3), tol=1e-12)
    assert converged
    assert T == pytest.approx(np.exp(ref.x), rel=1e-4)
    assert nll == pytest.approx(ref.fun, rel=1e-10)
    # the simulator's truth: drawn at true_T, the fit finds about it
    assert T == pytest.approx(true_T, rel=0.15)


def test_apply_temperature_is_power_renormalised_and_keeps_order_zeros_and_nan_rows():
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(5) * 0.3, size=200)
    p[:20, 1] = 0.0
    p[:20] /= p[:20].sum(axis=1, keepdims=True)
    p[5] = np.nan
    q = apply_temperature(p, 2.5)
    ref = p ** (1 / 2.5)
    ref /= ref.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(q[np.arange(200) != 5], ref[np.arange(200) != 5], rtol=1e-12)
    assert np.isnan(q[5]).all() and (q[np.r_[0:5, 6:20], 1] == 0).all()
    ok = np.arange(200) != 5
    assert (q[ok].argmax(axis=1) == p[ok].argmax(axis=1)).all()
    assert apply_temperature(p, None) is p and apply_temperature(p, 1.0) is p
    with pytest.raises(XsiftError, match="positive"):
        apply_temperature(p, -1.0)
    # far-apart log-probabilities do not underflow to a 0/0 row
    tiny = np.array([[1e-300, 1e-310, 0.0]])
    assert np.isfinite(apply_temperature(tiny, 0.1)).all()


def test_fit_temperature_leaves_out_unscored_rows_and_ruled_out_true_classes():
    z, y = _overconfident(1500, seed=4)
    p = np.exp(z)
    p_bad = p.copy()
    y_bad = y.copy()
    p_bad[:10] = np.nan                 # no prediction
    y_bad[10:20] = -1                   # no label
    p_bad[20:25, :] = 0.0
    p_bad[20:25, 0] = 1.0
    y_bad[20:25] = 1                    # true class at probability 0: no temperature helps
    fit = fit_temperature(p_bad, y_bad, objective="nll")
    assert fit.rows == 1500 - 25 and fit.rows_true_class_ruled_out == 5
    T_ref, _, _, _ = fit_log_temperature(z[25:], y[25:])
    assert fit.temperature == pytest.approx(T_ref, rel=1e-8)
    assert fit.nll_calibrated <= fit.nll_raw
    with pytest.raises(XsiftError, match="no labelled row"):
        fit_temperature(p[:5], np.full(5, -1))


@pytest.fixture(scope="module")
def small_sim():
    from xsift.simulate import simulate_catalog
    return simulate_catalog(4000, seed=8)


def test_cluster_then_label_saves_applies_and_hashes_its_temperature(tmp_path, small_sim):
    from xsift.methods.cluster_then_label import ClusterThenLabel
    from xsift.methods.persistence import load_model
    model = ClusterThenLabel(n_components=3).fit(small_sim)
    raw_hash = model.model_hash
    raw = model.predict_proba(small_sim)
    raw_det = model.classify(small_sim).detections
    assert model.temperature_ is None
    model.save(tmp_path / "raw")
    assert "calibration" not in json.loads((tmp_path / "raw" / "model.json").read_text())["meta"]

    set_temperature(model, 2.0)
    assert model.model_hash != raw_hash
    np.testing.assert_allclose(model.predict_proba(small_sim), apply_temperature(raw, 2.0), rtol=1e-12,
                               equal_nan=True)
    det = model.classify(small_sim).detections
    classes = list(model.classes_)
    np.testing.assert_allclose(det[classes].to_numpy(), apply_temperature(raw_det[classes].to_numpy(), 2.0),
                               rtol=1e-12, equal_nan=True)
    assert (det["predicted_class"] == raw_det["predicted_class"]).all()      # order of classes kept

    assert model.save(tmp_path / "cal") == model.model_hash
    meta = json.loads((tmp_path / "cal" / "model.json").read_text())["meta"]
    assert meta["calibration"] == {"method": "temperature", "temperature": 2.0}
    loaded = load_model(tmp_path / "cal")
    assert loaded.temperature_ == 2.0 and loaded.model_hash == model.model_hash
    np.testing.assert_allclose(loaded.predict_proba(small_sim), model.predict_proba(small_sim), equal_nan=True)
    assert load_model(tmp_path / "raw").temperature_ is None
    model.fit(small_sim)                       # refitting removes the calibration
    assert model.temperature_ is None and model.model_hash == raw_hash


def test_naive_bayes_saves_and_applies_its_temperature(tmp_path, small_sim):
    from xsift.methods.naive_bayes import NaiveBayesKDE
    from xsift.methods.persistence import load_model
    model = NaiveBayesKDE("nb_csc", n_grid=256).fit(small_sim)
    raw = model.predict_proba(small_sim)
    raw_hash = model.model_hash
    set_temperature(model, 0.7)
    np.testing.assert_allclose(model.predict_proba(small_sim), apply_temperature(raw, 0.7), rtol=1e-10)
    out, _ = model.classify_frame(small_sim)
    np.testing.assert_allclose(out[list(model.classes_)].to_numpy(), apply_temperature(raw, 0.7), rtol=1e-10)
    assert model.model_hash != raw_hash
    model.save(tmp_path / "nb")
    loaded = load_model(tmp_path / "nb")
    assert loaded.temperature_ == 0.7 and loaded.model_hash == model.model_hash
