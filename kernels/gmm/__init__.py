"""Full-covariance Gaussian mixture fitted by EM, in JAX, numerically equal to scikit-learn.

The maths is scikit-learn's ``GaussianMixture(covariance_type="full")``
(``sklearn/mixture/_gaussian_mixture.py`` and ``_base.py``), reshaped so that one
EM iteration is a few large matrix products over fixed-size row chunks:

E-step (per chunk ``X: (c, d)``)
    all components' whitening in ONE product ``X @ W`` with ``W: (d, K*d)`` the
    precision Cholesky factors side by side; ``log N(x | mu_k, Sigma_k) =
    -1/2 (d log 2pi + |x P_k - mu_k P_k|^2) + log det P_k``; responsibilities by
    log-sum-exp.
Statistics (per chunk)
    ``Xa = [X, 1]: (c, d+1)``; ONE product gives, for every component, ``sum r``,
    ``sum r x`` and ``sum r x x^T`` at once (:class:`SuffStats`), plus
    ``sum log p(x)`` over valid rows: for K >= 8 ``r^T @ F`` with ``F: (c, (d+1)(d+2)/2)``
    the products ``a_i a_j`` (i <= j) of each row, which do not depend on K (work
    ~ K (d+1)(d+2)/2 per row); for fewer components ``(r (x) Xa)^T @ Xa`` (work
    ~ K (d+1)^2 per row, but a better-shaped product on CPU). Statistics of
    chunks add up, so the same jitted :func:`sufficient_statistics` serves an
    in-memory scan over chunks and a Dask map over partitions.
Layout
    From ``_COLS_MIN_K`` (8) components on, EM's data pass runs on column-major chunks
    ``Xt: (d, c)`` (``layout._em_layout``; the k-means initialisation and applying a fitted
    mixture stay row-major): the whitening is ``(K*d, d) @ Xt``, and the per-component sums of
    squares and the log-sum-exp then run along the major axis, avoiding XLA's slow CPU reductions
    over a short minor axis (d, K); the statistics are the same sums.
M-step (:func:`m_step`, from summed statistics)
    ``nk = sum r + 10 eps`` (as scikit-learn), ``mu = sum r x / nk``,
    ``Sigma = sum r (x - mu)(x - mu)^T / nk + reg_covar I`` (expanded from the raw
    moments), ``w = nk / sum nk``, ``P = chol(Sigma)^{-T}`` (upper triangular, as
    scikit-learn's ``precisions_cholesky_``).

Iteration order and lower bound (identical to scikit-learn's ``fit``); the state is an
:class:`EMState` and one iteration is :func:`em_update`, the step every driver calls (the
in-memory loop here, the Dask driver over partitions)::

    state = em_start(params)                   # lower_bound = -inf, n_iter = 0
    while state.n_iter < max_iter and not state.converged:
        stats = sum over chunks of sufficient_statistics(state.params, X_chunk, mask_chunk)
        state = em_update(state, stats, tol=tol, reg_covar=reg_covar)
        # lower_bound = stats.loglik / stats.n (the params BEFORE the M-step);
        # params = m_step(stats, reg_covar); converged = |new lb - old lb| < tol

so ``lower_bound`` is the mean log-likelihood of the parameters *entering* the
last iteration, and the returned parameters are those *after* its M-step.
``fit_gmm(X, K, init=params, max_iter=n, tol=0)`` performs exactly ``n``
iterations; an external loop ``state -> sum(stats) -> em_update`` reproduces it to
float rounding **provided it works on the same shifted data**: ``fit_gmm``
subtracts the column means of ``X`` (computed in float64) before fitting and
adds them back to the means at the end. A translation changes nothing in exact
arithmetic; it keeps the float32 raw second moments well-conditioned (a
constant column becomes exactly 0). A float64 external loop on unshifted data
agrees to ~1e-12 relative anyway.

Degenerate cases: an emptied component is *kept*, exactly as scikit-learn does:
``nk = 10 eps`` gives ``mu = 0`` (in the shifted frame, i.e. the data mean) and
``Sigma = reg_covar I``, a finite component with a negligible weight; nothing
turns into NaN. If a covariance is still not positive definite (reg_covar = 0
on collapsed data) :func:`fit_gmm` raises ``ValueError`` like scikit-learn.

k-means initialisation: k-means++ seeding by inverse-CDF sampling (scikit-learn's
``searchsorted(cumsum(potential), u)``), then Lloyd's until scikit-learn's
criterion holds. On more than ``2 * KMEANS_SAMPLE`` rows seeding and Lloyd's run
on a random sample of ``KMEANS_SAMPLE`` rows (drawn with the fit's seed) and every
row then takes its nearest sample centre as its responsibility. scikit-learn
refines the centres over all rows before EM starts; here EM's first iterations do
that refinement, which is why Lloyd's passes over all rows are left out.

Batched fits: ``n_init`` restarts are one ``vmap`` over initialisations;
:func:`bic_sweep` pads K to a common component count with an ``active`` mask
(inactive components have weight exactly 0 and log-weight -inf, so they are
exactly inert) and runs every (K, repeat) fit of a group of ks in one compiled
program (``lax.map`` over fits, ``batch_size`` of them vmapped side by side;
``groups`` programs in all — by default 2 below 200,000 rows, else 4; 1 = everything padded to
max K), all starting from one k-means program at max K (k-means is most of a program's compile time,
and inert components change nothing in it). Each
fit's BIC comes from one more pass of the EM loop's own compiled body after the
last M-step (one data-pass body per program, not two).

Modules: ``types`` (the NamedTuples), ``layout`` (host-side checks and row chunks), ``estep``
(log-probabilities, responsibilities, sufficient statistics), ``em`` (M-step, EM state and update,
the EM loop), ``init`` (k-means and random starts), ``fit`` (:func:`fit_gmm`), ``apply`` (a fitted
mixture applied to a table: :func:`e_step`, :func:`predict`, :func:`score_samples`, :func:`bic`, ...),
``sweep`` (:func:`bic_sweep`, :func:`choose_k`).
"""
from __future__ import annotations

from xsift.kernels.gmm.apply import aic, bic, e_step, n_parameters, predict, predict_proba, score_samples
from xsift.kernels.gmm.em import em_start, em_update, m_step, sufficient_statistics
from xsift.kernels.gmm.fit import fit_gmm
from xsift.kernels.gmm.init import KMEANS_SAMPLE
from xsift.kernels.gmm.layout import COLS_CHUNK_ROWS, DEFAULT_CHUNK_SIZE, EM_CHUNK_BYTES, em_chunk_rows
from xsift.kernels.gmm.sweep import CHOOSE_K_THRESHOLD, bic_sweep, choose_k
from xsift.kernels.gmm.types import BICCurve, EMState, GMMParams, GMMResult, SuffStats

__all__ = [
    "GMMParams", "GMMResult", "SuffStats", "BICCurve", "EMState", "em_start", "em_update",
    "fit_gmm", "sufficient_statistics", "m_step", "e_step",
    "predict_proba", "predict", "score_samples", "bic", "aic", "n_parameters",
    "bic_sweep", "choose_k", "CHOOSE_K_THRESHOLD", "DEFAULT_CHUNK_SIZE", "em_chunk_rows",
]
