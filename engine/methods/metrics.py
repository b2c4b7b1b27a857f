"""Classification metrics in plain NumPy: confusion matrix, precision/recall/F1, Cohen's kappa.

Labels are integer codes in ``[0, n_labels)``; anything else (e.g. -1, "no
prediction") is ignored by :func:`confusion_matrix` rows/columns and counted by
the caller. Used by the cluster-then-label validation and by the naive-Bayes
branch; the same formulas as scikit-learn's ``confusion_matrix``,
``precision_recall_fscore_support`` (zero_division = 0) and ``cohen_kappa_score``.
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
