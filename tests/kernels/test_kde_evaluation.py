"""The fast evaluation path of xsift.kernels.kde against plain NumPy: the vectorised float64 log
against numpy.log, and the streamed block evaluation against numpy.interp of the grid's node
densities (its definition inside the grid) and the Gaussian-tail formula beyond it."""
import numpy as np

import xsift.kernels.kde as KD
from xsift.kernels import float64_enabled


def test_vectorised_log_is_within_a_few_ulp_of_numpy_over_the_normal_range():
    rng = np.random.default_rng(0)
    v = np.concatenate([np.exp(rng.uniform(-708, 709, 200_000)), rng.uniform(0.5, 2.0, 200_000),
                        [np.finfo(float).tiny, 1.0, 2.0, np.sqrt(0.5), np.sqrt(2.0), np.nextafter(1.0, 0.0),
                         np.finfo(float).max]])
    with float64_enabled():
        got = np.asarray(KD._log_positive(KD.jnp.asarray(v)))
    ref = np.log(v)
    ulp = np.spacing(np.abs(ref))
    assert np.all(np.abs(got - ref) <= 4 * np.maximum(ulp, np.spacing(1.0) / 2))


def test_streamed_blocks_equal_numpy_interpolation_and_tails():
    rng = np.random.default_rng(1)
    x = np.stack([rng.normal(0, 1, 400), rng.gamma(2.0, 1.5, 400)])
    w = np.ones_like(x)
    grid = KD.fit_binned_kde(x, w, KD.scott_bandwidth(x, w), n_grid=512)
    X = np.stack([rng.uniform(-9, 9, 5000), rng.uniform(-15, 40, 5000)], axis=1)
    X[rng.uniform(size=X.shape) < 0.05] = np.nan
    columns = np.array([0, 1, 1, 0])                       # pairs 0, 1 and a repeat of each, crossed
    pair = np.array([0, 1, 1, 0])
    got = KD.evaluate_log_kde(KD.KDEGrid(*(None if a is None else np.asarray(a)[pair] if np.ndim(a) else a
                                           for a in grid)), X, columns, chunk_rows=1024)   # 5 blocks, last padded
    assert got.shape == (5000, 4)
    lo, step, h = (np.asarray(a) for a in (grid.lo, grid.step, grid.bandwidth))
    dens, cut = np.asarray(grid.density), float(grid.cut)
    for j, (c, p) in enumerate(zip(columns, pair)):
        xs = X[:, c]
        nodes = lo[p] + step[p] * np.arange(dens.shape[1])
        inside = np.log(np.maximum(np.interp(xs, nodes, dens[p]), np.finfo(float).tiny))
        cut_h = cut * h[p]
        d = np.where(xs < nodes[0], nodes[0] + cut_h - xs, xs - (nodes[-1] - cut_h))
        edge = np.log(np.where(xs < nodes[0], dens[p, 0], dens[p, -1]))
        tail = edge - (d * d - cut_h * cut_h) / (2 * h[p] ** 2)
        ref = np.where((xs < nodes[0]) | (xs > nodes[-1]), tail, inside)
        np.testing.assert_array_equal(np.isnan(got[:, j]), np.isnan(xs))
        ok = ~np.isnan(xs)
        np.testing.assert_allclose(got[ok, j], ref[ok], rtol=1e-12, atol=1e-12)
        assert np.any(xs[ok] < nodes[0]) and np.any(xs[ok] > nodes[-1])   # both tails exercised


def test_pairs_in_one_batch_equal_pairs_one_at_a_time(monkeypatch):
    """The accelerator path (all pairs in one batch) gives the CPU path's values, for every kind."""
    rng = np.random.default_rng(2)
    x = np.stack([rng.normal(0, 1, 300), rng.exponential(1.0, 300), rng.integers(0, 4, 300).astype(float)])
    w = np.ones_like(x)
    g = KD.fit_binned_kde(x, w, KD.scott_bandwidth(x, w), n_grid=256, kernel="exponential")
    kinds = np.array([KD.KERNELS["gaussian"], KD.KERNELS["exponential"], KD.KERNELS["histogram"]], np.int32)
    grid = g._replace(kernel=kinds)
    X = np.stack([rng.uniform(-8, 8, 3000), rng.uniform(-5, 12, 3000), rng.uniform(-1, 5, 3000)], axis=1)
    X[::7, 1] = np.nan
    one = KD.evaluate_log_kde(grid, X, [0, 1, 2], chunk_rows=1024)
    monkeypatch.setitem(KD._PAIRS_ONE_AT_A_TIME, "cpu", False)
    batched = KD.evaluate_log_kde(grid, X, [0, 1, 2], chunk_rows=2048)     # a new shape: traced again
    np.testing.assert_allclose(batched, one, rtol=1e-13, atol=1e-13)
    assert np.isnan(one[::7, 1]).all() and np.isfinite(one[:, [0, 2]]).all()
