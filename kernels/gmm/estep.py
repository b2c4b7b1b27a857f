"""E-step pieces of the Gaussian-mixture kernel: log-probabilities, responsibilities and the
sufficient statistics they reduce to (traceable functions of arrays; shapes in each docstring)."""
from __future__ import annotations

import math
from functools import reduce

import jax.numpy as jnp
import numpy as np
from jax import lax

from xsift.kernels.gmm.layout import _COLS_MIN_K
from xsift.kernels.gmm.types import SuffStats

_LOG_2PI = math.log(2.0 * math.pi)


def _stable_sum(v):
    """Sum of a 1-d array (n,) in two levels (blocks of 256) to limit float32 rounding."""
    n = v.shape[0]
    block = 256
    if n <= block:
        return jnp.sum(v)
    pad = (-n) % block
    v = jnp.pad(v, (0, pad))
    return jnp.sum(jnp.sum(v.reshape(-1, block), axis=1))


def _log_det_cholesky(prec_chol):
    """prec_chol (K, d, d) -> (K,) log det of each factor (= -1/2 log det Sigma)."""
    return jnp.sum(jnp.log(jnp.diagonal(prec_chol, axis1=1, axis2=2)), axis=1)


def _log_gaussian_prob(X, means, prec_chol):
    """X (n, d), means (K, d), prec_chol (K, d, d) -> (n, K) log N(x | mu_k, Sigma_k).

    All K whitenings in one (n, d) @ (d, K*d) product.
    """
    n, d = X.shape
    K = means.shape[0]
    W = jnp.transpose(prec_chol, (1, 0, 2)).reshape(d, K * d)       # W[:, k*d+j] = P_k[:, j]
    shift = jnp.einsum("ki,kij->kj", means, prec_chol).reshape(K * d)  # mu_k P_k, side by side
    Y = X @ W - shift[None, :]
    # the per-component sums of squares as a second product with a (K*d, K) block of ones: XLA's
    # CPU reductions over a minor axis of d = 12 are slow, a small matrix product is not
    blocks = jnp.repeat(jnp.eye(K, dtype=X.dtype), d, axis=0)
    maha = (Y * Y) @ blocks
    return -0.5 * (d * _LOG_2PI + maha) + _log_det_cholesky(prec_chol)[None, :]


def _log_gaussian_prob_cols(Xt, means, prec_chol):
    """Column-major rows Xt (d, c), means (K, d), prec_chol (K, d, d) -> (K, c) log N(x | mu_k, Sigma_k).

    The same whitening as :func:`_log_gaussian_prob` as one ``(K*d, d) @ (d, c)`` product; each
    component's sum of squares then runs along the major axis (d rows of c values added element by
    element), and so does the log-sum-exp over components: no reduction over a short minor axis.
    """
    d, c = Xt.shape
    K = means.shape[0]
    Wt = jnp.swapaxes(prec_chol, 1, 2).reshape(K * d, d)              # Wt[k*d+j, :] = P_k[:, j]
    shift = jnp.einsum("ki,kij->kj", means, prec_chol).reshape(K * d, 1)
    Y = Wt @ Xt - shift
    maha = jnp.sum((Y * Y).reshape(K, d, c), axis=1)
    return -0.5 * (d * _LOG_2PI + maha) + _log_det_cholesky(prec_chol)[:, None]


def _log_weights(weights, active):
    """weights (K,), active (K,) bool -> (K,) log weights, -inf for inactive components."""
    safe = jnp.where(active, weights, 1.0)
    return jnp.where(active, jnp.log(safe), -jnp.inf)


def _e_step_chunk(weights, means, prec_chol, X, active, cols=False):
    """-> log_resp (n, K), log_norm (n,) = log p(x). cols=True: X is column-major (d, n) and
    log_resp comes back as (K, n)."""
    if cols:
        wlp = _log_gaussian_prob_cols(X, means, prec_chol) + _log_weights(weights, active)[:, None]
    else:
        wlp = _log_gaussian_prob(X, means, prec_chol) + _log_weights(weights, active)[None, :]
    if not cols and wlp.shape[1] < _COLS_MIN_K and wlp.dtype == jnp.float32:
        # a few components, row-major, float32: the log-sum-exp as element-wise maxima and sums of
        # the K columns (one fused loop) rather than XLA's CPU reductions over a short minor axis,
        # which is faster in float32; in float64 the reductions are faster, so float64 keeps them
        parts = [wlp[:, k] for k in range(wlp.shape[1])]
        m = reduce(jnp.maximum, parts)
        m = jnp.where(jnp.isfinite(m), m, 0.0)
        total = reduce(jnp.add, [jnp.exp(v - m) for v in parts])
        log_norm = jnp.log(total) + m
        return wlp - log_norm[:, None], log_norm
    ax = 0 if cols else 1
    m = jnp.max(wlp, axis=ax, keepdims=True)
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    log_norm = jnp.log(jnp.sum(jnp.exp(wlp - m), axis=ax)) + jnp.squeeze(m, ax)
    return wlp - jnp.expand_dims(log_norm, ax), log_norm


def _pair_features(Xa, cols=False):
    """Augmented rows Xa = [X, 1] (n, d+1) -> (n, (d+1)(d+2)/2) products a_i a_j (i <= j); cols=True:
    Xa column-major (d+1, n) -> ((d+1)(d+2)/2, n).

    They hold every raw moment the M-step needs (x_i x_j, x_i and 1) and do not depend on the
    parameters, so one (K, n) @ (n, m) product gives all K components' statistics.
    """
    # row by row of the upper triangle, as static slices (no gather): a_i * a[i:]
    if cols:
        return jnp.concatenate([Xa[i:i + 1] * Xa[i:] for i in range(Xa.shape[0])], axis=0)
    return jnp.concatenate([Xa[:, i:i + 1] * Xa[:, i:] for i in range(Xa.shape[1])], axis=1)


def _pair_unpack(M, d):
    """M (K, (d+1)(d+2)/2) summed pair products -> (K, d+1, d+1) symmetric raw-moment matrices."""
    i, j = np.triu_indices(d + 1)
    pos = np.empty((d + 1, d + 1), np.int64)
    pos[i, j] = np.arange(i.size)
    pos[j, i] = np.arange(i.size)
    return M[:, pos]


# moments by pair products from this many components on: their work does not grow with K, so they
# overtake the per-component products once K is this large
_PAIR_MIN_K = 8


def _moment_stats(resp, X, mask, cols=False):
    """resp (n, K), X (n, d), mask (n,) -> (nk (K,), sx (K, d), sxx (K, d, d)) in one product.
    cols=True: resp (K, n) and X (d, n), column-major; that layout serves K >= _COLS_MIN_K only and
    always takes the pairwise-product path."""
    if cols:
        d, n = X.shape
        K = resp.shape[0]
        resp = jnp.where(mask[None, :], resp, 0.0)
        Xa = jnp.concatenate([X, jnp.ones((1, n), X.dtype)], axis=0)      # (d+1, n)
        row_axis = 1
    else:
        n, d = X.shape
        K = resp.shape[1]
        resp = jnp.where(mask[:, None], resp, 0.0)
        Xa = jnp.concatenate([X, jnp.ones((n, 1), X.dtype)], axis=1)      # (n, d+1)
        row_axis = 0
    over_rows = (((row_axis,), (row_axis,)), ((), ()))
    if cols or K >= _PAIR_MIN_K:
        M = _pair_unpack(lax.dot_general(resp, _pair_features(Xa, cols), over_rows), d)
    else:
        RX = (resp[:, :, None] * Xa[:, None, :]).reshape(n, K * (d + 1))
        # Xa^T RX -> (d+1, K(d+1)), not RX^T Xa: the same contraction with the narrow operand first,
        # which XLA's CPU dot runs faster
        M = lax.dot_general(Xa, RX, over_rows).reshape(d + 1, K, d + 1).transpose(1, 0, 2)
    return M[:, d, d], M[:, :d, d], M[:, :d, :d]


def _chunk_stats(weights, means, prec_chol, X, mask, active, cols=False):
    """One chunk's E-step reduced to :class:`SuffStats`. X (c, d), or column-major (d, c) if cols."""
    X = X.astype(means.dtype)
    log_resp, log_norm = _e_step_chunk(weights, means, prec_chol, X, active, cols)
    nk, sx, sxx = _moment_stats(jnp.exp(log_resp), X, mask, cols)
    loglik = _stable_sum(jnp.where(mask, log_norm, 0.0))
    return SuffStats(nk, sx, sxx, loglik, jnp.sum(mask).astype(X.dtype))


def _add_stats(a, b):
    return SuffStats(*(x + y for x, y in zip(a, b)))


def _data_stats(weights, means, prec_chol, Xc, maskc, active, cols=False):
    """Xc (n_chunks, c, d) (or (n_chunks, d, c) if cols), maskc (n_chunks, c) -> summed SuffStats via a
    scan over chunks."""
    K, d = means.shape
    dtype = means.dtype
    zero = SuffStats(jnp.zeros((K,), dtype), jnp.zeros((K, d), dtype),
                     jnp.zeros((K, d, d), dtype), jnp.zeros((), dtype), jnp.zeros((), dtype))

    def body(acc, chunk):
        x, m = chunk
        return _add_stats(acc, _chunk_stats(weights, means, prec_chol, x, m, active, cols)), None

    total, _ = lax.scan(body, zero, (Xc, maskc))
    return total
