"""xsift.GaussianMixture against scikit-learn's GaussianMixture(covariance_type="full") as the oracle."""
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
from astropy.table import MaskedColumn, Table
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.mixture import GaussianMixture as SkGaussianMixture
from sklearn.utils.estimator_checks import check_estimator

import xsift
from xsift import errors

K, D = 3, 3


@pytest.fixture(scope="module")
def data():
    """600 rows from 3 overlapping full-covariance Gaussians in 3 dimensions."""
    rng = np.random.default_rng(5)
    centres = np.array([[0.0, 0.0, 0.0], [2.5, 1.0, -1.0], [-1.0, 2.5, 1.5]])
    A = rng.normal(0.0, 0.4, (K, D, D)) + np.eye(D)
    lab = rng.integers(0, K, 600)
    return np.einsum("nij,nj->ni", A[lab], rng.normal(size=(600, D))) + centres[lab]


@pytest.fixture(scope="module")
def start(data):
    """A deliberately poor start, as scikit-learn's weights_init, means_init, precisions_init."""
    rng = np.random.default_rng(3)
    means = data[rng.choice(data.shape[0], K, replace=False)]
    cov = np.stack([np.cov(data.T) * s for s in (1.0, 0.6, 1.5)])
    return dict(weights_init=np.array([0.2, 0.3, 0.5]), means_init=means, precisions_init=np.linalg.inv(cov))


def _fitted_attributes(gm):
    return {a: getattr(gm, a) for a in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_")}


@pytest.mark.slow      # the default suite stays under 5 minutes on 2 cores; CI runs it
def test_passes_scikit_learn_check_estimator():
    """Every check scikit-learn runs on its own GaussianMixture passes. The one it skips,
    check_array_api_input, needs SCIPY_ARRAY_API set and an array-API estimator; xsift takes NumPy,
    pandas and astropy tables and does not claim array-API support (its tags say so)."""
    with warnings.catch_warnings():
        # xsift's estimators take scikit-learn's conventions without inheriting from BaseEstimator
        # (scikit-learn is not a run-time dependency): check_estimator warns about that, nothing else
        warnings.filterwarnings("ignore", message=".*does not inherit from `sklearn.base.BaseEstimator`")
        results = check_estimator(xsift.GaussianMixture(), on_fail=None)
    failed = {r["check_name"]: repr(r["exception"]) for r in results if r["status"] == "failed"}
    skipped = {r["check_name"] for r in results if r["status"] == "skipped"}
    assert failed == {}
    assert skipped <= {"check_array_api_input"}
    assert sum(r["status"] == "passed" for r in results) >= 40


@pytest.mark.parametrize("max_iter, tol", [(100, 1e-3), (4, 0.0)])
def test_float64_fit_equals_scikit_learn_from_the_same_start(data, start, max_iter, tol):
    ours = xsift.GaussianMixture(K, max_iter=max_iter, tol=tol, **start)
    sk = SkGaussianMixture(K, covariance_type="full", max_iter=max_iter, tol=tol, **start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours.fit(data)
        sk.fit(data)
    assert ours.n_iter_ == sk.n_iter_ and ours.converged_ == sk.converged_
    assert ours.converged_ == (tol > 0)
    assert ours.lower_bound_ == pytest.approx(sk.lower_bound_, rel=1e-8)
    for name, value in _fitted_attributes(ours).items():
        assert value.dtype == np.float64
        np.testing.assert_allclose(value, getattr(sk, name), rtol=1e-6, atol=1e-9, err_msg=name)
    assert ours.n_features_in_ == D and not hasattr(ours, "feature_names_in_")
    # every method on the fitted mixture, against scikit-learn's on its own fit
    np.testing.assert_array_equal(ours.predict(data), sk.predict(data))
    np.testing.assert_allclose(ours.predict_proba(data), sk.predict_proba(data), atol=1e-6)
    np.testing.assert_allclose(ours.score_samples(data), sk.score_samples(data), rtol=1e-7)
    assert ours.score(data) == pytest.approx(sk.score(data), rel=1e-8)
    assert ours.bic(data) == pytest.approx(sk.bic(data), rel=1e-8)
    assert ours.aic(data) == pytest.approx(sk.aic(data), rel=1e-8)


def test_float32_fit_is_close_to_scikit_learn(data, start):
    ours = xsift.GaussianMixture(K, dtype="float32", **start).fit(data)
    sk = SkGaussianMixture(K, covariance_type="full", **start).fit(data)
    assert ours.means_.dtype == np.float32 and ours.n_iter_ == sk.n_iter_
    assert ours.lower_bound_ == pytest.approx(sk.lower_bound_, rel=1e-5)
    np.testing.assert_allclose(ours.means_, sk.means_, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ours.covariances_, sk.covariances_, rtol=1e-3, atol=1e-4)


def test_warm_start_continues_where_the_last_fit_stopped_as_scikit_learn(data, start):
    """warm_start: each fit starts from the fitted parameters and measures its first change from the
    previous lower bound (scikit-learn's rule), so both stop at the same iteration; once converged, a
    further fit stops after one iteration (from a lower bound of -inf it could not)."""
    ours = xsift.GaussianMixture(K, warm_start=True, max_iter=7, tol=1e-3, **start)
    sk = SkGaussianMixture(K, covariance_type="full", warm_start=True, max_iter=7, tol=1e-3, **start)
    runs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(6):
            ours.fit(data)
            sk.fit(data)
            runs.append((ours.n_iter_, ours.converged_))
            assert (ours.n_iter_, ours.converged_) == (sk.n_iter_, sk.converged_)
            assert ours.lower_bound_ == pytest.approx(sk.lower_bound_, rel=1e-8)
            np.testing.assert_allclose(ours.means_, sk.means_, rtol=1e-6, atol=1e-9)
    assert runs[0] == (7, False) and runs[-1] == (1, True)


def test_given_means_are_kept_at_max_iter_0_and_the_rest_is_drawn(data, start):
    """With only means_init, the weights and covariances come from the k-means responsibilities (as
    scikit-learn's); max_iter=0 returns that start unchanged, without a ConvergenceWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        gm = xsift.GaussianMixture(K, max_iter=0, means_init=start["means_init"], random_state=0).fit(data)
    np.testing.assert_allclose(gm.means_, start["means_init"], rtol=1e-14, atol=1e-14)   # EM centres the data
    assert gm.n_iter_ == 0 and not gm.converged_ and gm.lower_bound_ == -np.inf
    assert gm.weights_.sum() == pytest.approx(1.0) and np.all(gm.weights_ > 0.1)
    np.testing.assert_allclose(np.linalg.inv(gm.covariances_), gm.precisions_, rtol=1e-8)


def test_kmeans_and_random_starts_find_the_same_mixture_as_scikit_learn(data):
    """Seeded starts differ from scikit-learn's (JAX's generator), but on this data every start run to
    a tight tolerance finds the same optimum: same lower bound and, up to a relabelling, the same means."""
    fit = dict(n_init=3, random_state=0, tol=1e-8, max_iter=1000)
    sk = SkGaussianMixture(K, covariance_type="full", **fit).fit(data)
    for init in ("kmeans", "random"):
        gm = xsift.GaussianMixture(K, init_params=init, **fit).fit(data)
        assert gm.converged_ and gm.lower_bound_ == pytest.approx(sk.lower_bound_, rel=1e-8)
        order = [int(np.argmin(np.linalg.norm(sk.means_ - m, axis=1))) for m in gm.means_]
        assert sorted(order) == list(range(K))
        np.testing.assert_allclose(gm.means_, sk.means_[order], atol=5e-3)
        again = xsift.GaussianMixture(K, init_params=init, **fit).fit(data)
        np.testing.assert_array_equal(again.means_, gm.means_)      # a seed fixes the fit


def test_clone_keeps_parameters_and_drops_the_fit(data, start):
    gm = xsift.GaussianMixture(K, tol=1e-4, reg_covar=1e-5, n_init=2, random_state=7, dtype="float32",
                               **start).fit(data)
    twin = clone(gm)
    assert type(twin) is xsift.GaussianMixture and twin is not gm
    params = twin.get_params()
    for name, value in gm.get_params().items():
        assert np.array_equal(params[name], value) if isinstance(value, np.ndarray) else params[name] == value
    assert not hasattr(twin, "means_")
    with pytest.raises(NotFittedError):
        twin.predict(data)
    assert twin.set_params(n_components=2).n_components == 2 and gm.n_components == K
    assert "n_components=3" in repr(gm) and "dtype='float32'" in repr(gm)


def test_convergence_warning_when_max_iter_is_too_small(data, start):
    gm = xsift.GaussianMixture(K, max_iter=2, tol=1e-12, **start)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        gm.fit(data)
    assert not gm.converged_ and gm.n_iter_ == 2


def test_without_scikit_learn_the_warning_and_error_are_xsift_s_own(data, start, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)            # `from sklearn import ...` now fails
    monkeypatch.setitem(sys.modules, "sklearn.exceptions", None)
    assert issubclass(errors.ConvergenceWarning, UserWarning)
    with pytest.warns(errors.ConvergenceWarning) as caught:
        xsift.GaussianMixture(K, max_iter=1, **start).fit(data)
    assert all(not type(w.message).__module__.startswith("sklearn") for w in caught)
    with pytest.raises(errors.NotFittedError, match="not fitted"):
        xsift.GaussianMixture(K).score(data)


def test_dataframe_and_astropy_table_give_the_array_s_result(data, start):
    names = ["hard_ms", "hard_hs", "var_prob"]
    frame = pd.DataFrame(data, columns=names)
    table = Table(data, names=names)
    by_array = xsift.GaussianMixture(K, **start).fit(data)
    for table_like in (frame, table):
        gm = xsift.GaussianMixture(K, **start).fit(table_like)
        assert list(gm.feature_names_in_) == names and gm.feature_names_in_.dtype == object
        assert gm.lower_bound_ == by_array.lower_bound_ and gm.n_iter_ == by_array.n_iter_
        for name, value in _fitted_attributes(by_array).items():
            np.testing.assert_array_equal(getattr(gm, name), value, err_msg=name)
        np.testing.assert_array_equal(gm.predict(table_like), by_array.predict(data))
        np.testing.assert_array_equal(gm.score_samples(table_like), by_array.score_samples(data))
    with pytest.raises(ValueError, match="feature names should match"):
        gm.predict(frame[names[::-1]])


def test_a_masked_table_value_is_a_clear_error_naming_the_column(data):
    table = Table(data, names=["a", "b", "c"])
    table["b"] = MaskedColumn(data[:, 1], mask=np.arange(len(data)) == 4)
    with pytest.raises(ValueError, match=r"NaN or inf in 1 rows, columns \['b'\]"):
        xsift.GaussianMixture(K).fit(table)


def test_sample_draws_from_the_fitted_mixture(data, start):
    gm = xsift.GaussianMixture(K, random_state=11, **start).fit(data)
    X, y = gm.sample(60_000)
    assert X.shape == (60_000, D) and y.shape == (60_000,) and y.dtype == np.int64
    np.testing.assert_allclose(np.bincount(y, minlength=K) / len(y), gm.weights_, atol=0.01)
    for k in range(K):
        rows = X[y == k]
        np.testing.assert_allclose(rows.mean(axis=0), gm.means_[k], atol=0.05)
        np.testing.assert_allclose(np.cov(rows.T), gm.covariances_[k], atol=0.06)
    # scikit-learn's sample with the same parameters and random_state draws the very same rows
    sk = SkGaussianMixture(K, covariance_type="full", random_state=11)
    for name, value in _fitted_attributes(gm).items():
        setattr(sk, name, value)
    sk_X, sk_y = sk.sample(500)
    X, y = gm.sample(500)
    np.testing.assert_array_equal(y, sk_y)
    np.testing.assert_allclose(X, sk_X, rtol=1e-12)
    with pytest.raises(ValueError, match="at least one sample"):
        gm.sample(0)


@pytest.mark.parametrize("params, match", [
    (dict(covariance_type="diag"), "full covariances only"),
    (dict(init_params="k-means++"), "init_params='k-means\\+\\+' is not supported"),
    (dict(dtype="float16"), "dtype must be 'float64' or 'float32'"),
    (dict(n_components=0), "n_components must be an integer >= 1"),
    (dict(weights_init=[0.5, 0.6, 0.1]), "sum to 1"),
    (dict(means_init=np.zeros((2, D))), r"means_init must have shape \(3, 3\)"),
    (dict(precisions_init=-np.stack([np.eye(D)] * K)), "positive definite"),
])
def test_unsupported_or_invalid_parameters_are_clear_errors(data, params, match):
    gm = xsift.GaussianMixture(**{"n_components": K, **params})      # the constructor accepts anything
    with pytest.raises(ValueError, match=match):
        gm.fit(data)


def test_fewer_rows_than_components_is_scikit_learn_s_error(data):
    with pytest.raises(ValueError, match="Expected n_samples >= n_components"):
        xsift.GaussianMixture(5).fit(data[:4])
