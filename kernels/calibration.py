"""Temperature scaling of class log-probabilities (Guo, Pleiss, Sun & Weinberger 2017, "On Calibration
of Modern Neural Networks", ICML, Sec. 4.2), fitted by L-BFGS steps (optax) on ``s = log T``.

For a row with class log-probabilities ``z`` (``-inf`` for a class the classifier rules out, e.g. a
class excluded in the row's cluster) and a temperature ``T > 0``::

    log q_c = z_c / T - logsumexp_{j usable} (z_j / T)          (q proportional to p^(1/T))
    NLL(T)  = -(1/n) sum_i log q_{i, y_i}
    BS(T)   = (1/n) sum_i sum_c (q_{i, c} - [c = y_i])^2              (Brier 1950 score)

``T > 1`` flattens over-confident probabilities, ``T < 1`` sharpens them; the order of the classes in
a row (hence the predicted class) never changes. The NLL is convex in ``1/T``, so it has one minimum in
``s = log T``. Every row must have a usable true class (finite ``z_y``): rows whose true class has
probability 0 are no temperature's business (they stay at 0 for every T) and are left out by the
caller. Both are proper scoring rules; the Brier score is bounded per row (at most 2), so a few rows
whose true class the classifier puts at a vanishing probability cannot dominate it as they dominate
the NLL (a softmin of squared Mahalanobis distances has such a heavy tail), and rows whose true class
is ruled out are allowed in it (they add a T-dependent term like any other row).

Functions (arrays in, arrays out; float64 throughout, the fit is one scalar):

``temperature_nll(log_proba, y, temperature)``   NLL at one temperature
``temperature_brier(log_proba, y, temperature)`` Brier score at one temperature
``fit_log_temperature(log_proba, y, objective)``  (T, objective at T, iterations, converged)
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from xsift.kernels import scoped_x64

__all__ = ["temperature_nll", "temperature_brier", "fit_log_temperature"]


def _nll_of_log_t(s, z, usable, y):
    """Mean NLL of the true classes ``y`` (n,) at temperature ``exp(s)``; ``z`` (n, L) with unusable
    entries already replaced by 0 (no arithmetic on infinities: the gradient stays finite)."""
    scaled = z * jnp.exp(-s)
    top = jnp.max(jnp.where(usable, scaled, jnp.finfo(scaled.dtype).min), axis=1)
    total = jnp.sum(jnp.where(usable, jnp.exp(scaled - top[:, None]), 0.0), axis=1)
    lse = top + jnp.log(total)
    zy = jnp.take_along_axis(scaled, y[:, None], axis=1)[:, 0]
    return jnp.mean(lse - zy)


def _brier_of_log_t(s, z, usable, y):
    """Mean Brier score of temperature ``exp(s)``; arguments as :func:`_nll_of_log_t` (the true class
    may be unusable: its probability is then 0 at every T)."""
    scaled = z * jnp.exp(-s)
    top = jnp.max(jnp.where(usable, scaled, jnp.finfo(scaled.dtype).min), axis=1)
    e = jnp.where(usable, jnp.exp(scaled - top[:, None]), 0.0)
    q = e / jnp.sum(e, axis=1, keepdims=True)
    onehot = jax.nn.one_hot(y, z.shape[1], dtype=q.dtype)
    return jnp.mean(jnp.sum((q - onehot) ** 2, axis=1))


_OBJECTIVES = {"nll": _nll_of_log_t, "brier": _brier_of_log_t}


def _inputs(log_proba, y, *, true_class_usable=True):
    z = np.asarray(log_proba, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if z.ndim != 2 or y.shape != (z.shape[0],):
        raise ValueError(f"log_proba must be (n, L) and y (n,), got {z.shape} and {y.shape}")
    if z.shape[0] == 0:
        raise ValueError("no rows to fit a temperature on")
    if y.min() < 0 or y.max() >= z.shape[1]:
        raise ValueError(f"true classes must lie in [0, {z.shape[1]})")
    usable = np.isfinite(z)
    if not usable.any(axis=1).all():
        raise ValueError("every row needs at least one class with a finite log-probability")
    if true_class_usable and not usable[np.arange(len(y)), y].all():
        raise ValueError("every row's true class must have a finite log-probability")
    return jnp.asarray(np.where(usable, z, 0.0)), jnp.asarray(usable), jnp.asarray(y)


@scoped_x64
def temperature_nll(log_proba, y, temperature) -> float:
    """Mean negative log-likelihood of the true classes after temperature scaling.

    log_proba (n, L) class log-probabilities (``-inf`` = class ruled out); y (n,) int true classes,
    each with a finite log-probability; temperature > 0. Returns a Python float.
    Raises ValueError for mismatched shapes, classes out of range or an impossible true class.
    """
    z, usable, y = _inputs(log_proba, y)
    return float(_nll_of_log_t(jnp.log(jnp.asarray(float(temperature), jnp.float64)), z, usable, y))


@scoped_x64
def temperature_brier(log_proba, y, temperature) -> float:
    """Mean Brier score ``(1/n) sum_i sum_c (q_ic - [c = y_i])^2`` after temperature scaling.

    log_proba (n, L) class log-probabilities (``-inf`` = class ruled out, the true class included);
    y (n,) int true classes; temperature > 0. Returns a Python float in [0, 2].
    Raises ValueError for mismatched shapes, classes out of range or a row with no usable class.
    """
    z, usable, y = _inputs(log_proba, y, true_class_usable=False)
    return float(_brier_of_log_t(jnp.log(jnp.asarray(float(temperature), jnp.float64)), z, usable, y))


# start of the Brier fit: the best of a log-spaced grid of T in [1/20, 20] (the Brier score need not be
# convex in log T, the NLL is)
_GRID = np.linspace(np.log(0.05), np.log(20.0), 61)


@partial(jax.jit, static_argnames=("max_iter", "objective"))
def _fit(z, usable, y, s0, tol, max_iter, objective="nll"):
    import optax
    import optax.tree_utils as otu
    norm = getattr(otu, "tree_norm", None) or otu.tree_l2_norm     # renamed in optax 0.2.5
    loss = _OBJECTIVES[objective]

    if objective == "brier":
        grid = jnp.asarray(_GRID, z.dtype)
        values = jax.lax.map(lambda s: loss(s, z, usable, y), grid)
        s0 = grid[jnp.argmin(values)][None]

    def fun(s):
        return loss(s[0], z, usable, y)

    solver = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(fun)

    def step(carry):
        s, state = carry
        value, grad = value_and_grad(s, state=state)
        updates, state = solver.update(grad, state, s, value=value, grad=grad, value_fn=fun)
        return optax.apply_updates(s, updates), state

    def going_on(carry):
        _, state = carry
        count = otu.tree_get(state, "count")
        grad = otu.tree_get(state, "grad")
        return (count == 0) | ((count < max_iter) & (norm(grad) >= tol))

    s, state = jax.lax.while_loop(going_on, step, (s0, solver.init(s0)))
    grad_norm = norm(jax.grad(fun)(s))
    return s[0], fun(s), otu.tree_get(state, "count"), grad_norm


@scoped_x64
def fit_log_temperature(log_proba, y, *, objective: str = "nll", max_iter: int = 100, tol: float = 1e-10):
    """The temperature minimising :func:`temperature_nll` (``objective="nll"``, from ``T = 1``) or
    :func:`temperature_brier` (``"brier"``, from the best T of a log grid over [1/20, 20]), by L-BFGS
    (optax, zoom line search) on ``s = log T``, one jitted loop.

    log_proba (n, L), y (n,): as the objective's function. Stops when ``|d objective/ds| < tol`` or
    after ``max_iter`` iterations. Returns ``(T, objective at T, iterations, converged)`` as Python
    scalars (``converged``: the gradient test was met). Raises ValueError as the objective's function
    or for an unknown objective.
    """
    if objective not in _OBJECTIVES:
        raise ValueError(f"objective {objective!r}: expected one of {', '.join(_OBJECTIVES)}")
    z, usable, y = _inputs(log_proba, y, true_class_usable=objective == "nll")
    s, nll, count, grad_norm = _fit(z, usable, y, jnp.zeros(1, jnp.float64), jnp.float64(tol), int(max_iter),
                                    objective)
    return float(np.exp(float(s))), float(nll), int(count), bool(float(grad_norm) < tol)
