"""Calibrated class probabilities: temperature scaling (Guo, Pleiss, Sun & Weinberger 2017, ICML, Sec. 4.2).

Both methods' probabilities are normalised scores, not measured frequencies: the cluster-then-label
softmin of Mahalanobis distances (Pérez-Díaz et al. 2024, Eq. 7) and the naive-Bayes posterior of
Eq. 1 (Tranin et al. 2022), whose product of per-property likelihoods ignores their correlations.
Temperature scaling fits one number ``T > 0`` on labelled detections the model was not fitted on (the
held-out part of :func:`xsift.methods.validation.validate`) and replaces every row's probabilities
``p`` by ``q_c = p_c^(1/T) / sum_j p_j^(1/T)``: the classes keep their order (the predicted class,
the hard vote and the confusion matrices do not change), a class at probability 0 stays at 0, and
``T`` minimises the Brier score of the true classes (default) or their negative log-likelihood (Guo
et al.'s choice; the maths and the optax fit: :mod:`xsift.kernels.calibration`). Both are proper
scoring rules; the Brier score is the default because it is bounded per detection: the softmin of
squared Mahalanobis distances (the cluster-then-label default) puts a few true classes at vanishing
probabilities, which dominate the NLL and make its T flatten the bulk of the detections too much
(benchmarks/README.md, "Calibration": held-out ECE 0.070 by NLL, 0.047 by Brier score).

A fitted estimator carries its temperature as ``temperature_`` (None: uncalibrated, the paper's raw
probabilities); :meth:`predict_proba` and :meth:`classify` of :class:`xsift.ClusterThenLabel` and
:class:`xsift.NaiveBayesKDE` apply it, and :meth:`save` stores it in the model's description (so the
content hash covers it).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from xsift.errors import XsiftError

__all__ = ["CALIBRATION_OBJECTIVES", "TemperatureFit", "fit_temperature", "apply_temperature", "set_temperature", "temperature_of",
           "calibration_meta", "temperature_from_meta"]


@dataclass(frozen=True)
class TemperatureFit:
    """What :func:`fit_temperature` found.

    temperature: T (> 1: the raw probabilities were over-confident); objective: ``"brier"`` or
    ``"nll"``, what T minimises; nll_raw, nll_calibrated: mean negative log-likelihood (nats) of the
    true classes at T = 1 and at T (over the rows whose true class has a non-zero probability);
    brier_raw, brier_calibrated: mean Brier score at T = 1 and at T (over the rows the fit used);
    rows: labelled rows the fit used; rows_true_class_ruled_out: rows whose true class had
    probability 0 (no T changes that; left out of an NLL fit, kept in a Brier fit); iterations,
    converged: of the L-BFGS fit.
    """
    temperature: float
    nll_raw: float
    nll_calibrated: float
    rows: int
    rows_true_class_ruled_out: int
    iterations: int
    converged: bool
    objective: str = "nll"
    brier_raw: float | None = None
    brier_calibrated: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _log(proba: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(proba)


CALIBRATION_OBJECTIVES = ("brier", "nll")


def fit_temperature(proba, y, objective: str = "brier") -> TemperatureFit:
    """Fit the temperature on labelled rows.

    proba: (n, L) class probabilities as the model gives them (uncalibrated); y: (n,) true class
    indices (-1: no label); objective: ``"brier"`` (default) or ``"nll"``, the score T minimises.
    Rows with a NaN probability or no label are left out; for ``"nll"`` also the rows whose true class
    has probability 0. Raises XsiftError when no row is left or for an unknown objective.
    """
    from xsift.kernels.calibration import fit_log_temperature, temperature_brier, temperature_nll
    if objective not in CALIBRATION_OBJECTIVES:
        raise XsiftError(f"calibration objective {objective!r}: expected one of {', '.join(CALIBRATION_OBJECTIVES)}")
    proba = np.asarray(proba, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if proba.ndim != 2 or y.shape != (proba.shape[0],):
        raise XsiftError(f"calibration: probabilities (n, L) and true classes (n,) expected, got {proba.shape} "
                         f"and {y.shape}")
    scored = np.isfinite(proba).all(axis=1) & (y >= 0) & (y < proba.shape[1])
    rows = np.flatnonzero(scored)
    possible = proba[rows, y[rows]] > 0
    use = rows[possible]
    if len(use) == 0:
        raise XsiftError("calibration: no labelled row with a probability for its true class; the temperature "
                         "needs held-out labelled detections the model classifies")
    z = _log(proba[use])
    if objective == "nll":
        T, nll, iterations, converged = fit_log_temperature(z, y[use])
        fit_rows = use
    else:
        fit_rows = rows
        zb = _log(proba[rows])
        T, _, iterations, converged = fit_log_temperature(zb, y[rows], objective="brier")
        nll = temperature_nll(z, y[use], T)
    zb = _log(proba[fit_rows])
    return TemperatureFit(temperature=T, nll_raw=temperature_nll(z, y[use], 1.0), nll_calibrated=nll,
                          rows=int(len(fit_rows)), rows_true_class_ruled_out=int((~possible).sum()),
                          iterations=iterations, converged=converged, objective=objective,
                          brier_raw=temperature_brier(zb, y[fit_rows], 1.0),
                          brier_calibrated=temperature_brier(zb, y[fit_rows], T))


def apply_temperature(proba, temperature: float | None) -> np.ndarray:
    """(n, L) probabilities ``p^(1/T)`` renormalised per row (computed in log space, so no row
    underflows); NaN rows stay NaN and zeros stay zero. ``temperature`` None or 1: ``proba`` itself.
    Raises XsiftError for a temperature that is not a positive finite number."""
    if temperature is None or float(temperature) == 1.0:
        return proba
    T = float(temperature)
    if not np.isfinite(T) or T <= 0:
        raise XsiftError(f"temperature {temperature!r}: expected a positive number")
    proba = np.asarray(proba, dtype=np.float64)
    if proba.size == 0:
        return proba.copy()
    z = _log(proba) / T
    top = np.max(np.where(np.isfinite(z), z, -np.inf), axis=1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    e = np.exp(z - top)
    return e / e.sum(axis=1, keepdims=True)


def set_temperature(model, fit: TemperatureFit | float | None):
    """Give a fitted estimator a temperature (a :class:`TemperatureFit` or a number; None removes it)
    that its :meth:`predict_proba`, :meth:`classify` and :meth:`save` then use. Returns the model."""
    if fit is None:
        model.temperature_ = None
        return model
    T = float(fit.temperature if isinstance(fit, TemperatureFit) else fit)
    if not np.isfinite(T) or T <= 0:
        raise XsiftError(f"temperature {T!r}: expected a positive number")
    model.temperature_ = T
    return model


def temperature_of(model) -> float | None:
    """The estimator's temperature, None when uncalibrated."""
    return getattr(model, "temperature_", None)


def calibration_meta(model) -> dict:
    """The model-description entries of a calibration: ``{"calibration": {"method": "temperature",
    "temperature": T}}``, or ``{}`` for an uncalibrated model (whose description, hence hash, is then
    what it was before calibration existed)."""
    T = temperature_of(model)
    return {} if T is None else {"calibration": {"method": "temperature", "temperature": float(T)}}


def temperature_from_meta(meta: dict, where) -> float | None:
    """The temperature a saved model's description holds (None: uncalibrated). Raises XsiftError
    naming ``where`` for a damaged entry."""
    cal = meta.get("calibration")
    if cal is None:
        return None
    try:
        if cal["method"] != "temperature":
            raise ValueError(cal["method"])
        T = float(cal["temperature"])
        if not np.isfinite(T) or T <= 0:
            raise ValueError(T)
    except (KeyError, TypeError, ValueError) as exc:
        raise XsiftError(f"{where}: calibration entry {cal!r} is not a positive temperature ({exc}); the file "
                         "is damaged") from None
    return T
