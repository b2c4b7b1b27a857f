"""xsift.kernels.kde against scipy.stats.gaussian_kde (same bandwidth), scikit-learn's exponential
KernelDensity, numpy.histogram, scipy quadrature and the exact sum."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import gaussian_kde

from xsift.kernels.kde import (SHAPES, claxboi_bandwidth, cv_grid_bandwidth, evaluate_kde, evaluate_log_kde,
                               exact_log_kde, fit_binned_kde, fit_cv_bandwidth, fit_histogram, kde_error_bound,
                               mix_log_densities, scott_bandwidth)


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


def test_exponential_kernel_matches_sklearn_inside_and_beyond_the_grid():
    from sklearn.neighbors import KernelDensity
    samples, x, w = _padded_pairs(1)
    h = np.array([0.3, 0.4, 0.5])
    grid = fit_binned_kde(x, w, h, n_grid=4096, kernel="exponential")
    assert np.asarray(grid.kernel).tolist() == [1, 1, 1]
    q = np.stack([np.concatenate([np.linspace(s.min() - 1, s.max() + 1, 50), [s.min() - 8 * hj, s.max() + 9 * hj]])
                  for s, hj in zip(samples, h)])                                  # (3, 52): inside and beyond
    got = evaluate_log_kde(grid, q.T, [0, 1, 2]).T
    exact = np.asarray(exact_log_kde(x, w, h, q, kernel="exponential"))
    for j, s in enumerate(samples):
        ref = KernelDensity(kernel="exponential", bandwidth=h[j]).fit(s[:, None]).score_samples(q[j][:, None])
        # binning error of a cusped kernel: relative O(delta / h), here delta / h < 0.02
        np.testing.assert_allclose(got[j], ref, atol=0.02)
        np.testing.assert_allclose(exact[j], ref, rtol=1e-10, atol=1e-10)


def test_claxboi_bandwidth_is_range_over_5_n_to_the_fifth():
    r, n = np.array([2.0, 10.0]), np.array([32, 1000])
    np.testing.assert_allclose(np.asarray(claxboi_bandwidth(r, n)), r / (5 * n ** 0.2), rtol=1e-14)


def test_histogram_equals_numpy_histogram_density_and_is_zero_outside():
    rng = np.random.default_rng(2)
    v = rng.integers(0, 4, 300).astype(float)          # a discrete property: 4 distinct values
    lo, step, bins = 0.0, 3.0 / 99, 100
    grid = fit_histogram(v[None], np.ones((1, 300)), [lo], [step], n_grid=128)
    edges = lo + (np.arange(bins + 1) - 0.5) * step
    ref, _ = np.histogram(v, edges, density=True)
    centres = lo + np.arange(bins) * step
    got = evaluate_kde(grid, np.r_[centres, 5.0, -1.0][:, None], [0])[:, 0]
    np.testing.assert_allclose(got[:bins], ref, rtol=1e-12, atol=1e-300)
    assert got[-2] < 1e-300 and got[-1] < 1e-300


def test_prior_shape_mixing_integrates_to_one_and_floor_keeps_every_class():
    """Trapezoid integral over the support (a quadrature oracle with its own error << 1e-4)."""
    rng = np.random.default_rng(4)
    b = np.abs(rng.normal(0, 3, 400))                 # |b| of a Galactic population, deg
    grid = fit_binned_kde(b[None], np.ones((1, 400)), scott_bandwidth(b[None], np.ones((1, 400))), n_grid=2048)
    shape = np.array([[SHAPES["isotropic"], SHAPES["uniform"]]])

    def density(t, k, floor=0.0):
        t = np.atleast_1d(np.asarray(t, float))[:, None]
        ll = evaluate_log_kde(grid, t, [0])[:, :, None].repeat(2, axis=2)
        return np.exp(np.asarray(mix_log_densities(ll, t, shape, np.array([[0.5, 0.3]]), floor,
                                                   np.array([-np.log(90.0)]), np.array([0.0]), np.array([90.0]))))[:, 0, k]
    t = np.linspace(-40.0, 90.0, 65_001)            # the KDE is ~0 below -40; both shapes end at 90
    for k in (0, 1):
        assert np.trapezoid(density(t, k), t) == pytest.approx(1.0, abs=1e-4)
    # the isotropic half at 60 deg is (pi/180) cos(60 deg) / 2 (the KDE is ~0 there)
    assert density(60.0, 0)[0] == pytest.approx(0.5 * np.pi / 180 * 0.5, rel=1e-6)
    # a floor: every class keeps floor / range far from the training values
    assert density(1e4, 0, floor=0.01)[0] == pytest.approx(0.01 / 90.0, rel=1e-9)
    assert density(2.0, 1, floor=0.01)[0] == pytest.approx(0.99 * density(2.0, 1)[0] + 0.01 / 90.0, rel=1e-9)


def test_cv_grid_bandwidth_is_seeded_and_narrow_for_separated_clumps():
    rng = np.random.default_rng(5)
    s = np.concatenate([rng.normal(-5, 0.2, 150), rng.normal(5, 0.2, 150)])[None]
    w = np.ones_like(s)
    h1 = np.asarray(cv_grid_bandwidth(s, w, 7, n_grid=256))
    np.testing.assert_array_equal(h1, np.asarray(cv_grid_bandwidth(s, w, 7, n_grid=256)))
    assert h1[0] <= 0.5 * float(scott_bandwidth(s, w)[0])
