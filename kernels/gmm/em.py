"""The EM iteration of the Gaussian-mixture kernel: the M-step, the EM state and its one update
step (:func:`em_update`, called by every driver: the in-memory loop here and the Dask driver), the
in-memory EM loop, and the public per-chunk statistics and M-step."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from xsift.kernels import scoped_x64
from xsift.kernels.gmm.estep import _chunk_stats, _data_stats
from xsift.kernels.gmm.types import EMState, GMMParams, GMMResult, SuffStats


def _precision_cholesky(cov):
    """cov (K, d, d) -> (K, d, d) upper-triangular P with P P^T = Sigma^{-1} (= chol(Sigma)^{-T})."""
    L = jnp.linalg.cholesky(cov)
    eye = jnp.broadcast_to(jnp.eye(cov.shape[-1], dtype=cov.dtype), cov.shape)
    Linv = lax.linalg.triangular_solve(L, eye, left_side=True, lower=True)
    return jnp.swapaxes(Linv, -1, -2)


def _m_step(stats, reg_covar, active):
    """Summed :class:`SuffStats` -> :class:`GMMParams` by scikit-learn's M-step (``nk + 10 eps``, covariances
    from the raw moments plus ``reg_covar`` I); inactive components (active (K,) False) get weight 0.

    A component whose covariance from the raw moments is not positive definite (no Cholesky factor:
    cancellation in ``sxx / nk - mu mu^T`` larger than ``reg_covar``, as on repeated points in float32,
    where the sums carry ``eps * |mu|^2`` of rounding) gets the diagonal of it instead, each variance
    floored at 0, plus ``reg_covar`` I: the component has collapsed onto (nearly) one point, whose
    covariance is 0 up to that rounding. With ``reg_covar = 0`` such a component stays ill-defined (NaN,
    refused by the fit as scikit-learn refuses it)."""
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
    eye = jnp.eye(d, dtype=dtype)
    cov = cov + jnp.asarray(reg_covar, dtype) * eye
    # collapsed components whose rounding left no Cholesky factor: floored diagonal (docstring)
    failed = jnp.any(jnp.isnan(jnp.linalg.cholesky(cov)), axis=(1, 2))
    floored = jnp.maximum(jnp.diagonal(centred / nk[:, None, None], axis1=1, axis2=2), 0.0)
    cov = jnp.where(failed[:, None, None], floored[:, :, None] * eye + jnp.asarray(reg_covar, dtype) * eye, cov)
    nk_active = jnp.where(active, nk, 0.0)
    weights = nk_active / jnp.sum(nk_active)
    return GMMParams(weights, means, cov, _precision_cholesky(cov))


@scoped_x64
def em_start(params) -> EMState:
    """The EM state before the first iteration: ``params`` (a :class:`GMMParams` with all four arrays;
    the dtype of ``means`` is the compute dtype), lower bound -inf, 0 iterations, not converged."""
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


def _em(params, Xc, maskc, active, max_iter, tol, reg_covar, final_stats=False, cols=False, lower_bound=None):
    """EM loop (a lax.while_loop of :func:`em_update`) from ``params``; scikit-learn's iteration
    order. cols: the chunks are column-major (n_chunks, d, c) (see :func:`_chunked`).

    final_stats=True: the loop makes one more data pass after the last M-step (the same compiled pass,
    its update discarded) and also returns the SuffStats of the final parameters -> (GMMResult, SuffStats).
    lower_bound: scalar the first iteration's change is measured from (default -inf, :func:`em_start`).
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
    state = em_start(params)
    if lower_bound is not None:
        state = state._replace(lower_bound=jnp.asarray(lower_bound, dtype))
    state, _, stats = lax.while_loop(cond, body, (state, jnp.asarray(False), zero))
    p = state.params
    res = GMMResult(p.weights, p.means, p.covariances, p.precisions_cholesky, state.lower_bound,
                    state.n_iter, state.converged)
    return (res, stats) if final_stats else res


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
