"""xsift.kernels.xd (extreme deconvolution) against astroML's XDGMM, a plain-NumPy per-row
transcription of Bovy, Hogg & Roweis (2011) Eqs. 16-18 with explicit projections R_i (astroML has
no missing features), and kernels.gmm (all noise 0, everything observed)."""
import numpy as np
import pytest
from astroML.density_estimation import XDGMM
from scipy.special import logsumexp

from xsift.kernels.gmm import GMMParams, fit_gmm
from xsift.kernels.xd import (XDStats, _fit_program, fit_xd, xd_e_step, xd_score_samples, xd_start,
                              xd_statistics, xd_update)

K, D = 3, 4


def _noisy(n, seed):
    """n rows of a 3-component mixture in 4-d, each scattered by its own per-feature noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 2.5, (K, D))
    A = rng.normal(0.0, 0.3, (K, D, D)) + np.eye(D)
    lab = rng.integers(0, K, n)
    truth = np.einsum("nij,nj->ni", A[lab], rng.normal(size=(n, D))) + centres[lab]
    S = rng.uniform(0.05, 1.0, (n, D)) * rng.uniform(0.2, 2.0, (n, 1))
    return truth + rng.normal(size=(n, D)) * np.sqrt(S), S


def _start(X, seed=3):
    rng = np.random.default_rng(seed)
    cov = np.cov(X.T)
    return GMMParams(np.array([0.2, 0.3, 0.5]), X[rng.choice(X.shape[0], K, replace=False)].copy(),
                     np.stack([cov, 0.5 * cov, 2.0 * cov]), None)


@pytest.fixture(scope="module")
def noisy():
    return _noisy(400, seed=1)


def _astroml(X, S, start, n_iter):
    xd = XDGMM(K)
    xd.alpha, xd.mu, xd.V = (np.array(a, np.float64) for a in (start.weights, start.means, start.covariances))
    Xerr = S[:, :, None] * np.eye(X.shape[1])
    for _ in range(n_iter):
        xd._EMstep(X, Xerr)
    return xd, float(xd.logL(X, Xerr))


def test_matches_astroml_xdgmm_iteration_by_iteration(noisy):
    X, S = noisy
    start = _start(X)
    for n_iter in (1, 4, 10):
        ref, ref_ll = _astroml(X, S, start, n_iter)
        ours = fit_xd(X, S, None, K, init=start, max_iter=n_iter, tol=0.0, reg_covar=0.0, dtype="float64")
        assert ours.n_iter == n_iter and ours.converged is False
        ll = float(np.sum(xd_score_samples(ours, X, S)))
        assert abs(ll - ref_ll) <= 1e-8 * abs(ref_ll)
        np.testing.assert_allclose(ours.weights, ref.alpha, rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(ours.means, ref.mu, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(ours.covariances, ref.V, rtol=1e-6, atol=1e-9)
        # the lower bound is the mean log-likelihood of the parameters entering the last iteration
        if n_iter == 4:
            _, ll3 = _astroml(X, S, start, 3)
            assert abs(ours.lower_bound * X.shape[0] - ll3) <= 1e-8 * abs(ll3)


def _bovy_per_row(X, S, observed, start, n_iter, reg_covar=0.0):
    """Bovy et al. Eqs. 16-18 row by row with explicit projections R_i (plain NumPy, no masking)."""
    alpha, m, V = (np.array(a, np.float64) for a in (start.weights, start.means, start.covariances))
    n, d = X.shape
    ll = None
    for _ in range(n_iter + 1):
        logq = np.empty((n, K))
        b = np.empty((n, K, d))
        B = np.empty((n, K, d, d))
        for i in range(n):
            R = np.eye(d)[observed[i]]
            w = R @ X[i]
            Si = np.diag(S[i][observed[i]])
            for k in range(K):
                T = R @ V[k] @ R.T + Si
                Tinv = np.linalg.inv(T)
                r = w - R @ m[k]
                logq[i, k] = (np.log(alpha[k]) - 0.5 * (len(w) * np.log(2 * np.pi) + np.linalg.slogdet(T)[1]
                                                        + r @ Tinv @ r))
                b[i, k] = m[k] + V[k] @ R.T @ Tinv @ r
                B[i, k] = V[k] - V[k] @ R.T @ Tinv @ R @ V[k]
        norm = logsumexp(logq, axis=1)
        ll = float(norm.sum())
        if _ == n_iter:
            break
        q = np.exp(logq - norm[:, None])
        qj = q.sum(0)
        alpha = qj / n
        m = np.einsum("ik,ikj->kj", q, b) / qj[:, None]
        mb = m[None] - b
        V = (np.einsum("ik,ikj,ikl->kjl", q, mb, mb) + np.einsum("ik,ikjl->kjl", q, B)) / qj[:, None, None]
        V = V + reg_covar * np.eye(d)
    return alpha, m, V, ll


def test_missing_features_match_per_row_projection(noisy):
    X, S = noisy
    X, S = X[:150], S[:150]
    rng = np.random.default_rng(5)
    observed = rng.random(X.shape) > 0.3
    observed[:5] = True                             # some complete rows, and one with a single feature
    observed[5] = [False, True, False, False]
    Xm = np.where(observed, X, np.nan)
    Sm = np.where(observed, S, np.nan)
    start = _start(X)
    alpha, m, V, ll = _bovy_per_row(X, S, observed, start, 3, reg_covar=1e-3)
    ours = fit_xd(Xm, Sm, observed, K, init=start, max_iter=3, tol=0.0, reg_covar=1e-3)
    np.testing.assert_allclose(ours.weights, alpha, rtol=1e-9)
    np.testing.assert_allclose(ours.means, m, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(ours.covariances, V, rtol=1e-9, atol=1e-10)
    ours_ll = float(np.sum(xd_score_samples(ours, Xm, Sm, observed)))
    assert abs(ours_ll - ll) <= 1e-10 * abs(ll)


def test_zero_noise_all_observed_equals_gmm(noisy):
    X, _ = noisy
    start = _start(X)
    for dtype, rtol in (("float64", 1e-9), ("float32", 2e-3)):
        g = fit_gmm(X, K, seed=0, init=start, max_iter=8, tol=0.0, reg_covar=1e-6, dtype=dtype)
        x = fit_xd(X, 0.0, None, K, init=start, max_iter=8, tol=0.0, reg_covar=1e-6, dtype=dtype)
        assert x.means.dtype == np.dtype(dtype) and x.n_iter == g.n_iter == 8
        np.testing.assert_allclose(x.weights, g.weights, rtol=rtol)
        np.testing.assert_allclose(x.means, g.means, rtol=rtol, atol=rtol)
        np.testing.assert_allclose(x.covariances, g.covariances, rtol=rtol, atol=rtol)
        np.testing.assert_allclose(x.precisions_cholesky, g.precisions_cholesky, rtol=10 * rtol, atol=10 * rtol)
        assert abs(x.lower_bound - g.lower_bound) <= rtol * abs(g.lower_bound)


def test_convergence_stops_like_gmm(noisy):
    X, _ = noisy
    start = _start(X)
    g = fit_gmm(X, K, seed=0, init=start, max_iter=200, tol=1e-3)
    x = fit_xd(X, 0.0, None, K, init=start, max_iter=200, tol=1e-3)
    assert g.converged and x.converged and x.n_iter == g.n_iter < 200


def test_chunked_equals_unchunked_and_external_loop(noisy):
    X, S = noisy
    observed = np.random.default_rng(2).random(X.shape) > 0.2
    start = _start(X)
    whole = fit_xd(X, S, observed, K, init=start, max_iter=5, tol=0.0, reg_covar=1e-6, chunk_size=4096)
    small = fit_xd(X, S, observed, K, init=start, max_iter=5, tol=0.0, reg_covar=1e-6, chunk_size=37)
    for a, b in zip(whole[:4], small[:4]):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-12)
    assert abs(whole.lower_bound - small.lower_bound) <= 1e-12 * abs(whole.lower_bound)
    # a driver's loop: xd_statistics per chunk (unequal chunks, a padded row), summed, then xd_update
    p = GMMParams(*(np.asarray(a, np.float64) for a in (start.weights, start.means, start.covariances)),
                  np.zeros((K, D, D)))
    state = xd_start(p)
    for _ in range(5):
        parts = []
        for lo, hi in ((0, 150), (150, 151), (151, 400)):
            xs, ss, os_ = X[lo:hi], S[lo:hi], observed[lo:hi]
            pad = ((0, 1), (0, 0))                     # one padding row, masked out
            parts.append(xd_statistics(state.params, np.pad(xs, pad), np.pad(ss, pad), np.pad(os_, pad),
                                       np.arange(hi - lo + 1) < hi - lo))
        stats = XDStats(*(sum(np.asarray(s[j]) for s in parts) for j in range(6)))
        assert float(stats.n) == X.shape[0]
        state = xd_update(state, stats, tol=0.0, reg_covar=1e-6)
    np.testing.assert_allclose(np.asarray(state.params.means), whole.means, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.asarray(state.params.covariances), whole.covariances, rtol=1e-10, atol=1e-10)
    assert abs(float(state.lower_bound) - whole.lower_bound) <= 1e-10 * abs(whole.lower_bound)


def test_e_step_is_the_noise_convolved_marginal(noisy):
    X, S = noisy
    X, S = X[:60], S[:60]
    observed = np.random.default_rng(4).random(X.shape) > 0.4
    observed[0] = False                                          # no observed feature: log p = 0
    p = _start(X)
    log_q, log_p = xd_e_step(p, np.where(observed, X, np.nan), S, observed)
    for i in range(X.shape[0]):
        o = observed[i]
        lw = np.empty(K)
        for k in range(K):
            T = p.covariances[k][np.ix_(o, o)] + np.diag(S[i, o])
            r = X[i, o] - p.means[k, o]
            lw[k] = np.log(p.weights[k]) - 0.5 * (o.sum() * np.log(2 * np.pi) + np.linalg.slogdet(T)[1]
                                                  + r @ np.linalg.solve(T, r))
        assert abs(log_p[i] - logsumexp(lw)) <= 1e-10 * max(1.0, abs(log_p[i]))
        np.testing.assert_allclose(np.exp(log_q[i]), np.exp(lw - logsumexp(lw)), atol=1e-12)
    assert log_p[0] == 0.0


def test_float32_follows_float64(noisy):
    X, S = noisy
    observed = np.random.default_rng(6).random(X.shape) > 0.1
    Xm = np.where(observed, X, np.nan)
    start = _start(X)
    r64 = fit_xd(Xm, S, observed, K, init=start, max_iter=10, tol=0.0)
    r32 = fit_xd(Xm.astype(np.float32), S, observed, K, init=start, max_iter=10, tol=0.0)
    assert r32.means.dtype == np.float32 and r64.means.dtype == np.float64
    np.testing.assert_allclose(r32.means, r64.means, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(r32.covariances, r64.covariances, rtol=1e-3, atol=1e-3)
    assert abs(r32.lower_bound - r64.lower_bound) <= 1e-4 * abs(r64.lower_bound)


def test_kmeans_start_deconvolves():
    """From the k-means start, XD recovers the noise-free components: its covariances are close to the
    truth's, while a plain mixture of the noisy rows is wider by the noise."""
    rng = np.random.default_rng(11)
    n = 3000
    centres = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
    truth_cov = np.array([[1.0, 0.3], [0.3, 0.5]])
    lab = rng.integers(0, 3, n)
    v = centres[lab] + rng.multivariate_normal(np.zeros(2), truth_cov, n)
    S = rng.uniform(0.5, 1.5, (n, 2))
    X = v + rng.normal(size=(n, 2)) * np.sqrt(S)
    xd = fit_xd(X, S, None, 3, seed=0, max_iter=300, tol=1e-7)
    gm = fit_gmm(X, 3, seed=0, max_iter=300, tol=1e-7)
    assert xd.converged
    order = np.argsort(xd.means[:, 0] + 10 * xd.means[:, 1])
    np.testing.assert_allclose(xd.means[order], centres, atol=0.15)
    for cov in xd.covariances:
        np.testing.assert_allclose(cov, truth_cov, atol=0.2)
    assert (np.trace(gm.covariances, axis1=1, axis2=2) > np.trace(truth_cov) + 1.5).all()


def test_zero_iterations_return_the_start(noisy):
    X, S = noisy
    start = _start(X)
    r = fit_xd(X, S, None, K, init=start, max_iter=0)
    np.testing.assert_allclose(r.means, start.means, rtol=1e-12)
    np.testing.assert_allclose(r.covariances, start.covariances, rtol=1e-12)
    np.testing.assert_allclose(r.precisions_cholesky @ np.swapaxes(r.precisions_cholesky, 1, 2),
                               np.linalg.inv(start.covariances), rtol=1e-8, atol=1e-12)
    assert r.n_iter == 0 and r.lower_bound == -np.inf


def test_compiles_once_per_shape(noisy):
    X, S = noisy
    start = _start(X)
    fit_xd(X, S, None, K, init=start, max_iter=2, tol=0.0, chunk_size=64)
    size = _fit_program._cache_size()
    fit_xd(X[::-1] + 1.0, S * 2.0, X < 100, K, init=start, max_iter=5, tol=1e-3, reg_covar=1e-4, chunk_size=64)
    assert _fit_program._cache_size() == size


def test_clear_errors(noisy):
    X, S = noisy
    X = X.copy()
    X[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf at observed entries in 1 rows \(first: \[3\]\), columns \[2\]"):
        fit_xd(X, S, None, K)
    observed = np.isfinite(X)
    bad = S.copy()
    bad[7, 1] = -0.1
    with pytest.raises(ValueError, match=r"noise_var is negative in 1 rows \(first: \[7\]\), columns \[1\]"):
        fit_xd(X, bad, observed, K)
    with pytest.raises(ValueError, match="need n_rows >= n_components"):
        fit_xd(X[:2], S[:2], observed[:2], K)
    with pytest.raises(ValueError, match="noise_var must be measurement variances of shape"):
        fit_xd(X, S[:, :2], observed, K)
    with pytest.raises(ValueError, match="observed must be a boolean array"):
        fit_xd(X, S, observed.astype(int), K)
    with pytest.raises(ValueError, match="init parameters have"):
        fit_xd(X, S, observed, K, init=GMMParams(np.ones(2) / 2, np.zeros((2, D)), np.stack([np.eye(D)] * 2), None))
    with pytest.raises(ValueError, match="init covariances must be positive definite"):
        fit_xd(X, S, observed, K, init=GMMParams(np.ones(K) / K, np.zeros((K, D)), np.zeros((K, D, D)), None))
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        fit_xd(X, S, observed, K, dtype="float16")


def test_batch_last_path_equals_lapack_path(noisy):
    """The unrolled batch-last factorisation (d <= SMALL_D_MAX) gives the statistics and log-densities of
    the LAPACK path (batched Cholesky and triangular solve, used for larger d) on a chunk with missing
    features, a row with one feature, and padding rows."""
    import jax
    from xsift.kernels import float64_enabled
    from xsift.kernels.xd import _lapack_chunk_stats, _log_normals, _row_terms, _small_chunk_stats
    X, S = noisy
    X, S = X[:64], S[:64]
    obs = np.random.default_rng(8).random(X.shape) > 0.3
    obs[0] = [False, False, True, False]
    valid = np.arange(64) < 60
    p = _start(X)
    args = (p.weights, p.means, p.covariances, np.where(obs, X, 0.0), S, obs, valid)
    with float64_enabled():
        small = jax.jit(_small_chunk_stats)(*args)
        lapack = jax.jit(_lapack_chunk_stats)(*args)
        logn_small = jax.jit(_log_normals)(*args[1:6])
        logn_lapack = jax.jit(lambda *a: _row_terms(*a)[2])(*args[1:6])
    for a, b in zip(small, lapack):
        a, b = np.asarray(a), np.asarray(b)
        assert np.max(np.abs(a - b)) <= 1e-12 * max(1.0, np.max(np.abs(b)))
    np.testing.assert_allclose(np.asarray(logn_small), np.asarray(logn_lapack), rtol=1e-12, atol=1e-12)
