"""fit_gmm: a full-covariance Gaussian mixture fitted by EM from k-means, random or given starts,
``n_init`` restarts vmapped in one compiled program."""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from xsift.kernels import scoped_x64
from xsift.kernels.gmm.em import _em
from xsift.kernels.gmm.init import _init_params
from xsift.kernels.gmm.layout import _check_X, _chunked, _em_layout, _resolve_dtype
from xsift.kernels.gmm.types import GMMParams, GMMResult


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
def _fit_from_params_program(params, Xc, maskc, active, max_iter, tol, reg_covar, lower_bound):
    """EM from given parameters on chunks in the layout of :func:`_em_layout`; lower_bound: the scalar
    the first iteration's change is measured from."""
    return _em(params, Xc, maskc, active, max_iter, tol, reg_covar, cols=_em_layout(active.shape[0]),
               lower_bound=lower_bound)


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
            reg_covar=1e-6, dtype=None, chunk_size=None, start_lower_bound=None) -> GMMResult:
    """Fit a full-covariance Gaussian mixture to X (n, d) by EM, as scikit-learn does.

    init: "kmeans" (k-means++ seeded Lloyd's -> one-hot responsibilities -> M-step, scikit-learn's
    default), "random" (uniform random responsibilities) or a GMMParams-like object (weights, means and
    precisions_cholesky or covariances) to start from; n_init restarts run as one vmapped program and the
    best lower bound wins (given parameters are a single start). dtype: float64 (reference; default unless X
    is float32) or float32 (speed). Rows are processed in chunks of ``chunk_size`` (default
    :func:`em_chunk_rows`: ~5 MiB of work arrays) padded with a mask, so memory is O(chunk * K * d).
    start_lower_bound: with given parameters only, the lower bound the first iteration's change is
    compared with (default -inf; scikit-learn's warm start passes the previous fit's ``lower_bound_``, so
    a warm restart from converged parameters stops after one iteration).
    Returns host NumPy arrays in a :class:`GMMResult`; ``converged`` is False if max_iter was reached.
    Raises ValueError for bad input (shape, non-finite values, fewer rows than components, unknown init)
    and when a covariance becomes ill-defined (scikit-learn's message).
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
        if start_lower_bound is not None:
            raise ValueError("start_lower_bound applies to a fit from given parameters (init=GMMParams), "
                             f"not to init={init!r}")
        if init not in ("kmeans", "random"):
            raise ValueError(f"init must be 'kmeans', 'random' or parameters, got {init!r}")
        if int(n_init) < 1:
            raise ValueError(f"n_init must be >= 1, got {n_init}")
        keys = jax.random.split(jax.random.key(int(seed)), int(n_init))
        init_data = _chunked(X, dt, chunk_size, shift, K * restarts)[:2] if cols else em_data
        res = _fit_program(keys, *init_data, active, *args, *em_data, init_kind=init)
    else:
        p0 = _as_params(init, K, d, dt, shift)
        lb0 = -np.inf if start_lower_bound is None else float(start_lower_bound)
        res = _fit_from_params_program(p0, *em_data, active, *args, jnp.asarray(lb0, dt))
    return _finish(res, shift, np.dtype(dt), reg_covar)
