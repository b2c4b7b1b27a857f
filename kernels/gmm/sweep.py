"""The BIC curve over numbers of components (every (K, repeat) fit of a group in one compiled
program) and the elbow choice of K from it (the paper's Fig. 1)."""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from xsift.kernels import scoped_x64
from xsift.kernels.gmm.apply import n_parameters
from xsift.kernels.gmm.em import _em
from xsift.kernels.gmm.init import _init_params
from xsift.kernels.gmm.layout import (DEFAULT_CHUNK_SIZE, _balanced_rows, _check_X, _chunked, _em_layout,
                                      _resolve_dtype, _SWEEP_CHUNK_ELEMENTS)
from xsift.kernels.gmm.types import BICCurve


@partial(jax.jit, static_argnames=("batch_size",))
def _sweep_init_program(keys, actives, Xc, maskc, reg_covar, *, batch_size):
    """keys (F, key), actives (F, Kmax) bool -> every fit's k-means start, GMMParams batched (F, Kmax, ...).

    One program for the whole sweep, at the largest K: an inactive component changes nothing in the
    seeding, Lloyd's iterations or the M-step of the active ones, so a fit padded to Kmax starts where it
    would padded to its group's K (to float rounding)."""
    def one(args):
        key, active = args
        return _init_params("kmeans", key, Xc, maskc, active, reg_covar)
    return lax.map(one, (keys, actives), batch_size=batch_size)


@partial(jax.jit, static_argnames=("fits", "batch_size"))
def _sweep_em_program(starts, actives, n_free, Xc, maskc, max_iter, tol, reg_covar, *, fits, batch_size):
    """starts: the init program's output; fits = (first, stop) static: this group's rows of it;
    actives (G, Kpad) bool, n_free (G,) -> per-fit (bic, lower_bound, n_iter, converged). Xc, maskc:
    chunks in the layout of :func:`_em_layout` for Kpad components.

    lax.map over the fits, ``batch_size`` of them vmapped side by side (a vmapped while_loop runs until
    the slowest of its batch converges, so batch_size=1 wastes no iterations).
    """
    kpad = actives.shape[1]
    cols = _em_layout(kpad)
    p0 = jax.tree_util.tree_map(lambda a: a[fits[0]:fits[1], :kpad], starts)   # components >= kpad are inactive

    def one(args):
        p, active, n_params = args
        res, st = _em(p, Xc, maskc, active, max_iter, tol, reg_covar, final_stats=True, cols=cols)
        b = -2.0 * st.loglik + n_params * jnp.log(st.n)
        return b, res.lower_bound, res.n_iter, res.converged
    return lax.map(one, (p0, actives, n_free), batch_size=batch_size)


@scoped_x64
def bic_sweep(X, ks=range(2, 21), repeats=5, *, seed, max_iter=100, tol=1e-3, reg_covar=1e-6,
              dtype=None, chunk_size=None, groups=None, batch_size=1) -> BICCurve:
    """BIC of k-means-initialised fits for every K in ks, ``repeats`` times each.

    Every fit's k-means start comes from ONE compiled program at max(ks) (inactive components masked
    out: weight 0, log-weight -inf, exactly inert). The ks are then split into ``groups`` contiguous
    runs (default: 2 below 200,000 rows, where each compilation (seconds on a CPU) weighs as much
    as the padded work it saves, else 4; never more than len(ks)); the EM of every (K, repeat) fit of a
    run is padded to the run's largest K and all of them run in one compiled program, so the sweep costs
    ``groups`` + 1 compilations. groups=1 pads everything to max(ks) (least compilation, most padding
    work). A group padded to 8 components or more runs EM on column-major chunks (:func:`_em_layout`).
    Within a program ``batch_size`` fits are vmapped side by side. Repeat r of K uses the key
    fold_in(key(seed), 1000 r + K), so the result does not depend on groups or batch_size (beyond float
    rounding; tested).
    """
    ks = np.asarray(sorted({int(k) for k in ks}), dtype=np.int64)
    if ks.size == 0 or ks[0] < 1:
        raise ValueError(f"ks must be positive component counts, got {list(ks)}")
    repeats = int(repeats)
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    kmax = int(ks[-1])
    X = _check_X(X, kmax)
    n, d = X.shape
    dt = _resolve_dtype(X, dtype)
    if groups is None:
        groups = 2 if n < 200_000 else 4
    groups = max(1, min(int(groups), ks.size))
    B = max(1, int(batch_size))
    rows_chunk = chunk_size
    if rows_chunk is None:
        # at most DEFAULT_CHUNK_SIZE rows: the sweep runs many small fits side by side, and larger
        # chunks (the EM default, em_chunk_rows of the padded K) do not make them faster
        rows_chunk = _balanced_rows(n, max(256, min(DEFAULT_CHUNK_SIZE, _SWEEP_CHUNK_ELEMENTS // (B * kmax * (d + 1)))))
    shift = X.mean(axis=0, dtype=np.float64)
    Xc, maskc, _ = _chunked(X, dt, rows_chunk, shift)
    base = jax.random.key(int(seed))
    reg = jnp.asarray(reg_covar, dt)
    loop = (jnp.asarray(max_iter, jnp.int32), jnp.asarray(tol, dt), reg)
    shape = (ks.size, repeats)
    b, lb = np.empty(shape), np.empty(shape)
    it, conv = np.empty(shape, np.int64), np.empty(shape, bool)
    runs = np.array_split(ks, groups)
    # a group padded to _COLS_MIN_K components or more runs EM on column-major chunks (_em_layout)
    cols_data = (_chunked(X, dt, chunk_size, shift, cols=True, runs=B)[:2]
                 if any(_em_layout(r[-1]) for r in runs) else None)
    # every fit's start from ONE program at the largest K (k-means is most of a sweep program's compile
    # time), then one EM program per group at the group's largest K. All inputs are made before any
    # program is dispatched: an eager device op issued after a dispatch waits for that program, which
    # would hold back the next compilation.
    kk = np.repeat(ks, repeats)
    rr = np.tile(np.arange(repeats), ks.size)
    keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.asarray(rr * 1000 + kk, jnp.uint32))
    init_actives = jnp.asarray(np.arange(kmax)[None, :] < kk[:, None])
    groups_in, first = [], 0
    for run in runs:
        kpad, stop = int(run[-1]), first + run.size * repeats
        actives = jnp.asarray(np.arange(kpad)[None, :] < kk[first:stop, None])
        n_free = jnp.asarray([n_parameters(int(k), d) for k in kk[first:stop]], dt)
        groups_in.append(((first, stop), actives, n_free))
        first = stop
    jax.block_until_ready((keys, init_actives, groups_in))
    # dispatched, not awaited: each EM program traces and compiles while the initialisations run
    starts = _sweep_init_program(keys, init_actives, Xc, maskc, reg, batch_size=B)
    pending = [_sweep_em_program(starts, actives, n_free, *(cols_data if _em_layout(kpad) else (Xc, maskc)), *loop,
                                 fits=fits, batch_size=B)
               for (fits, actives, n_free), kpad in zip(groups_in, (int(r[-1]) for r in runs))]
    row = 0
    for run, out in zip(runs, jax.device_get(pending)):
        sl = slice(row, row + run.size)
        b[sl], lb[sl] = (np.asarray(o, np.float64).reshape(run.size, repeats) for o in out[:2])
        it[sl], conv[sl] = (np.asarray(o).reshape(run.size, repeats) for o in out[2:])
        row += run.size
    return BICCurve(ks, b.mean(axis=1), b.std(axis=1), b, lb, it, conv)


# choose_k: the K just before the BIC gradient flattens. Let g = np.gradient(bic_mean, ks) (the curve
# plotted in the paper's Fig. 1). The gradient is "flat from K_i on" when every g(K_j), j >= i, stays
# within CHOOSE_K_THRESHOLD * (max g - min g) of g(K_i). With K_f the smallest such K, the chosen K is
# the one before it (the paper: "a considerable change in the gradient's slope at K = 6, which then
# converges for K >= 7" -> 6).
CHOOSE_K_THRESHOLD = 0.1


def choose_k(curve, threshold: float = CHOOSE_K_THRESHOLD) -> int:
    """Elbow choice of K from a BIC curve (a BICCurve, or anything with ks and bic_mean; or a mapping)."""
    if isinstance(curve, dict):
        ks, y = curve["ks"], curve["bic_mean"]
    else:
        ks, y = curve.ks, curve.bic_mean
    ks = np.asarray(ks, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if ks.size < 3:
        raise ValueError("choose_k needs a BIC curve over at least 3 values of K")
    g = np.gradient(y, ks)
    span = float(np.max(g) - np.min(g))
    if span == 0.0:
        return int(ks[0])
    band = threshold * span
    for i in range(ks.size):
        if np.all(np.abs(g[i:] - g[i]) <= band):
            return int(ks[max(i - 1, 0)])
    return int(ks[-1])  # pragma: no cover (the last point is always flat)
