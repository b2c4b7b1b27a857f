"""xsift.kernels.kde against scipy.stats.gaussian_kde (same bandwidth) and the exact sum."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import gaussian_kde

from xsift.kernels.kde import (evaluate_kde, evaluate_log_kde, exact_log_kde, fit_binned_kde,
                         fit_cv_bandwidth, kde_error_bound, scott_bandwidth)


def _padded_pairs(seed=0):
    """Three pairs of different sizes and shapes, padded with NaN / weight 0."""
    rng = np.random.default_rng(seed)
    samples = [rng.normal(1.0, 2.0, 2000),
               np.concatenate([rng.normal(-3, 0.3, 150), rng.normal(2, 1.0, 250)]),   # bimodal
               rng.standard_t(3, 60)]                                                 # heavy tails, few points
    n = max(len(s) for s in samples)
    x = np.full((len(samples), n), np.nan)
    for j, s in enumerate(samples):
        x[j, :len(s)] = s
    return samples, x, np.isfinite(x).astype(float)


def test_scott_bandwidth_matches_scipy_including_weights():
    samples, x, w = _padded_pairs()
    h = np.asarray(scott_bandwidth(x, w))
    for j, s in enumerate(samples):
        k = gaussian_kde(s)
        assert h[j] == pytest.approx(k.factor * np.sqrt(k.covariance[0, 0] / k.factor ** 2), rel=1e-12)
    rng = np.random.default_rng(1)
    s, ws = rng.normal(size=500), rng.uniform(0.1, 3.0, 500)
    k = gaussian_kde(s, weights=ws)
    h1 = float(scott_bandwidth(s[None], ws[None])[0])
    assert h1 == pytest.approx(np.sqrt(k.covariance[0, 0]), rel=1e-10)


@pytest.mark.parametrize("n_grid", [256, 2048])
def test_binned_kde_within_documented_bound_of_scipy(n_grid):
    samples, x, w = _padded_pairs()
    h = scott_bandwidth(x, w)
    grid = fit_binned_kde(x, w, h, n_grid=n_grid)
    bound = np.asarray(kde_error_bound(grid))
    pts = np.linspace(-12, 12, 3001)
    X = np.repeat(pts[:, None], 3, axis=1)
    got = np.asarray(evaluate_kde(grid, X, np.arange(3), chunk_rows=1000))   # chunking + padding path
    for j, s in enumerate(samples):
        ref = gaussian_kde(s)(pts)
        err = np.abs(got[:, j] - ref).max()
        assert err <= bound[j], (j, err, bound[j])
        # the bound is not vacuous: it is small compared to the peak density
        assert bound[j] < 0.05 * ref.max()
    # coarser grid -> larger error, consistent with the (delta/h)^2 law
    if n_grid == 256:
        assert bound.min() > 1e-5


def test_error_shrinks_quadratically_with_grid_step():
    rng = np.random.default_rng(3)
    s = rng.normal(size=(1, 800))
    w = np.ones_like(s)
    h = scott_bandwidth(s, w)
    pts = np.linspace(-3, 3, 500)
    ref = np.exp(np.asarray(exact_log_kde(s, w, h, pts[None])))[0]
    errs = []
    for g in (128, 256, 512):
        grid = fit_binned_kde(s, w, h, n_grid=g)
        errs.append(np.abs(np.asarray(evaluate_kde(grid, pts[:, None], np.array([0])))[:, 0] - ref).max())
    assert errs[1] < errs[0] / 2.5 and errs[2] < errs[1] / 2.5


def test_tails_and_missing_values():
    samples, x, w = _padded_pairs()
    h = scott_bandwidth(x, w)
    grid = fit_binned_kde(x, w, h)
    far = np.array([[np.nan, 40.0, -60.0], [55.0, -30.0, 80.0]])
    got = np.asarray(evaluate_log_kde(grid, far, np.arange(3)))
    assert np.isnan(got[0, 0]) and np.all(np.isfinite(got[0, 1:])) and np.all(np.isfinite(got[1]))
    exact = np.asarray(exact_log_kde(x, w, h, far.T)).T
    # far outside the grid the log-density is the Gaussian tail of the extreme point:
    # continued from the grid edge: within log(n) of the exact value (the other points' share), monotone
    for j, s in enumerate(samples):
        for i in range(2):
            if np.isfinite(far[i, j]):
                assert abs(got[i, j] - exact[i, j]) <= np.log(len(s)) + 1e-5 * abs(exact[i, j])
    mono = np.asarray(evaluate_log_kde(grid, np.linspace(20, 40, 5)[:, None], np.array([0])))[:, 0]
    assert np.all(np.diff(mono) < 0)


def test_float32_request_is_honoured():
    samples, x, w = _padded_pairs()
    h = scott_bandwidth(x, w, dtype=jnp.float32)
    grid = fit_binned_kde(x, w, h, dtype=jnp.float32)
    out = evaluate_log_kde(grid, np.zeros((10, 3)), np.arange(3), dtype=jnp.float32)
    assert grid.density.dtype == jnp.float32 and out.dtype == jnp.float32
    ref = np.log(gaussian_kde(samples[0])(0.0))[0]
    assert float(out[0, 0]) == pytest.approx(ref, abs=1e-3)


def test_cv_bandwidth_prefers_narrow_kernel_for_well_separated_clumps():
    rng = np.random.default_rng(4)
    # Scott's rule oversmooths a sample of tight, well separated clumps; held-out likelihood does not
    s = (rng.integers(0, 5, 600) * 4.0 + rng.normal(0, 0.1, 600))[None]
    w = np.ones_like(s)
    h_scott = float(scott_bandwidth(s, w)[0])
    h_cv = float(fit_cv_bandwidth(s, w, jax.random.PRNGKey(0), n_steps=150)[0])
    assert h_cv < 0.5 * h_scott
    held = s[:, ::3]
    # NumPy in and out: the kernel computes in float64 whatever the caller's JAX setting
    ll = lambda h: float(np.mean(np.asarray(exact_log_kde(s[:, 1::3], np.ones_like(s[:, 1::3]), np.array([h]), held))))
    assert ll(h_cv) > ll(h_scott)


def test_tables_of_any_length_reuse_one_compilation():
    """A Dask run hands the evaluator shards of varying length: they must not each compile."""
    import xsift.kernels.kde as KD
    samples, x, w = _padded_pairs()
    grid = fit_binned_kde(x, w, scott_bandwidth(x, w))
    rng = np.random.default_rng(3)
    big = [rng.normal(size=(n, 3)) for n in (2500, 3100, 4999)]      # blocks of 1000 rows, last padded
    ref = [np.asarray(exact_log_kde(x, w, scott_bandwidth(x, w), b.T)).T for b in big]
    KD.evaluate_log_kde(grid, big[0], np.arange(3), chunk_rows=1000)
    before = KD._log_kde_block._cache_size()
    for b, r in zip(big, ref):
        got = np.asarray(KD.evaluate_log_kde(grid, b, np.arange(3), chunk_rows=1000))
        assert got.shape == b.shape
        np.testing.assert_allclose(got, r, atol=2e-3, rtol=2e-3)
    for n in (3, 200, 700):                                          # small tables: one 1024-row block
        KD.evaluate_log_kde(grid, big[0][:n], np.arange(3), chunk_rows=1000)
    assert KD._log_kde_block._cache_size() == before
    assert KD._block_rows(5, 65536) == 1024 and KD._block_rows(5000, 65536) == 8192


def test_cv_bandwidth_takes_an_int_seed_as_its_key():
    rng = np.random.default_rng(5)
    s = rng.normal(size=(2, 300))
    w = np.ones_like(s)
    by_int = np.asarray(fit_cv_bandwidth(s, w, 3, n_steps=20))
    by_key = np.asarray(fit_cv_bandwidth(s, w, jax.random.PRNGKey(3), n_steps=20))
    np.testing.assert_array_equal(by_int, by_key)
    assert by_int.dtype == np.float64
