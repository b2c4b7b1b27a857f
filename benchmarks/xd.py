"""xsift's extreme deconvolution side by side with astroML's XDGMM and a batched NumPy transcription.

Same data (a 6-component, 12-d mixture with random full covariances, each measurement scattered by
its own Gaussian noise of per-row, per-feature variance), same starting parameters, every feature
observed (astroML's XDGMM has no missing-feature projection), float64, no covariance regularisation
(astroML has none). Per-iteration time of each peer:

* xsift: :func:`xsift.kernels.xd.fit_xd` from the start with ``tol=0``: (T(n2 iterations) -
  T(n1 iterations)) / (n2 - n1), each T the best of --timing-repeats runs, so input checks, layout and
  the host transfer cancel (the program compiles in a warm-up call first);
* astroML: ``XDGMM._EMstep`` (its E- and M-step, Bovy et al. 2011 Eqs. 16-18, one Python ``linalg.inv``
  per row and component) timed directly, n2 iterations, divided by n2;
* NumPy: :func:`numpy_xd_step`, the same update with NumPy's batched ``np.linalg.inv`` over all rows
  and components at once (no Python loop over rows), timed as astroML.

After n2 iterations the three log-likelihoods are printed so that equal work is visible.

``--classify N`` (default 1,000,000; 0 skips it) then times the marginalised classify stage of
cluster-then-label (cluster assignment and class probabilities, ``ClusterThenLabel._clusters`` and
``_class_probabilities``: :mod:`xsift.kernels.marginal` for the incomplete rows) on N transformed detections
drawn from a 200k simulated catalogue's complete rows, 20 % of them then missing one band (the simulator's
soft, hard or broad light-curve features), against the complete-row stage on the same N rows before
removal; best of --timing-repeats after a warm-up.

    python benchmarks/xd.py                                  # N = 10k and 100k (astroML at 100k: minutes)
    python benchmarks/xd.py --sizes 10000 --iterations 2
    python benchmarks/xd.py --sizes 10000 100000 --astroml-max 10000
    python benchmarks/xd.py --sizes --classify 1000000      # the classify stage only
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
from scipy.special import logsumexp  # noqa: E402

from xsift.kernels.gmm import GMMParams  # noqa: E402
from xsift.kernels.xd import fit_xd  # noqa: E402
from machine import describe  # noqa: E402

K, D = 6, 12


def noisy_mixture(n, seed=0):
    """X (n, 12) measured values and noise_var (n, 12): a 6-component mixture scattered by per-row noise."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-1.0, 1.0, (K, D))
    A = rng.normal(0.0, 0.08, (K, D, D)) + 0.1 * np.eye(D)
    weights = rng.dirichlet(np.full(K, 5.0))
    lab = rng.choice(K, n, p=weights)
    truth = np.einsum("nij,nj->ni", A[lab], rng.normal(size=(n, D))) + centres[lab]
    noise_var = rng.uniform(0.2, 1.0, (n, D)) * 0.05 ** 2 * rng.uniform(0.5, 4.0, (n, 1))
    return truth + rng.normal(size=(n, D)) * np.sqrt(noise_var), noise_var


def starting_parameters(X, seed=0):
    """Means at K random rows, every covariance the sample covariance, equal weights."""
    rng = np.random.default_rng(seed)
    cov = np.cov(X.T)
    return GMMParams(np.full(K, 1.0 / K), X[rng.choice(X.shape[0], K, replace=False)].copy(),
                     np.stack([cov] * K), None)


def numpy_xd_step(X, noise_var, alpha, mu, V):
    """One XD EM iteration (Bovy et al. 2011 Eqs. 16-18, astroML's order and formulas) with NumPy's
    batched linear algebra over all (row, component) pairs; returns (alpha, mu, V, log-likelihood of
    the parameters entering the step)."""
    n, d = X.shape
    T = V[None] + noise_var[:, None, :, None] * np.eye(d)              # (n, K, d, d)
    Tinv = np.linalg.inv(T)
    _, logdet = np.linalg.slogdet(T)
    w = X[:, None, :] - mu[None]                                       # (n, K, d)
    Tw = np.einsum("nkij,nkj->nki", Tinv, w)
    logN = -0.5 * (d * np.log(2 * np.pi) + logdet + np.einsum("nki,nki->nk", w, Tw)) + np.log(alpha)
    lnorm = logsumexp(logN, axis=1)
    q = np.exp(logN - lnorm[:, None])
    b = mu[None] + np.einsum("kij,nkj->nki", V, Tw)
    B = V[None] - np.einsum("kij,nkjl,klm->nkim", V, Tinv, V, optimize=True)
    qj = q.sum(0)
    alpha = qj / n
    mu = np.einsum("nk,nki->ki", q, b) / qj[:, None]
    m_b = mu[None] - b
    V = (np.einsum("nk,nki,nkj->kij", q, m_b, m_b, optimize=True)
         + np.einsum("nk,nkij->kij", q, B)) / qj[:, None, None]
    return alpha, mu, V, float(lnorm.sum())


def time_numpy(X, noise_var, start, n_iter):
    alpha, mu, V = (np.array(a, np.float64) for a in (start.weights, start.means, start.covariances))
    t = time.perf_counter()
    for _ in range(n_iter):
        alpha, mu, V, _ = numpy_xd_step(X, noise_var, alpha, mu, V)
    elapsed = time.perf_counter() - t
    ll = numpy_xd_step(X, noise_var, alpha, mu, V)[3]
    return elapsed / n_iter, ll


def time_astroml(X, noise_var, start, n_iter):
    from astroML.density_estimation import XDGMM
    Xerr = noise_var[:, :, None] * np.eye(X.shape[1])
    xd = XDGMM(K)
    xd.alpha, xd.mu, xd.V = (np.array(a, np.float64) for a in (start.weights, start.means, start.covariances))
    t = time.perf_counter()
    for _ in range(n_iter):
        xd._EMstep(X, Xerr)
    elapsed = time.perf_counter() - t
    return elapsed / n_iter, float(xd.logL(X, Xerr))


def time_xsift(X, noise_var, start, n_iter, repeats):
    """((T(1 + n_iter) - T(1)) / n_iter, log-likelihood of the parameters after n_iter iterations)."""
    def run(init, k):
        t = time.perf_counter()
        r = fit_xd(X, noise_var, None, K, init=init, max_iter=k, tol=0.0, reg_covar=0.0, dtype="float64")
        return time.perf_counter() - t, r
    run(start, 1)                                                       # compile
    t1 = min(run(start, 1)[0] for _ in range(repeats))
    t2 = min(run(start, 1 + n_iter)[0] for _ in range(repeats))
    # the log-likelihood of the parameters after n_iter iterations, as the peers report it: the lower
    # bound of one more iteration from them (the mean over rows of the parameters entering it)
    res = run(start, n_iter)[1]
    after = run(GMMParams(res.weights, res.means, res.covariances, None), 1)[1]
    return (t2 - t1) / n_iter, after.lower_bound * X.shape[0]


def classify_stage(n, repeats, seed=0):
    """(seconds with 20 % missing, seconds complete) of the classify stage on n rows (module docstring)."""
    from xsift.data.features import derive_features
    from xsift.methods.cluster_then_label import ClusterThenLabel
    from xsift.simulate import simulate_catalog
    df = simulate_catalog(200_000, seed=seed)
    model = ClusterThenLabel(n_components=K, seed=seed).fit(df)
    X = model.transform_.transform(derive_features(df, model.preset_))
    rng = np.random.default_rng(seed)
    X = X[np.isfinite(X).all(axis=1)]
    X = X[rng.integers(0, len(X), n)]
    names = model.feature_names_
    bands = [["hard_hs", "hard_ms", "var_prob_s", "var_ratio_s"], ["hard_hm", "hard_hs", "var_prob_h", "var_ratio_h"],
             ["var_prob_b", "var_ratio_b", "var_newq_b"]]
    Xm = X.copy()
    hit = rng.random(n) < 0.2
    which = rng.integers(0, len(bands), n)
    for b, cols in enumerate(bands):
        Xm[np.ix_(hit & (which == b), [names.index(c) for c in cols])] = np.nan

    def best(A):
        times = []
        for _ in range(repeats + 1):                                    # the first call compiles
            t = time.perf_counter()
            model._class_probabilities(A, model._clusters(A))
            times.append(time.perf_counter() - t)
        return min(times[1:])
    return best(Xm), best(X)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    ap.add_argument("--classify", type=int, default=1_000_000,
                    help="detections of the classify-stage timing (0: skip it)")
    ap.add_argument("--iterations", type=int, default=3, help="iterations timed for every peer (n2)")
    ap.add_argument("--timing-repeats", type=int, default=3)
    ap.add_argument("--astroml-max", type=int, default=None,
                    help="skip astroML above this N (it runs ~1 min per iteration at 100k)")
    args = ap.parse_args(argv)
    n2 = max(2, args.iterations)
    print(describe())
    print(f"jax {jax.__version__}, devices {jax.devices()}; d = {D}, K = {K}, float64, "
          f"{n2} iterations per peer")
    header = (f"{'N':>8} {'xsift s/iter':>13} {'astroML s/iter':>15} {'NumPy s/iter':>13} "
              f"{'astroML/xsift':>14} {'NumPy/xsift':>12}   log-likelihood xsift / astroML / NumPy")
    print(header)
    for n in args.sizes:
        X, S = noisy_mixture(n)
        start = starting_parameters(X)
        t_x, ll_x = time_xsift(X, S, start, n2, args.timing_repeats)
        t_n, ll_n = time_numpy(X, S, start, n2)
        if args.astroml_max is None or n <= args.astroml_max:
            t_a, ll_a = time_astroml(X, S, start, n2)
        else:
            t_a, ll_a = float("nan"), float("nan")
        print(f"{n:>8} {t_x:>13.4f} {t_a:>15.3f} {t_n:>13.3f} {t_a / t_x:>14.1f} {t_n / t_x:>12.1f}   "
              f"{ll_x:.10g} / {ll_a:.10g} / {ll_n:.10g}", flush=True)
    if args.classify:
        t_m, t_c = classify_stage(args.classify, args.timing_repeats)
        n = args.classify
        print(f"\nclassify stage, {n:,} detections: 20 % missing {t_m:.3f} s ({n / t_m:,.0f} detections/s), "
              f"complete {t_c:.3f} s ({n / t_c:,.0f} detections/s), ratio {t_m / t_c:.2f}", flush=True)


if __name__ == "__main__":
    main()
