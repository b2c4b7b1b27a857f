"""Honest validation of either classifier: a held-out split by source, per-class metrics, the
prior-corrected precision, the reliability of the probabilities and, optionally, their calibration.

The split (:func:`stratified_split` with ``groups``) holds out whole *sources*: every detection of a
held-out source is on the held-out side, so no source has detections on both sides (a source's
detections share its features and its label; splitting them lets the model see the answer). A source's
class is the majority of its detections' reference labels (the lowest class index on a tie); in each
class, ``round(test_fraction * n_sources)`` sources chosen by a seeded random permutation are held out
(the paper's 70/30 stratified split, Pérez-Díaz et al. 2024, Sec. 3.4, made by source).

The model is fitted with the held-out sources' labels hidden: cluster-then-label fits its GMM on every
complete detection as in a normal run (clustering uses no labels) and its class statistics on the
training sources' references only; naive Bayes fits its densities on the training sources only. The
held-out labelled detections are then classified and compared with their hidden labels:

* confusion matrices (counts and row-normalised) over the classes and, for cluster-then-label, the
  aggregated classes; per class precision, recall, F1, support and the prior-corrected precision of
  Tranin et al. (2022, Table 2; :func:`xsift.methods.metrics.prior_corrected_precision`);
* the reliability diagram and expected calibration error (ECE, 15 equal-width bins of the top-class
  probability; :func:`xsift.methods.metrics.reliability`);
* with ``calibrate``, the temperature of :mod:`xsift.methods.calibration` fitted on the held-out
  detections, the reliability after it, and a cross-fitted ECE (the held-out sources split in two
  halves by source, each half's probabilities scaled by the temperature fitted on the other half),
  which shows how much of the improvement is fitted to the very rows it is measured on.

Held-out detections without a prediction (cluster-then-label: no usable class in their cluster, or a
feature the fitted transform cannot take) are counted, not scored.

The tables, figures and JSON report of a result are written by :func:`xsift.report.outputs.write_validation`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from xsift.errors import SchemaError, XsiftError
from xsift.methods.metrics import (confusion_matrix, precision_recall_f1, prior_corrected_precision,
                                   top_class_reliability)

__all__ = ["stratified_split", "source_classes", "validate", "N_BINS"]

N_BINS = 15


def _group_codes(groups) -> np.ndarray:
    codes, _ = pd.factorize(pd.Series(np.asarray(groups, dtype=object) if not isinstance(groups, pd.Series)
                                      else groups.to_numpy(dtype=object)), use_na_sentinel=False)
    return codes.astype(np.int64)


def source_classes(labels: np.ndarray, groups) -> tuple[np.ndarray, np.ndarray]:
    """(group code of every row (n,), class of every group (G,)): a group's class is the most common
    label ``>= 0`` of its rows (the lowest on a tie), -1 for a group without one."""
    labels = np.asarray(labels, dtype=np.int64)
    codes = _group_codes(groups)
    if len(codes) != len(labels):
        raise XsiftError(f"split: {len(codes)} source keys for {len(labels)} labels")
    G = int(codes.max()) + 1 if len(codes) else 0
    lab = labels >= 0
    L = int(labels[lab].max()) + 1 if lab.any() else 1
    votes = np.bincount(codes[lab] * L + labels[lab], minlength=G * L).reshape(G, L)
    return codes, np.where(votes.sum(axis=1) > 0, votes.argmax(axis=1), -1)


# the split's own random stream: numpy.random.default_rng([seed, SPLIT_STREAM]). Not default_rng(seed): the
# simulator draws its first block from default_rng([seed, 0]), which is the same stream (SeedSequence pads
# the entropy with zeros), and split keys drawn from it followed the simulated sources' detection counts
# (with seed 0 for both, only single-detection sources were held out)
SPLIT_STREAM = 0x73706C74


def _split_items(labels: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng([int(seed), SPLIT_STREAM])
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


def stratified_folds(y: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold index (0..n_folds-1) of every row, each class spread evenly over the folds."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=np.int64)
    offset = 0
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        rng.shuffle(rows)
        fold[rows] = (np.arange(len(rows)) + offset) % n_folds
        offset += len(rows)
    return fold


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int, *, groups=None) -> np.ndarray:
    """Boolean held-out mask over the rows of ``labels`` (class indices; < 0: no label).

    groups None: rows are split one by one: in each class, the first ``round(test_fraction * n)`` rows of
    a seeded random order (``numpy.random.default_rng([seed, SPLIT_STREAM])``, a stream no other seeded
    draw of xsift uses); unlabelled rows are never held out.
    groups (n,) source keys (any hashable values, e.g. source names): whole sources are split, each
    with the class :func:`source_classes` gives it: in each class, ``round(test_fraction * n_sources)``
    sources of a seeded random order are held out, with *all* their rows (labelled or not); sources
    without a labelled row are never held out. No source then has rows on both sides.
    Raises XsiftError for a test fraction outside (0, 1).
    """
    if not 0 < test_fraction < 1:
        raise XsiftError(f"test fraction {test_fraction}: expected a number between 0 and 1")
    labels = np.asarray(labels, dtype=np.int64)
    if groups is None:
        return _split_items(labels, test_fraction, seed)
    codes, group_class = source_classes(labels, groups)
    return _split_items(group_class, test_fraction, seed)[codes]


# ----------------------------------------------------------------------------
# what validation needs of each method
# ----------------------------------------------------------------------------

@dataclass
class _Setting:
    """A method's view of the labelled table: the checked frame, every row's label (class index, -1
    unlabelled, -2 another type), which rows the method can classify, and its columns and classes."""
    df: pd.DataFrame
    labels: np.ndarray
    eligible: np.ndarray
    source_col: str | None
    detection_col: str | None
    label_col: str
    classes: list
    aggregation: dict | None
    schema: dict | None
    label_counts: dict


def _estimator_for(preset, estimator, *, n_components, seed, distance, precision, gmm_params):
    """An unfitted estimator: a copy of ``estimator`` with its parameters, or one the preset's method
    names (ClusterThenLabel with the given parameters, NaiveBayesKDE)."""
    if estimator is not None:
        if not (hasattr(estimator, "get_params") and hasattr(estimator, "fit") and hasattr(estimator, "predict_proba")):
            raise XsiftError(f"estimator: a {type(estimator).__name__} is not an xsift estimator (fit, predict_proba, "
                             "get_params); pass ClusterThenLabel(...) or NaiveBayesKDE(...)")
        return type(estimator)(**estimator.get_params(deep=False))
    from xsift.config import load_preset
    loaded = load_preset(preset)
    if loaded.method == "naive_bayes":
        from xsift.methods.naive_bayes import NaiveBayesKDE
        return NaiveBayesKDE(preset=loaded, precision=precision, seed=seed)
    from xsift.methods.cluster_then_label import ClusterThenLabel
    return ClusterThenLabel(preset=loaded, n_components=n_components, distance=distance, seed=seed,
                            precision=precision, gmm=gmm_params)


def _setting(model, table, source) -> _Setting:
    from xsift.methods.estimator import as_frame
    df = as_frame(table, source=source)
    if model.kind == "cluster_then_label":
        from xsift.methods.cluster_then_label import (features_of, prepare_catalog, preset_classes, preset_columns,
                                                      reference_labels, resolve_preset)
        preset = resolve_preset(model.preset)
        df, schema = prepare_catalog(df, preset, source=source)
        classes, _, aggregation = preset_classes(preset)
        cols = preset_columns(preset)
        labels, label_counts = reference_labels(df, preset)
        feats, ok = features_of(df, preset)
        if getattr(model, "missing", "drop") != "drop":     # a detection with any observed feature is classified
            ok = feats.notna().any(axis=1).to_numpy()
        return _Setting(df, labels, np.asarray(ok, bool), cols["name"], cols["obsid"], cols["type"], classes,
                        aggregation, schema, label_counts)
    if model.kind == "naive_bayes":
        from xsift.methods.naive_bayes import _resolve_spec, class_indices
        spec = _resolve_spec(model.preset)
        label_col = spec.label_column
        if not label_col or label_col not in df.columns:
            raise SchemaError(f"{source}: no label column {label_col!r} (the preset's [columns] label); validation "
                              "compares predictions with those labels")
        labels, left = class_indices(df[label_col], spec)
        cols = spec.preset.columns
        src = spec.source_column if spec.source_column and spec.source_column in df.columns else None
        det = cols.detection if cols.detection and cols.detection in df.columns else None
        counts = {"type_column": label_col, "labelled": int((labels >= 0).sum()),
                  "per_class": dict(zip(spec.classes, np.bincount(labels[labels >= 0],
                                                                  minlength=len(spec.classes)).tolist())),
                  "left_out_labels": left}
        return _Setting(df, labels, np.ones(len(df), bool), src, det, label_col, list(spec.classes), None, None,
                        counts)
    raise XsiftError(f"validation: unknown model kind {model.kind!r}")


def _priors(priors, model, setting, pop_pred, test_labels) -> tuple[np.ndarray, str]:
    """(class priors (L,), where they came from) for the prior-corrected precision."""
    L = len(setting.classes)
    if priors is not None:
        if isinstance(priors, dict):
            unknown = sorted(set(priors) - set(setting.classes))
            if unknown:
                raise XsiftError(f"priors: unknown class(es) {unknown}; the classes are {setting.classes}")
            values = np.array([float(priors.get(c, 0.0)) for c in setting.classes])
        else:
            values = np.asarray(priors, dtype=np.float64).reshape(-1)
        if values.shape != (L,) or not np.isfinite(values).all() or (values < 0).any() or values.sum() <= 0:
            raise XsiftError(f"priors {np.asarray(priors).tolist()}: expected {L} non-negative numbers, one per class "
                             f"{setting.classes}")
        return values / values.sum(), "given"
    if getattr(model, "priors_", None) is not None:
        p = np.asarray(model.priors_, dtype=np.float64)
        return p / p.sum(), "the model's class priors"
    if len(pop_pred) and (pop_pred >= 0).any():
        n = np.bincount(pop_pred[pop_pred >= 0], minlength=L).astype(np.float64)
        return n / n.sum(), "predicted classes of the catalogue's unlabelled detections"
    n = np.bincount(test_labels, minlength=L).astype(np.float64)
    return n / max(n.sum(), 1.0), "the held-out sample (prior-corrected precision = precision)"


def _metric_table(cm: np.ndarray, labels: list[str], priors: np.ndarray | None = None) -> pd.DataFrame:
    m = precision_recall_f1(cm)
    out = pd.DataFrame({"class": labels, "precision": m["precision"], "recall": m["recall"], "f1": m["f1"],
                        "support": m["support"]})
    if priors is not None:
        out["precision_prior_corrected"] = prior_corrected_precision(cm, priors)
    return out


def _argmax_or_none(proba: np.ndarray) -> np.ndarray:
    """(n,) argmax of each row, -1 for a row with a NaN probability."""
    ok = np.isfinite(proba).all(axis=1) if proba.size else np.zeros(len(proba), bool)
    out = np.full(len(proba), -1, dtype=np.int64)
    if ok.any():
        out[ok] = np.argmax(proba[ok], axis=1)
    return out


def _cross_fitted_ece(proba, y, groups, seed, n_bins, objective="brier") -> dict | None:
    """Two halves of the held-out rows by source; each half scaled by the temperature fitted on the other
    half; the pooled reliability. None when a half has no usable row."""
    from xsift.methods.calibration import apply_temperature, fit_temperature
    half = stratified_split(y, 0.5, seed, groups=groups)
    out = np.full_like(proba, np.nan)
    temps = []
    for fit_on, apply_to in ((~half, half), (half, ~half)):
        try:
            fit = fit_temperature(proba[fit_on], y[fit_on], objective)
        except XsiftError:
            return None
        temps.append(fit.temperature)
        out[apply_to] = apply_temperature(proba[apply_to], fit.temperature)
    rel = top_class_reliability(out, y, n_bins)
    return {"ece": rel["ece"], "temperatures": temps}


def validate(table, preset="csc", *, estimator=None, n_components: int = 6, seed: int = 0, split_seed: int = 0,
             test_fraction: float = 0.3, gmm_params=None, distance: str = "squared", precision: str = "float64",
             calibrate: bool = False, calibration_objective: str = "brier", priors=None, n_bins: int = N_BINS,
             source: str = "catalogue") -> dict:
    """Validate a classifier on a labelled catalogue with a held-out split by source (module docstring).

    table: the catalogue (DataFrame, astropy Table, ...) with the method's columns and reference labels.
    preset: a preset name, file or :class:`xsift.config.Preset`; a cluster-then-label preset validates
    :class:`xsift.ClusterThenLabel` (with ``n_components``, ``seed``, ``distance``, ``precision`` and
    ``gmm_params``, its ``gmm``), a naive-Bayes one :class:`xsift.NaiveBayesKDE`. estimator: instead,
    any unfitted xsift estimator (a copy with its parameters is fitted; ``preset`` and the method
    parameters are then not used). split_seed, test_fraction: of :func:`stratified_split` by source (the
    preset's source column; rows one by one when the table has none, reported as ``split["by"]``).
    calibrate: fit a temperature on the held-out detections and give it to the returned model;
    calibration_objective: what the temperature minimises, ``"brier"`` (default) or ``"nll"``
    (:func:`xsift.methods.calibration.fit_temperature`).
    priors: class proportions of the population for the prior-corrected precision (L numbers or
    class -> number); None: the model's priors (naive Bayes), else the predicted classes of the
    catalogue's unlabelled detections (cluster-then-label), else the held-out sample's.
    n_bins: reliability bins.

    Returns a dict: ``method``, ``classes``, ``aggregated_classes`` (None without an aggregation),
    ``confusion``/``confusion_aggregated`` (counts, rows true, columns predicted), ``metrics``/
    ``metrics_aggregated`` (DataFrames: precision, recall, F1, support, prior-corrected precision),
    ``predictions`` (held-out labelled detections: ``name`` (source), ``obsid`` (detection, when the
    preset has one), ``true_class``, ``predicted_class`` (None: no prediction), the raw probability of
    each class and, calibrated, ``<class>_calibrated``), ``reliability`` (``raw`` and, calibrated,
    ``calibrated``: :func:`xsift.methods.metrics.reliability` dicts), ``calibration`` (None, or the
    :class:`~xsift.methods.calibration.TemperatureFit` as a dict with ``ece_cross_fitted``), ``priors``,
    ``split``, ``model`` (the fitted estimator, with its temperature when calibrated), ``model_hash``
    and ``counts``.
    Raises XsiftError for a test fraction outside (0, 1), a catalogue without labelled detections the
    method classifies, or no held-out source; SchemaError for missing columns.
    """
    from xsift.methods.calibration import apply_temperature, fit_temperature, set_temperature
    if not 0 < test_fraction < 1:
        raise XsiftError(f"test fraction {test_fraction}: expected a number between 0 and 1")
    model = _estimator_for(preset, estimator, n_components=n_components, seed=seed, distance=distance,
                           precision=precision, gmm_params=gmm_params)
    st = _setting(model, table, source)
    df, classes = st.df, st.classes
    lab = np.where(st.eligible, st.labels, -1)
    if not (lab >= 0).any():
        raise XsiftError(f"{source}: no detection the method classifies has a training class in column "
                         f"{st.label_col!r}; validation needs labelled detections")
    present = np.unique(lab[lab >= 0])
    if len(present) < 2:
        raise XsiftError(f"{source}: every labelled detection in column {st.label_col!r} is of one class "
                         f"({classes[int(present[0])]}); validation needs labelled detections of at least two "
                         "classes, or there is nothing to tell apart")
    groups = df[st.source_col] if st.source_col else None
    held = stratified_split(lab, test_fraction, split_seed, groups=groups)
    test_rows = np.flatnonzero(held & (lab >= 0))
    if len(test_rows) == 0:
        raise XsiftError(f"{source}: no source could be held out (too few labelled sources for a test fraction "
                         f"of {test_fraction})")
    hidden = df.copy()
    hidden[st.label_col] = hidden[st.label_col].astype("object").where(~held, None)
    model.fit(hidden, source=source)

    # held-out labelled rows and, for the population's class mix, the unlabelled rows the method classifies
    pop_rows = np.flatnonzero(~held & st.eligible & (st.labels == -1)) if model.kind == "cluster_then_label" \
        else np.zeros(0, np.int64)
    rows = np.concatenate([test_rows, pop_rows])
    proba_all = np.asarray(model.predict_proba(hidden.iloc[rows]), dtype=np.float64)
    proba, pop_proba = proba_all[:len(test_rows)], proba_all[len(test_rows):]
    t = lab[test_rows]
    p = _argmax_or_none(proba)
    scored = p >= 0
    L = len(classes)
    cm = confusion_matrix(t, p, L)
    prior, prior_source = _priors(priors, model, st, _argmax_or_none(pop_proba), t)

    agg_classes = cm_agg = metrics_agg = None
    if st.aggregation:
        from xsift.methods.voting import aggregated_class_of
        agg_of = aggregated_class_of(classes, st.aggregation)
        agg_classes = list(dict.fromkeys(agg_of[c] for c in classes))
        agg_index = np.array([agg_classes.index(agg_of[c]) for c in classes])
        cm_agg = confusion_matrix(agg_index[t], np.where(scored, agg_index[np.maximum(p, 0)], -1), len(agg_classes))
        agg_prior = np.bincount(agg_index, weights=prior, minlength=len(agg_classes))
        metrics_agg = _metric_table(cm_agg, agg_classes, agg_prior)

    reliability = {"raw": top_class_reliability(proba, t, n_bins)}
    calibration = None
    test_groups = (df[st.source_col].to_numpy()[test_rows] if st.source_col else test_rows)
    if calibrate:
        fit = fit_temperature(proba, t, calibration_objective)
        set_temperature(model, fit)
        calibrated = apply_temperature(proba, fit.temperature)
        reliability["calibrated"] = top_class_reliability(calibrated, t, n_bins)
        calibration = {**fit.as_dict(), "fitted_on": "held-out labelled detections",
                       "ece_raw": reliability["raw"]["ece"], "ece_calibrated": reliability["calibrated"]["ece"]}
        cross = _cross_fitted_ece(proba, t, test_groups, split_seed + 1, n_bins, calibration_objective)
        calibration["ece_cross_fitted"] = None if cross is None else cross["ece"]
        calibration["cross_fitted_temperatures"] = None if cross is None else cross["temperatures"]

    # the prediction table of the held-out labelled detections
    names = np.asarray(list(classes) + [None], dtype=object)
    pred = pd.DataFrame({"name": (df[st.source_col].to_numpy()[test_rows] if st.source_col else test_rows)})
    pred["name"] = pred["name"].astype("str")
    if st.detection_col:
        pred["obsid"] = df[st.detection_col].to_numpy()[test_rows]
    pred["true_class"] = np.asarray(classes, dtype=object)[t]
    pred["predicted_class"] = pd.array(names[np.where(scored, p, L)], dtype="str")
    for j, c in enumerate(classes):
        pred[c] = proba[:, j]
    if calibrate:
        for j, c in enumerate(classes):
            pred[f"{c}_calibrated"] = calibrated[:, j]

    # the split, by source: no source on both sides (the training side: labelled rows not held out)
    if st.source_col:
        codes = _group_codes(df[st.source_col])
        train_ref = ~held & (lab >= 0)
        test_sources = np.unique(codes[held])
        both = np.intersect1d(test_sources, np.unique(codes[train_ref]))
        split = {"by": "source", "column": st.source_col, "test_sources": int(len(test_sources)),
                 "train_sources": int(len(np.unique(codes[train_ref]))), "sources_on_both_sides": int(len(both))}
    else:
        split = {"by": "row", "column": None, "test_sources": int(len(test_rows)),
                 "train_sources": int(((lab >= 0) & ~held).sum()), "sources_on_both_sides": 0}
    split.update(seed=int(split_seed), test_fraction=float(test_fraction))

    fit_report = getattr(model, "fit_report_", {}) or {}
    n_lab = int((lab >= 0).sum())
    counts = {"schema": st.schema, "reference_labels": st.label_counts, "labelled_complete": n_lab,
              "test": int(len(test_rows)), "train": n_lab - int(len(test_rows)),
              "test_sources": split["test_sources"], "train_sources": split["train_sources"],
              "test_scored": int(scored.sum()), "test_without_usable_class": int((~scored).sum()),
              "accuracy": float(np.trace(cm) / max(cm.sum(), 1)),
              "accuracy_aggregated": (float(np.trace(cm_agg) / max(cm_agg.sum(), 1)) if cm_agg is not None else None),
              "ece": reliability["raw"]["ece"],
              "ece_calibrated": reliability["calibrated"]["ece"] if calibrate else None,
              "temperature": calibration["temperature"] if calibrate else None,
              "excluded": fit_report.get("excluded")}
    return {
        "method": model.kind, "classes": list(classes), "aggregated_classes": agg_classes,
        "confusion": cm, "confusion_aggregated": cm_agg,
        "metrics": _metric_table(cm, list(classes), prior), "metrics_aggregated": metrics_agg,
        "predictions": pred, "reliability": reliability, "calibration": calibration,
        "priors": {"source": prior_source, "values": dict(zip(classes, prior.tolist()))},
        "split": split, "model": model, "model_hash": model.model_hash, "counts": counts,
    }
