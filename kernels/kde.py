"""Binned 1-D Gaussian kernel density estimates of many (property, class) pairs at once.

A naive-Bayes classifier needs one 1-D density per (property, class) pair and
evaluates each of them at every source. Direct evaluation costs ``n_train``
kernel terms per point; here each density is instead

1. **linearly binned** onto a regular grid of ``G`` nodes spanning
   ``[min - cut*h, max + cut*h]`` (each training point's weight is split
   between its two neighbouring nodes in proportion to proximity, which keeps
   the mean of the mass exact),
2. **convolved** with the Gaussian kernel on that grid by FFT (zero-padded to
   ``2G`` so the discrete convolution is exact, not circular),
3. **evaluated** at any points by linear interpolation between nodes (one
   multiply for the node position, two gathers, a vectorised float64 log), in
   fixed-size row blocks (one jitted program per block shape, the last block
   padded), so 10 million evaluations never hold more than a few blocks of
   temporaries and tables of any length reuse the same compilation.

All pairs are handled by one batched call with static shapes: training sets of
different sizes are padded to a common length with weight 0.

Error bound (documented and tested)
-----------------------------------
Let ``f(x) = sum_i w_i phi_h(x - x_i)`` with ``sum_i w_i = 1`` be the exact KDE,
``phi_h`` the Gaussian of standard deviation ``h`` and ``delta`` the grid step.
Since ``|phi_h''| <= phi(0) / h**3`` with ``phi(0) = 1/sqrt(2 pi)``:

* linear binning moves each point's kernel by an interpolation of
  ``g -> phi_h(x - g)`` between two nodes: error at a node
  ``<= delta**2 / 8 * phi(0) / h**3``;
* linear interpolation of the node values between nodes adds at most
  ``delta**2 / 8 * max|f''| <= delta**2 / 8 * phi(0) / h**3``;

so inside the grid ``|f_grid(x) - f(x)| <= (delta / h)**2 / (4 sqrt(2 pi) h)``
(i.e. a relative error of ``(delta/h)**2 / 4`` of the kernel's peak height
``1/(sqrt(2 pi) h)``), plus floating-point round-off of the FFT
(about ``eps * G`` times the peak). :func:`kde_error_bound` returns this bound per
pair. With the default ``G = 2048`` and Scott bandwidths of a few thousand
points, ``delta/h`` is about 0.01-0.05, i.e. relative errors of 3e-5 to 6e-4.

Outside the grid (farther than ``cut`` bandwidths from every training point)
the density is continued in log space by the Gaussian tail of the nearest
training extreme, ``log f(edge) - ((x - x_ext)**2 - (cut h)**2) / (2 h**2)``,
which is exact up to the factor contributed by the other training points and
never underflows (the log-density is returned, so far-away points still rank
the classes). Densities that round to 0 or below inside the grid (FFT
round-off in empty gaps) are floored at the dtype's smallest normal number.
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from xsift.kernels.blocks import padded_rows

from xsift.kernels import scoped_x64

__all__ = ["KDEGrid", "scott_bandwidth", "fit_binned_kde", "evaluate_log_kde",
           "evaluate_kde", "kde_error_bound", "exact_log_kde", "fit_cv_bandwidth", "claxboi_bandwidth",
           "cv_grid_bandwidth", "fit_histogram", "mix_log_densities", "KERNELS", "SHAPES"]

# Per-pair density kinds of KDEGrid.kernel (None = every pair Gaussian)
KERNELS = {"gaussian": 0, "exponential": 1, "histogram": 2}
# Prior shapes of mix_log_densities (0 = none)
SHAPES = {"none": 0, "isotropic": 1, "uniform": 2}

_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)


class KDEGrid(NamedTuple):
    """Binned KDEs of ``m`` pairs on grids of ``G`` nodes.

    lo:        (m,)    position of node 0
    step:      (m,)    grid spacing ``delta``
    bandwidth: (m,)    Gaussian kernel standard deviation ``h``
    density:   (m, G)  density at the nodes (integrates to ~1 over the grid)
    cut:       ()      the grid extends ``cut`` bandwidths beyond the data
    kernel:    None (every pair Gaussian) or (m,) int, :data:`KERNELS`: 0 Gaussian, 1 exponential
               (Laplace, ``exp(-|u|/h) / (2h)``), 2 histogram (node j = the bin centred on it, width
               ``step``; evaluated as the bin's density, 0 outside the bins)
    """
    lo: jax.Array
    step: jax.Array
    bandwidth: jax.Array
    density: jax.Array
    cut: jax.Array
    kernel: jax.Array | None = None


def _holdout_split(key, x, w, holdout, dtype):
    """x as ``dtype`` and the training and held-out weights of a seeded random hold-out (each value held
    out with probability ``holdout``; non-finite values weigh 0 in both)."""
    if isinstance(key, int):
        key = jax.random.PRNGKey(key)
    x = jnp.asarray(x, dtype)
    w = jnp.where(jnp.isfinite(x), jnp.asarray(w, dtype), 0.0)
    held = jax.random.uniform(key, x.shape) < holdout
    return x, jnp.where(held, 0.0, w), jnp.where(held, w, 0.0)


def _normalised_weights(x, w, dtype):
    x = jnp.asarray(x, dtype)
    w = jnp.asarray(w, dtype)
    w = jnp.where(jnp.isfinite(x), w, 0.0)
    x = jnp.where(jnp.isfinite(x), x, 0.0)
    total = jnp.sum(w, axis=-1, keepdims=True)
    return x, w / jnp.where(total > 0, total, 1.0)


@scoped_x64
@partial(jax.jit, static_argnames=("dtype",))
def scott_bandwidth(x, w, dtype=jnp.float64):
    """Scott's rule bandwidth per pair, as ``scipy.stats.gaussian_kde`` computes it.

    x: (m, n) training values (padding arbitrary), w: (m, n) weights (0 = padding).
    Returns (m,) ``h = neff**(-1/5) * std`` with ``neff = (sum w)**2 / sum w**2`` and the
    weighted variance with scipy's (numpy.cov ``aweights``) bias correction.
    """
    x, w = _normalised_weights(x, w, dtype)
    mean = jnp.sum(w * x, axis=-1, keepdims=True)
    sum_w2 = jnp.sum(w * w, axis=-1)
    var = jnp.sum(w * (x - mean) ** 2, axis=-1) / jnp.maximum(1.0 - sum_w2, jnp.finfo(dtype).eps)
    neff = 1.0 / jnp.maximum(sum_w2, jnp.finfo(dtype).tiny)
    return (neff ** (-0.2) * jnp.sqrt(var)).astype(dtype)


@scoped_x64
@partial(jax.jit, static_argnames=("n_grid", "dtype", "kernel"))
def fit_binned_kde(x, w, bandwidth, n_grid: int = 2048, cut: float = 6.0, dtype=jnp.float64,
                   kernel: str = "gaussian") -> KDEGrid:
    """Bin and smooth ``m`` weighted 1-D samples at once.

    x: (m, n) training values; NaN or any value with weight 0 is ignored (padding).
    w: (m, n) non-negative weights, normalised per pair inside.
    bandwidth: (m,) kernel scale per pair (must be > 0): the standard deviation of the Gaussian, or
        ``h`` of the exponential kernel ``exp(-|u|/h) / (2h)`` (scikit-learn's ``KernelDensity(kernel=
        "exponential", bandwidth=h)``, the kernel of CLAXBOI, Tranin et al. 2022).
    kernel: ``"gaussian"`` (``KDEGrid.kernel`` None, as before) or ``"exponential"``. The exponential
        KDE's continuation beyond the grid (``log f(edge) - (d - cut h) / h``) is exact up to binning,
        since every training point lies on one side. Its binning error is larger than the Gaussian's
        bound of :func:`kde_error_bound` (the kernel has a cusp): relative ``O(delta / h)`` at worst.
    Returns a :class:`KDEGrid` with ``density: (m, n_grid)``.
    """
    if kernel not in ("gaussian", "exponential"):
        raise ValueError(f"kernel must be 'gaussian' or 'exponential', got {kernel!r}")
    x, w = _normalised_weights(x, w, dtype)
    h = jnp.asarray(bandwidth, dtype)
    cut = jnp.asarray(cut, dtype)
    big = jnp.asarray(jnp.finfo(dtype).max, dtype)
    xmin = jnp.min(jnp.where(w > 0, x, big), axis=-1)
    xmax = jnp.max(jnp.where(w > 0, x, -big), axis=-1)
    xmin = jnp.where(xmin <= xmax, xmin, 0.0)   # empty pair: harmless grid
    xmax = jnp.where(xmin <= xmax, xmax, 0.0)
    lo = xmin - cut * h
    step = (xmax - xmin + 2.0 * cut * h) / (n_grid - 1)

    # linear binning: split each weight between the two neighbouring nodes
    t = (x - lo[:, None]) / step[:, None]
    i0 = jnp.clip(jnp.floor(t).astype(jnp.int32), 0, n_grid - 2)
    frac = jnp.clip(t - i0, 0.0, 1.0)
    rows = jnp.broadcast_to(jnp.arange(x.shape[0])[:, None], x.shape)
    binned = jnp.zeros((x.shape[0], n_grid), dtype)
    binned = binned.at[rows, i0].add(w * (1.0 - frac))
    binned = binned.at[rows, i0 + 1].add(w * frac)

    # exact (non-circular) discrete convolution with the sampled Gaussian by FFT
    length = 2 * n_grid
    offsets = jnp.arange(length)
    offsets = jnp.where(offsets < n_grid, offsets, offsets - length).astype(dtype)   # 0..G-1, -G..-1
    u = offsets[None, :] * step[:, None] / h[:, None]
    if kernel == "gaussian":
        kern = jnp.exp(-0.5 * u * u) * (_INV_SQRT_2PI / h[:, None])
    else:
        kern = jnp.exp(-jnp.abs(u)) * (0.5 / h[:, None])
    smooth = jnp.fft.irfft(jnp.fft.rfft(binned, length, axis=-1) * jnp.fft.rfft(kern, length, axis=-1),
                           length, axis=-1)[:, :n_grid]
    kind = None if kernel == "gaussian" else jnp.full(x.shape[0], KERNELS[kernel], jnp.int32)
    return KDEGrid(lo=lo, step=step, bandwidth=h, density=smooth.astype(dtype), cut=cut, kernel=kind)


@scoped_x64
@partial(jax.jit, static_argnames=("n_grid", "dtype"))
def fit_histogram(x, w, lo, step, n_grid: int = 2048, dtype=jnp.float64) -> KDEGrid:
    """Plain histograms of ``m`` weighted 1-D samples on given bins (the ``histogram`` kind).

    x, w: (m, n) values and weights as :func:`fit_binned_kde` takes them (a pair with no weight gets
    density 0 everywhere). lo: (m,) centre of bin 0; step: (m,) bin width. Bin j is
    ``[lo + (j - 1/2) step, lo + (j + 1/2) step)``, j = 0..n_grid-1; a value outside every bin is
    left out. Returns a :class:`KDEGrid` with ``density[j] = (weight in bin j) / (total weight *
    step)`` (a density: it integrates to the fraction of the weight inside the bins) and ``kernel``
    = 2, evaluated by :func:`evaluate_log_kde` as the density of the bin a point falls in.
    """
    x, w = _normalised_weights(x, w, dtype)
    lo = jnp.asarray(lo, dtype)
    step = jnp.asarray(step, dtype)
    j = jnp.floor((x - lo[:, None]) / step[:, None] + 0.5)
    inside = (j >= 0) & (j < n_grid) & (w > 0)
    j = jnp.clip(j, 0, n_grid - 1).astype(jnp.int32)
    rows = jnp.broadcast_to(jnp.arange(x.shape[0])[:, None], x.shape)
    counts = jnp.zeros((x.shape[0], n_grid), dtype).at[rows, j].add(jnp.where(inside, w, 0.0))
    return KDEGrid(lo=lo, step=step, bandwidth=step, density=counts / step[:, None],
                   cut=jnp.asarray(0.0, dtype), kernel=jnp.full(x.shape[0], KERNELS["histogram"], jnp.int32))


@scoped_x64
def kde_error_bound(grid: KDEGrid, dtype=jnp.float64):
    """Documented absolute error bound of :func:`evaluate_kde` inside the grid, per pair (m,).

    ``(delta/h)**2 / (4 sqrt(2 pi) h)`` (binning + interpolation) plus FFT round-off
    ``8 * eps * sqrt(G) / (sqrt(2 pi) h)``.
    """
    h = jnp.asarray(grid.bandwidth, dtype)
    r = jnp.asarray(grid.step, dtype) / h
    peak = _INV_SQRT_2PI / h
    n_grid = grid.density.shape[-1]
    return r * r / 4.0 * peak + 8.0 * jnp.finfo(dtype).eps * np.sqrt(n_grid) * peak


_LN2 = float(np.log(2.0))
_IN_FLIGHT = 2          # blocks dispatched ahead of the copy to host memory in evaluate_log_kde
_SQRT_HALF_BITS = np.int64(0x3FE6A09E667F3BCD)     # IEEE-754 bits of sqrt(1/2)


def _log_positive(v):
    """Natural log of positive, finite, normal numbers (v: any shape), in a form the CPU compiler
    vectorises.

    XLA's float64 ``log`` on a CPU is a scalar library call per element, slower than the rest of
    the KDE evaluation together; float32 has a vectorised one and uses it. float64: ``v = 2**k m`` with ``m`` in ``[sqrt(1/2), sqrt(2))`` read from the IEEE bits, and
    ``log m = 2 atanh(s)``, ``s = (m - 1) / (m + 1)``, ``|s| <= 0.172``, summed to ``s**19`` (next
    term < 2e-17 relative): within a few ulp of ``numpy.log`` over the whole normal range (tested).
    Zero, negative, subnormal, infinite or NaN inputs give meaningless values: callers clamp to
    ``finfo.tiny`` and mask NaN first.
    """
    if v.dtype != jnp.float64:
        return jnp.log(v)
    bits = jax.lax.bitcast_convert_type(v, jnp.int64)
    k = (bits - _SQRT_HALF_BITS) >> 52                       # exponent with the mantissa in [sqrt(.5), sqrt(2))
    m = jax.lax.bitcast_convert_type(bits - (k << 52), jnp.float64)
    s = (m - 1.0) / (m + 1.0)
    z = s * s
    p = 1.0 / 19.0
    for c in (17.0, 15.0, 13.0, 11.0, 9.0, 7.0, 5.0, 3.0, 1.0):
        p = p * z + 1.0 / c
    return k.astype(jnp.float64) * _LN2 + 2.0 * s * p


class _PairConstants(NamedTuple):
    """What the evaluation of each pair needs besides the points, computed once per call, (m,) each
    unless noted: ``t = (x - lo) * inv_step`` is the fractional node index (the subtraction first, so
    that ``t`` keeps a relative error of a few eps even when ``lo`` is far from 0 in units of the
    step); ``table`` (m, G, 2) holds each node's density and the slope to the next node (0 at the
    last); ``log_dens`` (m, G) the node log-densities (only for grids with kinds, else None)."""
    lo: jax.Array
    inv_step: jax.Array
    hi: jax.Array
    cut_h: jax.Array
    half_inv_h2: jax.Array
    inv_h: jax.Array
    log_lo_edge: jax.Array
    log_hi_edge: jax.Array
    table: jax.Array
    log_dens: jax.Array | None


def _pair_constants(grid: KDEGrid, dtype) -> _PairConstants:
    """:class:`_PairConstants` of a grid, computed once per call (behind an optimisation barrier, so
    that XLA does not fuse these (m,)-sized divisions and logs into the per-point loops)."""
    n_grid = grid.density.shape[-1]
    lo, step, h = grid.lo.astype(dtype), grid.step.astype(dtype), grid.bandwidth.astype(dtype)
    dens = grid.density.astype(dtype)
    tiny = jnp.finfo(dtype).tiny
    slope = jnp.concatenate([dens[:, 1:] - dens[:, :-1], jnp.zeros_like(dens[:, :1])], axis=1)
    log_dens = None if grid.kernel is None else _log_positive(jnp.maximum(dens, tiny))
    const = _PairConstants(
        lo=lo, inv_step=1.0 / step, hi=lo + step * (n_grid - 1), cut_h=grid.cut.astype(dtype) * h,
        half_inv_h2=0.5 / (h * h), inv_h=1.0 / h,
        log_lo_edge=_log_positive(jnp.maximum(dens[:, 0], tiny)),
        log_hi_edge=_log_positive(jnp.maximum(dens[:, -1], tiny)),
        table=jnp.stack([dens, slope], axis=-1), log_dens=log_dens)
    return jax.lax.optimization_barrier(const)


def _log_kde_one_pair(const: _PairConstants, kind, x):
    """Log-density of one pair at the points ``x`` (c,): ``const`` holds that pair's scalars, its
    (G, 2) table and (G,) node log-densities; ``kind`` its :data:`KERNELS` code (None: Gaussian).

    Inside the grid: one truncation to int32 and one gather of the ``(value, slope)`` table,
    ``log(f0 + (f1 - f0) * frac)``. Out-of-range and NaN positions read a clamped node and are
    replaced below, so no clipping pass is needed (inside the grid ``t >= 0`` and truncation is the
    floor; at ``t = G - 1`` the slope is 0). Beyond the grid, the kernel's tail from the edge on the
    point's side (module docstring). Histograms: the log-density of the bin the point falls in,
    the smallest normal number outside the bins."""
    tiny = jnp.finfo(x.dtype).tiny
    t = (x - const.lo) * const.inv_step
    i0 = t.astype(jnp.int32)
    node = const.table.at[i0].get(mode="clip")
    log_inside = _log_positive(jnp.maximum(node[:, 0] + node[:, 1] * (t - i0), tiny))
    below = x < const.lo
    log_edge = jnp.where(below, const.log_lo_edge, const.log_hi_edge)
    d = jnp.where(below, (const.lo + const.cut_h) - x, x - (const.hi - const.cut_h))
    tail = log_edge - (d * d - const.cut_h * const.cut_h) * const.half_inv_h2
    if kind is not None:
        expo = log_edge - (d - const.cut_h) * const.inv_h
        tail = jnp.where(kind == KERNELS["exponential"], expo, tail)
    out = jnp.where(below | (x > const.hi), tail, log_inside)
    if kind is not None:
        n_grid = const.table.shape[0]
        j = jnp.floor(t + 0.5)
        in_bins = (j >= 0) & (j < n_grid)
        hist = jnp.where(in_bins, const.log_dens.at[j.astype(jnp.int32)].get(mode="clip"), jnp.log(tiny))
        out = jnp.where(kind == KERNELS["histogram"], hist, out)
    return jnp.where(jnp.isnan(x), jnp.nan, out)


def _log_kde_chunk(grid: KDEGrid, xc, dtype):
    """xc: (c, m) one chunk of evaluation points, column j for pair j. Returns (c, m) log-density.

    On a CPU the pairs are evaluated one after the other (``lax.map`` over the pair-major
    transpose): each pair's loop then gathers from its own small table and is vectorised, which a
    (c, m) gather over every pair at once is not (about 5x slower per value for 32 pairs). On an
    accelerator all pairs go in one batch (one kernel launch, not m)."""
    const = _pair_constants(grid, dtype)
    m = grid.density.shape[0]
    xt = jnp.broadcast_to(jnp.asarray(xc, dtype), (xc.shape[0], m)).T     # one column: every pair at it
    batch = 1 if _PAIRS_ONE_AT_A_TIME.get(jax.default_backend(), False) else m
    if grid.kernel is None:
        out = jax.lax.map(lambda a: _log_kde_one_pair(a[0], None, a[1]), (const, xt), batch_size=batch)
    else:
        out = jax.lax.map(lambda a: _log_kde_one_pair(a[0], a[1], a[2]), (const, grid.kernel, xt),
                          batch_size=batch)
    return out.T


# backends on which _log_kde_chunk maps over the pairs one at a time (else one batch of all pairs)
_PAIRS_ONE_AT_A_TIME = {"cpu": True}


@partial(jax.jit, static_argnames=("dtype",))
def _log_kde_block(grid: KDEGrid, xb, columns, dtype):
    """One fixed-shape block (c, d) of the evaluation table -> (c, m) log-densities."""
    return _log_kde_chunk(grid, xb.astype(dtype)[:, columns], dtype)


def _block_rows(n: int, chunk_rows: int) -> int:
    """Rows per compiled block: chunk_rows, or for a smaller table the next power of two >= n (at
    least 1024)."""
    return padded_rows(n, chunk_rows, 1024)


_BLOCK_VALUES = 1 << 18     # log-densities per block (2 MB in float64): the block's output stays in cache


def _rows_for_pairs(m: int, chunk_rows: int | None) -> int:
    """Block rows for ``m`` pairs: the power of two nearest below ``_BLOCK_VALUES / m`` (at least
    1024), and at most ``chunk_rows`` when given. Larger blocks are slower, not faster: the block's
    output no longer fits in cache (8 properties x 4 classes at 1M sources: 2x slower with 65,536-row
    blocks than with 8,192)."""
    fit = max(1024, 1 << max(0, (_BLOCK_VALUES // max(int(m), 1)).bit_length() - 1))
    return fit if chunk_rows is None else min(int(chunk_rows), fit)


@scoped_x64
def evaluate_log_kde(grid: KDEGrid, X, columns, chunk_rows: int | None = None, dtype=jnp.float64):
    """Log-density of every pair at the rows of a table, in fixed-size row blocks.

    grid: a :class:`KDEGrid` of ``m`` pairs.
    X: (N, d) evaluation table (NaN = missing -> NaN out).
    columns: (m,) int, the column of ``X`` at which pair ``j`` is evaluated.
    chunk_rows: the most rows per block (None: no limit but the cache-sized one below).
    Returns (N, m) log-densities as a host NumPy array. One jitted program per block shape: blocks of
    ``min(chunk_rows, 2**18 / m rounded down to a power of two)`` rows (at least 1024; the last
    block padded with NaN), or for a smaller table one block of the next power of two >= N,
    so tables of any size reuse the same few compilations (a Dask run over shards of varying
    length compiles once). Blocks are streamed: each is dispatched (asynchronously) before the
    result of the one ``_IN_FLIGHT`` blocks earlier is copied into the output and released, so the
    copies overlap the computation and the block buffers are reused instead of a fresh allocation
    (and its page faults) per block. Memory of temporaries is O(block * m).
    """
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-d table (rows, columns), got shape {X.shape}")
    if X.dtype.kind != "f":
        X = X.astype(np.float64)       # NaN padding needs a float table
    columns = jnp.asarray(columns, jnp.int32)
    grid = KDEGrid(*(None if a is None else jnp.asarray(a) for a in grid))   # on the device once, not per block
    n, d = X.shape
    rows = _block_rows(n, _rows_for_pairs(grid.density.shape[0], chunk_rows))
    out = None
    in_flight = []

    def collect():
        nonlocal out
        start, count, result = in_flight.pop(0)
        host = np.asarray(result)
        if out is None:
            out = np.empty((n, host.shape[1]), host.dtype)
        out[start:start + count] = host[:count]

    for start in range(0, max(n, 1), rows):
        block = X[start:start + rows]
        count = block.shape[0]
        if count < rows:
            block = np.concatenate([block, np.full((rows - count, d), np.nan, block.dtype)])
        in_flight.append((start, count, _log_kde_block(grid, block, columns, dtype)))
        if len(in_flight) > _IN_FLIGHT:
            collect()
    while in_flight:
        collect()
    return out


@scoped_x64
def evaluate_kde(grid: KDEGrid, X, columns, chunk_rows: int | None = None, dtype=jnp.float64):
    """Density (not log) of :func:`evaluate_log_kde`; same shapes."""
    return np.exp(evaluate_log_kde(grid, X, columns, chunk_rows=chunk_rows, dtype=dtype))


@scoped_x64
@partial(jax.jit, static_argnames=("dtype", "kernel"))
def exact_log_kde(x, w, bandwidth, points, dtype=jnp.float64, kernel: str = "gaussian"):
    """Exact (direct-sum) log-density, the reference the grid approximates.

    x, w: (m, n) training values and weights; bandwidth: (m,); points: (m, k).
    kernel: ``"gaussian"`` or ``"exponential"`` (``exp(-|u|/h) / (2h)``).
    Returns (m, k). Cost O(m n k): use for tests and small problems only.
    """
    x, w = _normalised_weights(x, w, dtype)
    h = jnp.asarray(bandwidth, dtype)[:, None, None]
    points = jnp.asarray(points, dtype)
    u = (points[:, :, None] - x[:, None, :]) / h
    logw = jnp.log(jnp.where(w > 0, w, 1.0))[:, None, :] + jnp.where(w > 0, 0.0, -jnp.inf)[:, None, :]
    if kernel == "exponential":
        return jax.scipy.special.logsumexp(logw - jnp.abs(u), axis=-1) - jnp.log(2.0 * h[:, :, 0])
    return jax.scipy.special.logsumexp(logw - 0.5 * u * u, axis=-1) - jnp.log(h[:, :, 0]) - 0.5 * jnp.log(2 * jnp.pi)


@scoped_x64
def fit_cv_bandwidth(x, w, key, *, n_steps: int = 200, learning_rate: float = 0.05,
                     holdout: float = 0.25, dtype=jnp.float64):
    """Per-pair bandwidth maximising the held-out log-likelihood (``bandwidth="cv"``), with optax.

    x, w: (m, n); key: a ``jax.random`` key or an int seed. A random ``holdout`` share of each pair's points is held out; the
    bandwidth ``h = exp(s)`` of a KDE of the rest is fitted by Adam on the held-out
    mean log-density (exact sums, so keep ``n`` to a few thousand). Starts at Scott's rule.
    Returns (m,) bandwidths.
    """
    import optax

    x, w_train, w_test = _holdout_split(key, x, w, holdout, dtype)
    w_test = w_test / jnp.maximum(jnp.sum(w_test, axis=-1, keepdims=True), jnp.finfo(dtype).tiny)
    x_clean = jnp.where(jnp.isfinite(x), x, 0.0)

    def loss(s):
        logf = exact_log_kde(x_clean, w_train, jnp.exp(s), x_clean, dtype=dtype)
        return -jnp.sum(jnp.where(w_test > 0, w_test * logf, 0.0))

    opt = optax.adam(learning_rate)
    s0 = jnp.log(scott_bandwidth(x, w, dtype=dtype))

    @jax.jit
    def run(s):
        def step(carry, _):
            s, state = carry
            g = jax.grad(loss)(s)
            updates, state = opt.update(g, state, s)
            return (optax.apply_updates(s, updates), state), None
        (s, _), _ = jax.lax.scan(step, (s, opt.init(s)), None, length=n_steps)
        return s

    return jnp.exp(run(s0)).astype(dtype)


@scoped_x64
@partial(jax.jit, static_argnames=("dtype",))
def claxboi_bandwidth(value_range, n, dtype=jnp.float64):
    """CLAXBOI's rule of thumb (Tranin et al. 2022, their ``makedistrib``): ``h = range / (5 n^(1/5))``.

    value_range: (m,) range (max - min) of the property's training values over every class;
    n: (m,) number of those values. Returns (m,) bandwidths.
    """
    r = jnp.asarray(value_range, dtype)
    return r / (5.0 * jnp.asarray(n, dtype) ** 0.2)


@scoped_x64
def cv_grid_bandwidth(x, w, key, *, factors=(0.25, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0), holdout: float = 0.25,
                      kernel: str = "gaussian", n_grid: int = 2048, dtype=jnp.float64):
    """Per-pair bandwidth chosen by likelihood cross-validation over a small grid (``bandwidth="cv"``).

    x, w: (m, n) as :func:`scott_bandwidth`; key: a ``jax.random`` key or an int seed. A random
    ``holdout`` share of each pair's points is held out; each candidate ``factor * scott`` is
    scored by the weighted mean log-density of the held-out points under the binned KDE
    (:func:`fit_binned_kde` with ``kernel``, ``n_grid`` nodes) of the others, and the best one per
    pair is returned, (m,). A pair with no held-out or no remaining point keeps Scott's rule.
    Cost ``O(len(factors) m (n + n_grid log n_grid))``.
    """
    x, w_train, w_test = _holdout_split(key, x, w, holdout, dtype)
    usable = (jnp.sum(w_test, axis=-1) > 0) & (jnp.sum(w_train > 0, axis=-1) >= 2)
    w_test = w_test / jnp.maximum(jnp.sum(w_test, axis=-1, keepdims=True), jnp.finfo(dtype).tiny)
    scott = scott_bandwidth(x, w, dtype=dtype)
    safe = jnp.where(jnp.isfinite(scott) & (scott > 0), scott, 1.0)
    factors = jnp.asarray(factors, dtype)
    scores = _cv_scores(x, w_train, w_test, safe, factors, n_grid, kernel, dtype)
    chosen = safe * factors[jnp.argmax(scores, axis=0)]
    return jnp.where(usable, chosen, scott).astype(dtype)


@partial(jax.jit, static_argnames=("n_grid", "kernel", "dtype"))
def _cv_scores(x, w_train, w_test, h, factors, n_grid, kernel, dtype):
    """(len(factors), m) held-out weighted mean log-density of each candidate bandwidth ``factor * h``."""
    points = jnp.where(jnp.isfinite(x), x, jnp.nan).T          # (n, m): column j for pair j

    def score(f):
        grid = fit_binned_kde(x, w_train, h * f, n_grid=n_grid, dtype=dtype, kernel=kernel)
        logf = _log_kde_chunk(grid, points, dtype).T
        return jnp.sum(jnp.where(w_test > 0, w_test * jnp.nan_to_num(logf), 0.0), axis=-1)
    return jax.lax.map(score, factors)


@scoped_x64
@jax.jit
def mix_log_densities(loglik, x, shape, shape_fraction, floor, log_floor_density, shape_lo, shape_hi):
    """Per-(property, class) prior-shape mixing and a density floor, in log space.

    For property p, class C and value x (Tranin et al. 2022: the XRB latitude density half KDE, half
    isotropic; a floor so no class gets zero likelihood)::

        f1 = (1 - s_pC) f_pC(x) + s_pC g_pC(x)          g: the prior shape, a density integrating to 1
        f2 = (1 - floor) f1 + floor * u_p                u_p = 1 / (range of p): a uniform density on
                                                         the property's training range, kept beyond it
    Shapes (``shape``, :data:`SHAPES`): 1 ``isotropic``: ``g(b) = (pi/180) cos(b pi/180)`` on
    ``[0, 90]`` deg (``|b|`` of sources spread evenly over the sky), 0 elsewhere; 2 ``uniform``:
    ``1 / (hi - lo)`` on ``[shape_lo, shape_hi]``, 0 elsewhere. Inside the range ``f2`` integrates
    to 1 when ``f`` and ``g`` do; beyond it every class keeps at least the same floor, so a value
    outside the training range cannot single out a class by a kernel tail alone (CLAXBOI gives
    every class the same likelihood there).

    loglik: (n, P, K) ``log f_pC(x_p)`` (NaN = missing, kept NaN); x: (n, P) the values;
    shape: (P, K) int; shape_fraction: (P, K) ``s_pC``; floor: scalar in [0, 1);
    log_floor_density: (P,) ``log u_p``; shape_lo, shape_hi: (P,) the uniform shape's support.
    Returns (n, P, K).
    """
    dtype = loglik.dtype
    x = jnp.asarray(x, dtype)[:, :, None]
    s = jnp.asarray(shape_fraction, dtype)[None]
    kind = jnp.asarray(shape)[None]
    deg = jnp.asarray(jnp.pi / 180.0, dtype)
    iso = jnp.where((x >= 0) & (x <= 90), deg * jnp.cos(jnp.clip(x, 0, 90) * deg), 0.0)
    lo = jnp.asarray(shape_lo, dtype)[None, :, None]
    hi = jnp.asarray(shape_hi, dtype)[None, :, None]
    uni = jnp.where((x >= lo) & (x <= hi), 1.0 / jnp.where(hi > lo, hi - lo, 1.0), 0.0)
    g = jnp.where(kind == SHAPES["isotropic"], iso, jnp.where(kind == SHAPES["uniform"], uni, 0.0))
    neg_inf = jnp.asarray(-jnp.inf, dtype)
    ll = jnp.where(jnp.isnan(loglik), 0.0, loglik)
    log_g = jnp.where(g > 0, jnp.log(jnp.where(g > 0, g, 1.0)), neg_inf)
    log_s = jnp.where(s > 0, jnp.log(jnp.where(s > 0, s, 1.0)), neg_inf)
    mixed = jnp.where(s > 0, jnp.logaddexp(jnp.log1p(-s) + ll, log_s + log_g), ll)
    floor = jnp.asarray(floor, dtype)
    floored = jnp.logaddexp(jnp.log1p(-floor) + mixed,
                            jnp.log(jnp.maximum(floor, jnp.finfo(dtype).tiny)) + jnp.asarray(log_floor_density, dtype)[None, :, None])
    out = jnp.where(floor > 0, floored, mixed)
    return jnp.where(jnp.isnan(loglik), jnp.nan, out)
