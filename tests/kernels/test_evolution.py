"""xsift.kernels.evolution against scipy.optimize.differential_evolution with the same settings."""
import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import differential_evolution as scipy_de
from scipy.optimize import rosen

from xsift.kernels.evolution import differential_evolution, latin_hypercube

SHIFT = np.array([0.3, -1.2, 2.0, 0.7, -0.4])


def rosenbrock(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def shifted_sphere(x, centre):
    return jnp.sum((x - centre) ** 2)


def _success_rates(objective, scipy_objective, bounds, optimum, args=(), seeds=range(3)):
    ours = [np.abs(np.asarray(differential_evolution(objective, bounds, jax.random.PRNGKey(s), args=args).x)
                   - optimum).max() < 1e-2 for s in seeds]
    theirs = [np.abs(scipy_de(scipy_objective, bounds, seed=s, polish=False).x - optimum).max() < 1e-2
              for s in seeds]
    return sum(ours), sum(theirs)


def test_finds_rosenbrock_minimum_as_reliably_as_scipy():
    ours, theirs = _success_rates(rosenbrock, rosen, [(-5, 5)] * 2, np.ones(2))
    assert ours >= theirs and ours == 3


def test_finds_shifted_sphere_minimum_as_reliably_as_scipy():
    ours, theirs = _success_rates(shifted_sphere, lambda x: np.sum((x - SHIFT[:3]) ** 2), [(-5, 5)] * 3, SHIFT[:3],
                                  args=(SHIFT[:3],))
    assert ours >= theirs and ours == 3


def test_seeded_fixed_generations_and_evaluation_count():
    b = [(-5, 5)] * 3
    # NumPy float64 args: the kernel's float64 scope keeps them float64 (a jnp array built outside
    # that scope would already be float32)
    r1 = differential_evolution(shifted_sphere, b, jax.random.PRNGKey(7), args=(SHIFT[:3],),
                                maxiter=20, tol=0.0)
    r2 = differential_evolution(shifted_sphere, b, jax.random.PRNGKey(7), args=(SHIFT[:3],),
                                maxiter=20, tol=0.0)
    np.testing.assert_array_equal(np.asarray(r1.population), np.asarray(r2.population))
    assert int(r1.nit) == 20 and not bool(r1.converged)
    assert int(r1.nfev) == 45 * 21          # popsize 15 x 3 dims, initial population + 20 generations
    assert np.asarray(r1.population).shape == (45, 3)
    # greedy selection: the best energy equals the objective at x, and all members lie in the bounds
    assert float(r1.fun) == float(np.sum((np.asarray(r1.x) - SHIFT[:3]) ** 2))
    assert np.all(np.abs(np.asarray(r1.population)) <= 5)


def test_latin_hypercube_has_one_point_per_stratum():
    n, d = 30, 4
    s = np.asarray(latin_hypercube(jax.random.PRNGKey(0), n, d))
    for j in range(d):
        assert sorted(np.floor(s[:, j] * n).astype(int)) == list(range(n))


def test_nan_objective_is_never_selected():
    def f(x):
        return jnp.where(x[0] > 0, jnp.nan, jnp.sum((x + 1.0) ** 2))
    r = differential_evolution(f, [(-3, 3)] * 2, jax.random.PRNGKey(1), maxiter=200)
    assert np.all(np.isfinite(np.asarray(r.population_energies)))
    np.testing.assert_allclose(np.asarray(r.x), [-1, -1], atol=2e-2)
