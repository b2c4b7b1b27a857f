"""Starting parameters for EM: k-means (k-means++ seeding, then Lloyd's iterations) or random
responsibilities, each turned into parameters by one M-step (scikit-learn's ``init_params``)."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

from xsift.kernels.gmm.em import _m_step
from xsift.kernels.gmm.estep import _moment_stats
from xsift.kernels.gmm.layout import DEFAULT_CHUNK_SIZE
from xsift.kernels.gmm.types import SuffStats


def _nearest_centre(X, centres, active):
    """X (n, d), centres (K, d), active (K,) -> (n,) index of the nearest active centre.

    argmin_k |x - c_k|^2 = argmin_k (|c_k|^2 - 2 x.c_k): the row's own |x|^2 is the same for every k
    and is left out (on XLA's CPU backend its reduction over d costs more than the product itself);
    inactive centres get +inf. Ties go to the first centre, as argmin.
    """
    cn = jnp.where(active, jnp.sum(centres * centres, axis=1), jnp.inf)
    return jnp.argmin(X @ (-2.0 * centres.T) + cn[None, :], axis=1)


def _sample_weighted(key, weights, m):
    """m row indices drawn with probability proportional to weights (n,) >= 0, by inverse CDF as
    scikit-learn: searchsorted(cumsum(w), u * sum(w)) (m uniforms, not one Gumbel per row)."""
    cs = jnp.cumsum(weights)
    u = jax.random.uniform(key, (m,), weights.dtype) * cs[-1]
    return jnp.minimum(jnp.searchsorted(cs, u, side="right"), weights.shape[0] - 1)


def _kmeans_plusplus(key, X, mask, active):
    """Greedy k-means++ seeding (as scikit-learn: 2 + int(log K) local trials per centre, K the number
    of active components).

    X (n, d) all rows, mask (n,) valid rows, active (K,) -> centres (K, d).
    Inactive centres are filled but never used. A fit padded to more components (bic_sweep) draws the
    candidates of the padded count (a static shape) and scores only its own first 2 + int(log K) of
    them; JAX's counter-based random bits make those the very candidates the unpadded fit draws.
    """
    n, d = X.shape
    K = active.shape[0]
    n_trials = 2 + int(math.log(K))
    trials_of = jnp.asarray([2 + int(math.log(k)) for k in range(1, K + 1)], jnp.int32)
    own_trials = jnp.arange(n_trials) < trials_of[jnp.maximum(jnp.sum(active), 1) - 1]
    key, k0 = jax.random.split(key)
    uniform = mask.astype(X.dtype)
    first = _sample_weighted(k0, uniform, 1)[0]
    centres = jnp.zeros((K, d), X.dtype).at[0].set(X[first])
    x2 = jnp.sum(X * X, axis=1)
    closest = jnp.where(mask, jnp.sum((X - X[first]) ** 2, axis=1), 0.0)

    def step(i, carry):
        centres, closest, key = carry
        key, kc = jax.random.split(key)
        # all-zero potential (duplicates only): fall back to uniform over valid rows
        w = jnp.where(jnp.sum(closest) > 0, closest, uniform)
        cand = _sample_weighted(kc, w, n_trials)
        cx = X[cand]                                                          # (trials, d)
        cd = jnp.maximum(x2[:, None] - 2.0 * X @ cx.T + jnp.sum(cx * cx, axis=1)[None, :], 0.0)  # (n, trials)
        new_closest = jnp.minimum(closest[:, None], cd)
        pot = jnp.sum(jnp.where(mask[:, None], new_closest, 0.0), axis=0)
        best = jnp.argmin(jnp.where(own_trials, pot, jnp.inf))
        use = active[i]
        centres = jnp.where(use, centres.at[i].set(X[cand[best]]), centres)
        closest = jnp.where(use, jnp.where(mask, new_closest[:, best], 0.0), closest)
        return centres, closest, key

    centres, _, _ = lax.fori_loop(1, K, step, (centres, closest, key))
    return centres


def _lloyd(centres, Xc, maskc, active, max_iter, tol_abs):
    """Lloyd's iterations over chunks from ``centres`` until the summed squared centre shift is
    <= tol_abs or max_iter passes -> (centres (K, d), passes). Empty clusters keep their centre."""
    K, d = centres.shape

    def sums(centres):
        def body(acc, chunk):
            x, m = chunk
            lab = jnp.where(m, _nearest_centre(x, centres, active), K)         # padding -> bin K
            xa = jnp.concatenate([x, jnp.ones((x.shape[0], 1), x.dtype)], axis=1)
            return acc + jax.ops.segment_sum(xa, lab, K + 1)[:K], None
        acc, _ = lax.scan(body, jnp.zeros((K, d + 1), centres.dtype), (Xc, maskc))
        return acc[:, :d], acc[:, d]

    def cond(carry):
        _, shift, it = carry
        return (it < max_iter) & (shift > tol_abs)

    def body(carry):
        centres, _, it = carry
        s, cnt = sums(centres)
        new = jnp.where((cnt > 0)[:, None], s / jnp.maximum(cnt, 1.0)[:, None], centres)
        new = jnp.where(active[:, None], new, centres)
        shift = jnp.sum((new - centres) ** 2)
        return new, shift, it + 1

    centres, _, it = lax.while_loop(cond, body, (centres, jnp.asarray(jnp.inf, centres.dtype), 0))
    return centres, it


# k-means on more than twice this many rows runs on a random sample of this many rows (k-means++
# seeding and Lloyd's to convergence); the rows then take their nearest centre. 0: always all rows.
KMEANS_SAMPLE = 16384


def _kmeans_centres(key, Xc, maskc, active, max_iter=300, tol=1e-4):
    """k-means++ seeding + Lloyd's algorithm -> centres (K, d) (scikit-learn's stopping rule:
    summed squared centre shift <= tol * mean feature variance, or max_iter passes), on a sample of
    ``KMEANS_SAMPLE`` rows when there are more than twice as many."""
    nc, c, d = Xc.shape
    X = Xc.reshape(nc * c, d)
    mask = maskc.reshape(nc * c)
    nvalid = jnp.sum(mask)
    mean = jnp.sum(jnp.where(mask[:, None], X, 0.0), axis=0) / nvalid
    var = jnp.sum(jnp.where(mask[:, None], (X - mean) ** 2, 0.0), axis=0) / nvalid
    tol_abs = tol * jnp.mean(var)
    S = KMEANS_SAMPLE
    if S and nc * c > 2 * S:
        k_sample, key = jax.random.split(key)
        Xs = X[_sample_weighted(k_sample, mask.astype(X.dtype), S)]
        centres = _kmeans_plusplus(key, Xs, jnp.ones((S,), bool), active)
        sc = DEFAULT_CHUNK_SIZE if S % DEFAULT_CHUNK_SIZE == 0 else S
        centres, _ = _lloyd(centres, Xs.reshape(S // sc, sc, d), jnp.ones((S // sc, sc), bool),
                            active, max_iter, tol_abs)
        return centres
    centres = _kmeans_plusplus(key, X, mask, active)
    centres, _ = _lloyd(centres, Xc, maskc, active, max_iter, tol_abs)
    return centres


def _init_from_resp_fn(resp_fn, Xc, maskc, active, reg_covar):
    """Sum moment statistics of responsibilities resp_fn(chunk_index, x) over chunks -> M-step."""
    K = active.shape[0]
    nc, c, d = Xc.shape
    dtype = Xc.dtype
    zero = (jnp.zeros((K,), dtype), jnp.zeros((K, d), dtype), jnp.zeros((K, d, d), dtype))

    def body(acc, chunk):
        i, x, m = chunk
        r = resp_fn(i, x)
        nk, sx, sxx = _moment_stats(r, x, m)
        return (acc[0] + nk, acc[1] + sx, acc[2] + sxx), None

    (nk, sx, sxx), _ = lax.scan(body, zero, (jnp.arange(nc), Xc, maskc))
    stats = SuffStats(nk, sx, sxx, jnp.zeros((), dtype), jnp.sum(maskc).astype(dtype))
    return _m_step(stats, reg_covar, active)


def _init_params(kind, key, Xc, maskc, active, reg_covar):
    K = active.shape[0]
    dtype = Xc.dtype
    if kind == "kmeans":
        centres = _kmeans_centres(key, Xc, maskc, active)
        return _init_from_resp_fn(lambda i, x: jax.nn.one_hot(_nearest_centre(x, centres, active), K, dtype=dtype),
                                  Xc, maskc, active, reg_covar)
    if kind == "random":
        def resp_fn(i, x):
            u = jax.random.uniform(jax.random.fold_in(key, i), (x.shape[0], K), dtype)
            u = jnp.where(active[None, :], u, 0.0)
            return u / jnp.sum(u, axis=1, keepdims=True)
        return _init_from_resp_fn(resp_fn, Xc, maskc, active, reg_covar)
    raise ValueError(f"unknown init {kind!r}")
