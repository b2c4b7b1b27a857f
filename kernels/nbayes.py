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

The method as its authors' code runs it (CLAXBOI, ``claxboi/classify_new.py`` of
``htranin/classificationXray``; :func:`category_terms`, :func:`weighted_log_numerator`)
---------------------------------------------------------------------------------------------
With ``q_pC = (fraction of class-C training sources where p is present + eps) / (1 + 2 eps)``
(``eps``: the missing floor), per-source error exponents ``e_p`` (:func:`error_exponents`: 1/sigma
over its category mean, else 1) and the missing-value exponent ``a``::

    S_t(C) = sum_{p in t, observed} [e_p log f_pC(x_p) + log q_pC] + a sum_{p in t, missing} log(1 - q_pC)
    log N(C|x) = log P(C) + c(x) sum_t alpha_t S_t(C)
    c(x) = 1 / sum_{t observed} alpha_t                                    ("eq1")
    c(x) = 20 / (sum_t alpha_t * (n_obs + a n_mis / 2))                    ("claxboi")

``n_obs``/``n_mis``: the source's observed and missing properties (all categories). CLAXBOI writes
this as ``prod_t (prod_obs f^e q * prod_mis (1-q)^a)^(5 alpha_t / (2 n_obs + a n_mis))``, raised to
``8 / sum_t alpha_t``, times the prior. Without missing-value terms the ``log q`` and ``a`` terms
are absent and ``n_mis`` counts 0; with them every category counts as observed (its missing
properties are evidence too). The present-property factor ``q`` is not raised to ``a`` (as CLAXBOI).

Every function here is batched over rows x properties x classes (arrays ``(n, P, K)``), jitted,
dtype-generic (the result has the dtype of the log-likelihoods) and runs under
:func:`xsift.kernels.scoped_x64`, so float64 inputs stay float64 whatever the caller's JAX setting.
Rows are independent: a table may be split into row chunks and the results concatenated.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from typing import NamedTuple

from xsift.kernels import scoped_x64
from xsift.kernels.evolution import DEResult, differential_evolution

__all__ = ["category_log_likelihoods", "log_numerator", "posterior_and_outlier", "track_posteriors",
           "f1_of_class", "f1_of_group", "target_membership", "negative_f1_objective", "tune_category_weights", "CategoryTerms", "error_exponents",
           "category_terms", "weighted_log_numerator", "weighted_posterior_and_outlier", "alternative_classes",
           "category_track_posteriors", "negative_f1_of_terms", "tune_weights_and_alpha"]


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


def _membership(target, n_classes):
    """(K,) bool membership of the target group: a scalar class index is the group of that one class."""
    target = jnp.asarray(target)
    if target.ndim == 0:
        return jnp.arange(n_classes) == target
    return target > 0


def _f1_of_group(y_true, y_pred, group):
    in_true, in_pred = group[y_true], group[y_pred]
    tp = jnp.sum(in_pred & in_true)
    fp = jnp.sum(in_pred & ~in_true)
    fn = jnp.sum(~in_pred & in_true)
    return jnp.where(tp > 0, 2.0 * tp / (2.0 * tp + fp + fn), 0.0)


def _negative_f1(weights, cat_ll, observed, log_prior, y_true, target):
    pred = jnp.argmax(_log_numerator(cat_ll, observed, weights, log_prior), axis=1)
    return -_f1_of_group(y_true, pred, _membership(target, cat_ll.shape[2])).astype(cat_ll.dtype)


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
def f1_of_group(y_true, y_pred, group):
    """F1 score of a group of classes (e.g. XRB = HMXB + LMXB): of "predicted class in the group"
    against "true class in the group", the binary F1 of the labels mapped to in/out of the group.

    y_true, y_pred: (n,) int class indices in ``0..K-1``; group: (K,) 0/1 membership of each class
    (one class is the group of one: the same as :func:`f1_of_class`). Returns a scalar, 0 when no
    row is a true positive.
    """
    return _f1_of_group(y_true, y_pred, jnp.asarray(group) > 0)


def target_membership(target, n_classes: int) -> np.ndarray:
    """(K,) float 0/1 membership vector of a tuning target: ``target`` an int class index (the group
    of one) or a sequence of class indices (an aggregated class). Raises ValueError for an index
    outside ``0..n_classes-1`` or an empty group."""
    idx = np.atleast_1d(np.asarray(target, dtype=np.int64))
    if idx.size == 0 or idx.min() < 0 or idx.max() >= int(n_classes):
        raise ValueError(f"target classes {idx.tolist()}: expected indices in 0..{int(n_classes) - 1}")
    out = np.zeros(int(n_classes))
    out[idx] = 1.0
    return out


@scoped_x64
@jax.jit
def negative_f1_objective(weights, cat_ll, observed, log_prior, y_true, target):
    """The weight-tuning objective: ``-F1(target)`` of the argmax of Eq. 1 with these weights.

    weights: (T,); cat_ll: (n, T, K); observed: (n, T); log_prior: (K,); y_true: (n,) int;
    target: int class index, or (K,) 0/1 membership of a group of classes (:func:`f1_of_group`). Returns a scalar (to be minimised; piecewise constant in the weights).
    """
    return _negative_f1(weights, cat_ll, observed, log_prior, y_true, target)


@scoped_x64
def tune_category_weights(cat_ll, observed, log_prior, y_true, target: int, key, *, popsize: int = 15,
                          maxiter: int = 100, tol: float = 0.01, dtype=jnp.float64) -> DEResult:
    """Category weights in ``[0, 1]^T`` maximising ``F1(target)`` by differential evolution.

    cat_ll: (n, T, K) out-of-fold per-category log-likelihoods; observed: (n, T); log_prior: (K,);
    y_true: (n,) int class indices; target: class index or (K,) 0/1 group membership;
    key: a ``jax.random`` key or an int seed. The whole population of each generation is scored by one vmapped call of
    :func:`negative_f1_objective` (see :mod:`xsift.kernels.evolution`). Returns the
    :class:`~xsift.kernels.evolution.DEResult` (``x``: (T,) best weights, ``fun`` = -F1).
    """
    if isinstance(key, int):
        key = jax.random.PRNGKey(key)
    cat_ll = jnp.asarray(cat_ll, dtype)
    n_categories = cat_ll.shape[1]
    bounds = jnp.tile(jnp.asarray([[0.0, 1.0]], dtype), (n_categories, 1))
    args = (cat_ll, jnp.asarray(observed, bool), jnp.asarray(log_prior, dtype), jnp.asarray(y_true, jnp.int32),
            jnp.asarray(target, jnp.int32))     # an int index, or a (K,) 0/1 group membership
    return differential_evolution(_negative_f1, bounds, key, args=args, popsize=popsize, maxiter=maxiter,
                                  tol=tol, dtype=dtype)


# --------------------------------------------------------------------------- CLAXBOI's form


class CategoryTerms(NamedTuple):
    """Per-source, per-category sums of :func:`category_terms` (module docstring).

    observed_ll: (n, T, K) ``sum_{p in t, observed} [e_p log f_pC(x_p) + log q_pC]``
    missing_ll:  (n, T, K) ``sum_{p in t, missing} log(1 - q_pC)`` (0 without missing-value terms)
    observed:    (n, T) bool, the category enters the sum (has an observed property; every category
                 with at least one property when missing-value terms are on)
    n_observed:  (n,) observed properties; n_missing: (n,) missing ones (0 without missing-value terms)
    """
    observed_ll: jax.Array
    missing_ll: jax.Array
    observed: jax.Array
    n_observed: jax.Array
    n_missing: jax.Array


@scoped_x64
@jax.jit
def error_exponents(sigma, observed, has_error, membership):
    """Per-source error exponents ``e_p`` of the log-likelihoods (CLAXBOI's ``weight = "auto"``).

    sigma: (n, P) 1-sigma error of each value on the property's (transformed) axis; observed: (n, P)
    bool; has_error: (P,) bool, the property has an error column; membership: (T, P).
    ``r_p = 1 / sigma_p`` for a property with an error column, 1 for one without (as CLAXBOI does);
    ``e_p = r_p / mean_{q in t(p), observed, r_q known} r_q``, so the exponents of a category's
    observed properties average 1. A property with an error column whose sigma is missing, not
    finite or <= 0 gets ``e_p = 1`` (CLAXBOI's 1/NaN silently dropped every observed term of the
    category). Returns (n, P); 0 where the value is missing.
    """
    sigma = jnp.asarray(sigma)
    dtype = sigma.dtype if jnp.issubdtype(sigma.dtype, jnp.floating) else jnp.float64
    sigma = sigma.astype(dtype)
    good = jnp.isfinite(sigma) & (sigma > 0)
    r = jnp.where(jnp.asarray(has_error)[None, :], jnp.where(good, 1.0 / jnp.where(good, sigma, 1.0), 0.0), 1.0)
    known = jnp.asarray(observed) & (~jnp.asarray(has_error)[None, :] | good)
    m = jnp.asarray(membership, dtype)
    sum_r = jnp.where(known, r, 0.0) @ m.T                 # (n, T)
    cnt = known.astype(dtype) @ m.T
    mean_of_p = (sum_r / jnp.where(cnt > 0, cnt, 1.0)) @ m  # (n, P): the mean of p's category
    e = jnp.where(known, r / jnp.where(mean_of_p > 0, mean_of_p, 1.0), 1.0)
    return jnp.where(jnp.asarray(observed), e, 0.0)


def _category_terms(loglik, membership, exponents, log_present, log_absent, missing):
    dtype = loglik.dtype
    obs = jnp.isfinite(loglik[:, :, 0])
    m = jnp.asarray(membership, dtype)
    ll = jnp.where(obs[:, :, None], loglik, 0.0) * jnp.asarray(exponents, dtype)[:, :, None]
    if missing:
        ll = ll + jnp.where(obs[:, :, None], jnp.asarray(log_present, dtype)[None], 0.0)
        mis = jnp.where(obs[:, :, None], 0.0, jnp.asarray(log_absent, dtype)[None])
        missing_ll = jnp.einsum("tp,npk->ntk", m, mis)
        observed = jnp.broadcast_to(jnp.sum(m, axis=1)[None, :] > 0, (loglik.shape[0], m.shape[0]))
        n_mis = jnp.sum(~obs, axis=1).astype(dtype)
    else:
        missing_ll = jnp.zeros((loglik.shape[0], m.shape[0], loglik.shape[2]), dtype)
        observed = (obs.astype(dtype) @ m.T) > 0
        n_mis = jnp.zeros(loglik.shape[0], dtype)
    observed_ll = jnp.einsum("tp,npk->ntk", m, ll)
    return CategoryTerms(observed_ll, missing_ll, observed, jnp.sum(obs, axis=1).astype(dtype), n_mis)


@scoped_x64
@partial(jax.jit, static_argnames=("missing",))
def category_terms(loglik, membership, exponents, log_present, log_absent, missing: bool) -> CategoryTerms:
    """The per-category sums of CLAXBOI's posterior (module docstring).

    loglik: (n, P, K) ``log f_pC(x_p)``, NaN where missing; membership: (T, P); exponents: (n, P)
    error exponents ``e_p`` (ones for none); log_present, log_absent: (P, K) ``log q_pC`` and
    ``log(1 - q_pC)``; missing: whether the missing-value terms enter (static).
    Returns :class:`CategoryTerms`. With ``missing=False`` and unit exponents, ``observed_ll`` and
    ``observed`` equal :func:`category_log_likelihoods`.
    """
    return _category_terms(loglik, membership, exponents, log_present, log_absent, missing)


def _weighted_log_numerator(terms, weights, alpha, log_prior, claxboi):
    observed_ll, missing_ll, observed, n_obs, n_mis = terms
    dtype = observed_ll.dtype
    w = jnp.asarray(weights, dtype)
    a = jnp.asarray(alpha, dtype)
    obs = observed.astype(dtype)
    masked = jnp.where(observed[:, :, None], observed_ll + a * missing_ll, 0.0)
    num = jnp.einsum("t,ntk->nk", w, masked)
    if claxboi:
        denom = jnp.sum(w) * (n_obs + 0.5 * a * n_mis) / 20.0
    else:
        denom = jnp.einsum("t,nt->n", w, obs)
    weighted = num / jnp.where(denom > 0, denom, 1.0)[:, None]
    return jnp.asarray(log_prior, dtype)[None, :] + weighted


@scoped_x64
@partial(jax.jit, static_argnames=("claxboi",))
def weighted_log_numerator(terms: CategoryTerms, weights, alpha, log_prior, claxboi: bool = False):
    """``log N(C|x)``: (n, K) of the module docstring's CLAXBOI form.

    terms: :class:`CategoryTerms`; weights: (T,) ``alpha_t``; alpha: missing-value exponent ``a``;
    log_prior: (K,); claxboi: the ``"claxboi"`` exponent normalisation (else ``"eq1"``, static).
    With ``"eq1"``, no missing-value terms and unit exponents this is :func:`log_numerator`.
    """
    return _weighted_log_numerator(terms, weights, alpha, log_prior, claxboi)


@scoped_x64
@partial(jax.jit, static_argnames=("claxboi",))
def weighted_posterior_and_outlier(terms: CategoryTerms, weights, alpha, log_prior, claxboi: bool = False):
    """Posterior (n, K) and outlier measure (n,) ``-log10 sum_C N(C|x)`` of :func:`weighted_log_numerator`."""
    ln = _weighted_log_numerator(terms, weights, alpha, log_prior, claxboi)
    lse = jax.scipy.special.logsumexp(ln, axis=1)
    return jnp.exp(ln - lse[:, None]), -lse / jnp.log(jnp.asarray(10.0, ln.dtype))


@scoped_x64
@partial(jax.jit, static_argnames=("claxboi",))
def alternative_classes(terms: CategoryTerms, weights, alpha, log_prior, claxboi: bool = False):
    """The class predicted when category t is left out, for every source and category: (n, T) int.

    Column t is the argmax over classes of :func:`weighted_log_numerator` with ``alpha_t = 0`` (the
    other weights and the normalisation's ``sum alpha`` without it), as CLAXBOI's ``alt`` (their
    paper's probability tracks). With no other category left, the argmax of the priors.
    """
    w = jnp.asarray(weights, terms.observed_ll.dtype)
    masks = 1.0 - jnp.eye(w.shape[0], dtype=w.dtype)
    return jax.vmap(lambda m: jnp.argmax(_weighted_log_numerator(terms, w * m, alpha, log_prior, claxboi),
                                         axis=1), out_axes=1)(masks)


@scoped_x64
@jax.jit
def category_track_posteriors(terms: CategoryTerms, alpha, log_prior):
    """What each category alone says: ``P(C) exp(S_t(C))`` normalised over the classes, (n, T, K);
    NaN where the category does not enter (``terms.observed`` false)."""
    s = terms.observed_ll + jnp.asarray(alpha, terms.observed_ll.dtype) * terms.missing_ll
    by_cat = jax.nn.softmax(s + jnp.asarray(log_prior, s.dtype), axis=-1)
    return jnp.where(terms.observed[:, :, None], by_cat, jnp.nan)


def _negative_f1_terms(params, terms, log_prior, y_true, target, alpha, tune_alpha, claxboi):
    if tune_alpha:
        weights, alpha = params[:-1], params[-1]
    else:
        weights = params
    pred = jnp.argmax(_weighted_log_numerator(terms, weights, alpha, log_prior, claxboi), axis=1)
    group = _membership(target, terms.observed_ll.shape[2])
    return -_f1_of_group(y_true, pred, group).astype(terms.observed_ll.dtype)


@scoped_x64
@partial(jax.jit, static_argnames=("tune_alpha", "claxboi"))
def negative_f1_of_terms(params, terms: CategoryTerms, log_prior, y_true, target, alpha, tune_alpha: bool = False,
                         claxboi: bool = False):
    """``-F1(target)`` of the argmax of :func:`weighted_log_numerator`. params: (T,) weights, or
    (T + 1,) weights then ``a`` when ``tune_alpha`` (then ``alpha`` is ignored). target: int class
    index, or (K,) 0/1 membership of a group of classes (:func:`f1_of_group`: XRB = HMXB + LMXB)."""
    return _negative_f1_terms(params, terms, log_prior, y_true, target, alpha, tune_alpha, claxboi)


class _TermsObjective:
    """Hashable objective for the DE loop (static flags in the object, data through args)."""

    def __init__(self, tune_alpha: bool, claxboi: bool):
        self.tune_alpha, self.claxboi = bool(tune_alpha), bool(claxboi)

    def __hash__(self):
        return hash((type(self), self.tune_alpha, self.claxboi))

    def __eq__(self, other):
        return type(self) is type(other) and (self.tune_alpha, self.claxboi) == (other.tune_alpha, other.claxboi)

    def __call__(self, params, terms, log_prior, y_true, target, alpha):
        return _negative_f1_terms(params, terms, log_prior, y_true, target, alpha, self.tune_alpha, self.claxboi)


@scoped_x64
def tune_weights_and_alpha(terms: CategoryTerms, log_prior, y_true, target: int, key, *, alpha: float = 1.0,
                           tune_alpha: bool = False, claxboi: bool = False, popsize: int = 15, maxiter: int = 100,
                           tol: float = 0.01, dtype=jnp.float64) -> DEResult:
    """Category weights in ``[0, 1]^T`` (and, with ``tune_alpha``, the missing-value exponent ``a`` in
    ``[0, 1]``, CLAXBOI's bounds) maximising ``F1(target)`` by differential evolution.

    terms: out-of-fold :class:`CategoryTerms` (n rows); log_prior: (K,); y_true: (n,) int; target:
    class index, or (K,) 0/1 membership of a group of classes (:func:`target_membership`); key: ``jax.random`` key or int seed; alpha: the fixed ``a`` when not tuned.
    Returns the :class:`~xsift.kernels.evolution.DEResult` (``x``: (T,) or (T + 1,), last = ``a``).
    """
    if isinstance(key, int):
        key = jax.random.PRNGKey(key)
    terms = CategoryTerms(*(jnp.asarray(a, dtype) if i != 2 else jnp.asarray(a, bool) for i, a in enumerate(terms)))
    d = terms.observed_ll.shape[1] + (1 if tune_alpha else 0)
    bounds = jnp.tile(jnp.asarray([[0.0, 1.0]], dtype), (d, 1))
    args = (terms, jnp.asarray(log_prior, dtype), jnp.asarray(y_true, jnp.int32), jnp.asarray(target, jnp.int32),
            jnp.asarray(alpha, dtype))
    return differential_evolution(_TermsObjective(tune_alpha, claxboi), bounds, key, args=args, popsize=popsize,
                                  maxiter=maxiter, tol=tol, dtype=dtype)
