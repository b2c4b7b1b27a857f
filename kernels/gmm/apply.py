"""A fitted mixture applied to a table: responsibilities, labels, log-likelihoods, BIC and AIC,
through fixed-shape compiled calls so tables of any length share a few compilations."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from xsift.kernels import scoped_x64
from xsift.kernels.blocks import map_fixed_blocks
from xsift.kernels.gmm.estep import _e_step_chunk
from xsift.kernels.gmm.layout import _e_step_layout


@jax.jit
def _e_step_program(weights, means, prec_chol, Xc):
    active = jnp.ones(weights.shape, bool)
    return lax.map(lambda x: _e_step_chunk(weights, means, prec_chol, x.astype(means.dtype), active), Xc)


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
