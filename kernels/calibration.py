"""Temperature scaling of class log-probabilities (Guo, Pleiss, Sun & Weinberger 2017, "On Calibration
of Modern Neural Networks", ICML, Sec. 4.2), fitted by L-BFGS steps (optax) on ``s = log T``.

For a row with class log-probabilities ``z`` (``-inf`` for a class the classifier rules out, e.g. a
class excluded in the row's cluster) and a temperature ``T > 0``::

    log q_c = z_c / T - logsumexp_{j usable} (z_j / T)          (q proportional to p^(1/T))
    NLL(T)  = -(1/n) sum_i log q_{i, y_i}

``T > 1`` flattens over-confident probabilities, ``T < 1`` sharpens them; the order of the classes in
a row (hence the predicted class) never changes. The NLL is convex in ``1/T``, so it has one minimum in
``s = log T``. Every row must have a usable true class (finite ``z_y``): rows whose true class has
probability 0 are no temperature's business (they stay at 0 for every T) and are left out by the
caller.

Functions (arrays in, arrays out; float64 throughout, the fit is one scalar):

``temperature_nll(log_proba, y, temperature)``   NLL at one temperature
``fit_log_temperature(log_proba, y)``             (T, NLL at T, iterations, converged)
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from xsift.kernels import scoped_x64

__all__ = ["temperature_nll", "fit_log_temperature"]


def _nll_of_log_t(s, z, usable, y):
    """Mean NLL of the true classes ``y`` (n,) at temperature ``exp(s)``; ``z`` (n, L) with unusable
    entries already replaced by 0 (no arithmetic on infinities: the gradient stays finite)."""
    scaled = z * jnp.exp(-s)
    top = jnp.max(jnp.where(usable, scaled, jnp.finfo(scaled.dtype).min), axis=1)
    total = jnp.sum(jnp.where(usable, jnp.exp(scaled - top[:, None]), 0.0), axis=1)
    lse = top + jnp.log(total)
    zy = jnp.take_along_axis(scaled, y[:, None], axis=1)[:, 0]
    return jnp.mean(lse - zy)


def _inputs(log_proba, y):
    z = np.asarray(log_proba, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if z.ndim != 2 or y.shape != (z.shape[0],):
        raise ValueError(f"log_proba must be (n, L) and y (n,), got {z.shape} and {y.shape}")
    if z.shape[0] == 0:
        raise ValueError("no rows to fit a temperature on")
    if y.min() < 0 or y.max() >= z.shape[1]:
        raise ValueError(f"true classes must lie in [0, {z.shape[1]})")
    usable = np.isfinite(z)
    if not usable[np.arange(len(y)), y].all():
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


@partial(jax.jit, static_argnames=("max_iter",))
def _fit(z, usable, y, s0, tol, max_iter):
    import optax
    import optax.tree_utils as otu
    norm = getattr(otu, "tree_norm", None) or otu.tree_l2_norm     # renamed in optax 0.2.5

    def fun(s):
        return _nll_of_log_t(s[0], z, usable, y)

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
def fit_log_temperature(log_proba, y, *, max_iter: int = 100, tol: float = 1e-10):
    """The temperature minimising :func:`temperature_nll`, by L-BFGS (optax, zoom line search) on
    ``s = log T`` from ``T = 1``, one jitted loop.

    log_proba (n, L), y (n,): as :func:`temperature_nll`. Stops when ``|dNLL/ds| < tol`` or after
    ``max_iter`` iterations. Returns ``(T, NLL at T, iterations, converged)`` as Python scalars
    (``converged``: the gradient test was met). Raises ValueError as :func:`temperature_nll`.
    """
    z, usable, y = _inputs(log_proba, y)
    s, nll, count, grad_norm = _fit(z, usable, y, jnp.zeros(1, jnp.float64), jnp.float64(tol), int(max_iter))
    return float(np.exp(float(s))), float(nll), int(count), bool(float(grad_norm) < tol)
