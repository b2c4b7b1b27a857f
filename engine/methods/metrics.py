"""Classification metrics in plain NumPy: confusion matrix, precision/recall/F1, the prior-corrected
precision, Cohen's kappa, and the reliability (calibration) of class probabilities.

Labels are integer codes in ``[0, n_labels)``; anything else (e.g. -1, "no
prediction") is ignored by :func:`confusion_matrix` rows/columns and counted by
the caller. Used by the cluster-then-label validation and by the naive-Bayes
branch; the same formulas as scikit-learn's ``confusion_matrix``,
``precision_recall_fscore_support`` (zero_division = 0) and ``cohen_kappa_score``.
:func:`prior_corrected_precision` is Tranin et al. (2022)'s (their Table 2) and
:func:`reliability` the expected calibration error of Guo et al. (2017) with its reliability diagram.
"""
from __future__ import annotations

import numpy as np


def confusion_matrix(true, pred, n_labels: int) -> np.ndarray:
    """(n_labels, n_labels) int counts; row = true label, column = predicted label.
    Pairs with a label outside [0, n_labels) are left out."""
    true = np.asarray(true, dtype=np.int64)
    pred = np.asarray(pred, dtype=np.int64)
    ok = (true >= 0) & (true < n_labels) & (pred >= 0) & (pred < n_labels)
    return np.bincount(true[ok] * n_labels + pred[ok], minlength=n_labels * n_labels).reshape(
        n_labels, n_labels)


def row_normalised(cm: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (the fraction of a true class given each prediction); empty rows stay 0."""
    cm = np.asarray(cm, dtype=np.float64)
    sums = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, sums, out=np.zeros_like(cm), where=sums > 0)


def precision_recall_f1(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Per-label precision, recall, F1 and support from a confusion matrix (0 where undefined)."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    predicted = cm.sum(axis=0)
    support = cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64)}


def cohen_kappa(a, b, n_labels: int) -> float:
    """Cohen's kappa between two labelings of the same items: (p_o - p_e) / (1 - p_e).
    1.0 when both agree everywhere and p_e = 1 (a single label used); NaN for no item."""
    cm = confusion_matrix(a, b, n_labels).astype(np.float64)
    n = cm.sum()
    if n == 0:
        return float("nan")
    p_o = np.trace(cm) / n
    p_e = float(cm.sum(axis=0) @ cm.sum(axis=1)) / (n * n)
    if p_e == 1.0:
        return 1.0
    return float((p_o - p_e) / (1.0 - p_e))


def accuracy(true, pred) -> float:
    """Fraction of items whose prediction equals the truth."""
    true = np.asarray(true)
    return float(np.mean(true == np.asarray(pred))) if len(true) else float("nan")


def prior_corrected_precision(cm: np.ndarray, priors) -> np.ndarray:
    """Per-label precision as if the true classes came in the proportions ``priors`` (Tranin, Webb &
    Godet 2022, A&A 657, A138, Table 2: "precision values corrected for matching prior proportions").

    cm: (L, L) counts, rows true, columns predicted; priors: (L,) non-negative class proportions of the
    population (they need not sum to 1). Each true-class row ``c`` is rescaled by ``prior_c / n_c`` (``n_c``
    its row sum), then precision = diagonal / column sum; 0 where no row with a prior predicts the label
    (as :func:`precision_recall_f1`). Equals scikit-learn's precision with sample weights
    ``prior_c / n_c``. Raises ValueError for priors of another length or a negative prior.
    """
    cm = np.asarray(cm, dtype=np.float64)
    priors = np.asarray(priors, dtype=np.float64)
    if priors.shape != (cm.shape[0],) or (priors < 0).any() or not np.isfinite(priors).all():
        raise ValueError(f"priors: expected {cm.shape[0]} non-negative numbers, got {priors.tolist()}")
    n_true = cm.sum(axis=1)
    scale = np.divide(priors, n_true, out=np.zeros_like(priors), where=n_true > 0)
    scaled = cm * scale[:, None]
    col = scaled.sum(axis=0)
    return np.divide(np.diag(scaled), col, out=np.zeros_like(col), where=col > 0)


def reliability(confidence, correct, n_bins: int = 15) -> dict:
    """The reliability diagram and expected calibration error (ECE) of top-class probabilities.

    confidence: (n,) the probability of each row's predicted (top) class, in [0, 1]; correct: (n,)
    bool, whether that prediction is the true class. Rows fall into ``n_bins`` equal-width bins,
    bin ``m`` (1-based) holding ``(m-1)/M < confidence <= m/M`` (a confidence of exactly 0 goes to the
    first bin), as Guo, Pleiss, Sun & Weinberger (2017, ICML, Sec. 2):
    ``ECE = sum_m (n_m / n) |accuracy_m - confidence_m|`` and the maximum calibration error
    ``MCE = max_m |accuracy_m - confidence_m|`` over non-empty bins.

    Returns ``{"n_bins", "n", "edges" (M+1,), "count" (M,), "confidence" (M,) mean confidence,
    "accuracy" (M,) fraction correct (NaN in empty bins), "ece", "mce"}`` (lists and floats,
    JSON-ready; ``ece``/``mce`` NaN for no row). Raises ValueError for mismatched lengths, a confidence
    outside [0, 1] or fewer than one bin.
    """
    conf = np.asarray(confidence, dtype=np.float64).reshape(-1)
    ok = np.asarray(correct, dtype=bool).reshape(-1)
    M = int(n_bins)
    if M < 1:
        raise ValueError(f"n_bins {n_bins!r}: expected at least 1")
    if conf.shape != ok.shape:
        raise ValueError(f"confidence ({conf.size}) and correct ({ok.size}) differ in length")
    if conf.size and (not np.isfinite(conf).all() or conf.min() < 0 or conf.max() > 1):
        raise ValueError("confidence must lie in [0, 1]")
    edges = np.linspace(0.0, 1.0, M + 1)
    b = np.clip(np.ceil(conf * M).astype(np.int64) - 1, 0, M - 1)
    count = np.bincount(b, minlength=M)
    conf_sum = np.bincount(b, weights=conf, minlength=M)
    acc_sum = np.bincount(b, weights=ok.astype(np.float64), minlength=M)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(count > 0, conf_sum / np.maximum(count, 1), np.nan)
        acc = np.where(count > 0, acc_sum / np.maximum(count, 1), np.nan)
    gap = np.abs(acc - mean_conf)
    n = int(conf.size)
    ece = float(np.sum(np.where(count > 0, count * np.nan_to_num(gap), 0.0)) / n) if n else float("nan")
    mce = float(np.nanmax(gap)) if n else float("nan")
    return {"n_bins": M, "n": n, "edges": edges.tolist(), "count": count.tolist(),
            "confidence": mean_conf.tolist(), "accuracy": acc.tolist(), "ece": ece, "mce": mce}


def top_class_reliability(proba, true, n_bins: int = 15) -> dict:
    """:func:`reliability` of class probabilities ``proba`` (n, L) against true class indices ``true``
    (n,): confidence = the row maximum, correct = the argmax (first on a tie) equals ``true``. Rows with a
    NaN probability or ``true < 0`` are left out (their count is ``"left_out"``)."""
    proba = np.asarray(proba, dtype=np.float64)
    true = np.asarray(true, dtype=np.int64)
    keep = np.isfinite(proba).all(axis=1) & (true >= 0) if proba.size else np.zeros(len(true), bool)
    p = proba[keep]
    out = reliability(p.max(axis=1) if len(p) else np.zeros(0), (p.argmax(axis=1) == true[keep]) if len(p)
                      else np.zeros(0, bool), n_bins)
    out["left_out"] = int((~keep).sum())
    return out


def classification_metrics(y_true, y_pred, classes: list[str], priors=None) -> dict:
    """Confusion matrix (rows true, columns predicted), recall, precision, F1, prior-corrected precision.

    y_true, y_pred: (n,) class indices. Prior-corrected precision (the paper's Table 2): each
    true-class row ``c`` of the confusion matrix is rescaled by ``prior_c / n_c`` before computing
    precision (:func:`prior_corrected_precision`); ``f1_prior_corrected`` combines it with recall.
    Undefined recall and precision (no true / no predicted row) are NaN here, not 0.
    """
    cm = confusion_matrix(y_true, y_pred, len(classes))
    n_true = cm.sum(axis=1)
    n_pred = cm.sum(axis=0)
    diag = np.diag(cm).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(n_true > 0, diag / n_true, np.nan)
        precision = np.where(n_pred > 0, diag / n_pred, np.nan)
        f1 = np.where((recall + precision) > 0, 2 * recall * precision / (recall + precision), 0.0)
        out = {"classes": list(classes), "confusion": cm.tolist(), "n_true": n_true.tolist(),
               "recall": recall.tolist(), "precision": precision.tolist(), "f1": f1.tolist()}
        if priors is not None:
            pri = np.asarray(priors, float)
            # NaN where no source is predicted as the class, as precision above
            pc = np.where(n_pred > 0, prior_corrected_precision(cm, pri), np.nan)
            f1c = np.where((recall + pc) > 0, 2 * recall * pc / (recall + pc), 0.0)
            out.update(priors=pri.tolist(), precision_prior_corrected=pc.tolist(),
                       f1_prior_corrected=f1c.tolist())
    return out


def format_metrics(m: dict) -> str:
    """The metrics of :func:`classification_metrics` as a plain-text table."""
    classes = m["classes"]
    w = max(8, max(len(c) for c in classes) + 1)
    lines = ["true \\ predicted".ljust(18) + "".join(c.rjust(w) for c in classes)]
    for c, row in zip(classes, m["confusion"]):
        lines.append(f"{c:<18}" + "".join(f"{v:>{w}d}" for v in row))
    for key in ("recall", "precision", "precision_prior_corrected", "f1"):
        if key in m:
            lines.append(f"{key:<18}"[:18] + "".join(f"{v:>{w}.3f}" for v in m[key]))
    return "\n".join(lines)
