"""The Gaussian-mixture kernel's plain-data types (NamedTuples of arrays; shapes in each docstring)."""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

__all__ = ["GMMParams", "GMMResult", "SuffStats", "BICCurve", "EMState"]


class GMMParams(NamedTuple):
    """weights (K,), means (K, d), covariances (K, d, d), precisions_cholesky (K, d, d)."""
    weights: Any
    means: Any
    covariances: Any
    precisions_cholesky: Any


class GMMResult(NamedTuple):
    """A fitted mixture: the four :class:`GMMParams` arrays plus the EM outcome.

    lower_bound: mean log-likelihood per sample computed in the last E-step (as
    scikit-learn's ``lower_bound_``); n_iter: EM iterations run; converged: the
    change of the lower bound fell below ``tol``.
    """
    weights: Any
    means: Any
    covariances: Any
    precisions_cholesky: Any
    lower_bound: Any
    n_iter: Any
    converged: Any


class SuffStats(NamedTuple):
    """Statistics that add up across chunks.

    nk (K,) = sum r; sx (K, d) = sum r x; sxx (K, d, d) = sum r x x^T;
    loglik () = sum of log p(x) over valid rows; n () = number of valid rows.
    """
    nk: Any
    sx: Any
    sxx: Any
    loglik: Any
    n: Any


class BICCurve(NamedTuple):
    """Result of :func:`bic_sweep`. ks (m,), bic_mean (m,), bic_std (m,) (population std
    over repeats), bic (m, repeats), lower_bound (m, repeats), n_iter (m, repeats),
    converged (m, repeats)."""
    ks: np.ndarray
    bic_mean: np.ndarray
    bic_std: np.ndarray
    bic: np.ndarray
    lower_bound: np.ndarray
    n_iter: np.ndarray
    converged: np.ndarray


class EMState(NamedTuple):
    """Where an EM fit stands between iterations (what every EM driver carries).

    params: :class:`GMMParams` the next E-step evaluates; lower_bound: scalar mean log-likelihood
    per row of the parameters that entered the last iteration (-inf before the first, as
    scikit-learn's ``lower_bound_``); n_iter: int32 scalar, iterations run; converged: bool scalar,
    the last change of the lower bound was below ``tol``.
    """
    params: GMMParams
    lower_bound: Any
    n_iter: Any
    converged: Any
