"""Extreme deconvolution (XD): a full-covariance Gaussian mixture fitted to noisy, incomplete rows.

Bovy, Hogg & Roweis 2011, *Ann. Appl. Stat.* 5, 1657 ("Extreme deconvolution: inferring complete
distribution functions from noisy, heterogeneous and incomplete observations"), Sect. 2. Row i is an
observation ``w_i = R_i v_i + noise`` of an underlying vector ``v_i`` drawn from the mixture
``sum_k alpha_k N(m_k, V_k)``, with noise covariance ``S_i`` (here diagonal: ``noise_var (n, d)``) and
``R_i`` the projection onto the row's observed features (``observed (n, d)`` bool). Then
``w_i ~ sum_k alpha_k N(R_i m_k, T_ik)``, ``T_ik = R_i V_k R_i^T + S_i`` (the observed sub-block).

E-step (Bovy et al. Eqs. 16-17), per row and component::

    q_ik  = alpha_k N(w_i | R_i m_k, T_ik) / sum_j alpha_j N(w_i | R_i m_j, T_ij)
    b_ik  = m_k + V_k R_i^T T_ik^{-1} (w_i - R_i m_k)
    B_ik  = V_k - V_k R_i^T T_ik^{-1} R_i V_k

M-step (Eq. 18; no prior, as astroML's ``XDGMM``)::

    alpha_k = sum_i q_ik / N ;  m_k = sum_i q_ik b_ik / q_k ;
    V_k = sum_i q_ik [(m_k - b_ik)(m_k - b_ik)^T + B_ik] / q_k  (+ reg_covar I, as kernels.gmm)

How it is computed
    The projection is a mask: with ``M_i = diag(observed_i)``, the masked matrix
    ``T~_ik = M_i (V_k + S_i) M_i + (I - M_i)`` is block-diagonal (the observed block ``T_ik`` and the
    identity), so its inverse is ``T_ik^{-1}`` on the observed block and ``I`` elsewhere; dropping that
    identity gives ``T+_ik = R_i^T T_ik^{-1} R_i`` (d x d) and ``log det T~ = log det T_ik``. Every row
    then has the same shapes whatever its missing pattern, and one jitted program serves all rows.
    For d <= :data:`~xsift.kernels.smallmat.SMALL_D_MAX` the masked matrices of a chunk (rows x
    components of them) are held batch-last, one (K, rows) array per matrix entry, and factored
    ``T~ = L L^T`` by the Cholesky of :mod:`xsift.kernels.smallmat`, unrolled over d at trace time:
    every step is one elementwise operation over the whole batch, where LAPACK's batched Cholesky
    (``jnp.linalg.cholesky``) pays ~0.8 us of per-matrix call overhead on a 12 x 12 matrix.
    ``z = L^{-1} r`` by forward substitution gives the Mahalanobis term ``|z|^2``, the
    log-determinant is the sum of the logs of the pivots, ``W = L^{-1}`` is the triangular inverse
    and ``u = W^T (W r)``. The work is arranged so that XLA compiles each pass over the rows into ONE
    loop that keeps a row's matrix entries in registers and writes only its results: pass 1 computes
    each row's log-likelihood log p(w_i) over all chunks at once, the components combined by a running
    log-sum-exp inside the same loop (:func:`_small_log_norms`); pass 2, chunk by chunk, factors each
    ``T~`` again, forms ``q = alpha N / p`` and sums ``q``, ``q u``, ``q u u^T`` and ``q T+`` over the
    rows in one variadic reduction (:func:`_small_weighted_sums`). Recomputing the factor costs less
    than writing it out. What splits such a loop, so that XLA writes every shared matrix entry to
    memory in a loop of its own (hundreds of small loops per chunk, 2.5-3x slower; compiling took ~8 s
    at d = 12): a result with several consumers (log N feeding both the max and the sum of a
    log-sum-exp), a reduction inside the cone (XLA hands reductions to its YNNPACK fusions), or one
    reduction per statistic. Inside a loop over chunks a fused loop also runs on one core, hence pass 1
    over all chunks at once. :func:`xd_e_step` returns log N from one program and the responsibilities
    from a second for the same reason. For larger d the batch is factored
    by LAPACK's batched Cholesky and ``W`` by one batched triangular solve (an unrolled Gauss-Jordan
    sweep was ~50x less accurate: 5e-14 vs 1e-15 relative in float64).

    Only ``u_ik = T+_ik r_ik`` (``r_ik = M_i (w_i - m_k)``) and ``T+_ik`` are needed per row: with
    ``b_ik = m_k + V_k u_ik`` and ``B_ik = V_k - V_k T+_ik V_k`` the sums over rows the M-step needs are

        sum q b = q_k m_k + V_k su_k
        sum q [(m'_k - b)(m'_k - b)^T + B] = q_k e e^T + e (V su)^T + (V su) e^T + q_k V_k + V_k (suu_k - sT_k) V_k

    with ``e = m_k - m'_k`` (old minus new mean) and the per-component statistics (:class:`XDStats`) ``q_k = sum q``,
    ``su = sum q u``, ``suu = sum q u u^T``, ``sT = sum q T+``. They are centred on the current means
    (no raw second moments), add up across chunks for the SAME parameters, and are all an M-step
    needs: :func:`xd_statistics` is the chunk function a Dask driver maps, :func:`xd_update` the step
    every driver calls with their sum. The per-row work is two factorisations (small d), one
    triangular inverse and ``W^T W`` (~d^3 / 2 multiply-adds); ``sT = sum_i q W^T W`` is accumulated
    entry by entry in pass 2 (small d) or as one matrix product per component (LAPACK path), and the
    ``V (.) V`` products run once per component in the M-step, not per row (a direct
    transcription forms ``b_ik`` and ``B_ik = V - V T^{-1} V`` for every row).

Conventions as :mod:`xsift.kernels.gmm`: parameters are a :class:`~xsift.kernels.gmm.GMMParams`
(``covariances`` are the deconvolved ``V_k``; ``precisions_cholesky`` their ``chol(V)^{-T}``), the
iteration state an :class:`~xsift.kernels.gmm.EMState` (``em_start``), the result a
:class:`~xsift.kernels.gmm.GMMResult`; ``q_k`` gets ``10 eps`` as scikit-learn's ``nk``; the lower
bound is the mean log-likelihood per row of the parameters entering the last iteration (astroML's
``logL`` is the same sum, not divided by N); ``converged`` is ``|change| < tol`` of that mean.
:func:`fit_xd` subtracts the observed column means before fitting (as ``fit_gmm``) and adds them back.
With every ``S_i = 0`` and every feature observed, ``b_ik = x_i`` and ``B_ik = 0``: the iteration is
the EM of :func:`~xsift.kernels.gmm.fit_gmm` (to rounding).

A row with no observed feature has likelihood 1 (``T~ = I``) and contributes ``q_ik = alpha_k``,
``b_ik = m_k``, ``B_ik = V_k``: it carries no information and only slows EM down (its weight sits at
the current parameters) -- leave such rows out.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from xsift.kernels import scoped_x64
from xsift.kernels.gmm import EMState, GMMParams, GMMResult, em_start, fit_gmm
from xsift.kernels.smallmat import SMALL_D_MAX, cholesky_entries, forward_entries, lower_inverse_entries

__all__ = ["XDStats", "xd_statistics", "xd_update", "xd_start", "fit_xd", "xd_e_step",
           "xd_score_samples", "xd_chunk_rows"]

_LOG_2PI = math.log(2.0 * math.pi)
# bytes of one chunk's largest work array (rows x K x d x d values): the batch of masked matrices
# being factored
XD_CHUNK_BYTES = 2 << 20
# bytes of one (K, c) array of the batch-last small-d path, which sets the rows of pass 2's chunks (pass
# 1 runs over all rows at once): 64 KiB (1,365 rows at K = 6, float64); 680 to 2,736 rows timed within
# 10 % of each other at N = 10k and 100k
XD_SMALL_ENTRY_BYTES = 64 << 10


class XDStats(NamedTuple):
    """Statistics of the rows of a chunk under given parameters; they add up across chunks.

    nk (K,) = sum q; su (K, d) = sum q u; suu (K, d, d) = sum q u u^T; sT (K, d, d) = sum q T+
    (u = T+ r, T+ the pseudo-inverse of the observed, noise-convolved covariance, see the module
    docstring); loglik () = sum of log p(w_i) over valid rows; n () = number of valid rows.
    """
    nk: Any
    su: Any
    suu: Any
    sT: Any
    loglik: Any
    n: Any


def _row_terms(means, covs, X, noise, obs):
    """Per row and component: u = T+ r (c, K, d), W = chol(T~)^{-1} (c, K, d, d), log N (c, K).

    X (c, d) with anything at unobserved entries (replaced by 0), noise (c, d) variances, obs (c, d)
    bool; means (K, d), covs (K, d, d). ``T~ = M (V_k + S_i) M + (I - M)`` (see the module docstring)
    is factored as ``L L^T`` (LAPACK's batched Cholesky) and ``W = L^{-1}`` (a batched triangular
    solve): ``z = W r`` gives the Mahalanobis term ``|z|^2``, ``u = W^T z``, and ``sum_i q W^T W`` the
    statistic ``sT`` as one matrix product per component. L and W keep T~'s block structure (zero
    between observed and unobserved features, identity on the unobserved block).
    """
    dtype = means.dtype
    d = means.shape[1]
    m = obs.astype(dtype)
    X = jnp.where(obs, X, 0.0).astype(dtype)
    s = jnp.where(obs, noise, 0.0).astype(dtype)
    eye = jnp.eye(d, dtype=dtype)
    mm = m[:, :, None] * m[:, None, :]                                   # (c, d, d)
    T = (mm[:, None] * (covs[None] + (s[:, :, None] * eye)[:, None])
         + ((1.0 - m)[:, :, None] * eye)[:, None])                       # (c, K, d, d)
    L = jnp.linalg.cholesky(T)
    W = lax.linalg.triangular_solve(L, jnp.broadcast_to(eye, T.shape), left_side=True, lower=True)
    logdet = 2.0 * jnp.sum(jnp.log(jnp.diagonal(L, axis1=-2, axis2=-1)), axis=-1)
    r = m[:, None, :] * (X[:, None, :] - means[None])                    # (c, K, d)
    z = jnp.einsum("ckij,ckj->cki", W, r)
    u = jnp.einsum("ckji,ckj->cki", W, z)
    maha = jnp.sum(z * z, axis=2)
    logn = -0.5 * (jnp.sum(m, axis=1)[:, None] * _LOG_2PI + maha + logdet)
    return u, W, logn


def _batch_last(X, noise, obs, dtype):
    """Chunk rows X, noise (..., c, d), obs (..., c, d) bool -> m, x, s (..., d, c): the observed mask as
    0/1, X and the variances with 0 where not observed, rows last."""
    def t(a):
        return jnp.swapaxes(a.astype(dtype), -1, -2)
    return t(obs), t(jnp.where(obs, X, 0.0)), t(jnp.where(obs, noise, 0.0))


def _small_masked(means, covs, m, x, s):
    """Entries of the masked ``T~ = M (V_k + S_i) M + (I - M)`` (nested list, i >= j) and of
    ``r = M (w_i - m_k)`` (list of d) as (K, c) arrays, for a batch-last chunk m, x, s (d, c)."""
    d = means.shape[1]
    A = [[None] * d for _ in range(d)]
    for i in range(d):
        A[i][i] = m[i][None] * (covs[:, i, i][:, None] + s[i][None]) + (1.0 - m[i])[None]
        for j in range(i):
            A[i][j] = (m[i] * m[j])[None] * covs[:, i, j][:, None]
    r = [m[i][None] * (x[i][None] - means[:, i][:, None]) for i in range(d)]
    return A, r


def _small_log_normals(means, covs, m, x, s):
    """log N(w_i | R_i m_k, T_ik) as (K, c) for a batch-last chunk m, x, s (d, c) from :func:`_batch_last`:
    every matrix entry is one (K, c) array over components and rows (:mod:`xsift.kernels.smallmat`),
    the Cholesky factor of ``T~`` unrolled over d, ``z = L^{-1} r`` by forward substitution
    (Mahalanobis term ``|z|^2``), the log-determinant from the pivots. XLA compiles this whole
    expression into one loop over the chunk (nothing but the result is written to memory)."""
    A, r = _small_masked(means, covs, m, x, s)
    L, inv, logdet = cholesky_entries(A)
    return _small_log_density(forward_entries(L, inv, r), m, logdet)


def _small_log_density(z, m, logdet):
    """log N (K, c) from the whitened residual z (list of d (K, c) arrays, ``|z|^2`` the Mahalanobis term),
    the observed mask m (d, c) and log det T~ (K, c). The number of observed features is a sum of
    entries, not a reduction: XLA hands a reduction to its YNNPACK fusion, whose producers (the whole
    factorisation) then no longer fuse into one loop."""
    maha, n_obs = z[0] * z[0], m[0]
    for i in range(1, len(z)):
        maha, n_obs = maha + z[i] * z[i], n_obs + m[i]
    return -0.5 * (n_obs[None] * _LOG_2PI + maha + logdet)


def _log_sum_exp_pairs(a, b):
    """Reducer of a running log-sum-exp: (max, sum of exp(value - max)) pairs -> their combination."""
    (ma, sa), (mb, sb) = a, b
    top = jnp.maximum(ma, mb)
    safe = jnp.where(jnp.isfinite(top), top, 0.0)
    return top, sa * jnp.exp(ma - safe) + sb * jnp.exp(mb - safe)


def _small_log_norms(weights, means, covs, m, x, s):
    """log p(w_i) = log sum_k alpha_k N(w_i | R_i m_k, T_ik) (n_chunks, c) for batch-last chunks m, x, s
    (n_chunks, d, c): :func:`_small_log_normals` of every chunk and component reduced over the
    components by one running log-sum-exp (``lax.reduce`` with (max, sum) pairs), so that XLA fuses the
    whole computation into one loop over all rows that writes only log p (see the module docstring)."""
    wlp = jax.vmap(lambda *chunk: _small_log_normals(means, covs, *chunk))(m, x, s) \
        + _log_weights(weights)[None, :, None]                          # (n_chunks, K, c)
    dt = wlp.dtype
    top, total = lax.reduce((wlp, jnp.ones_like(wlp)), (jnp.asarray(-jnp.inf, dt), jnp.zeros((), dt)),
                            _log_sum_exp_pairs, (1,))
    return jnp.log(total) + jnp.where(jnp.isfinite(top), top, 0.0)


def _small_weighted_sums(weights, means, covs, m, x, s, log_norm, valid):
    """Second pass: :class:`XDStats` of a batch-last chunk m, x, s (d, c), given each row's log p(w_i)
    (c,) (:func:`_small_log_norms`) and valid (c,) bool; loglik 0 (the first pass sums it). Per (component, row): the unrolled Cholesky of ``T~`` and its triangular inverse
    ``W = L^{-1}``, ``z = W r``, log N (for ``q = alpha N / p``), ``u = W^T z`` and ``T~^{-1} = W^T W``,
    summed over the rows with weights q by ONE variadic reduction (``lax.reduce``), so that XLA fuses
    the whole per-row computation into that reduction's loop: nothing per row is written to memory."""
    d = means.shape[1]
    A, r = _small_masked(means, covs, m, x, s)
    L, inv, logdet = cholesky_entries(A)
    W = lower_inverse_entries(L, inv)
    z = []
    for i in range(d):
        t = W[i][0] * r[0]
        for j in range(1, i + 1):
            t = t + W[i][j] * r[j]
        z.append(t)
    log_q = _small_log_density(z, m, logdet) + _log_weights(weights)[:, None] - log_norm[None]
    q = jnp.where(valid[None], jnp.exp(log_q), 0.0)                      # (K, c)
    u = []
    for j in range(d):
        t = W[j][j] * z[j]
        for a in range(j + 1, d):
            t = t + W[a][j] * z[a]
        u.append(t)
    lower = [(i, j) for i in range(d) for j in range(i + 1)]
    terms = [q]
    for i, j in lower:                                                  # (W^T W)_ij = sum_{a >= i} W_ai W_aj
        t = W[i][i] * W[i][j]
        for a in range(i + 1, d):
            t = t + W[a][i] * W[a][j]
        if i == j:                                                      # T+ = T~^{-1} - (I - M)
            t = t - (1.0 - m[i])[None]
        terms.append(q * t)
    qu = [q * ui for ui in u]
    terms += qu
    terms += [qu[i] * u[j] for i, j in lower]
    zero = jnp.zeros((), q.dtype)
    sums = lax.reduce(terms, [zero] * len(terms), lambda a, b: tuple(x + y for x, y in zip(a, b)), (1,))
    nk, sums = sums[0], sums[1:]
    n = len(lower)
    idx = np.zeros((d, d), np.int32)
    for e, (i, j) in enumerate(lower):
        idx[i, j] = idx[j, i] = e
    sT = jnp.stack(sums[:n], axis=1)[:, idx]                            # (K, d, d)
    su = jnp.stack(sums[n:n + d], axis=1)
    suu = jnp.stack(sums[n + d:], axis=1)[:, idx]
    dtype = means.dtype
    return XDStats(nk, su, suu, sT, jnp.zeros((), dtype), jnp.sum(valid).astype(dtype))


def _log_normals(means, covs, X, noise, obs):
    """log N(w_i | R_i m_k, T_ik) (c, K) of a chunk (see :func:`_row_terms`)."""
    if means.shape[1] <= SMALL_D_MAX:
        return _small_log_normals(means, covs, *_batch_last(X, noise, obs, means.dtype)).T
    return _row_terms(means, covs, X, noise, obs)[2]


def _log_weights(weights):
    return jnp.where(weights > 0, jnp.log(jnp.where(weights > 0, weights, 1.0)), -jnp.inf)


def _responsibilities(weights, logn):
    """logn (c, K) -> log q (c, K), log p(w) (c,)."""
    wlp = logn + _log_weights(weights)[None, :]
    top = jnp.max(wlp, axis=1, keepdims=True)
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    log_norm = jnp.log(jnp.sum(jnp.exp(wlp - top), axis=1)) + top[:, 0]
    return wlp - log_norm[:, None], log_norm


def _lapack_chunk_stats(weights, means, covs, X, noise, obs, valid):
    """:class:`XDStats` of one chunk (c rows; rows with valid False contribute nothing) with LAPACK's
    batched Cholesky and triangular solve (:func:`_row_terms`): the path for d > SMALL_D_MAX."""
    dtype = means.dtype
    c, d = X.shape
    K = means.shape[0]
    u, W, logn = _row_terms(means, covs, X, noise, obs)
    log_q, log_norm = _responsibilities(weights, logn)
    q = jnp.where(valid[:, None], jnp.exp(log_q), 0.0)
    nk = jnp.sum(q, axis=0)
    su = jnp.einsum("ck,cki->ki", q, u)
    qu = q[:, :, None] * u
    suu = jnp.einsum("cki,ckj->kij", qu, u)
    # sum_i q_ik W_ik^T W_ik = sum q T~^{-1} as one (d, c d) @ (c d, d) product per component, minus the
    # identity blocks of the unobserved features (T+ is zero there)
    Z = jnp.transpose(jnp.sqrt(q)[:, :, None, None] * W, (1, 0, 2, 3)).reshape(K, c * d, d)
    unobserved = jnp.einsum("ck,ci->ki", q, 1.0 - obs.astype(dtype))
    sT = jnp.einsum("kni,knj->kij", Z, Z) - unobserved[:, :, None] * jnp.eye(d, dtype=dtype)
    loglik = jnp.sum(jnp.where(valid, log_norm, 0.0))
    return XDStats(nk, su, suu, sT, loglik, jnp.sum(valid).astype(dtype))


def _small_chunk_stats(weights, means, covs, X, noise, obs, valid):
    """:class:`XDStats` of one chunk for small d: :func:`_small_data_stats` on it as one batch-last chunk."""
    m, x, s = _batch_last(X[None], noise[None], obs[None], means.dtype)
    return _small_data_stats(weights, means, covs, m, x, s, valid[None])


def _small_data_stats(weights, means, covs, m, x, s, valid):
    """:class:`XDStats` summed over batch-last chunks m, x, s (n_chunks, d, c), valid (n_chunks, c), in
    two passes: log p(w_i) of every row (:func:`_small_log_norms`, all chunks at once), then the
    weighted sums chunk by chunk (:func:`_small_weighted_sums`), which factor every T~ again (see the
    module docstring for why two passes)."""
    K, d = means.shape
    log_norm = _small_log_norms(weights, means, covs, m, x, s)                    # (n_chunks, c)
    loglik = jnp.sum(jnp.where(valid, log_norm, 0.0))

    def second(acc, chunk):
        return _add(acc, _small_weighted_sums(weights, means, covs, *chunk)), None

    total, _ = lax.scan(second, _zero_stats(K, d, means.dtype), (m, x, s, log_norm, valid))
    return total._replace(loglik=loglik)


def _add(a, b):
    return XDStats(*(x + y for x, y in zip(a, b)))


def _zero_stats(K, d, dtype):
    return XDStats(jnp.zeros((K,), dtype), jnp.zeros((K, d), dtype), jnp.zeros((K, d, d), dtype),
                   jnp.zeros((K, d, d), dtype), jnp.zeros((), dtype), jnp.zeros((), dtype))


def _data_stats(params, Xc, Sc, Oc, Vc):
    """Chunks Xc, Sc (n_chunks, c, d), Oc (n_chunks, c, d) bool, Vc (n_chunks, c) bool -> summed XDStats."""
    K, d = params.means.shape
    if d <= SMALL_D_MAX:
        # batch-last chunks once, outside the loops over chunks: the loop bodies read contiguous rows
        return _small_data_stats(params.weights, params.means, params.covariances,
                                 *_batch_last(Xc, Sc, Oc, params.means.dtype), Vc)

    def body(acc, chunk):
        return _add(acc, _lapack_chunk_stats(params.weights, params.means, params.covariances, *chunk)), None

    total, _ = lax.scan(body, _zero_stats(K, d, params.means.dtype), (Xc, Sc, Oc, Vc))
    return total


def _precision_cholesky(cov):
    """cov (K, d, d) -> upper-triangular chol(cov)^{-T} (NaN where cov is not positive definite)."""
    L = jnp.linalg.cholesky(cov)
    eye = jnp.broadcast_to(jnp.eye(cov.shape[-1], dtype=cov.dtype), cov.shape)
    Linv = lax.linalg.triangular_solve(L, eye, left_side=True, lower=True)
    return jnp.swapaxes(Linv, -1, -2)


def _xd_m_step(params, stats, reg_covar, active):
    """Bovy et al. Eq. 18 from summed statistics of ``params`` (see the module docstring)."""
    dtype = stats.nk.dtype
    d = stats.su.shape[1]
    nk_raw = stats.nk
    nk = nk_raw + 10.0 * jnp.finfo(dtype).eps
    V, mu0 = params.covariances, params.means
    Vsu = jnp.einsum("kij,kj->ki", V, stats.su)
    means = (nk_raw[:, None] * mu0 + Vsu) / nk[:, None]
    dm = mu0 - means
    outer = dm[:, :, None] * Vsu[:, None, :]
    C = (nk_raw[:, None, None] * (dm[:, :, None] * dm[:, None, :] + V) + outer + jnp.swapaxes(outer, 1, 2)
         + jnp.einsum("kij,kjl,klm->kim", V, stats.suu - stats.sT, V))
    cov = C / nk[:, None, None]
    cov = 0.5 * (cov + jnp.swapaxes(cov, 1, 2)) + jnp.asarray(reg_covar, dtype) * jnp.eye(d, dtype=dtype)
    nk_active = jnp.where(active, nk, 0.0)
    weights = nk_active / jnp.sum(nk_active)
    return GMMParams(weights, means, cov, _precision_cholesky(cov))


@scoped_x64
@jax.jit
def xd_update(state: EMState, stats: XDStats, *, tol, reg_covar, active=None) -> EMState:
    """One XD EM iteration from the :class:`XDStats` of ``state.params`` summed over ALL rows.

    state: an :class:`~xsift.kernels.gmm.EMState` (start with :func:`xd_start`); the new lower bound
    is ``stats.loglik / stats.n`` (mean log-likelihood of the parameters entering the iteration), the
    new parameters Bovy et al. (2011) Eq. 18 with ``reg_covar`` added to each ``V_k``'s diagonal,
    ``converged = |new lower bound - old| < tol``. The statistics must be those of ``state.params``
    (they are centred on its means). active (K,) bool: components taking part (default all).
    Jitted; :func:`fit_xd`'s loop and any other driver (Dask) call this same step.
    """
    if active is None:
        active = jnp.ones(state.params.means.shape[:1], bool)
    new_lb = stats.loglik / stats.n
    new_params = _xd_m_step(state.params, stats, reg_covar, active)
    converged = jnp.abs(new_lb - state.lower_bound) < tol
    return EMState(new_params, new_lb, state.n_iter + 1, converged)


def xd_start(params) -> EMState:
    """The state before the first iteration (:func:`xsift.kernels.gmm.em_start`): lower bound -inf,
    0 iterations; the dtype of ``params.means`` is the compute dtype."""
    return em_start(params)


_statistics_program = jax.jit(_data_stats)


def _as_device_params(params, dtype=None):
    means = jnp.asarray(params.means, dtype)
    dt = means.dtype
    pc = getattr(params, "precisions_cholesky", None)
    cov = jnp.asarray(params.covariances, dt)
    pc = jnp.zeros_like(cov) if pc is None else jnp.asarray(pc, dt)
    return GMMParams(jnp.asarray(params.weights, dt), means, cov, pc)


@scoped_x64
def xd_statistics(params, X_chunk, noise_var_chunk, observed_chunk, mask_chunk) -> XDStats:
    """E-step of one chunk reduced to :class:`XDStats` (jitted; compiles once per chunk shape).

    params: weights (K,), means (K, d), covariances (K, d, d) (the dtype of ``means`` is the compute
    dtype); X_chunk (c, d) (anything, NaN included, at unobserved entries); noise_var_chunk (c, d)
    measurement variances (>= 0 where observed); observed_chunk (c, d) bool; mask_chunk (c,) bool,
    False for padding rows. Inputs are not checked here (see :func:`fit_xd`). Sum the results over
    all chunks and pass them with the state to :func:`xd_update`. The chunk runs in sub-chunks of
    :func:`xd_chunk_rows` rows, as :func:`fit_xd`'s rows do (one compilation per sub-chunk layout).
    """
    p = _as_device_params(params)
    dt = np.dtype(p.means.dtype)
    X = np.asarray(X_chunk)
    K, d = p.means.shape
    c = _chunk_layout(X.shape[0], None, K, d, dt.itemsize)
    (Xc, Sc, Oc), Vc = _chunked(c, dt, X, np.asarray(noise_var_chunk), np.asarray(observed_chunk, bool))
    Vc = Vc & jnp.asarray(np.pad(np.asarray(mask_chunk, bool), (0, Vc.size - X.shape[0])).reshape(Vc.shape))
    return _statistics_program(p, Xc, Sc, Oc, Vc)


def _xd_em(params, Xc, Sc, Oc, Vc, max_iter, tol, reg_covar):
    active = jnp.ones(params.weights.shape, bool)
    K, d = params.means.shape
    if d <= SMALL_D_MAX:
        chunks = _batch_last(Xc, Sc, Oc, params.means.dtype)           # once, before the iterations

        def stats_of(p):
            return _small_data_stats(p.weights, p.means, p.covariances, *chunks, Vc)
    else:
        def stats_of(p):
            return _data_stats(p, Xc, Sc, Oc, Vc)

    def cond(state):
        return (state.n_iter < max_iter) & jnp.logical_not(state.converged)

    def body(state):
        stats = stats_of(state.params)
        return xd_update(state, stats, tol=tol, reg_covar=reg_covar, active=active)

    state = lax.while_loop(cond, body, em_start(params))
    p = state.params
    return GMMResult(p.weights, p.means, p.covariances, p.precisions_cholesky, state.lower_bound,
                     state.n_iter, state.converged)


_fit_program = jax.jit(_xd_em)


# ----------------------------------------------------------------------------
# host side: checks and chunk layout
# ----------------------------------------------------------------------------

def _resolve_dtype(X, dtype):
    if dtype is None:
        return np.float32 if getattr(X, "dtype", None) == np.float32 else np.float64
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    return dt.type


def _check_inputs(X, noise_var, observed, n_components=None):
    """-> X (n, d) float64 with 0 at unobserved entries, noise (n, d) float64 (0 at unobserved),
    observed (n, d) bool; ValueError naming rows and columns for anything unusable."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-d array (n_rows, n_features), got shape {X.shape}")
    n, d = X.shape
    if d == 0:
        raise ValueError("X has 0 features (shape (n, 0))")
    if observed is None:
        observed = np.ones((n, d), bool)
    observed = np.asarray(observed)
    if observed.shape != (n, d) or observed.dtype != bool:
        raise ValueError(f"observed must be a boolean array of shape {(n, d)}, got {observed.dtype} {observed.shape}")
    try:
        noise = np.broadcast_to(np.asarray(noise_var, dtype=np.float64), (n, d))
    except ValueError:
        raise ValueError(f"noise_var must be measurement variances of shape {(n, d)} (or broadcastable), "
                         f"got shape {np.shape(noise_var)}") from None
    if n_components is not None:
        if int(n_components) < 1:
            raise ValueError(f"n_components must be >= 1, got {n_components}")
        if n < int(n_components):
            raise ValueError(f"X has {n} rows but n_components = {n_components}; need n_rows >= n_components")

    def where_bad(bad, what, fix):
        rows = np.flatnonzero(bad.any(axis=1))
        cols = [int(j) for j in np.flatnonzero(bad.any(axis=0))]
        raise ValueError(f"{what} in {rows.size} rows (first: {rows[:5].tolist()}), columns {cols}; {fix}")

    bad = observed & ~np.isfinite(X)
    if bad.any():
        where_bad(bad, "X has NaN or inf at observed entries",
                  "mark missing features False in `observed` (or drop those rows)")
    bad = observed & ~np.isfinite(noise)
    if bad.any():
        where_bad(bad, "noise_var is NaN or inf at observed entries", "give a finite variance (0 for exact values)")
    bad = observed & (noise < 0)
    if bad.any():
        where_bad(bad, "noise_var is negative", "variances are squared uncertainties, >= 0")
    X = np.where(observed, X, 0.0)
    noise = np.where(observed, noise, 0.0)
    return X, noise, observed


def xd_chunk_rows(n_components, n_features, itemsize) -> int:
    """Rows per chunk by default, in [64, 8192]: for d <= SMALL_D_MAX (the batch-last path)
    XD_SMALL_ENTRY_BYTES over one row's K entries; above, XD_CHUNK_BYTES over one row's K d^2 factored
    values."""
    K = max(1, int(n_components))
    if int(n_features) <= SMALL_D_MAX:
        return int(min(8192, max(64, XD_SMALL_ENTRY_BYTES // (K * int(itemsize)))))
    per_row = K * int(n_features) ** 2 * int(itemsize)
    return int(min(8192, max(64, XD_CHUNK_BYTES // per_row)))


def _chunk_layout(n, chunk_size, K, d, itemsize):
    if chunk_size is None:
        bound = xd_chunk_rows(K, d, itemsize)
        nc = -(-n // bound)
        return max(8, -(-(-(-n // nc)) // 8) * 8)          # fewest chunks, balanced, multiple of 8
    c = int(chunk_size)
    if c < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    return max(8, -(-n // 8) * 8) if n <= c else c


def _chunked(c, dtype, *arrays):
    """(n, ...) host arrays -> (n_chunks, c, ...) device arrays (zero padded) and valid (n_chunks, c)."""
    n = arrays[0].shape[0]
    nc = -(-n // c)
    out = []
    for a in arrays:
        p = np.zeros((nc * c,) + a.shape[1:], dtype=a.dtype if a.dtype == bool else dtype)
        p[:n] = a
        out.append(jnp.asarray(p.reshape((nc, c) + a.shape[1:])))
    valid = (np.arange(nc * c) < n).reshape(nc, c)
    return out, jnp.asarray(valid)


def _start_params(init, X, observed, K, d, seed, reg_covar, dt, shift):
    if isinstance(init, str):
        if init != "kmeans":
            raise ValueError(f"init must be 'kmeans' or GMMParams-like parameters, got {init!r}")
        # k-means on the rows with missing entries set to the column mean (0 after the shift): a
        # start only; XD then accounts for the missing entries and the noise
        g = fit_gmm(np.where(observed, X, 0.0), K, seed=seed, init="kmeans", max_iter=0,
                    reg_covar=max(reg_covar, 1e-6), dtype=dt)
        w, mu, cov = g.weights, g.means, g.covariances
    else:
        w = np.asarray(init.weights, np.float64)
        mu = np.asarray(init.means, np.float64) - shift
        cov = getattr(init, "covariances", None)
        if cov is None:
            pc = np.asarray(init.precisions_cholesky, np.float64)
            cov = np.linalg.inv(pc @ np.swapaxes(pc, 1, 2))
        cov = np.asarray(cov, np.float64)
        if w.shape != (K,) or mu.shape != (K, d) or cov.shape != (K, d, d):
            raise ValueError(f"init parameters have weights {w.shape}, means {mu.shape}, covariances "
                             f"{cov.shape}; expected ({K},), ({K}, {d}), ({K}, {d}, {d})")
    cov = np.asarray(cov, np.float64)
    try:
        pc = np.swapaxes(np.linalg.inv(np.linalg.cholesky(cov)), 1, 2)
    except np.linalg.LinAlgError:
        raise ValueError("init covariances must be positive definite") from None
    return GMMParams(*(jnp.asarray(a, dt) for a in (w, mu, cov, pc)))


@scoped_x64
def fit_xd(X, noise_var, observed=None, n_components=None, *, init="kmeans", seed=0, max_iter=100,
           tol=1e-3, reg_covar=1e-6, dtype=None, chunk_size=None) -> GMMResult:
    """Fit an extreme-deconvolution mixture (Bovy, Hogg & Roweis 2011) to noisy, incomplete rows.

    X (n, d): measured features (any value, NaN included, where not observed); noise_var (n, d):
    each measurement's variance (squared 1-sigma uncertainty, in X's units squared; 0 = exact;
    broadcastable, e.g. a scalar); observed (n, d) bool (default: all observed); n_components K.
    init: "kmeans" (k-means++ and Lloyd's of :func:`~xsift.kernels.gmm.fit_gmm`, on the rows with
    missing entries set to the column mean) or GMMParams-like parameters (weights, means, and
    covariances or precisions_cholesky) to start from. max_iter EM iterations at most; stops when the
    mean log-likelihood per row changes by less than ``tol``; ``reg_covar`` is added to the diagonal
    of every V_k after each M-step (0 = none, as astroML's ``XDGMM``). dtype: float64 (default unless
    X is float32) or float32. Rows run in chunks of ``chunk_size`` (default :func:`xd_chunk_rows`);
    one compilation per (chunk shape, K, dtype) (the first fit at d = 12 takes ~4.5 s on CPU, the
    k-means start included: the factorisation is unrolled, see the module docstring).

    Returns a :class:`~xsift.kernels.gmm.GMMResult` of host arrays: weights (K,), means (K, d), the
    deconvolved covariances V_k (K, d, d), precisions_cholesky (K, d, d), lower_bound (mean
    log-likelihood per row of the parameters entering the last iteration), n_iter, converged.

    Raises ValueError for NaN/inf at observed entries of X or noise_var, negative variances, fewer
    rows than components, bad shapes, or a covariance that is not positive definite after the fit
    (increase reg_covar).
    """
    if n_components is None:
        raise ValueError("n_components is required")
    K = int(n_components)
    dt = _resolve_dtype(np.asarray(X), dtype)
    X, noise, observed = _check_inputs(X, noise_var, observed, K)
    n, d = X.shape
    if max_iter < 0 or tol < 0 or reg_covar < 0:
        raise ValueError("max_iter, tol and reg_covar must be >= 0")
    counts = observed.sum(axis=0)
    shift = np.where(counts > 0, np.where(observed, X, 0.0).sum(axis=0, dtype=np.float64) / np.maximum(counts, 1), 0.0)
    Xs = np.where(observed, X.astype(np.float64) - shift, 0.0)
    p0 = _start_params(init, Xs, observed, K, d, seed, reg_covar, dt, shift)
    c = _chunk_layout(n, chunk_size, K, d, np.dtype(dt).itemsize)
    (Xc, Sc, Oc), Vc = _chunked(c, dt, Xs, noise, observed)
    res = _fit_program(p0, Xc, Sc, Oc, Vc, jnp.asarray(max_iter, jnp.int32), jnp.asarray(tol, dt),
                       jnp.asarray(reg_covar, dt))
    res = jax.device_get(res)
    out = GMMResult(np.asarray(res.weights), (np.asarray(res.means, np.float64) + shift).astype(dt),
                    np.asarray(res.covariances), np.asarray(res.precisions_cholesky),
                    float(res.lower_bound), int(res.n_iter), bool(res.converged))
    if not all(np.all(np.isfinite(a)) for a in out[:4]):
        raise ValueError("extreme deconvolution failed: a covariance V_k is not positive definite (a component "
                         f"collapsed onto too few rows, or noise larger than the spread). Increase reg_covar "
                         f"(now {reg_covar}), decrease n_components, or use dtype=float64.")
    return out


@jax.jit
def _log_normals_program(params, Xc, Sc, Oc):
    """log N (n_chunks, K, c) of chunks Xc, Sc, Oc (n_chunks, c, d): the program's only result, so that
    for small d XLA keeps the whole factorisation in one loop over all rows (module docstring)."""
    if params.means.shape[1] <= SMALL_D_MAX:
        m, x, s = _batch_last(Xc, Sc, Oc, params.means.dtype)
        return jax.vmap(lambda *chunk: _small_log_normals(params.means, params.covariances, *chunk))(m, x, s)
    logn = lax.map(lambda chunk: _row_terms(params.means, params.covariances, *chunk)[2], (Xc, Sc, Oc))
    return jnp.swapaxes(logn, 1, 2)


@jax.jit
def _responsibilities_program(weights, logn):
    nc, K, c = logn.shape
    return _responsibilities(weights, jnp.swapaxes(logn, 1, 2).reshape(nc * c, K))


@scoped_x64
def xd_e_step(params, X, noise_var, observed=None, *, chunk_size=None):
    """(log q (n, K), log p(w) (n,)) as host arrays: each row's responsibilities and log-likelihood under
    the noise-convolved marginal mixture ``sum_k alpha_k N(R_i m_k, R_i V_k R_i^T + S_i)`` (Bovy et al.
    Eq. 16's q_ik). X, noise_var, observed as :func:`fit_xd`; the dtype of ``params.means`` is the
    compute dtype. Raises ValueError as :func:`fit_xd` for unusable inputs.
    """
    X, noise, observed = _check_inputs(X, noise_var, observed)
    p = _as_device_params(params)
    dt = np.dtype(p.means.dtype)
    n, d = X.shape
    K = p.means.shape[0]
    c = _chunk_layout(n, chunk_size, K, d, dt.itemsize)
    (Xc, Sc, Oc), _ = _chunked(c, dt, X, noise, observed)
    log_q, log_norm = jax.device_get(_responsibilities_program(p.weights, _log_normals_program(p, Xc, Sc, Oc)))
    return np.asarray(log_q).reshape(-1, K)[:n], np.asarray(log_norm).reshape(-1)[:n]


@scoped_x64
def xd_score_samples(params, X, noise_var, observed=None, *, chunk_size=None):
    """log p(w_i) (n,) under the noise-convolved marginal mixture (see :func:`xd_e_step`)."""
    return xd_e_step(params, X, noise_var, observed, chunk_size=chunk_size)[1]
