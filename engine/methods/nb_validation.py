"""Cross-validation of the naive-Bayes classifier (Tranin, Webb & Godet 2022) by source, with the weight
tuning nested in each training fold, and the properties a table lacks.

Folds
-----
:func:`source_folds`: stratified k-fold *by source*: every row of a source falls in one fold (a source's
class is the majority of its rows' labels, :func:`xsift.methods.validation.source_classes`), and the
sources of each class are spread evenly over the folds in a seeded random order
(:func:`xsift.methods.validation.stratified_folds`). Fold ``k`` is classified by a model fitted on the
other folds only; with ``tune``, that model's category weights (and whatever else
:func:`xsift.methods.naive_bayes.tune_weights` tunes) are tuned by differential evolution on an inner
cross-validation of the training folds only, so no held-out label reaches the tuning.

Metrics (the out-of-fold predictions of every labelled source)
-------------------------------------------------------------
Confusion matrix (rows true, columns predicted; counts and row-normalised), per class precision, recall,
F1, support and the prior-corrected precision of Tranin et al. (2022, Table 2:
:func:`xsift.methods.metrics.prior_corrected_precision`, with the preset's priors; with
``priors = "training"`` it equals the precision), macro F1, the reliability diagram and expected
calibration error of the top-class probability (Guo et al. 2017; :func:`xsift.methods.metrics.reliability`),
and the same for the preset's aggregated classes (``[classes.aggregation]``): an aggregated class's
probability is the sum of its members' posteriors, its prediction the largest summed probability.

Absent columns
--------------
:func:`preset_for_columns` reduces a preset to the properties whose columns a table has (a category
left without property is dropped, an absent error column drops that property's error field), so a
table lacking some of a preset's columns is fitted, validated and classified with what it has; what
was left out is listed in the result.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from xsift.errors import SchemaError, XsiftError
from xsift.methods.metrics import classification_metrics, top_class_reliability
from xsift.methods.validation import N_BINS, source_classes, stratified_folds

__all__ = ["preset_for_columns", "source_folds", "aggregate_probabilities", "validate_naive_bayes",
           "NBValidation", "write_nb_validation"]


# --------------------------------------------------------------------------- absent columns

def preset_for_columns(preset, columns, *, source: str = "catalogue") -> tuple[object, dict]:
    """The naive-Bayes preset reduced to the properties whose catalogue columns are all in ``columns``.

    preset: a preset name, TOML path, dict or :class:`xsift.config.Preset` (naive Bayes); columns: the
    table's column names. Returns ``(preset, facts)``: the reduced :class:`~xsift.config.Preset` (the
    preset itself when nothing is absent) and ``{"properties_used": [...], "properties_absent":
    {property: [absent columns]}, "errors_absent": {property: [absent error columns]},
    "categories_dropped": [...]}``. Raises :class:`SchemaError` naming ``source`` (the table) and the
    missing columns when no property is left.
    """
    from xsift.config import Preset, load_preset
    p = load_preset(preset)
    have = set(map(str, columns))
    absent = {f.name: [c for c in f.columns if c not in have] for f in p.features}
    absent = {k: v for k, v in absent.items() if v}
    errors = {f.name: [c for c in f.error if c not in have] for f in p.features if f.name not in absent}
    errors = {k: v for k, v in errors.items() if v}
    used = [f.name for f in p.features if f.name not in absent]
    facts = {"properties_used": used, "properties_absent": absent, "errors_absent": errors,
             "categories_dropped": []}
    if not used:
        raise SchemaError(f"{source}: missing columns {', '.join(map(repr, p.feature_columns))}: the table has "
                          f"none of the columns of the properties of preset {p.name!r}")
    if not absent and not errors:
        return p, facts
    d = p.to_dict()
    d["features"] = {k: v for k, v in d["features"].items() if k in used}
    for k in errors:
        d["features"][k].pop("error", None)
    cats = {}
    for name, cat in d.get("categories", {}).items():
        members = [f for f in cat["features"] if f in used]
        if members:
            cats[name] = {**cat, "features": members}
        else:
            facts["categories_dropped"].append(name)
    d["categories"] = cats
    nb = d.get("naive_bayes")
    if nb and nb.get("prior_shapes"):
        nb["prior_shapes"] = {k: v for k, v in nb["prior_shapes"].items() if k in used}
    return Preset.from_dict(d, source=f"{p.source or p.name} (properties of the table)"), facts


def describe_absent(facts: dict) -> list[str]:
    """One line per kind of thing :func:`preset_for_columns` left out (none when nothing was)."""
    lines = []
    if facts.get("properties_absent"):
        lines.append("properties left out (columns absent): " + "; ".join(
            f"{k} ({', '.join(v)})" for k, v in facts["properties_absent"].items()))
    if facts.get("errors_absent"):
        lines.append("error columns absent (no error weight): " + "; ".join(
            f"{k} ({', '.join(v)})" for k, v in facts["errors_absent"].items()))
    if facts.get("categories_dropped"):
        lines.append("categories without a property: " + ", ".join(facts["categories_dropped"]))
    return lines


# --------------------------------------------------------------------------- folds and aggregation

def source_folds(y: np.ndarray, groups, n_folds: int, seed: int) -> np.ndarray:
    """(n,) fold index 0..n_folds-1 of every row: stratified k-fold by source (module docstring).

    y: (n,) class indices (>= 0); groups: (n,) source keys (None: every row its own source).
    Raises XsiftError for fewer than 2 folds or more folds than sources."""
    y = np.asarray(y, dtype=np.int64)
    n_folds = int(n_folds)
    if groups is None:
        groups = np.arange(len(y))
    codes, group_class = source_classes(y, groups)
    if n_folds < 2 or n_folds > len(group_class):
        raise XsiftError(f"--folds {n_folds}: expected at least 2 and at most the number of sources "
                         f"({len(group_class)})")
    return stratified_folds(group_class, n_folds, seed)[codes]


def aggregation_of(classes: list[str], aggregation: dict) -> tuple[list[str], np.ndarray]:
    """(aggregated class names, (K,) aggregated index of each class): the groups of ``aggregation``
    (group -> member classes) in its order, then the classes in no group under their own names."""
    group_of = {c: g for g, members in aggregation.items() for c in members}
    names = list(aggregation) + [c for c in classes if c not in group_of]
    return names, np.array([names.index(group_of.get(c, c)) for c in classes], dtype=np.int64)


def aggregate_probabilities(proba: np.ndarray, index: np.ndarray, n_groups: int) -> np.ndarray:
    """(n, G) summed probabilities of the classes of each group; proba (n, K), index (K,) group of each."""
    out = np.zeros((len(proba), n_groups))
    for k, g in enumerate(index):
        out[:, g] += proba[:, k]
    return out


# --------------------------------------------------------------------------- validation

@dataclass(eq=False)
class NBValidation:
    """The result of :func:`validate_naive_bayes`.

    classes (K,), y (n,) class indices of the labelled rows, proba (n, K) out-of-fold posteriors,
    folds (n,), names (n,) source keys; metrics / metrics_aggregated: :func:`classification_metrics`
    dicts plus ``macro_f1`` and ``reliability``; aggregated_classes; tuning: one dict per fold (None
    without tuning); properties: :func:`preset_for_columns` facts; counts: rows, labelled rows,
    left-out labels, sources; options: folds, seed, target, model parameters.
    """
    classes: list[str]
    y: np.ndarray = field(repr=False)
    proba: np.ndarray = field(repr=False)
    folds: np.ndarray = field(repr=False)
    names: np.ndarray = field(repr=False)
    metrics: dict = field(repr=False)
    aggregated_classes: list[str] | None
    metrics_aggregated: dict | None = field(repr=False)
    tuning: list | None
    properties: dict
    counts: dict
    options: dict
    seconds: float = 0.0

    def per_class(self, aggregated: bool = False) -> dict:
        """class name -> {precision, recall, f1, support, precision_prior_corrected}."""
        m = self.metrics_aggregated if aggregated else self.metrics
        if m is None:
            return {}
        keys = [k for k in ("precision", "recall", "f1", "precision_prior_corrected") if k in m]
        return {c: {**{k: m[k][i] for k in keys}, "support": int(m["n_true"][i])}
                for i, c in enumerate(m["classes"])}

    def as_dict(self) -> dict:
        """JSON-ready summary: per-class metrics keyed by class name, macro F1, ECE, counts, tuning."""
        out = {"classes": self.per_class(), "macro_f1": self.metrics["macro_f1"],
               "accuracy": self.metrics["accuracy"], "ece": self.metrics["reliability"]["ece"]}
        if self.metrics_aggregated is not None:
            out["aggregated"] = {"classes": self.per_class(True), "macro_f1": self.metrics_aggregated["macro_f1"],
                                 "accuracy": self.metrics_aggregated["accuracy"],
                                 "ece": self.metrics_aggregated["reliability"]["ece"]}
        out.update(confusion=self.metrics["confusion"], counts=self.counts, properties=self.properties,
                   options=self.options, tuning=self.tuning, seconds=self.seconds)
        return out


def _metrics(y, proba, classes, priors, n_bins) -> dict:
    pred = np.argmax(proba, axis=1)
    m = classification_metrics(y, pred, classes, priors)
    m["macro_f1"] = float(np.mean(m["f1"]))
    m["accuracy"] = float(np.mean(pred == y)) if len(y) else float("nan")
    m["reliability"] = top_class_reliability(proba, y, n_bins)
    return m


def validate_naive_bayes(table, preset, *, n_folds: int = 5, tune: str | None = None, seed: int = 0,
                         label: str | None = None, model_params: dict | None = None,
                         tune_options: dict | None = None, priors=None, n_bins: int = N_BINS,
                         source: str = "catalogue", progress=None) -> NBValidation:
    """Stratified k-fold cross-validation by source of :class:`xsift.methods.naive_bayes.NaiveBayesKDE`.

    table: labelled catalogue (DataFrame or anything :func:`xsift.methods.estimator.as_frame` takes);
    preset: naive-Bayes preset (name, path, dict, Preset), reduced to the properties the table has
    (:func:`preset_for_columns`). n_folds, seed: the folds (:func:`source_folds`, by the preset's source
    column when the table has it); tune: a class (or an aggregated class of the preset: F1 of its members
    pooled) whose F1 the weights of each training fold are tuned for
    (nested: an inner ``n_folds``-fold cross-validation of the training folds, seed ``seed + fold``), or None.
    label: the label column (default: the preset's). model_params: NaiveBayesKDE parameters besides the
    preset. tune_options: keywords of :func:`xsift.methods.naive_bayes.tune_weights` (``popsize``,
    ``maxiter``, ``tune_alpha``). priors: the population's class proportions for the prior-corrected
    precision, one per class (default: the preset's priors; with ``priors = "training"``, the sample's
    proportions, where it equals the precision). progress: called with ``(fold, n_folds)`` before each fold.
    Returns :class:`NBValidation`.

    Raises SchemaError for an absent label column, XsiftError for an unknown tuning target or bad folds.
    """
    from xsift.config import spec_from_preset
    from xsift.methods.estimator import as_frame
    from xsift.methods.naive_bayes import NaiveBayesKDE, class_targets, target_classes, tune_weights
    t0 = time.perf_counter()
    df = as_frame(table, source=source)
    reduced, facts = preset_for_columns(preset, df.columns, source=source)
    spec = spec_from_preset(reduced)
    col = label or spec.label_column
    if not col or col not in df.columns:
        raise SchemaError(f"{source}: label column {col!r} not found; pass the label column "
                          f"(columns: {', '.join(map(str, df.columns[:30]))})")
    y_all, left = class_targets(df[col], spec, source=source)
    keep = y_all >= 0
    df = df.loc[keep].reset_index(drop=True)
    y = y_all[keep]
    classes = list(spec.classes)
    if tune is not None:
        try:
            target_classes(spec, tune)
        except XsiftError:
            groups = list(spec.preset.classes.aggregation)
            raise XsiftError(f"--tune {tune!r}: expected one of the classes {', '.join(classes)}"
                             + (f" or aggregated classes {', '.join(groups)}" if groups else "")) from None
    names = (df[spec.source_column].astype(str).to_numpy() if spec.source_column in df.columns
             else np.arange(len(df)).astype(str))
    folds = source_folds(y, names, n_folds, seed)
    params = dict(model_params or {})
    proba = np.full((len(df), len(classes)), np.nan)
    tuning = [] if tune is not None else None
    for k in range(int(n_folds)):
        if progress is not None:
            progress(k, int(n_folds))
        train, test = folds != k, folds == k
        model = NaiveBayesKDE(spec, **{"seed": int(seed) + k, **params})
        if tune is not None:
            res = tune_weights(model, df.loc[train], y[train], target=tune, n_folds=int(n_folds),
                               seed=int(seed) + k, source=f"{source} (fold {k})", **(tune_options or {}))
            model.set_params(**res.params)          # the weights, and missing_alpha when it was tuned
            tuning.append({"fold": k, **res.as_dict()})
        model.fit(df.loc[train], y[train], source=f"{source} (fold {k})")
        proba[test] = model.predict_proba(df.loc[test])
    if priors is None:
        priors = spec.priors if spec.priors != "training" else np.bincount(y, minlength=len(classes)) / len(y)
    priors = np.asarray(priors, dtype=np.float64).reshape(-1)
    if priors.shape != (len(classes),) or not np.all(np.isfinite(priors)) or (priors < 0).any() or priors.sum() <= 0:
        raise XsiftError(f"priors {priors.tolist()}: expected {len(classes)} non-negative numbers, one per class "
                         f"{', '.join(classes)}")
    metrics = _metrics(y, proba, classes, priors / priors.sum(), n_bins)
    agg_names, metrics_agg = None, None
    if spec.preset.classes.aggregation:
        agg_names, index = aggregation_of(classes, dict(spec.preset.classes.aggregation))
        pri = np.asarray(metrics["priors"])
        agg_pri = np.bincount(index, weights=pri, minlength=len(agg_names))
        metrics_agg = _metrics(index[y], aggregate_probabilities(proba, index, len(agg_names)), agg_names,
                               agg_pri, n_bins)
    counts = {"rows": int(len(keep)), "labelled_rows": int(keep.sum()), "left_out_labels": left,
              "sources": int(len(np.unique(names))),
              "class_counts": dict(zip(classes, np.bincount(y, minlength=len(classes)).tolist()))}
    options = {"folds": int(n_folds), "seed": int(seed), "tune": tune, "label_column": col,
               "preset": spec.preset.name, "model_params": params, "tune_options": dict(tune_options or {})}
    return NBValidation(classes=classes, y=y, proba=proba, folds=folds, names=names, metrics=metrics,
                        aggregated_classes=agg_names, metrics_aggregated=metrics_agg, tuning=tuning,
                        properties=facts, counts=counts, options=options,
                        seconds=round(time.perf_counter() - t0, 3))


# --------------------------------------------------------------------------- writing

def write_nb_validation(result: NBValidation, out, *, figures: bool = True, provenance: dict | None = None
                        ) -> dict[str, str]:
    """Write a :class:`NBValidation` into ``out``: ``metrics.json`` (:meth:`NBValidation.as_dict`),
    ``confusion_{classes,aggregated}.csv`` (row-normalised) and ``_counts.csv``, ``metrics_{...}.csv``,
    ``predictions.csv`` (source, fold, true class, out-of-fold probabilities, predicted class),
    ``reliability.csv`` and, with ``figures``, ``confusion_*.png`` (row-normalised and counts) and
    ``reliability.png``. Returns name -> path written."""
    import pathlib

    from xsift.data.columns import ColumnInfo
    from xsift.data.io import write_json, write_table
    from xsift.methods.metrics import row_normalised
    from xsift.report.outputs import confusion_frame
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    row_class = {"class": ColumnInfo(None, "class the row is about", "src.class")}
    views = [("classes", result.classes, result.metrics)]
    if result.metrics_aggregated is not None:
        views.append(("aggregated", result.aggregated_classes, result.metrics_aggregated))
    curves = {}
    for stem, labels, m in views:
        cm = np.asarray(m["confusion"])
        written[f"confusion_{stem}"] = str(write_table(confusion_frame(cm, labels, True), out / f"confusion_{stem}.csv",
                                                       provenance=provenance))
        written[f"confusion_{stem}_counts"] = str(write_table(confusion_frame(cm, labels, False),
                                                              out / f"confusion_{stem}_counts.csv",
                                                              provenance=provenance))
        per = pd.DataFrame({"class": labels, "precision": m["precision"], "recall": m["recall"], "f1": m["f1"],
                            "support": m["n_true"]})
        if "precision_prior_corrected" in m:
            per["precision_prior_corrected"] = m["precision_prior_corrected"]
        written[f"metrics_{stem}"] = str(write_table(per, out / f"metrics_{stem}.csv", provenance=provenance,
                                                     columns=row_class))
        curves[f"{stem}: top-class probability"] = m["reliability"]
        if figures:
            from xsift.report.figures import confusion_figure
            written[f"confusion_{stem}_png"] = str(confusion_figure(
                row_normalised(cm), labels, out / f"confusion_{stem}.png",
                title=f"naive Bayes, {result.options['folds']}-fold CV by source (row-normalised)"))
            written[f"confusion_{stem}_counts_png"] = str(confusion_figure(
                row_normalised(cm), labels, out / f"confusion_{stem}_counts.png", counts=cm,
                title=f"naive Bayes, {result.options['folds']}-fold CV by source (counts)"))
    pred = pd.DataFrame({"source": result.names, "fold": result.folds,
                         "true_class": np.asarray(result.classes, dtype=object)[result.y]})
    for k, c in enumerate(result.classes):
        pred[c] = result.proba[:, k]
    pred["predicted_class"] = np.asarray(result.classes, dtype=object)[np.argmax(result.proba, axis=1)]
    written["predictions"] = str(write_table(pred, out / "predictions.csv", classes=result.classes,
                                             provenance=provenance))
    rows = [{"curve": curve, "bin_low": r["edges"][b], "bin_high": r["edges"][b + 1], "sources": r["count"][b],
             "mean_confidence": r["confidence"][b], "fraction_correct": r["accuracy"][b]}
            for curve, r in curves.items() for b in range(r["n_bins"])]
    written["reliability"] = str(write_table(pd.DataFrame(rows), out / "reliability.csv", provenance=provenance))
    if figures:
        from xsift.report.figures import reliability_figure
        written["reliability_png"] = str(reliability_figure(
            curves, out / "reliability.png", title="naive Bayes, out-of-fold probabilities"))
    written["metrics_json"] = str(write_json(result.as_dict(), out / "metrics.json"))
    return written


# --------------------------------------------------------------------------- a fitted model on fewer properties

_NOT_PER_PROPERTY = ("priors_", "classes_", "membership_", "kde_", "spec_")


def restricted_model(model, preset):
    """A copy of the fitted :class:`~xsift.methods.naive_bayes.NaiveBayesKDE` ``model`` that uses only the
    properties of ``preset`` (a reduction of the model's preset by :func:`preset_for_columns`), so a table
    lacking a property's columns is classified without that property rather than with it *missing* (with
    the missing-value likelihoods of Tranin et al. 2022, a missing value is evidence; an absent column is not).

    Equals the model fitted on the reduced preset from the same training sample: every density and
    per-property fitted array is that property's own. ``model`` is not changed. Raises XsiftError when
    ``preset`` names a property the model does not have.
    """
    import copy

    from xsift.config import spec_from_preset
    from xsift.kernels.kde import KDEGrid
    model._check_fitted()
    old = model.spec_
    spec = spec_from_preset(preset)
    unknown = [p for p in spec.property_names if p not in old.property_names]
    if unknown:
        raise XsiftError(f"the model has no propert(ies) {unknown}; its properties are {old.property_names}")
    if spec.property_names == old.property_names and spec.category_names == old.category_names:
        return model
    P, K = len(old.property_names), len(old.classes)
    keep = np.array([old.property_names.index(p) for p in spec.property_names], dtype=np.int64)
    pairs = (keep[:, None] * K + np.arange(K)[None, :]).reshape(-1)
    new = copy.deepcopy(model)
    weights = model.category_weights()
    new.preset = spec.preset
    new.weights = {c: weights[c] for c in spec.category_names}
    new.spec_ = spec
    if isinstance(getattr(model, "prior_shapes", None), dict):     # a constructor parameter naming properties
        new.prior_shapes = {k: v for k, v in model.prior_shapes.items() if k in spec.property_names}
    new.membership_ = np.asarray(spec.membership(), dtype=np.float64)
    g = model.kde_
    new.kde_ = KDEGrid(*(a[pairs] if isinstance(a, np.ndarray) and a.ndim >= 1 and a.shape[0] == P * K else a
                         for a in g))
    for name, value in vars(model).items():
        if (name.endswith("_") and name not in _NOT_PER_PROPERTY and isinstance(value, np.ndarray)
                and value.ndim >= 1 and value.shape[0] == P):
            setattr(new, name, value[keep])
    return new
