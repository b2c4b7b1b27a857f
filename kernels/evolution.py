"""Differential evolution (Storn & Price 1997) with the whole population scored at once.

The strategy and defaults are those of ``scipy.optimize.differential_evolution``
with ``strategy='best1bin'``: a population of ``max(5, popsize * d)`` members
initialised by Latin-hypercube sampling in the unit cube, mutation factor dithered
uniformly in ``[0.5, 1)`` once per generation, binomial crossover with rate 0.7
(one coordinate always taken from the mutant), out-of-bounds trial coordinates
resampled uniformly, greedy selection (trial replaces parent if not worse) and
scipy's stopping rule ``std(energies) <= atol + tol * |mean(energies)|``.

What differs from scipy, on purpose:

* every generation's trials are scored by ONE ``jax.vmap``-ed call of the objective
  (scipy's ``updating='deferred'``; scipy's default ``'immediate'`` updates the best
  member after each single evaluation, which cannot be vectorised). The base vector of
  ``best1`` is the best member at the start of the generation;
* the whole loop is one jitted ``lax.while_loop``, with randomness from ``jax.random``
  keys (seeded, reproducible, device-agnostic);
* no final L-BFGS-B ``polish`` (the objectives tuned here, e.g. an F1 score, are
  piecewise constant).

The objective is any jittable function ``objective(params: (d,), *args) -> scalar``
to be **minimised**; NaN energies count as +inf.
"""
from __future__ import annotations

from functools import partial
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from xsift.kernels import scoped_x64

__all__ = ["DEState", "DEResult", "latin_hypercube", "differential_evolution"]


class DEState(NamedTuple):
    population: jax.Array   # (M, d) in the unit cube
    energies: jax.Array     # (M,)
    key: jax.Array
    nit: jax.Array          # generations done
    nfev: jax.Array         # objective evaluations done
    converged: jax.Array    # bool


class DEResult(NamedTuple):
    x: jax.Array                    # (d,) best parameters, in the bounds' units
    fun: jax.Array                  # () its objective value
    population: jax.Array           # (M, d) final population, in the bounds' units
    population_energies: jax.Array  # (M,)
    nit: jax.Array
    nfev: jax.Array
    converged: jax.Array            # True if the tolerance rule stopped the run (else maxiter)


@scoped_x64
def latin_hypercube(key, n: int, d: int, dtype=jnp.float64):
    """(n, d) Latin-hypercube sample of the unit cube, as scipy's ``init='latinhypercube'``."""
    k_u, k_p = jax.random.split(key)
    samples = (jax.random.uniform(k_u, (n, d), dtype) / n
               + (jnp.arange(n, dtype=dtype) / n)[:, None])
    perms = jax.vmap(lambda k: jax.random.permutation(k, n))(jax.random.split(k_p, d))   # (d, n)
    return jnp.take_along_axis(samples, perms.T, axis=0)


def _generation(objective, args, lower, span, mutation, recombination, state: DEState):
    pop, energies, key = state.population, state.energies, state.key
    m, d = pop.shape
    dtype = pop.dtype
    key, k_scale, k_a, k_b, k_cross, k_fill, k_fix = jax.random.split(key, 7)
    scale = jax.random.uniform(k_scale, (), dtype, mutation[0], mutation[1])
    best = pop[jnp.argmin(energies)]
    # two distinct members, both different from the target i
    i = jnp.arange(m)
    a = jax.random.randint(k_a, (m,), 0, m - 1)
    b = jax.random.randint(k_b, (m,), 0, m - 2)
    b = jnp.where(b >= a, b + 1, b)
    r0, r1 = (i + 1 + a) % m, (i + 1 + b) % m
    mutant = best[None, :] + scale * (pop[r0] - pop[r1])
    cross = jax.random.uniform(k_cross, (m, d), dtype) < recombination
    fill = jax.random.randint(k_fill, (m,), 0, d)
    cross = cross | (jnp.arange(d)[None, :] == fill[:, None])
    trial = jnp.where(cross, mutant, pop)
    outside = (trial < 0) | (trial > 1)
    trial = jnp.where(outside, jax.random.uniform(k_fix, (m, d), dtype), trial)
    trial_energy = jax.vmap(lambda p: objective(lower + span * p, *args))(trial).astype(dtype)
    trial_energy = jnp.where(jnp.isnan(trial_energy), jnp.inf, trial_energy)
    better = trial_energy <= energies
    pop = jnp.where(better[:, None], trial, pop)
    energies = jnp.where(better, trial_energy, energies)
    return pop, energies, key


@partial(jax.jit, static_argnames=("objective", "popsize", "maxiter", "dtype"))
def _run(objective: Callable, args, bounds, key, popsize: int, maxiter: int, mutation, recombination,
         tol, atol, dtype):
    bounds = jnp.asarray(bounds, dtype)
    lower, span = bounds[:, 0], bounds[:, 1] - bounds[:, 0]
    d = bounds.shape[0]
    m = max(5, popsize * d)
    key, k_init = jax.random.split(key)
    pop = latin_hypercube(k_init, m, d, dtype)
    energies = jax.vmap(lambda p: objective(lower + span * p, *args))(pop).astype(dtype)
    energies = jnp.where(jnp.isnan(energies), jnp.inf, energies)

    def converged(e):
        finite = jnp.all(jnp.isfinite(e))
        return finite & (jnp.std(e) <= atol + tol * jnp.abs(jnp.mean(e)))

    state = DEState(pop, energies, key, jnp.asarray(0), jnp.asarray(m), converged(energies))

    def cond(s: DEState):
        return (s.nit < maxiter) & (~s.converged)

    def body(s: DEState):
        pop, e, k = _generation(objective, args, lower, span, mutation, recombination, s)
        return DEState(pop, e, k, s.nit + 1, s.nfev + m, converged(e))

    s = jax.lax.while_loop(cond, body, state)
    best = jnp.argmin(s.energies)
    return DEResult(x=lower + span * s.population[best], fun=s.energies[best],
                    population=lower + span[None, :] * s.population, population_energies=s.energies,
                    nit=s.nit, nfev=s.nfev, converged=s.converged)


@scoped_x64
def differential_evolution(objective: Callable, bounds, key, *, args=(), popsize: int = 15,
                           mutation=(0.5, 1.0), recombination: float = 0.7, maxiter: int = 1000,
                           tol: float = 0.01, atol: float = 0.0, dtype=jnp.float64) -> DEResult:
    """Minimise ``objective(params, *args)`` over a box by differential evolution (``best1bin``).

    objective: jittable ``(d,) -> ()``; a hashable function object (it is a static argument
        of the jitted loop: pass data through ``args``, not through closures that change,
        to avoid recompiling).
    bounds: (d, 2) lower and upper bound per parameter.
    key: a ``jax.random`` key (the seed).
    args: pytree of arrays passed to the objective (traced, so new data does not recompile).
    popsize: population is ``max(5, popsize * d)``.
    mutation: ``(low, high)`` dither range, or one number for a constant factor.
    maxiter: maximum generations; set ``tol=0`` (and ``atol=0``) for exactly ``maxiter``
        generations, e.g. to compare throughput.
    Returns a :class:`DEResult`.
    """
    if not isinstance(mutation, (tuple, list)):
        mutation = (float(mutation), float(mutation))
    if not 0.0 <= recombination <= 1.0:
        raise ValueError(f"recombination must be in [0, 1], got {recombination}")
    b = jnp.asarray(bounds, dtype)
    if b.ndim != 2 or b.shape[1] != 2 or not bool(jnp.all(b[:, 1] > b[:, 0])):
        raise ValueError("bounds must be (d, 2) with upper > lower")
    return _run(objective, tuple(args), b, key, int(popsize), int(maxiter),
                (float(mutation[0]), float(mutation[1])), float(recombination),
                float(tol), float(atol), dtype)
