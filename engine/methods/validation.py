"""Validation of the cluster-then-label classifier (step 8; the paper's Fig. 4 and 5).

A seeded split of the *labelled complete* detections, stratified by class: in each class,
``round(test_fraction * n_class)`` detections (chosen by a seeded random permutation) are
held out. Their reference types are hidden, the model is fitted with the remaining 70% as
references (the GMM sees every complete detection, as in a normal fit: clustering uses no
labels) and the held-out detections are classified as if unlabelled. The outputs are the
confusion matrices (counts and row-normalised) over the training classes and over the
aggregated classes, and per-class precision, recall and F1. Held-out detections whose
cluster has no usable class get no prediction: they are counted, not scored.

The CSV tables and figures of a result are written by :func:`xsift.report.outputs.write_validation`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from xsift.errors import XsiftError
from xsift.methods.metrics import confusion_matrix, precision_recall_f1


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """Boolean test mask over ``labels`` (>= 0 are labelled; others never in the test set):
    in each class, the first ``round(test_fraction * n)`` rows of a seeded random order."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    keys = rng.random(len(labels))
    order = np.lexsort((keys, labels))
    lab_sorted = labels[order]
    starts = np.flatnonzero(np.r_[True, lab_sorted[1:] != lab_sorted[:-1]])
    sizes = np.diff(np.r_[starts, len(labels)])
    rank = np.arange(len(labels)) - np.repeat(starts, sizes)
    n_test = np.repeat(np.round(test_fraction * sizes).astype(np.int64), sizes)
    test_sorted = (rank < n_test) & (lab_sorted >= 0)
    test = np.zeros(len(labels), dtype=bool)
    test[order] = test_sorted
    return test


def validate(table, preset="csc", *, n_components: int = 6, seed: int = 0, split_seed: int = 0,
             test_fraction: float = 0.3, gmm_params=None, distance: str = "squared", precision: str = "float64",
             source: str = "catalogue") -> dict:
    """Run the validation of :class:`xsift.ClusterThenLabel` on a labelled catalogue.

    table: the catalogue (DataFrame, astropy Table, ...) with the preset's columns; preset: a preset name,
    file or :class:`xsift.config.Preset` (its ``columns`` name the source, detection and reference-type
    columns); the other parameters are the estimator's (``gmm_params``: its ``gmm``).
    Returns a dict with ``classes``, ``aggregated_classes``, confusion matrices (``confusion`` /
    ``confusion_aggregated`` counts, rows true, columns predicted), metric tables (``metrics`` /
    ``metrics_aggregated`` DataFrames), ``predictions`` (the held-out detections: ``name``, ``obsid``,
    true and predicted class, cluster, probabilities), ``model_hash`` and ``counts``.
    Raises XsiftError for a test fraction outside (0, 1) or a catalogue without labelled complete detections.
    """
    from xsift.methods.cluster_then_label import (ClusterThenLabel, features_of, prepare_catalog, preset_classes,
                                                  preset_columns, reference_labels, resolve_preset)
    from xsift.methods.estimator import as_frame
    from xsift.methods.voting import aggregated_class_of
    if not 0 < test_fraction < 1:
        raise XsiftError(f"test fraction {test_fraction}: expected a number between 0 and 1")
    preset = resolve_preset(preset)
    df, schema = prepare_catalog(as_frame(table, source=source), preset, source=source)
    classes, _, aggregation = preset_classes(preset)
    cols = preset_columns(preset)
    type_col = cols["type"]
    labels, label_counts = reference_labels(df, preset)
    _, ok = features_of(df, preset)
    lab = np.where(ok, labels, -1)
    if not (lab >= 0).any():
        raise XsiftError(f"{source}: no complete detection has a training class in column {type_col!r}; "
                         "validation needs labelled detections")
    test = stratified_split(lab, test_fraction, split_seed)
    hidden = df.copy()
    hidden[type_col] = hidden[type_col].astype("object").where(~test, None)
    model = ClusterThenLabel(preset=preset, n_components=n_components, distance=distance, seed=seed,
                             precision=precision, gmm=gmm_params).fit(hidden, source=source)
    det, _ = model.classify_frame(hidden.iloc[np.flatnonzero(test)], source=source)
    truth = pd.DataFrame({"name": df[cols["name"]].to_numpy()[test], "obsid": df[cols["obsid"]].to_numpy()[test],
                          "true_class": np.asarray(classes, dtype=object)[lab[test]]})
    truth["name"] = truth["name"].astype("str")
    pred = truth.merge(det[["name", "obsid", "cluster", "predicted_class", *classes]], on=["name", "obsid"],
                       how="left", validate="one_to_one")
    index = {c: i for i, c in enumerate(classes)}
    t = pred["true_class"].map(index).to_numpy(dtype=np.int64)
    p = pred["predicted_class"].map(index).to_numpy(dtype=np.float64, na_value=np.nan)
    scored = np.isfinite(p)
    p = np.where(scored, p, -1).astype(np.int64)
    cm = confusion_matrix(t, p, len(classes))
    agg_of = aggregated_class_of(classes, aggregation)
    agg_classes = list(dict.fromkeys(agg_of[c] for c in classes))
    agg_index = np.array([agg_classes.index(agg_of[c]) for c in classes])
    cm_agg = confusion_matrix(agg_index[t], np.where(p >= 0, agg_index[np.maximum(p, 0)], -1), len(agg_classes))
    return {
        "classes": classes, "aggregated_classes": agg_classes,
        "confusion": cm, "confusion_aggregated": cm_agg,
        "metrics": _metric_table(cm, classes), "metrics_aggregated": _metric_table(cm_agg, agg_classes),
        "predictions": pred, "model_hash": model.model_hash,
        "counts": {"schema": schema, "reference_labels": label_counts, "labelled_complete": int((lab >= 0).sum()),
                   "test": int(test.sum()), "train": int((lab >= 0).sum() - test.sum()),
                   "test_scored": int(scored.sum()), "test_without_usable_class": int((~scored).sum()),
                   "accuracy": float(np.trace(cm) / max(cm.sum(), 1)),
                   "accuracy_aggregated": float(np.trace(cm_agg) / max(cm_agg.sum(), 1)),
                   "excluded": model.fit_report_["excluded"]},
    }


def _metric_table(cm: np.ndarray, labels: list[str]) -> pd.DataFrame:
    m = precision_recall_f1(cm)
    return pd.DataFrame({"class": labels, "precision": m["precision"], "recall": m["recall"], "f1": m["f1"],
                         "support": m["support"]})
