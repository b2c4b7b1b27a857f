"""Full-covariance Gaussian mixture fitted by EM, in JAX, numerically equal to scikit-learn.

The maths is scikit-learn's ``GaussianMixture(covariance_type="full")``
(``sklearn/mixture/_gaussian_mixture.py`` and ``_base.py``), reshaped so that one
EM iteration is a few large matrix products over fixed-size row chunks:

E-step (per chunk ``X: (c, d)``)
    all components' whitening in ONE product ``X @ W`` with ``W: (d, K*d)`` the
    precision Cholesky factors side by side; ``log N(x | mu_k, Sigma_k) =
    -1/2 (d log 2pi + |x P_k - mu_k P_k|^2) + log det P_k``; responsibilities by
    log-sum-exp.
Statistics (per chunk)
    ``Xa = [X, 1]: (c, d+1)``; ONE product gives, for every component, ``sum r``,
    ``sum r x`` and ``sum r x x^T`` at once (:class:`SuffStats`), plus
    ``sum log p(x)`` over valid rows: for K >= 8 ``r^T @ F`` with ``F: (c, (d+1)(d+2)/2)``
    the products ``a_i a_j`` (i <= j) of each row, which do not depend on K (work
    ~ K (d+1)(d+2)/2 per row); for fewer components ``(r (x) Xa)^T @ Xa`` (work
    ~ K (d+1)^2 per row, but a better-shaped product on CPU). Statistics of
    chunks add up, so the same jitted :func:`sufficient_statistics` serves an
    in-memory scan over chunks and a Dask map over partitions.
Layout
    From ``_COLS_MIN_K`` (8) components on, EM's data pass runs on column-major chunks
    ``Xt: (d, c)`` (:func:`_em_layout`; the k-means initialisation and applying a fitted
    mixture stay row-major): the whitening is ``(K*d, d) @ Xt``, and the per-component sums of
    squares and the log-sum-exp then run along the major axis, where XLA's CPU reductions over
    a short minor axis (d = 12, K) were the slow part; the statistics are the same sums.
M-step (:func:`m_step`, from summed statistics)
    ``nk = sum r + 10 eps`` (as scikit-learn), ``mu = sum r x / nk``,
    ``Sigma = sum r (x - mu)(x - mu)^T / nk + reg_covar I`` (expanded from the raw
    moments), ``w = nk / sum nk``, ``P = chol(Sigma)^{-T}`` (upper triangular, as
    scikit-learn's ``precisions_cholesky_``).

Iteration order and lower bound (identical to scikit-learn's ``fit``)::

    lb = -inf
    for it in 1..max_iter:
        stats = sum over chunks of sufficient_statistics(params, X_chunk, mask_chunk)
        new_lb = stats.loglik / stats.n        # E-step with the params BEFORE the M-step
        params = m_step(stats, reg_covar)
        converged = |new_lb - lb| < tol ; lb = new_lb
        if converged: break

so ``lower_bound`` is the mean log-likelihood of the parameters *entering* the
last iteration, and the returned parameters are those *after* its M-step.
``fit_gmm(X, K, init=params, max_iter=n, tol=0)`` performs exactly ``n``
iterations; an external loop ``params -> sum(stats) -> m_step`` reproduces it to
float rounding **provided it works on the same shifted data**: ``fit_gmm``
subtracts the column means of ``X`` (computed in float64) before fitting and
adds them back to the means at the end. A translation changes nothing in exact
arithmetic; it keeps the float32 raw second moments well-conditioned (a
constant column becomes exactly 0). A float64 external loop on unshifted data
agrees to ~1e-12 relative anyway.

Degenerate cases: an emptied component is *kept*, exactly as scikit-learn does:
``nk = 10 eps`` gives ``mu = 0`` (in the shifted frame, i.e. the data mean) and
``Sigma = reg_covar I``, a finite component with a negligible weight; nothing
turns into NaN. If a covariance is still not positive definite (reg_covar = 0
on collapsed data) :func:`fit_gmm` raises ``ValueError`` like scikit-learn.

k-means initialisation: k-means++ seeding by inverse-CDF sampling (scikit-learn's
``searchsorted(cumsum(potential), u)``), then Lloyd's until scikit-learn's
criterion holds. On more than ``2 * KMEANS_SAMPLE`` rows seeding and Lloyd's run
on a random sample of ``KMEANS_SAMPLE`` rows (drawn with the fit's seed) and every
row then takes its nearest sample centre as its responsibility. scikit-learn
refines the centres over all rows before EM starts; EM does that refinement
anyway: on the benchmark's 100k-row BIC sweep (95 fits, K = 2..20) going on with
Lloyd's over all rows (25-90 passes per fit at K >= 13) left every BIC and the
total EM iteration count unchanged (560 vs 559) and cost ~25 % of the sweep.

Batched fits: ``n_init`` restarts are one ``vmap`` over initialisations;
:func:`bic_sweep` pads K to a common component count with an ``active`` mask
(inactive components have weight exactly 0 and log-weight -inf, so they are
exactly inert) and runs every (K, repeat) fit of a group of ks in one compiled
program (``lax.map`` over fits, ``batch_size`` of them vmapped side by side;
``groups`` programs in all — by default 2 below 200,000 rows, else 4; 1 = everything padded to
max K), all starting from one k-means program at max K (k-means is most of a program's compile time,
and inert components change nothing in it). Each
fit's BIC comes from one more pass of the EM loop's own compiled body after the
last M-step (one data-pass body per program, not two).
"""
from __future__ import annotations

import math
from functools import partial, reduce
from typing import Any, NamedTuple

import numpy as np
import jax
import jax.numpy as jnp
from jax import lax

from xsift.kernels.blocks import map_fixed_blocks, padded_rows

from xsift.kernels import scoped_x64

__all__ = [
    "GMMParams", "GMMResult", "SuffStats", "BICCurve", "EMState", "em_start", "em_update",
    "fit_gmm", "sufficient_statistics", "m_step", "e_step",
    "predict_proba", "predict", "score_samples", "bic", "aic", "n_parameters",
    "bic_sweep", "choose_k", "CHOOSE_K_THRESHOLD", "DEFAULT_CHUNK_SIZE", "em_chunk_rows",
]

# EM's data pass runs on column-major chunks (d, c) from this many components on (see _em_layout), in
# chunks of COLS_CHUNK_ROWS rows. Measured on the 2-core EPYC, one EM pass, float32, best of 6
# interleaved, row-major at its best chunk vs column-major: 100k rows K = 20: 35.7 ms (2,048 rows) /
# 39.4 (8,192) vs 25.2 (2,048) / 34.1 (1,024) / 30.5 (8,192); K = 11: 27.0 (4,096) vs 17.7 (2,048);
# K = 8: 23.2 (2,048) vs 18.2 (2,048); float64 K = 11: 62.3 vs 40.3. At K = 6 (1M rows) row-major
# stays faster (104-112 ms vs 137-169 ms). On the Zen 5 EPYC of 2026-11-30 the crossover moved: row-major
# chunks with pairwise moments beat column-major up to K = 16 (100k rows, float32, best of 15: K = 12
# 8.0 vs 9.2 ms, K = 16 9.3 vs 10.6, K = 20 12.1 vs 10.4), yet with the switch at 18 the float32 BIC
# sweep was no faster (mean of 3 cold runs 11.6 vs 11.4 s), so it stays at 8.
_COLS_MIN_K = 8
COLS_CHUNK_ROWS = 2048
# rows per chunk when a fitted mixture is applied to a table (e_step, predict, score_samples) and in
# k-means on a sample
DEFAULT_CHUNK_SIZE = 4096
# EM's default chunk: as many rows as make its largest work arrays (rows x K x (d+1) values, the
# whitened rows and the responsibility-weighted rows) about this many bytes. Measured on a 2-core
# AMD EPYC (1 MiB L2 per core, 32 MiB L3), one EM pass, best of 8 interleaved: 1M rows, K = 6,
# float32: 4,096 rows 109-124 ms, 16,384 rows 89-94 ms, 65,536 rows 167 ms; float64: 4,096 rows
# 258-294 ms, 8,192 rows 252 ms, 32,768 rows 449 ms; 100k rows, K = 20, float32: 4,000-5,000 rows
# 27-29 ms, 12,500 rows 39 ms -- the optimum sits at ~5 MiB in all three.
EM_CHUNK_BYTES = 5 << 20
# bic_sweep's chunks: at most DEFAULT_CHUNK_SIZE rows, and at most this many elements in one chunk's
# (rows x components x (d+1)) work array across a batch of fits
_SWEEP_CHUNK_ELEMENTS = 1 << 22
_LOG_2PI = math.log(2.0 * math.pi)


class GMMParams(NamedTuple):
    """weights (K,), means (K, d), covariances (K, d, d), precisions_cholesky (K, d, d)."""
    weights: Any
    means: Any
    covariances: Any
    precisions_cholesky: Any


class GMMResult(NamedTuple):
    """A fitted mixture: the four :class:`GMMParams` arrays plus the EM outcome.

    lower_bound: mean log-likelihood per sample computed in the last E-step (as
    scikit-learn's ``lower_bound_``); n_iter: EM iterations run; converged: the
    change of the lower bound fell below ``tol``.
    """
    weights: Any
    means: Any
    covariances: Any
    precisions_cholesky: Any
    lower_bound: Any
    n_iter: Any
    converged: Any


class SuffStats(NamedTuple):
    """Statistics that add up across chunks.

    nk (K,) = sum r; sx (K, d) = sum r x; sxx (K, d, d) = sum r x x^T;
    loglik () = sum of log p(x) over valid rows; n () = number of valid rows.
    """
    nk: Any
    sx: Any
    sxx: Any
    loglik: Any
    n: Any


class BICCurve(NamedTuple):
    """Result of :func:`bic_sweep`. ks (m,), bic_mean (m,), bic_std (m,) (population std
    over repeats), bic (m, repeats), lower_bound (m, repeats), n_iter (m, repeats),
    converged (m, repeats)."""
    ks: np.ndarray
    bic_mean: np.ndarray
    bic_std: np.ndarray
    bic: np.ndarray
    lower_bound: np.ndarray
    n_iter: np.ndarray
    converged: np.ndarray


# ----------------------------------------------------------------------------
# small pure pieces (traceable; shapes in docstrings)
# ----------------------------------------------------------------------------

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
        # the K columns (one fused loop) rather than XLA's CPU reductions over a short minor axis --
        # one EM pass at 1M rows, K = 6: float32 40.5 -> 38 ms, but float64 100 -> 111 ms, so float64
        # keeps the reductions (interleaved in one process, best of 7)
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


# moments by pair products from this many components on (measured crossover on a 2-core CPU, K = 4..20)
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
        # Xa^T RX -> (d+1, K(d+1)), not RX^T Xa: the same contraction with the narrow operand first
        # runs ~20 % faster on XLA's CPU dot (one EM pass at 1M rows, K = 6: float32 40 -> 32 ms,
        # float64 100 -> 92 ms, interleaved, best of 10); the pairwise path above measured equal
        # either way round
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


def _precision_cholesky(cov):
    """cov (K, d, d) -> (K, d, d) upper-triangular P with P P^T = Sigma^{-1} (= chol(Sigma)^{-T})."""
    L = jnp.linalg.cholesky(cov)
    eye = jnp.broadcast_to(jnp.eye(cov.shape[-1], dtype=cov.dtype), cov.shape)
    Linv = lax.linalg.triangular_solve(L, eye, left_side=True, lower=True)
    return jnp.swapaxes(Linv, -1, -2)


def _m_step(stats, reg_covar, active):
    nk_raw = stats.nk
    dtype = nk_raw.dtype
    d = stats.sx.shape[1]
    nk = nk_raw + 10.0 * jnp.finfo(dtype).eps
    means = stats.sx / nk[:, None]
    # sum r (x - mu)(x - mu)^T, expanded from the raw moments
    centred = (stats.sxx
               - means[:, :, None] * stats.sx[:, None, :]
               - stats.sx[:, :, None] * means[:, None, :]
               + nk_raw[:, None, None] * means[:, :, None] * means[:, None, :])
    cov = centred / nk[:, None, None]
    cov = 0.5 * (cov + jnp.swapaxes(cov, 1, 2))
    cov = cov + jnp.asarray(reg_covar, dtype) * jnp.eye(d, dtype=dtype)
    nk_active = jnp.where(active, nk, 0.0)
    weights = nk_active / jnp.sum(nk_active)
    return GMMParams(weights, means, cov, _precision_cholesky(cov))


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


class EMState(NamedTuple):
    """Where an EM fit stands between iterations (what every EM driver carries).

    params: :class:`GMMParams` the next E-step evaluates; lower_bound: scalar mean log-likelihood
    per row of the parameters that entered the last iteration (-inf before the first, as
    scikit-learn's ``lower_bound_``); n_iter: int32 scalar, iterations run; converged: bool scalar,
    the last change of the lower bound was below ``tol``.
    """
    params: GMMParams
    lower_bound: Any
    n_iter: Any
    converged: Any


@scoped_x64
def em_start(params) -> EMState:
    """The EM state before the first iteration: ``params`` (a :class:`GMMParams`; the dtype of
    ``means`` is the compute dtype), lower bound -inf, 0 iterations, not converged."""
    means = jnp.asarray(params.means)
    dtype = means.dtype
    p = GMMParams(jnp.asarray(params.weights, dtype), means, jnp.asarray(params.covariances, dtype),
                  jnp.asarray(params.precisions_cholesky, dtype))
    return EMState(p, jnp.asarray(-jnp.inf, dtype), jnp.asarray(0, jnp.int32), jnp.asarray(False))


@scoped_x64
@jax.jit
def em_update(state: EMState, stats: SuffStats, *, tol, reg_covar, active=None) -> EMState:
    """One EM iteration from the :class:`SuffStats` of ``state.params`` summed over ALL rows.

    scikit-learn's order: the new lower bound ``stats.loglik / stats.n`` is that of the parameters
    entering the iteration; the new parameters are :func:`m_step` of ``stats`` with ``reg_covar``;
    ``converged = |new lower bound - state.lower_bound| < tol``; ``n_iter + 1``. active (K,) bool:
    components taking part (padded ones get weight 0); default all. Jitted and traceable: the
    in-memory loop (:func:`fit_gmm`, :func:`bic_sweep`) and the Dask driver both call it, so their
    iterations cannot differ.
    """
    if active is None:
        active = jnp.ones(state.params.means.shape[:1], bool)
    new_lb = stats.loglik / stats.n
    new_params = _m_step(stats, reg_covar, active)
    converged = jnp.abs(new_lb - state.lower_bound) < tol
    return EMState(new_params, new_lb, state.n_iter + 1, converged)


def _em(params, Xc, maskc, active, max_iter, tol, reg_covar, final_stats=False, cols=False):
    """EM loop (a lax.while_loop of :func:`em_update`) from ``params``; scikit-learn's iteration
    order. cols: the chunks are column-major (n_chunks, d, c) (see :func:`_chunked`).

    final_stats=True: the loop makes one more data pass after the last M-step (the same compiled pass,
    its update discarded) and also returns the SuffStats of the final parameters -> (GMMResult, SuffStats).
    """
    dtype = params.means.dtype
    K, d = params.means.shape

    def cond(carry):
        state, done, _ = carry
        if final_stats:
            return jnp.logical_not(done)
        return (state.n_iter < max_iter) & jnp.logical_not(state.converged)

    def body(carry):
        state, _, _ = carry
        p = state.params
        stats = _data_stats(p.weights, p.means, p.precisions_cholesky, Xc, maskc, active, cols)
        new_state = em_update(state, stats, tol=tol, reg_covar=reg_covar, active=active)
        if not final_stats:
            return new_state, jnp.asarray(False), stats
        # the previous pass decided to stop: this pass only measured the final parameters
        finishing = (state.n_iter >= max_iter) | state.converged
        kept = jax.tree_util.tree_map(lambda o, n: jnp.where(finishing, o, n), state, new_state)
        return kept, finishing, stats

    zero = SuffStats(jnp.zeros((K,), dtype), jnp.zeros((K, d), dtype), jnp.zeros((K, d, d), dtype),
                     jnp.zeros((), dtype), jnp.zeros((), dtype))
    state, _, stats = lax.while_loop(cond, body, (em_start(params), jnp.asarray(False), zero))
    p = state.params
    res = GMMResult(p.weights, p.means, p.covariances, p.precisions_cholesky, state.lower_bound,
                    state.n_iter, state.converged)
    return (res, stats) if final_stats else res


# ----------------------------------------------------------------------------
# initialisation: k-means (k-means++ seeding + Lloyd), random responsibilities
# ----------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------
# compiled programs (one compilation per shape / static choice)
# ----------------------------------------------------------------------------

def _best_of(results):
    """results: GMMResult batched over restarts -> the one with the best lower bound."""
    lb = jnp.where(jnp.isnan(results.lower_bound), -jnp.inf, results.lower_bound)
    best = jnp.argmax(lb)
    return jax.tree_util.tree_map(lambda a: a[best], results)


@partial(jax.jit, static_argnames=("init_kind",))
def _fit_program(keys, Xc, maskc, active, max_iter, tol, reg_covar, em_Xc, em_maskc, *, init_kind):
    """keys (n_init, key) -> best GMMResult over the vmapped restarts. Xc, maskc: row-major chunks for
    the initialisation; em_Xc, em_maskc: EM's chunks, in the layout of :func:`_em_layout` (the same
    arrays below _COLS_MIN_K components)."""
    def one(key):
        p0 = _init_params(init_kind, key, Xc, maskc, active, reg_covar)
        return _em(p0, em_Xc, em_maskc, active, max_iter, tol, reg_covar, cols=_em_layout(active.shape[0]))
    return _best_of(jax.vmap(one)(keys))


@jax.jit
def _fit_from_params_program(params, Xc, maskc, active, max_iter, tol, reg_covar):
    """EM from given parameters on chunks in the layout of :func:`_em_layout`."""
    return _em(params, Xc, maskc, active, max_iter, tol, reg_covar, cols=_em_layout(active.shape[0]))


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


@jax.jit
def _e_step_program(weights, means, prec_chol, Xc):
    active = jnp.ones(weights.shape, bool)
    return lax.map(lambda x: _e_step_chunk(weights, means, prec_chol, x.astype(means.dtype), active), Xc)


# ----------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------

@jax.jit
def _sufficient_statistics_program(weights, means, prec, X_chunk, mask_chunk):
    active = jnp.ones(weights.shape, bool)
    return _chunk_stats(weights, means, prec, X_chunk, mask_chunk, active)


@scoped_x64
def sufficient_statistics(params, X_chunk, mask_chunk) -> SuffStats:
    """E-step of one chunk reduced to statistics that add up across chunks (jitted).

    params: any object with ``weights (K,)``, ``means (K, d)``, ``precisions_cholesky
    (K, d, d)`` (the dtype of ``means`` is the compute dtype); X_chunk (n, d);
    mask_chunk (n,) bool, False for padded rows (they contribute nothing).
    Returns :class:`SuffStats`; sum them over chunks and call :func:`m_step`.
    Use a fixed chunk size (pad the last chunk, mask False) to compile once.
    """
    means = jnp.asarray(params.means)
    dtype = means.dtype
    return _sufficient_statistics_program(jnp.asarray(params.weights, dtype), means,
                                          jnp.asarray(params.precisions_cholesky, dtype),
                                          jnp.asarray(X_chunk, dtype), jnp.asarray(mask_chunk, bool))


@jax.jit
def _m_step_program(stats, reg_covar):
    return _m_step(stats, reg_covar, jnp.ones(stats.nk.shape, bool))


@scoped_x64
def m_step(stats: SuffStats, reg_covar) -> GMMParams:
    """M-step from summed :class:`SuffStats` -> :class:`GMMParams` (scikit-learn's formulas, jitted)."""
    stats = SuffStats(*(jnp.asarray(s) for s in stats))
    return _m_step_program(stats, jnp.asarray(reg_covar, stats.nk.dtype))


# chunks per compiled E-step call when a table is applied to a fitted mixture (see e_step)
_E_STEP_BLOCK_CHUNKS = 8


def _e_step_layout(n, chunk_size):
    """(rows per chunk, chunks per call) for applying a mixture to n rows: a fixed layout for tables
    of at least a full call, else powers of two, so tables of any length share a few compilations."""
    c = int(chunk_size or DEFAULT_CHUNK_SIZE)
    if c < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if n > c:                                   # whole chunks: 8 per call, or a power of two fewer
        return c, padded_rows(-(-n // c), _E_STEP_BLOCK_CHUNKS)
    return padded_rows(n, c, 64), 1


def _applied(params, X):
    """(weights, means, precision factors) as device arrays in the means' dtype, and X as a host
    array of that dtype: what applying a fitted mixture to a table starts from."""
    means = jnp.asarray(params.means)
    dtype = means.dtype
    return (jnp.asarray(params.weights, dtype), means, jnp.asarray(params.precisions_cholesky, dtype),
            np.asarray(X, dtype))


@scoped_x64
def e_step(params, X, *, chunk_size=None):
    """(log_resp (n, K), log p(x) (n,)) as host NumPy arrays for X (n, d), computed over row chunks.

    The table goes through one compiled program in calls of a fixed shape (``chunks x rows``, the
    last call padded; see :func:`_e_step_layout`), dispatched back to back and gathered once, so
    tables of any length (Dask shards, successive catalogues) reuse the same compilation.
    """
    weights, means, prec, X = _applied(params, X)
    n, d = X.shape
    K = means.shape[0]
    c, b = _e_step_layout(n, chunk_size)
    host = map_fixed_blocks(lambda xb: _e_step_program(weights, means, prec, xb.reshape(b, c, d)), X, b * c)
    log_resp = np.concatenate([lr.reshape(-1, K) for lr, _ in host])[:n]
    log_norm = np.concatenate([ln.reshape(-1) for _, ln in host])[:n]
    return log_resp, log_norm


@scoped_x64
def predict_proba(params, X, *, chunk_size=None):
    """Responsibilities (n, K) of X (n, d) under params (exp of the log-sum-exp normalised log-probabilities)."""
    return np.exp(e_step(params, X, chunk_size=chunk_size)[0])


@scoped_x64
def predict(params, X, *, chunk_size=None, block_rows=None):
    """Component labels (n,) int64: argmax of the responsibilities.

    Same fixed-shape calls as :func:`e_step`, but the argmax runs inside the compiled program, so
    only the labels (not the (n, K) responsibilities) come back to host memory. ``block_rows``:
    rows per call whatever n (the last call padded), so that tables of every length, small ones
    included, share one compilation (what a stream of Dask shards wants); default: e_step's layout.
    """
    weights, means, prec, X = _applied(params, X)
    n = X.shape[0]
    if block_rows is None:
        c, b = _e_step_layout(n, chunk_size)
        block_rows = b * c
    host = map_fixed_blocks(lambda xb: _labels_program(weights, means, prec, xb), X, block_rows)
    return np.concatenate(host)[:n].astype(np.int64)


@jax.jit
def _labels_program(weights, means, prec_chol, X):
    active = jnp.ones(weights.shape, bool)
    log_resp, _ = _e_step_chunk(weights, means, prec_chol, X.astype(means.dtype), active)
    return jnp.argmax(log_resp, axis=1).astype(jnp.int32)


@scoped_x64
def score_samples(params, X, *, chunk_size=None):
    """log p(x) (n,) under the mixture."""
    return e_step(params, X, chunk_size=chunk_size)[1]


def n_parameters(n_components: int, n_features: int) -> int:
    """Free parameters of a full-covariance mixture: K d(d+1)/2 + K d + K - 1."""
    K, d = n_components, n_features
    return int(K * d * (d + 1) // 2 + K * d + K - 1)


def _total_loglik(params, X, chunk_size=None):
    ll = score_samples(params, X, chunk_size=chunk_size)
    return float(np.sum(np.asarray(ll, dtype=np.float64))), int(ll.shape[0])


@scoped_x64
def bic(params, X, *, chunk_size=None) -> float:
    """Bayesian information criterion -2 log L + p log n (scikit-learn's ``bic``)."""
    K, d = np.shape(params.means)
    ll, n = _total_loglik(params, X, chunk_size)
    return -2.0 * ll + n_parameters(K, d) * math.log(n)


@scoped_x64
def aic(params, X, *, chunk_size=None) -> float:
    """Akaike information criterion -2 log L + 2 p (scikit-learn's ``aic``)."""
    K, d = np.shape(params.means)
    ll, _ = _total_loglik(params, X, chunk_size)
    return -2.0 * ll + 2 * n_parameters(K, d)


def _resolve_dtype(X, dtype):
    if dtype is None:
        xd = getattr(X, "dtype", None)
        return jnp.float32 if xd == np.float32 else jnp.float64
    dt = jnp.dtype(dtype)
    if dt not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    return dt.type


def _check_X(X, n_components=None):
    """X as a host NumPy array, checked (2-d, numeric, finite, enough rows). Host-side: the checks and
    the centring below are table preparation, not kernels, and as eager device ops each would compile
    a small program of its own."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-d array (n_samples, n_features), got shape {X.shape}")
    n, d = X.shape
    if d == 0:
        raise ValueError("X has 0 features (shape (n, 0)); a Gaussian mixture needs at least one feature column")
    if n_components is not None:
        if int(n_components) < 1:
            raise ValueError(f"n_components must be >= 1, got {n_components}")
        if n < n_components:
            raise ValueError(f"X has {n} rows but n_components = {n_components}; need n_samples >= n_components")
    if not np.issubdtype(X.dtype, np.number):
        raise ValueError(f"X must be numeric, got dtype {X.dtype}")
    finite = np.isfinite(X)
    if not finite.all():
        bad_rows = int(np.sum(~finite.all(axis=1)))
        bad_cols = [int(j) for j in np.flatnonzero(~finite.all(axis=0))]
        raise ValueError(f"X contains non-finite values (NaN or inf) in {bad_rows} rows, columns {bad_cols}; "
                         "drop or impute incomplete rows before fitting")
    return X


def _chunked(X, dtype, chunk_size, shift=None, n_components=1, cols=False, runs=1):
    """X (n, d) -> Xc (n_chunks, c, d) of dtype, maskc (n_chunks, c) as device arrays, n. Rows padded
    with zeros; laid out on the host, moved to the device once. chunk_size None: the EM default for
    n_components components (:func:`_chunk_rows`). cols=True: column-major chunks (n_chunks, d, c)
    (chunk_size None: COLS_CHUNK_ROWS / runs rows, runs = fits side by side, at least 256)."""
    X = np.asarray(X)
    n, d = X.shape
    if cols and chunk_size is None:
        c = _balanced_rows(n, max(256, COLS_CHUNK_ROWS // max(1, int(runs))))
    else:
        c = _chunk_rows(n, chunk_size, n_components, d, np.dtype(dtype).itemsize)
    nc = -(-n // c)
    Xp = np.zeros((nc * c, d), dtype=np.dtype(dtype))
    Xp[:n] = (X.astype(np.float64) - shift) if shift is not None else X
    mask = np.arange(nc * c) < n
    Xp = Xp.reshape(nc, c, d)
    if cols:
        Xp = np.ascontiguousarray(Xp.transpose(0, 2, 1))
    return jnp.asarray(Xp), jnp.asarray(mask.reshape(nc, c)), n


def _em_layout(n_components) -> bool:
    """True where EM's data pass runs on column-major chunks (:func:`_log_gaussian_prob_cols`): from
    ``_COLS_MIN_K`` components on, where it measured faster."""
    return int(n_components) >= _COLS_MIN_K


def em_chunk_rows(n_components, n_features, itemsize) -> int:
    """EM's default rows per chunk: EM_CHUNK_BYTES over the bytes of one row of the chunk's largest work
    arrays (K (d+1) values), within [256, 65536]."""
    per_row = max(1, int(n_components)) * (int(n_features) + 1) * int(itemsize)
    return int(min(1 << 16, max(256, EM_CHUNK_BYTES // per_row)))


def _balanced_rows(n, bound):
    """Rows per chunk for the fewest chunks of at most ``bound`` rows, balanced (a multiple of 8) so the
    padded tail is small."""
    nc = -(-n // bound)
    return max(8, -(-(-(-n // nc)) // 8) * 8)


def _chunk_rows(n, chunk_size, n_components=1, n_features=1, itemsize=8):
    """Rows per chunk: chunk_size as given, or by default balanced chunks of at most
    :func:`em_chunk_rows` rows."""
    if chunk_size is None:
        return _balanced_rows(n, em_chunk_rows(n_components, n_features, itemsize))
    chunk_size = int(chunk_size)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if n <= chunk_size:  # one chunk, rounded up to a multiple of 8 rows
        return max(8, -(-n // 8) * 8)
    return chunk_size


def _as_params(init, K, d, dtype, shift):
    """A GMMParams-like start (weights, means and precisions_cholesky or covariances) -> GMMParams in the shifted frame."""
    w = np.asarray(init.weights, np.float64)
    mu = np.asarray(init.means, np.float64)
    if w.shape != (K,) or mu.shape != (K, d):
        raise ValueError(f"init parameters have weights {w.shape}, means {mu.shape}; expected ({K},), ({K}, {d})")
    pc = getattr(init, "precisions_cholesky", None)
    cov = getattr(init, "covariances", None)
    if pc is None and cov is None:
        raise ValueError("init parameters need precisions_cholesky or covariances")
    if pc is None:
        cov = np.asarray(cov, np.float64)
        pc = np.linalg.inv(np.linalg.cholesky(cov)).transpose(0, 2, 1)
    pc = np.asarray(pc, np.float64)
    if cov is None:
        prec = pc @ pc.transpose(0, 2, 1)
        cov = np.linalg.inv(prec)
    cov = np.asarray(cov, np.float64)
    if pc.shape != (K, d, d) or cov.shape != (K, d, d):
        raise ValueError(f"init covariances/precisions_cholesky must have shape ({K}, {d}, {d})")
    mu = mu - np.asarray(shift)
    return GMMParams(*(jnp.asarray(a, dtype) for a in (w, mu, cov, pc)))


def _finish(res, shift, dtype, reg_covar):
    """Shift means back, move to host, and refuse NaN like scikit-learn."""
    res = jax.device_get(res)
    means = (np.asarray(res.means, np.float64) + np.asarray(shift)).astype(dtype)
    out = GMMResult(np.asarray(res.weights), means, np.asarray(res.covariances),
                    np.asarray(res.precisions_cholesky), float(res.lower_bound), int(res.n_iter),
                    bool(res.converged))
    if not all(np.all(np.isfinite(a)) for a in out[:4]):
        extra = " The numerical accuracy can also be improved by passing dtype=float64." if dtype == np.float32 else ""
        raise ValueError("Fitting the mixture model failed because some components have ill-defined empirical "
                         "covariance (for instance caused by singleton or collapsed samples). Try to decrease the "
                         f"number of components, increase reg_covar (now {reg_covar}), or scale the input data." + extra)
    return out


@scoped_x64
def fit_gmm(X, n_components, *, seed, n_init=1, init="kmeans", max_iter=100, tol=1e-3,
            reg_covar=1e-6, dtype=None, chunk_size=None) -> GMMResult:
    """Fit a full-covariance Gaussian mixture to X (n, d) by EM, as scikit-learn does.

    init: "kmeans" (k-means++ seeded Lloyd's -> one-hot responsibilities -> M-step, scikit-learn's
    default), "random" (uniform random responsibilities) or a GMMParams-like object (weights, means and
    precisions_cholesky or covariances) to start from; n_init restarts run as one vmapped program and the
    best lower bound wins (given parameters are a single start). dtype: float64 (reference; default unless X
    is float32) or float32 (speed). Rows are processed in chunks of ``chunk_size`` (default
    :func:`em_chunk_rows`: ~5 MiB of work arrays) padded with a mask, so memory is O(chunk * K * d).
    Returns host NumPy arrays in a :class:`GMMResult`; ``converged`` is False if max_iter was reached.
    """
    K = int(n_components)
    X = _check_X(X, K)
    n, d = X.shape
    dt = _resolve_dtype(X, dtype)
    if max_iter < 0 or tol < 0 or reg_covar < 0:
        raise ValueError("max_iter, tol and reg_covar must be >= 0")
    shift = X.mean(axis=0, dtype=np.float64)
    restarts = max(int(n_init), 1) if isinstance(init, str) else 1
    cols = _em_layout(K)
    # EM's chunks (column-major from _COLS_MIN_K components on), and row-major ones for the k-means or
    # random initialisation; restarts run side by side
    em_data = _chunked(X, dt, chunk_size, shift, K * restarts, cols=cols, runs=restarts)[:2]
    active = jnp.ones((K,), bool)
    args = (jnp.asarray(max_iter, jnp.int32), jnp.asarray(tol, dt), jnp.asarray(reg_covar, dt))
    if isinstance(init, str):
        if init not in ("kmeans", "random"):
            raise ValueError(f"init must be 'kmeans', 'random' or parameters, got {init!r}")
        if int(n_init) < 1:
            raise ValueError(f"n_init must be >= 1, got {n_init}")
        keys = jax.random.split(jax.random.key(int(seed)), int(n_init))
        init_data = _chunked(X, dt, chunk_size, shift, K * restarts)[:2] if cols else em_data
        res = _fit_program(keys, *init_data, active, *args, *em_data, init_kind=init)
    else:
        p0 = _as_params(init, K, d, dt, shift)
        res = _fit_from_params_program(p0, *em_data, active, *args)
    return _finish(res, shift, np.dtype(dt), reg_covar)


@scoped_x64
def bic_sweep(X, ks=range(2, 21), repeats=5, *, seed, max_iter=100, tol=1e-3, reg_covar=1e-6,
              dtype=None, chunk_size=None, groups=None, batch_size=1) -> BICCurve:
    """BIC of k-means-initialised fits for every K in ks, ``repeats`` times each.

    Every fit's k-means start comes from ONE compiled program at max(ks) (inactive components masked
    out: weight 0, log-weight -inf, exactly inert). The ks are then split into ``groups`` contiguous
    runs (default: 2 below 200,000 rows, where each compilation (~1.5 s on a 2-core CPU) weighs as much
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
        # at most DEFAULT_CHUNK_SIZE rows: on the benchmark's 100k-row sweep larger chunks (the EM
        # default, em_chunk_rows of the padded K) measured no faster
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
