"""xsift.kernels.gmm against scikit-learn's GaussianMixture(covariance_type="full") as the oracle."""
import warnings

import numpy as np
import pytest
import jax.numpy as jnp
from scipy.optimize import linear_sum_assignment
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

import xsift.kernels.gmm as G
from xsift.kernels import float64_enabled
from xsift.kernels.gmm.apply import _e_step_program, _labels_program
from xsift.kernels.gmm.em import _em
from xsift.kernels.gmm.estep import _PAIR_MIN_K, _data_stats
from xsift.kernels.gmm.fit import _fit_program
from xsift.kernels.gmm.layout import _chunked, _e_step_layout, _em_layout

K, D = 3, 4


def _mixture(n, k, d, seed, sep=6.0, scale=1.0):
    """n rows from k well-separated Gaussians with random full covariances; returns X, labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, sep, (k, d))
    A = rng.normal(0.0, 0.4 * scale, (k, d, d)) + scale * np.eye(d)
    lab = rng.integers(0, k, n)
    X = np.einsum("nij,nj->ni", A[lab], rng.normal(size=(n, d))) + centres[lab]
    return X, lab


@pytest.fixture(scope="module")
def data():
    X, lab = _mixture(1500, K, D, seed=1, sep=2.0)   # overlapping: EM has work to do
    return X


@pytest.fixture(scope="module")
def start(data):
    """A deliberately poor starting point shared by xsift and scikit-learn."""
    rng = np.random.default_rng(7)
    means = data[rng.choice(data.shape[0], K, replace=False)]
    cov = np.stack([np.cov(data.T) * s for s in (1.0, 0.5, 2.0)])
    return G.GMMParams(np.array([0.2, 0.3, 0.5]), means, cov,
                       np.linalg.inv(np.linalg.cholesky(cov)).transpose(0, 2, 1))


def _sklearn_from(start, n_iter, tol=0.0, X=None, k=K):
    prec = np.einsum("kij,klj->kil", start.precisions_cholesky, start.precisions_cholesky)
    gm = GaussianMixture(k, covariance_type="full", max_iter=n_iter, tol=tol, weights_init=start.weights,
                         means_init=start.means, precisions_init=prec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return gm.fit(X)


def _sklearn_with_params(params, k):
    gm = GaussianMixture(k, covariance_type="full")
    gm.weights_ = np.asarray(params.weights, np.float64)
    gm.means_ = np.asarray(params.means, np.float64)
    gm.covariances_ = np.asarray(params.covariances, np.float64)
    gm.precisions_cholesky_ = np.asarray(params.precisions_cholesky, np.float64)
    gm.precisions_ = np.einsum("kij,klj->kil", gm.precisions_cholesky_, gm.precisions_cholesky_)
    return gm


def test_float64_matches_sklearn_iteration_by_iteration(data, start):
    for n_iter in (1, 6):
        sk = _sklearn_from(start, n_iter, X=data)
        ours = G.fit_gmm(data, K, seed=0, init=start, max_iter=n_iter, tol=0.0, dtype="float64")
        assert ours.n_iter == sk.n_iter_ == n_iter
        assert ours.converged is False and sk.converged_ is False
        assert abs(ours.lower_bound - sk.lower_bound_) <= 1e-8 * abs(sk.lower_bound_)
        np.testing.assert_allclose(ours.weights, sk.weights_, rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(ours.means, sk.means_, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(ours.covariances, sk.covariances_, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(ours.precisions_cholesky, sk.precisions_cholesky_, rtol=1e-6, atol=1e-9)
        assert ours.means.dtype == np.float64


def test_float32_matches_sklearn_to_1e4(data, start):
    sk = _sklearn_from(start, 6, X=data)
    ours = G.fit_gmm(data, K, seed=0, init=start, max_iter=6, tol=0.0, dtype="float32")
    assert ours.means.dtype == np.float32 and ours.covariances.dtype == np.float32
    assert abs(ours.lower_bound - sk.lower_bound_) <= 1e-4 * abs(sk.lower_bound_)
    scale = np.abs(sk.covariances_).max()
    np.testing.assert_allclose(ours.means, sk.means_, rtol=1e-4, atol=1e-4 * np.abs(sk.means_).max())
    np.testing.assert_allclose(ours.covariances, sk.covariances_, rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-8), ("float32", 1e-4)])
def test_many_components_match_sklearn(dtype, rtol):
    """K >= _PAIR_MIN_K takes the pair-product moment path: same iterations as scikit-learn."""
    k = 10
    assert k >= _PAIR_MIN_K
    X, _ = _mixture(3000, k, 5, seed=11, sep=2.5)
    rng = np.random.default_rng(2)
    means = X[rng.choice(X.shape[0], k, replace=False)]
    cov = np.stack([np.cov(X.T) * (0.5 + 0.1 * i) for i in range(k)])
    begin = G.GMMParams(np.full(k, 1.0 / k), means, cov, np.linalg.inv(np.linalg.cholesky(cov)).transpose(0, 2, 1))
    sk = _sklearn_from(begin, 5, X=X, k=k)
    ours = G.fit_gmm(X, k, seed=0, init=begin, max_iter=5, tol=0.0, dtype=dtype)
    assert abs(ours.lower_bound - sk.lower_bound_) <= rtol * abs(sk.lower_bound_)
    scale = np.abs(sk.covariances_).max()
    np.testing.assert_allclose(ours.means, sk.means_, rtol=100 * rtol, atol=100 * rtol * np.abs(sk.means_).max())
    np.testing.assert_allclose(ours.covariances, sk.covariances_, rtol=100 * rtol, atol=100 * rtol * scale)


def test_convergence_stops_at_the_same_iteration_as_sklearn(data, start):
    sk = _sklearn_from(start, 200, tol=1e-3, X=data)
    ours = G.fit_gmm(data, K, seed=0, init=start, max_iter=200, tol=1e-3)
    assert sk.converged_ and ours.converged
    assert ours.n_iter == sk.n_iter_ > 2
    assert abs(ours.lower_bound - sk.lower_bound_) <= 1e-8 * abs(sk.lower_bound_)
    # non-convergence is reported, not hidden
    short = G.fit_gmm(data, K, seed=0, init=start, max_iter=2, tol=1e-3)
    assert short.n_iter == 2 and short.converged is False


@pytest.mark.parametrize("n", [6000, 40_000])   # 40k > 2 * KMEANS_SAMPLE: k-means starts on a sample
def test_kmeans_init_labels_agree_with_sklearn_on_separated_clusters(n):
    assert (n > 2 * G.KMEANS_SAMPLE) == (n == 40_000)
    X, truth = _mixture(n, 6, 12, seed=3, sep=4.0, scale=0.3)
    ours = G.fit_gmm(X, 6, seed=0)
    gm = GaussianMixture(6, covariance_type="full", random_state=0).fit(X)
    a, b = np.asarray(G.predict(ours, X)), gm.predict(X)
    C = np.zeros((6, 6))
    np.add.at(C, (a, b), 1)
    r, c = linear_sum_assignment(-C)
    assert C[r, c].sum() / X.shape[0] >= 0.999
    assert ours.converged and abs(ours.lower_bound - gm.lower_bound_) < 1e-3 * abs(gm.lower_bound_)


def test_predict_score_bic_aic_equal_sklearn_on_the_same_parameters(data, start):
    fit = G.fit_gmm(data, K, seed=0, init=start, max_iter=4, tol=0.0)
    gm = _sklearn_with_params(fit, K)
    np.testing.assert_allclose(np.asarray(G.score_samples(fit, data)), gm.score_samples(data), rtol=1e-10)
    np.testing.assert_allclose(np.asarray(G.predict_proba(fit, data)), gm.predict_proba(data), atol=1e-10)
    np.testing.assert_array_equal(np.asarray(G.predict(fit, data)), gm.predict(data))
    np.testing.assert_array_equal(G.predict(fit, data[:300]), gm.predict(data[:300]))   # a small table's layout
    assert G.bic(fit, data) == pytest.approx(gm.bic(data), rel=1e-12)
    assert G.aic(fit, data) == pytest.approx(gm.aic(data), rel=1e-12)
    assert gm._n_parameters() == G.n_parameters(K, D)


def test_chunked_and_unchunked_fits_agree(data, start):
    whole = G.fit_gmm(data, K, seed=0, init=start, max_iter=5, tol=0.0)
    chunked = G.fit_gmm(data, K, seed=0, init=start, max_iter=5, tol=0.0, chunk_size=256)  # 6 chunks, last padded
    assert whole.lower_bound == pytest.approx(chunked.lower_bound, rel=1e-12)
    for a, b in zip(whole[:4], chunked[:4]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("k", [3, 10])
def test_column_major_chunks_give_the_same_statistics(k):
    """EM's data pass on column-major chunks (used from _COLS_MIN_K components on) sums the same
    statistics as on row-major chunks, against both row-major moment paths (K below and above
    _PAIR_MIN_K)."""
    with float64_enabled():   # private kernels, float64 arrays: JAX's 64-bit scope
        X, _ = _mixture(700, k, 5, seed=4, sep=2.0)
        rng = np.random.default_rng(1)
        A = rng.normal(0.0, 0.3, (k, 5, 5)) + np.eye(5)
        params = (jnp.asarray(rng.dirichlet(np.ones(k))), jnp.asarray(X[rng.choice(700, k, replace=False)]),
                  jnp.asarray(np.triu(A)))
        active = jnp.ones(k, bool)
        Xc, mc, _ = _chunked(X, jnp.float64, 256)
        Xt, mt, _ = _chunked(X, jnp.float64, 256, cols=True)
        assert Xt.shape == (3, 5, 256)
        np.testing.assert_array_equal(np.asarray(Xt), np.swapaxes(np.asarray(Xc), 1, 2))
        rows = _data_stats(*params, Xc, mc, active)
        cols = _data_stats(*params, Xt, mt, active, cols=True)
        for a, b in zip(rows, cols):
            np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-12, atol=1e-9)


def test_many_component_fit_does_not_depend_on_chunking():
    X, _ = _mixture(1500, 10, 4, seed=3, sep=2.5)
    start = G.fit_gmm(X, 10, seed=0, max_iter=1)
    whole = G.fit_gmm(X, 10, seed=0, init=start, max_iter=5, tol=0.0)
    chunked = G.fit_gmm(X, 10, seed=0, init=start, max_iter=5, tol=0.0, chunk_size=256)
    assert whole.lower_bound == pytest.approx(chunked.lower_bound, rel=1e-12)
    for a, b in zip(whole[:4], chunked[:4]):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11)


def test_external_statistics_loop_reproduces_fit(data, start):
    """The Dask path: params -> sum of per-chunk statistics -> m_step, n times."""
    n_iter, chunk = 4, 400
    fit = G.fit_gmm(data, K, seed=0, init=start, max_iter=n_iter, tol=0.0)
    params = start
    for _ in range(n_iter):
        total = None
        for s in range(0, data.shape[0], chunk):
            x = np.zeros((chunk, D))
            part = data[s:s + chunk]
            x[:len(part)] = part
            mask = np.arange(chunk) < len(part)
            st = G.sufficient_statistics(params, x, mask)
            total = st if total is None else G.SuffStats(*(a + b for a, b in zip(total, st)))
        lower_bound = float(total.loglik / total.n)
        params = G.m_step(total, 1e-6)
    assert float(total.n) == data.shape[0]
    assert lower_bound == pytest.approx(fit.lower_bound, rel=1e-10)
    for a, b in zip(params, fit[:4]):
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-8, atol=1e-10)


def test_em_update_loop_reproduces_fit_with_its_stopping_rule(data, start):
    """An external driver (the Dask path): em_start, then per-chunk statistics summed over all rows ->
    em_update until converged, on fit_gmm's shifted data: the same iterations, lower bound, stopping
    iteration and parameters as the in-memory fit (whose loop runs em_update too)."""
    fit = G.fit_gmm(data, K, seed=0, init=start, max_iter=100, tol=1e-3)
    shift = data.mean(axis=0)
    X = data - shift
    state = G.em_start(G.GMMParams(start.weights, start.means - shift, start.covariances,
                                   start.precisions_cholesky))
    assert float(state.lower_bound) == -np.inf and int(state.n_iter) == 0 and not bool(state.converged)
    chunk = 400
    while int(state.n_iter) < 100 and not bool(state.converged):
        total = None
        for s in range(0, X.shape[0], chunk):
            x = np.zeros((chunk, D))
            part = X[s:s + chunk]
            x[:len(part)] = part
            st = G.sufficient_statistics(state.params, x, np.arange(chunk) < len(part))
            total = st if total is None else G.SuffStats(*(a + b for a, b in zip(total, st)))
        before = float(state.lower_bound)
        state = G.em_update(state, total, tol=1e-3, reg_covar=1e-6)
        assert float(state.lower_bound) == pytest.approx(float(total.loglik / total.n), rel=1e-15)
        assert bool(state.converged) == (abs(float(state.lower_bound) - before) < 1e-3)
    assert state.params.means.dtype == jnp.float64
    assert int(state.n_iter) == fit.n_iter and bool(state.converged) == fit.converged
    assert float(state.lower_bound) == pytest.approx(fit.lower_bound, rel=1e-12)
    for a, b in zip(state.params, (fit.weights, fit.means - shift, fit.covariances, fit.precisions_cholesky)):
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-9, atol=1e-12)


def test_in_memory_em_loop_steps_with_em_update(data, start, monkeypatch):
    """The in-memory loop's iteration is em_update itself (so it cannot drift from other drivers):
    replacing em_update changes what the loop computes."""
    import xsift.kernels.gmm.em as em_module
    calls = []

    def counted(state, stats, **kw):
        calls.append(kw)
        return G.em_update(state, stats, **kw)._replace(lower_bound=jnp.asarray(7.0, stats.n.dtype))

    monkeypatch.setattr(em_module, "em_update", counted)
    with float64_enabled():   # private kernels, float64 arrays: JAX's 64-bit scope
        Xc, maskc, _ = _chunked(data, jnp.float64, 512)
        p = G.GMMParams(*(jnp.asarray(a) for a in start))
        res = _em(p, Xc, maskc, jnp.ones(K, bool), jnp.asarray(3), jnp.asarray(0.0), jnp.asarray(1e-6))
    assert calls and set(calls[0]) == {"tol", "reg_covar", "active"}
    assert float(res.lower_bound) == 7.0 and int(res.n_iter) == 3


def test_padded_components_are_exactly_inert(data, start):
    """bic_sweep pads K to a common size: a masked fit equals the unpadded fit."""
    with float64_enabled():   # private kernels, float64 arrays: JAX's 64-bit scope
        Xc, maskc, _ = _chunked(data, jnp.float64, 512)
        p = G.GMMParams(*(jnp.asarray(a) for a in start))
        pad = G.GMMParams(jnp.concatenate([p.weights, jnp.zeros(2)]),
                          jnp.concatenate([p.means, jnp.zeros((2, D))]),
                          jnp.concatenate([p.covariances, jnp.broadcast_to(jnp.eye(D), (2, D, D))]),
                          jnp.concatenate([p.precisions_cholesky, jnp.broadcast_to(jnp.eye(D), (2, D, D))]))
        args = (jnp.asarray(5), jnp.asarray(0.0), jnp.asarray(1e-6))
        a = _em(p, Xc, maskc, jnp.ones(K, bool), *args)
        b = _em(pad, Xc, maskc, jnp.arange(K + 2) < K, *args)
        assert float(a.lower_bound) == pytest.approx(float(b.lower_bound), rel=1e-13)
        np.testing.assert_allclose(b.weights[K:], 0.0)
        for x, y in zip(a[:4], b[:4]):
            np.testing.assert_allclose(x, y[:K], rtol=1e-11, atol=1e-13)


def test_emptied_component_stays_finite_like_sklearn(data, start):
    far = start._replace(means=start.means.copy(), weights=np.array([0.5, 0.5 - 1e-9, 1e-9]))
    far.means[2] = 1e3            # no point is responsible for it: the component empties
    sk = _sklearn_from(far, 4, X=data)
    ours = G.fit_gmm(data, K, seed=0, init=far, max_iter=4, tol=0.0)
    assert all(np.all(np.isfinite(a)) for a in ours[:4])
    assert ours.weights[2] < 1e-12
    np.testing.assert_allclose(ours.covariances[2], 1e-6 * np.eye(D), rtol=1e-6)
    assert ours.lower_bound == pytest.approx(sk.lower_bound_, rel=1e-8)
    np.testing.assert_allclose(ours.means[:2], sk.means_[:2], rtol=1e-6)


def test_constant_column_works_thanks_to_reg_covar(data, start):
    X = np.column_stack([data, np.full(data.shape[0], 3.0)])
    cov = np.zeros((K, D + 1, D + 1))
    cov[:, :D, :D] = start.covariances
    cov[:, D, D] = 1.0
    begin = G.GMMParams(start.weights, np.column_stack([start.means, np.full(K, 2.5)]), cov, None)
    fit = G.fit_gmm(X, K, seed=0, init=begin, max_iter=20)
    assert all(np.all(np.isfinite(a)) for a in fit[:4])
    np.testing.assert_allclose(fit.means[:, -1], 3.0, rtol=1e-12)
    np.testing.assert_allclose(fit.covariances[:, -1, -1], 1e-6, rtol=1e-6)
    sk = _sklearn_from(G.GMMParams(fit.weights, fit.means, fit.covariances, fit.precisions_cholesky), 2, X=X)
    again = G.fit_gmm(X, K, seed=0, init=fit, max_iter=2, tol=0.0)
    assert again.lower_bound == pytest.approx(sk.lower_bound_, rel=1e-8)


@pytest.mark.parametrize("X, k, match", [
    (np.zeros((2, 3)), 3, "n_components"),
    (np.array([[0.0, 1.0], [np.nan, 2.0], [1.0, 1.0], [2.0, 2.0]]), 2, "non-finite"),
    (np.array([[0.0, 1.0], [np.inf, 2.0], [1.0, 1.0], [2.0, 2.0]]), 2, "non-finite"),
    (np.zeros((10, 0)), 2, "0 features"),
    (np.zeros(10), 2, "2-d"),
])
def test_bad_input_is_a_clear_error(X, k, match):
    with pytest.raises(ValueError, match=match):
        G.fit_gmm(X, k, seed=0)


def test_repeated_fits_of_one_shape_compile_once(data):
    G.fit_gmm(data, K, seed=1, max_iter=3)
    before = _fit_program._cache_size()
    G.fit_gmm(data, K, seed=2, max_iter=7, tol=1e-4, reg_covar=1e-5)
    G.fit_gmm(data + 1.0, K, seed=3)
    assert _fit_program._cache_size() == before


def test_n_init_keeps_the_best_restart(data):
    best = G.fit_gmm(data, K, seed=0, init="random", n_init=4, max_iter=15)
    with float64_enabled():   # private kernels, float64 arrays: JAX's 64-bit scope
        singles = []
        Xc, maskc, _ = _chunked(data, jnp.float64, None, jnp.mean(jnp.asarray(data), axis=0))
        import jax
        for key in jax.random.split(jax.random.key(0), 4):
            r = _fit_program(key[None], Xc, maskc, jnp.ones(K, bool), jnp.asarray(15), jnp.asarray(1e-3),
                             jnp.asarray(1e-6), Xc, maskc, init_kind="random")       # EM on the same chunks
            singles.append(float(r.lower_bound))
        assert best.lower_bound == pytest.approx(max(singles), rel=1e-12)
        assert len(set(np.round(singles, 6))) > 1        # the restarts really differ


def test_bic_sweep_finds_the_true_k_and_matches_sklearn():
    X, _ = _mixture(1200, 3, 3, seed=5, sep=5.0, scale=0.5)
    curve = G.bic_sweep(X, ks=range(1, 6), repeats=2, seed=0, groups=1)   # one padded program
    assert curve.bic.shape == (5, 2) and list(curve.ks) == [1, 2, 3, 4, 5]
    assert int(curve.ks[np.argmin(curve.bic_mean)]) == 3
    for k in (1, 3):   # at and below the true K every run reaches the same optimum
        gm = GaussianMixture(k, covariance_type="full", random_state=0, tol=1e-3).fit(X)
        np.testing.assert_allclose(curve.bic[k - 1], gm.bic(X), rtol=1e-5)
    np.testing.assert_allclose(curve.bic_std, curve.bic.std(axis=1))


@pytest.mark.slow      # the default suite stays under 5 minutes on 2 cores; CI runs it
def test_bic_sweep_does_not_depend_on_how_ks_are_grouped():
    """Every fit starts from one initialisation program at the largest K and runs EM padded to its
    group's largest K: padded components must be inert, so one group, three groups or five give the
    same fits -- also across the switch to column-major chunks (groups padded to 8 or more)."""
    X, _ = _mixture(3000, 4, 3, seed=7, sep=3.0, scale=0.8)
    assert _em_layout(9) and not _em_layout(6)
    curves = [G.bic_sweep(X, ks=range(1, 10), repeats=2, seed=3, groups=g) for g in (1, 3, 5)]
    for c in curves[1:]:
        np.testing.assert_array_equal(c.n_iter, curves[0].n_iter)
        np.testing.assert_allclose(c.bic, curves[0].bic, rtol=1e-9)
        np.testing.assert_allclose(c.lower_bound, curves[0].lower_bound, rtol=1e-9)


@pytest.mark.slow      # the default suite stays under 5 minutes on 2 cores; CI runs it
def test_a_padded_sweep_fit_seeds_as_its_own_k():
    """k-means++ takes 2 + int(log K) local trials per centre with K the fit's own component count
    (scikit-learn's rule), also when bic_sweep pads the fit to a larger K: the K = 2 fits of a sweep up
    to K = 9 (padded to 9: 4 trials drawn) equal those of a sweep of K = 2 alone (2 trials)."""
    X, _ = _mixture(3000, 4, 3, seed=7, sep=2.0, scale=1.0)
    for seed in range(3):
        alone = G.bic_sweep(X, ks=[2], repeats=3, seed=seed, groups=1)
        padded = G.bic_sweep(X, ks=[2, 9], repeats=3, seed=seed, groups=2)
        np.testing.assert_array_equal(padded.n_iter[0], alone.n_iter[0])
        np.testing.assert_allclose(padded.bic[0], alone.bic[0], rtol=1e-9)


def test_choose_k_picks_the_k_before_the_gradient_flattens():
    ks = np.arange(2, 21)
    k0 = 6
    step = 1e5 * np.minimum(ks, k0) - 2e3 * ks        # BIC falls steeply until K0, then slowly
    assert G.choose_k({"ks": ks, "bic_mean": -step}) == k0
    smooth = 1e6 * np.exp(-(ks - 2) / 1.5) + 1e3 * ks    # exponential decay: flat after a few K
    g = np.gradient(smooth, ks)
    k = G.choose_k({"ks": ks, "bic_mean": smooth})
    i = int(np.flatnonzero(ks == k)[0])
    band = G.CHOOSE_K_THRESHOLD * (g.max() - g.min())
    assert np.all(np.abs(g[i + 1:] - g[i + 1]) <= band) and not np.all(np.abs(g[i:] - g[i]) <= band)


def test_applying_a_mixture_to_tables_of_any_length_compiles_a_few_times(data, start):
    """e_step/predict/score_samples on Dask shards of varying length must not compile per length."""
    fit = G.fit_gmm(data, K, seed=0, init=start, max_iter=3, tol=0.0)
    gm = _sklearn_with_params(fit, K)
    rng = np.random.default_rng(4)
    big = rng.normal(size=(50_000, D)) * 2.0
    G.score_samples(fit, big[:40_000])                       # fixed layout: 8 chunks of 4096 rows
    G.score_samples(fit, big[:30])                           # small tables: one power-of-two chunk
    G.predict(fit, big[:30])
    G.predict(fit, big[:41_000], block_rows=8192)           # a fixed block whatever the length
    before = _e_step_program._cache_size()
    before_labels = _labels_program._cache_size()
    for n in (33_000, 41_234, 50_000):                       # full and padded calls, one shape
        np.testing.assert_allclose(np.asarray(G.score_samples(fit, big[:n])), gm.score_samples(big[:n]),
                                   rtol=1e-10, atol=1e-10)
    for n in (33, 50, 64):                                   # all in the 64-row chunk
        np.testing.assert_array_equal(np.asarray(G.predict(fit, big[:n])), gm.predict(big[:n]))
    for n in (10, 8192, 20_000):
        np.testing.assert_array_equal(G.predict(fit, big[:n], block_rows=8192), gm.predict(big[:n]))
    assert _e_step_program._cache_size() == before
    assert _labels_program._cache_size() == before_labels
    assert _e_step_layout(5000, None) == (4096, 2) and _e_step_layout(100, None) == (128, 1)
