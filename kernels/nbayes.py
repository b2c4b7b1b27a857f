"""Eq. 1 of Tranin, Webb & Godet (2022, A&A 657, A138): the weighted naive-Bayes posterior.

Classes ``C`` (``K`` of them) with priors ``P(C)``; properties ``p`` (``P`` of them) grouped in
categories ``t`` (``T`` of them, a 0/1 membership matrix ``(T, P)``) with weights ``alpha_t``.
``f_{p,C}`` is the likelihood density of property ``p`` in class ``C`` (a KDE, :mod:`xsift.kernels.kde`).
For a source ``x``::

    log L(t|C)  = sum_{p in t, x_p observed} log f_{p,C}(x_p)
    log N(C|x)  = log P(C) + sum_{t observed} alpha_t log L(t|C) / sum_{t observed} alpha_t
    P(C|x)      = N(C|x) / sum_C' N(C'|x)                                        (Eq. 1)
    OM(x)       = -log10 sum_C N(C|x)                                            (outlier measure)

A missing property (NaN log-likelihood) contributes no factor; a category with no observed
property drops out of both the sum and ``sum alpha_t``; a source with nothing observed gets the
priors. Only the ratios of the weights matter.

Every function here is batched over rows x properties x classes (arrays ``(n, P, K)``), jitted,
dtype-generic (the result has the dtype of the log-likelihoods) and runs under
:func:`xsift.kernels.scoped_x64`, so float64 inputs stay float64 whatever the caller's JAX setting.
Rows are independent: a table may be split into row chunks and the results concatenated.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from xsift.kernels import scoped_x64
from xsift.kernels.evolution import DEResult, differential_evolution

__all__ = ["category_log_likelihoods", "log_numerator", "posterior_and_outlier", "track_posteriors",
           "f1_of_class", "negative_f1_objective", "tune_category_weights"]


def _category_log_likelihoods(loglik, membership):
    obs = jnp.isfinite(loglik[:, :, 0])
    ll = jnp.where(jnp.isfinite(loglik), loglik, 0.0)
    membership = jnp.asarray(membership, ll.dtype)
    cat = jnp.einsum("tp,npk->ntk", membership, ll)
    observed = (obs.astype(ll.dtype) @ membership.T) > 0
    return cat, observed


def _log_numerator(cat_ll, observed, weights, log_prior):
    # The weights enter only through contractions over t with arrays that do not depend on them,
    # so under jax.vmap over candidate weight vectors (differential evolution) both become one
    # (M, T) @ (T, n*K) matrix product instead of n tiny batched products.
    w = jnp.asarray(weights, cat_ll.dtype)
    obs = observed.astype(cat_ll.dtype)
    masked = jnp.where(observed[:, :, None], cat_ll, 0.0)
    s = jnp.einsum("t,nt->n", w, obs)[:, None]
    weighted = jnp.einsum("t,ntk->nk", w, masked) / jnp.where(s > 0, s, 1.0)
    return jnp.asarray(log_prior, cat_ll.dtype)[None, :] + weighted


def _posterior_and_outlier(cat_ll, observed, weights, log_prior):
    ln = _log_numerator(cat_ll, observed, weights, log_prior)
    lse = jax.scipy.special.logsumexp(ln, axis=1)
    return jnp.exp(ln - lse[:, None]), -lse / jnp.log(jnp.asarray(10.0, ln.dtype))


def _f1_of_class(y_true, y_pred, target):
    tp = jnp.sum((y_pred == target) & (y_true == target))
    fp = jnp.sum((y_pred == target) & (y_true != target))
    fn = jnp.sum((y_pred != target) & (y_true == target))
    return jnp.where(tp > 0, 2.0 * tp / (2.0 * tp + fp + fn), 0.0)


def _negative_f1(weights, cat_ll, observed, log_prior, y_true, target):
    pred = jnp.argmax(_log_numerator(cat_ll, observed, weights, log_prior), axis=1)
    return -_f1_of_class(y_true, pred, target).astype(cat_ll.dtype)


@scoped_x64
@jax.jit
def category_log_likelihoods(loglik, membership):
    """Per-category log-likelihoods ``log L(t|C)`` of Eq. 1.

    loglik: (n, P, K) ``log f_{p,C}(x_p)``, NaN where ``x_p`` is missing (a property is missing
        for every class at once, so column ``k = 0`` decides).
    membership: (T, P) 0/1, property ``p`` belongs to category ``t``.
    Returns ``(cat_ll: (n, T, K), observed: (n, T) bool)``; ``cat_ll`` is 0 where the category
    has no observed property.
    """
    return _category_log_likelihoods(loglik, membership)


@scoped_x64
@jax.jit
def log_numerator(cat_ll, observed, weights, log_prior):
    """log of the numerator of Eq. 1, ``log N(C|x)``: (n, K).

    cat_ll: (n, T, K) from :func:`category_log_likelihoods`; observed: (n, T) bool;
    weights: (T,) non-negative category weights ``alpha_t``; log_prior: (K,) ``log P(C)``.
    """
    return _log_numerator(cat_ll, observed, weights, log_prior)


@scoped_x64
@jax.jit
def posterior_and_outlier(cat_ll, observed, weights, log_prior):
    """Posterior of Eq. 1 and the outlier measure.

    cat_ll: (n, T, K); observed: (n, T) bool; weights: (T,); log_prior: (K,).
    Returns ``(posterior: (n, K), outlier_measure: (n,))`` with
    ``outlier_measure = -log10 sum_C N(C|x)`` (large = far from the training sample).
    """
    return _posterior_and_outlier(cat_ll, observed, weights, log_prior)


@scoped_x64
@jax.jit
def track_posteriors(loglik, membership, log_prior):
    """Probability tracks (the paper's Fig. 2): what each property or category alone says.

    loglik: (n, P, K) with NaN for missing values; membership: (T, P); log_prior: (K,).
    Returns ``(by_property: (n, P, K), by_category: (n, T, K))``: ``P(C) f_{p,C}(x_p)`` and
    ``P(C) L(t|C)`` normalised over the classes; NaN where the property (category) is unobserved.
    """
    lp = jnp.asarray(log_prior, loglik.dtype)
    obs_p = jnp.isfinite(loglik[:, :, :1])
    by_prop = jax.nn.softmax(jnp.where(obs_p, loglik, 0.0) + lp, axis=-1)
    by_prop = jnp.where(obs_p, by_prop, jnp.nan)
    cat, observed = _category_log_likelihoods(loglik, membership)
    by_cat = jax.nn.softmax(cat + lp, axis=-1)
    by_cat = jnp.where(observed[:, :, None], by_cat, jnp.nan)
    return by_prop, by_cat


@scoped_x64
@jax.jit
def f1_of_class(y_true, y_pred, target):
    """F1 score of class ``target`` from integer labels ``y_true, y_pred: (n,)``; 0 when it has no
    true positive. Returns a scalar."""
    return _f1_of_class(y_true, y_pred, target)


@scoped_x64
@jax.jit
def negative_f1_objective(weights, cat_ll, observed, log_prior, y_true, target):
    """The weight-tuning objective: ``-F1(target)`` of the argmax of Eq. 1 with these weights.

    weights: (T,); cat_ll: (n, T, K); observed: (n, T); log_prior: (K,); y_true: (n,) int;
    target: int class index. Returns a scalar (to be minimised; piecewise constant in the weights).
    """
    return _negative_f1(weights, cat_ll, observed, log_prior, y_true, target)


@scoped_x64
def tune_category_weights(cat_ll, observed, log_prior, y_true, target: int, key, *, popsize: int = 15,
                          maxiter: int = 100, tol: float = 0.01, dtype=jnp.float64) -> DEResult:
    """Category weights in ``[0, 1]^T`` maximising ``F1(target)`` by differential evolution.

    cat_ll: (n, T, K) out-of-fold per-category log-likelihoods; observed: (n, T); log_prior: (K,);
    y_true: (n,) int class indices; target: class index; key: a ``jax.random`` key or an int seed.
    The whole population of each generation is scored by one vmapped call of
    :func:`negative_f1_objective` (see :mod:`xsift.kernels.evolution`). Returns the
    :class:`~xsift.kernels.evolution.DEResult` (``x``: (T,) best weights, ``fun`` = -F1).
    """
    if isinstance(key, int):
        key = jax.random.PRNGKey(key)
    cat_ll = jnp.asarray(cat_ll, dtype)
    n_categories = cat_ll.shape[1]
    bounds = jnp.tile(jnp.asarray([[0.0, 1.0]], dtype), (n_categories, 1))
    args = (cat_ll, jnp.asarray(observed, bool), jnp.asarray(log_prior, dtype), jnp.asarray(y_true, jnp.int32),
            jnp.asarray(target, jnp.int32))
    return differential_evolution(_negative_f1, bounds, key, args=args, popsize=popsize, maxiter=maxiter,
                                  tol=tol, dtype=dtype)
