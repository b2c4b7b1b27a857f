"""Interpretable naive-Bayes classifier with KDE likelihoods (Tranin et al., seed 002, Eq. 1).

The model
---------
Classes ``C`` with priors ``P(C)``; properties ``p`` grouped in categories ``t`` with
weights ``alpha_t``. Each (property, class) pair has a 1-D Gaussian KDE ``f_{p,C}``
fitted on the training sample (on the property's transformed axis, Scott's rule by
default), evaluated by :mod:`xsift.kernels.kde`. For a source ``x``::

    log L(t|C)  = sum_{p in t, x_p observed} log f_{p,C}(x_p)
    log N(C|x)  = log P(C) + sum_{t observed} alpha_t log L(t|C) / sum_{t observed} alpha_t
    P(C|x)      = N(C|x) / sum_C' N(C'|x)

A missing property contributes no factor; a category with no observed property drops
out of both the product and ``sum alpha_t``; a source with nothing observed gets the
priors. Only the ratios of the weights matter.

Outlier measure
---------------
``OM(x) = -log10 sum_C N(C|x)``, minus the log10 of the numerator of Eq. 1 summed
over classes: the prior-weighted, alpha-weighted geometric mean of the category
likelihoods, i.e. how dense the training sample is at the source's properties. Large
means unusual. It has the units of a (product) density on the transformed axes, so
compare it between sources with the same observed categories (the output carries
``n_categories``) and within one model.

Probability tracks
------------------
For one source, per observed property, the probabilities that property alone gives,
``P(C) f_{p,C}(x_p)`` normalised; the same per category (``P(C) L(t|C)``); and the final
posterior (the seed's Fig. 2).

Weight tuning
-------------
Differential evolution (:mod:`xsift.kernels.evolution`) maximises the F1 of one class on
cross-validated predictions: the KDEs of each fold are fitted on the other folds, the
out-of-fold per-category log-likelihoods are computed once, and the objective is a
cheap weighted sum + argmax + F1 of them, vmapped over the population. Each weight is
bounded in ``[0, 1]`` (only ratios matter) and the result is reported rescaled to a
mean of 1.

Metrics
-------
Confusion matrix (rows = true class, columns = predicted), recall, precision, F1 and
the seed's prior-corrected precision: each true-class row of the confusion matrix is
rescaled to the prior proportion of its class before computing precision.

Saved models are ``model.npz`` (arrays) + ``model.json`` (the preset and metadata).
"""
from __future__ import annotations

import json
import math
import pathlib
import sys
import time
from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from xsift.errors import SchemaError, XsiftError
from xsift.kernels.evolution import differential_evolution
from xsift.kernels.kde import KDEGrid, evaluate_log_kde, fit_binned_kde, fit_cv_bandwidth, scott_bandwidth

CLI_HELP = "interpretable naive-Bayes classifier with KDE likelihoods: fit | tune | classify | tracks"
CLI_COMMON = ()   # declared per sub-command below
DEFAULT_PRESET = "nb_csc"
MODEL_FORMAT = 1

# --------------------------------------------------------------------------- preset


def _hardness_ratio(a, b):
    return (a - b) / (a + b)


def _abs_galactic_latitude(ra, dec):
    from astropy import units as u
    from astropy.coordinates import SkyCoord
    out = np.full(ra.shape, np.nan)
    ok = np.isfinite(ra) & np.isfinite(dec)
    if ok.any():
        out[ok] = np.abs(SkyCoord(ra=ra[ok] * u.deg, dec=dec[ok] * u.deg, frame="icrs").galactic.b.deg)
    return out


def _formulas() -> dict:
    from xsift.data.features import DERIVED_FORMULAS
    formulas = {name: spec for name, spec in DERIVED_FORMULAS.items()}
    formulas.update({
        "column": (1, lambda a: a),
        "hardness_ratio": (2, _hardness_ratio),
        "abs_galactic_latitude": (2, _abs_galactic_latitude),
    })
    return formulas


TRANSFORMS = ("none", "log10")


@dataclass
class NBSpec:
    """What a naive-Bayes preset declares, validated once."""
    classes: list[str]
    labels: dict[str, str]                 # catalogue label -> class
    priors: object                         # list of floats or "training"
    target: str
    properties: dict[str, dict]            # name -> {formula, columns, transform}
    categories: dict[str, dict]            # name -> {weight, properties}
    source_column: str | None = None
    label_column: str | None = None
    preset: dict = field(default_factory=dict)

    @property
    def property_names(self) -> list[str]:
        return list(self.properties)

    @property
    def category_names(self) -> list[str]:
        return list(self.categories)

    @property
    def weights(self) -> np.ndarray:
        return np.array([float(c["weight"]) for c in self.categories.values()])

    def membership(self) -> np.ndarray:
        """(T, P) 0/1 matrix: property p belongs to category t."""
        props = self.property_names
        m = np.zeros((len(self.categories), len(props)))
        for t, cat in enumerate(self.categories.values()):
            for p in cat["properties"]:
                m[t, props.index(p)] = 1.0
        return m

    def input_columns(self) -> list[str]:
        cols: list[str] = []
        for spec in self.properties.values():
            for c in spec["columns"]:
                if c not in cols:
                    cols.append(c)
        return cols


def spec_from_preset(preset: dict) -> NBSpec:
    """Validate a naive-Bayes preset dict (see ``engine/presets/nb_*.toml``)."""
    src = preset.get("_path", preset.get("name", "preset"))
    classes_tbl = preset.get("classes", {})
    if "labels_from" in classes_tbl:
        from xsift.data.features import load_preset
        other = load_preset(classes_tbl["labels_from"])
        aggregation = other.get("classes", {}).get("aggregation")
        if not aggregation:
            raise XsiftError(f"{src}: [classes] labels_from = {classes_tbl['labels_from']!r} has no "
                             "[classes.aggregation] table")
        label_groups = aggregation
    else:
        label_groups = classes_tbl.get("labels")
    if not label_groups:
        raise XsiftError(f"{src}: [classes] needs a [classes.labels] table (class = [labels...]) or labels_from")
    classes = list(classes_tbl.get("order", list(label_groups)))
    labels = {}
    for cls, group in label_groups.items():
        if cls not in classes:
            raise XsiftError(f"{src}: class {cls!r} of [classes.labels] is not in [classes] order {classes}")
        for lab in group:
            labels[str(lab)] = cls
    priors = classes_tbl.get("priors", "training")
    if priors != "training":
        priors = [float(p) for p in priors]
        if len(priors) != len(classes) or min(priors) <= 0:
            raise XsiftError(f"{src}: [classes] priors must be 'training' or {len(classes)} positive numbers "
                             f"(one per class of {classes}), got {priors}")
        s = sum(priors)
        priors = [p / s for p in priors]
    target = classes_tbl.get("target", classes[-1])
    if target not in classes:
        raise XsiftError(f"{src}: [classes] target {target!r} is not one of {classes}")
    formulas = _formulas()
    properties = {}
    for name, spec in preset.get("properties", {}).items():
        formula = spec.get("formula", "column")
        cols = list(spec.get("columns", [name]))
        transform = spec.get("transform", "none")
        if formula not in formulas:
            raise XsiftError(f"{src}: property {name!r}: unknown formula {formula!r}; known: {', '.join(formulas)}")
        if len(cols) != formulas[formula][0]:
            raise XsiftError(f"{src}: property {name!r}: formula {formula!r} takes {formulas[formula][0]} "
                             f"column(s), got {cols}")
        if transform not in TRANSFORMS:
            raise XsiftError(f"{src}: property {name!r}: transform must be one of {TRANSFORMS}, got {transform!r}")
        properties[name] = {"formula": formula, "columns": cols, "transform": transform}
    if not properties:
        raise XsiftError(f"{src}: the preset declares no [properties]")
    categories = {}
    for name, cat in preset.get("categories", {}).items():
        props = list(cat.get("properties", []))
        unknown = [p for p in props if p not in properties]
        if unknown or not props:
            raise XsiftError(f"{src}: category {name!r} lists unknown or no properties {unknown}; "
                             f"declared: {list(properties)}")
        w = float(cat.get("weight", 1.0))
        if not w >= 0:
            raise XsiftError(f"{src}: category {name!r} weight must be >= 0, got {w}")
        categories[name] = {"weight": w, "properties": props}
    if not categories:
        raise XsiftError(f"{src}: the preset declares no [categories.NAME] tables")
    used = [p for c in categories.values() for p in c["properties"]]
    if len(used) != len(set(used)):
        raise XsiftError(f"{src}: a property is listed in two categories")
    properties = {p: properties[p] for p in properties if p in used}  # only the used ones, in order
    cols = preset.get("columns", {})
    clean = {k: v for k, v in preset.items() if not k.startswith("_")}
    return NBSpec(classes=classes, labels=labels, priors=priors, target=target, properties=properties,
                  categories=categories, source_column=cols.get("source"), label_column=cols.get("label"),
                  preset=clean)


def load_nb_preset(name_or_path=None) -> NBSpec:
    from xsift.data.features import load_preset
    return spec_from_preset(load_preset(name_or_path or DEFAULT_PRESET))


def properties_table(df: pd.DataFrame, spec: NBSpec, source: str = "catalogue") -> tuple[np.ndarray, dict]:
    """(n, P) transformed property values (NaN = missing) and a count of values made missing.

    ``log10`` of a non-positive value, and any non-finite result, is missing.
    """
    formulas = _formulas()
    missing_cols = [c for c in spec.input_columns() if c not in df.columns]
    if missing_cols:
        raise SchemaError(f"{source}: missing column(s) {missing_cols}; the naive-Bayes preset "
                          f"{spec.preset.get('name', '')!r} needs {spec.input_columns()}")
    out = np.full((len(df), len(spec.properties)), np.nan)
    dropped = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for j, (name, p) in enumerate(spec.properties.items()):
            args = []
            for c in p["columns"]:
                try:
                    args.append(df[c].to_numpy(dtype=np.float64, na_value=np.nan))
                except (TypeError, ValueError):
                    raise SchemaError(f"{source}: column {c!r} (property {name!r}) must be numeric") from None
            v = np.asarray(formulas[p["formula"]][1](*args), dtype=np.float64)
            if p["transform"] == "log10":
                bad = np.isfinite(v) & (v <= 0)
                if bad.any():
                    dropped[name] = int(bad.sum())
                v = np.where(v > 0, np.log10(np.where(v > 0, v, 1.0)), np.nan)
            out[:, j] = np.where(np.isfinite(v), v, np.nan)
    return out, dropped


def class_indices(labels: pd.Series, spec: NBSpec) -> tuple[np.ndarray, dict]:
    """Map catalogue labels to class indices (-1 = left out) and count the left-out labels."""
    lab = labels.astype("object").where(labels.notna(), None).to_numpy()
    idx = np.array([spec.classes.index(spec.labels[l]) if l in spec.labels else -1 for l in lab], dtype=np.int64)
    left = pd.Series([l for l, i in zip(lab, idx) if i < 0], dtype="object").fillna("<null>").value_counts()
    return idx, {str(k): int(v) for k, v in left.items()}


# --------------------------------------------------------------------------- the maths (jittable)


def category_log_likelihoods(loglik, membership):
    """loglik: (n, P, K) log f_{p,C}(x_p), NaN where x_p is missing; membership: (T, P).

    Returns ``(log L(t|C): (n, T, K), observed: (n, T) bool)``.
    """
    obs = jnp.isfinite(loglik[:, :, 0])
    ll = jnp.where(jnp.isfinite(loglik), loglik, 0.0)
    membership = jnp.asarray(membership, ll.dtype)
    cat = jnp.einsum("tp,npk->ntk", membership, ll)
    observed = (obs.astype(ll.dtype) @ membership.T) > 0
    return cat, observed


def log_numerator(cat_ll, observed, weights, log_prior):
    """log of the numerator of Eq. 1: (n, K). cat_ll: (n, T, K), observed: (n, T), weights: (T,)."""
    # The weights enter only through contractions over t with arrays that do not depend on them,
    # so under jax.vmap over candidate weight vectors (differential evolution) both become one
    # (M, T) @ (T, n*K) matrix product instead of n tiny batched products.
    w = jnp.asarray(weights, cat_ll.dtype)
    obs = observed.astype(cat_ll.dtype)
    masked = jnp.where(observed[:, :, None], cat_ll, 0.0)
    s = jnp.einsum("t,nt->n", w, obs)[:, None]
    weighted = jnp.einsum("t,ntk->nk", w, masked) / jnp.where(s > 0, s, 1.0)
    return jnp.asarray(log_prior, cat_ll.dtype)[None, :] + weighted


@jax.jit
def posterior_and_outlier(cat_ll, observed, weights, log_prior):
    """Posterior (n, K) of Eq. 1 and outlier measure (n,) = -log10 sum_C numerator."""
    ln = log_numerator(cat_ll, observed, weights, log_prior)
    lse = jax.scipy.special.logsumexp(ln, axis=1)
    return jnp.exp(ln - lse[:, None]), -lse / jnp.log(10.0)


def f1_of_class(y_true, y_pred, target):
    """F1 of one class from integer labels (jittable)."""
    tp = jnp.sum((y_pred == target) & (y_true == target))
    fp = jnp.sum((y_pred == target) & (y_true != target))
    fn = jnp.sum((y_pred != target) & (y_true == target))
    return jnp.where(tp > 0, 2.0 * tp / (2.0 * tp + fp + fn), 0.0)


def negative_f1_objective(weights, cat_ll, observed, log_prior, y_true, target):
    """DE objective: -F1(target) of argmax posterior with these category weights."""
    pred = jnp.argmax(log_numerator(cat_ll, observed, weights, log_prior), axis=1)
    return -f1_of_class(y_true, pred, target)


# --------------------------------------------------------------------------- metrics


def classification_metrics(y_true, y_pred, classes: list[str], priors=None) -> dict:
    """Confusion matrix (rows true, columns predicted), recall, precision, F1, prior-corrected precision.

    Prior-corrected precision (the seed's Table 2): each true-class row ``c`` of the confusion
    matrix is rescaled by ``prior_c / n_c`` before computing precision; ``f1_prior_corrected``
    combines it with recall.
    """
    from xsift.methods.metrics import confusion_matrix
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
            scaled = cm * np.where(n_true > 0, pri / np.maximum(n_true, 1), 0.0)[:, None]
            col = scaled.sum(axis=0)
            pc = np.where(col > 0, np.diag(scaled) / col, np.nan)
            f1c = np.where((recall + pc) > 0, 2 * recall * pc / (recall + pc), 0.0)
            out.update(priors=pri.tolist(), precision_prior_corrected=pc.tolist(),
                       f1_prior_corrected=f1c.tolist())
    return out


def format_metrics(m: dict) -> str:
    classes = m["classes"]
    w = max(8, max(len(c) for c in classes) + 1)
    lines = ["true \\ predicted".ljust(18) + "".join(c.rjust(w) for c in classes)]
    for c, row in zip(classes, m["confusion"]):
        lines.append(f"{c:<18}" + "".join(f"{v:>{w}d}" for v in row))
    for key in ("recall", "precision", "precision_prior_corrected", "f1"):
        if key in m:
            lines.append(f"{key:<18}"[:18] + "".join(f"{v:>{w}.3f}" for v in m[key]))
    return "\n".join(lines)


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


# --------------------------------------------------------------------------- the model


class NaiveBayesKDE:
    """The weighted naive-Bayes classifier of Eq. 1 with per-(property, class) binned KDEs.

    Construct from an :class:`NBSpec` (``load_nb_preset``), then :meth:`fit` on transformed
    properties ``X: (n, P)`` (NaN = missing, see :func:`properties_table`) and class indices
    ``y: (n,)``; or :meth:`load` a saved one.
    """

    def __init__(self, spec: NBSpec, *, n_grid: int = 2048, bandwidth: str = "scott",
                 dtype=jnp.float64, chunk_rows: int = 65536):
        if bandwidth not in ("scott", "cv"):
            raise XsiftError(f"bandwidth must be 'scott' or 'cv', got {bandwidth!r}")
        self.spec = spec
        self.n_grid = int(n_grid)
        self.bandwidth_rule = bandwidth
        self.dtype = dtype
        self.chunk_rows = int(chunk_rows)
        self.weights = spec.weights.astype(float)
        self.membership = spec.membership()
        self.priors = None if spec.priors == "training" else np.asarray(spec.priors, float)
        self.grid: KDEGrid | None = None
        self.n_train: np.ndarray | None = None

    # -- fitting
    @property
    def classes(self) -> list[str]:
        return self.spec.classes

    def _pairs(self, X, y):
        P, K = X.shape[1], len(self.classes)
        cols = []
        for p in range(P):
            for c in range(K):
                v = X[(y == c), p]
                cols.append(v[np.isfinite(v)])
        counts = np.array([len(v) for v in cols])
        n_max = max(2, int(counts.max()))
        x = np.full((P * K, n_max), np.nan)
        for j, v in enumerate(cols):
            x[j, :len(v)] = v
        return x, np.isfinite(x).astype(float), counts.reshape(P, K)

    def fit(self, X, y, *, seed: int = 0) -> "NaiveBayesKDE":
        X = np.asarray(X, float)
        y = np.asarray(y)
        K = len(self.classes)
        if X.shape[1] != len(self.spec.properties):
            raise XsiftError(f"expected {len(self.spec.properties)} property columns, got {X.shape[1]}")
        x, w, counts = self._pairs(X, y)
        for p, name in enumerate(self.spec.property_names):
            for c, cls in enumerate(self.classes):
                vals = X[(y == c), p]
                vals = vals[np.isfinite(vals)]
                if len(vals) < 2 or np.ptp(vals) == 0:
                    raise XsiftError(f"property {name!r} has {len(vals)} observed training value(s) for class "
                                     f"{cls!r} (need at least 2 distinct): cannot fit its density; drop the "
                                     "property from the preset or add training sources")
        if self.bandwidth_rule == "cv":
            h = fit_cv_bandwidth(x, w, jax.random.PRNGKey(seed), dtype=self.dtype)
        else:
            h = scott_bandwidth(x, w, dtype=self.dtype)
        self.grid = fit_binned_kde(x, w, h, n_grid=self.n_grid, dtype=self.dtype)
        self.n_train = counts
        if self.spec.priors == "training":
            n = np.bincount(y[y >= 0], minlength=K).astype(float)
            self.priors = n / n.sum()
        return self

    # -- evaluation
    def log_likelihoods(self, X) -> np.ndarray:
        """(n, P, K) log f_{p,C}(x_p); NaN where x_p is missing."""
        self._check_fitted()
        X = np.asarray(X, float)
        K = len(self.classes)
        columns = np.repeat(np.arange(X.shape[1]), K)
        ll = evaluate_log_kde(self.grid, X, columns, chunk_rows=self.chunk_rows, dtype=self.dtype)
        return np.asarray(ll).reshape(len(X), X.shape[1], K)

    def _cat(self, X):
        return category_log_likelihoods(jnp.asarray(self.log_likelihoods(X)), self.membership)

    def predict_proba(self, X) -> np.ndarray:
        """(n, K) posterior of Eq. 1."""
        return self.posterior_and_outlier(X)[0]

    def outlier_measure(self, X) -> np.ndarray:
        """(n,) -log10 sum_C numerator of Eq. 1 (large = unusual)."""
        return self.posterior_and_outlier(X)[1]

    def posterior_and_outlier(self, X) -> tuple[np.ndarray, np.ndarray]:
        cat, obs = self._cat(X)
        post, om = posterior_and_outlier(cat, obs, jnp.asarray(self.weights, cat.dtype),
                                         jnp.log(jnp.asarray(self.priors, cat.dtype)))
        return np.asarray(post), np.asarray(om)

    def predict(self, X) -> np.ndarray:
        return np.argmax(self.predict_proba(X), axis=1)

    def tracks(self, x) -> pd.DataFrame:
        """Probability track of one source ``x: (P,)``: one row per observed property, per observed
        category and the final posterior, each with the class probabilities it alone gives
        (``P(C) f`` normalised)."""
        x = np.asarray(x, float).reshape(1, -1)
        ll = self.log_likelihoods(x)[0]                     # (P, K)
        logp = np.log(self.priors)
        rows = []

        def norm(v):
            v = v - v.max()
            e = np.exp(v)
            return e / e.sum()

        for t, (cname, cat) in enumerate(self.spec.categories.items()):
            idx = [self.spec.property_names.index(p) for p in cat["properties"]]
            seen = [i for i in idx if np.isfinite(x[0, i])]
            for i in seen:
                rows.append({"level": "property", "name": self.spec.property_names[i], "category": cname,
                             "value": float(x[0, i]), "weight": np.nan,
                             **dict(zip(self.classes, norm(logp + ll[i])))})
            if seen:
                rows.append({"level": "category", "name": cname, "category": cname, "value": np.nan,
                             "weight": float(self.weights[t]),
                             **dict(zip(self.classes, norm(logp + ll[seen].sum(axis=0))))})
        post, om = self.posterior_and_outlier(x)
        rows.append({"level": "posterior", "name": "posterior (Eq. 1)", "category": "", "value": float(om[0]),
                     "weight": float(self.weights.sum()), **dict(zip(self.classes, post[0]))})
        return pd.DataFrame(rows)

    # -- tuning
    def cross_validated_category_log_likelihoods(self, X, y, *, n_folds: int = 5, seed: int = 0):
        """Out-of-fold (log L(t|C): (n, T, K), observed: (n, T)) with the KDEs of each fold fitted on
        the other folds (the model's own settings), and the fold of each row."""
        X = np.asarray(X, float)
        y = np.asarray(y)
        folds = stratified_folds(y, n_folds, seed)
        ll = np.full((len(X), X.shape[1], len(self.classes)), np.nan)
        for k in range(n_folds):
            train, test = folds != k, folds == k
            m = NaiveBayesKDE(self.spec, n_grid=self.n_grid, bandwidth=self.bandwidth_rule, dtype=self.dtype)
            m.fit(X[train], y[train], seed=seed + k)
            ll[test] = m.log_likelihoods(X[test])
        cat, obs = category_log_likelihoods(jnp.asarray(ll), self.membership)
        return np.asarray(cat), np.asarray(obs), folds

    def tune_weights(self, X, y, *, target: str | None = None, n_folds: int = 5, seed: int = 0,
                     popsize: int = 15, maxiter: int = 100, cv=None) -> dict:
        """Fit the category weights by differential evolution maximising the cross-validated F1 of
        ``target``; sets ``self.weights`` (rescaled to mean 1) and returns a summary."""
        target = target or self.spec.target
        if target not in self.classes:
            raise XsiftError(f"tuning target {target!r} is not one of the classes {self.classes}")
        y = np.asarray(y)
        if self.priors is None:
            n = np.bincount(y, minlength=len(self.classes)).astype(float)
            self.priors = n / n.sum()
        cat, obs, folds = cv if cv is not None else self.cross_validated_category_log_likelihoods(
            X, y, n_folds=n_folds, seed=seed)
        t = self.classes.index(target)
        args = (jnp.asarray(cat), jnp.asarray(obs), jnp.log(jnp.asarray(self.priors, cat.dtype)),
                jnp.asarray(y), t)
        start = -float(negative_f1_objective(jnp.asarray(self.weights), *args))
        equal = -float(negative_f1_objective(jnp.ones(len(self.weights)), *args))
        bounds = np.tile([0.0, 1.0], (len(self.weights), 1))
        res = differential_evolution(negative_f1_objective, bounds, jax.random.PRNGKey(seed), args=args,
                                     popsize=popsize, maxiter=maxiter)
        best = np.asarray(res.x, float)
        tuned_f1 = -float(res.fun)
        if best.sum() > 0 and tuned_f1 >= start:
            self.weights = best * len(best) / best.sum()
        return {"target": target, "folds": n_folds, "seed": seed, "f1_equal_weights": equal,
                "f1_start_weights": start, "f1_tuned": tuned_f1,
                "weights": dict(zip(self.spec.category_names, self.weights.tolist())),
                "generations": int(res.nit), "evaluations": int(res.nfev), "converged": bool(res.converged)}

    # -- the classifier interface shared with xsift.methods.cluster_then_label.ClusterLabelModel (used by xsift.distributed)
    def wanted_columns(self) -> list[str]:
        """The catalogue columns classifying reads: the source column (if any) and the properties' inputs."""
        spec = self.spec
        return list(dict.fromkeys(([spec.source_column] if spec.source_column else []) + spec.input_columns()))

    @property
    def vote_aggregation(self) -> None:
        """None: one output row per source already, so there is no master-class vote."""
        return None

    def classify_frame(self, df: pd.DataFrame, source: str = "catalogue") -> tuple[pd.DataFrame, dict]:
        """One output row per input row: the source column (if any), P(class) per class, the
        predicted class, the outlier measure and the number of observed categories; and counts."""
        spec = self.spec
        X, dropped = properties_table(df, spec, source=source)
        post, om = self.posterior_and_outlier(X)
        _, obs = self._cat(X)
        out = pd.DataFrame(index=range(len(df)))
        if spec.source_column and spec.source_column in df.columns:
            out[spec.source_column] = df[spec.source_column].to_numpy()
        for k, c in enumerate(spec.classes):
            out[c] = post[:, k]
        pred = np.argmax(post, axis=1)
        out["predicted_class"] = pd.array(np.asarray(spec.classes, dtype=object)[pred], dtype="str")
        out["outlier_measure"] = om
        out["n_categories"] = np.asarray(obs).sum(axis=1).astype(np.int32)
        facts = {"rows": int(len(df)), "log_of_non_positive_made_missing": dropped,
                 "predicted_counts": dict(zip(spec.classes, np.bincount(pred, minlength=len(spec.classes)).tolist()))}
        return out, facts

    @property
    def hash(self) -> str:
        """SHA-256 of the saved model's files (set by :meth:`load`); the identity of a classification run."""
        if getattr(self, "_hash", None) is None:
            raise XsiftError("this naive-Bayes model has no hash until it is saved and loaded")
        return self._hash

    def _check_fitted(self):
        if self.grid is None:
            raise XsiftError("the naive-Bayes model is not fitted; run `xsift nb fit` (or .fit) first")

    def save(self, out_dir) -> pathlib.Path:
        from xsift.data.io import atomic_write, write_json
        self._check_fitted()
        out = pathlib.Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_write(out / "model.npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, lo=np.asarray(self.grid.lo), step=np.asarray(self.grid.step),
                         bandwidth=np.asarray(self.grid.bandwidth), density=np.asarray(self.grid.density),
                         cut=np.asarray(self.grid.cut), priors=self.priors, weights=self.weights,
                         membership=self.membership, n_train=self.n_train)
        write_json({"format": MODEL_FORMAT, "kind": "xsift naive-Bayes KDE (Tranin et al. Eq. 1)",
                    "classes": self.classes, "priors": self.priors.tolist(),
                    "properties": self.spec.properties, "categories": self.spec.category_names,
                    "weights": dict(zip(self.spec.category_names, self.weights.tolist())),
                    "n_grid": self.n_grid, "bandwidth": self.bandwidth_rule,
                    "n_train": {p: dict(zip(self.classes, map(int, row)))
                                for p, row in zip(self.spec.property_names, self.n_train)},
                    "preset": self.spec.preset}, out / "model.json")
        return out

    @classmethod
    def load(cls, model_dir, *, dtype=jnp.float64) -> "NaiveBayesKDE":
        d = pathlib.Path(model_dir)
        if not (d / "model.json").exists() or not (d / "model.npz").exists():
            raise XsiftError(f"{d}: not a naive-Bayes model directory (expected model.json and model.npz, "
                             "written by `xsift nb fit`)")
        meta = json.loads((d / "model.json").read_text())
        if meta.get("format") != MODEL_FORMAT:
            raise XsiftError(f"{d}/model.json: model format {meta.get('format')} is not {MODEL_FORMAT}")
        spec = spec_from_preset({**meta["preset"], "_path": str(d / "model.json")})
        m = cls(spec, n_grid=meta["n_grid"], bandwidth=meta["bandwidth"], dtype=dtype)
        with np.load(d / "model.npz") as z:
            m.grid = KDEGrid(lo=jnp.asarray(z["lo"], dtype), step=jnp.asarray(z["step"], dtype),
                             bandwidth=jnp.asarray(z["bandwidth"], dtype),
                             density=jnp.asarray(z["density"], dtype), cut=jnp.asarray(z["cut"], dtype))
            m.priors = z["priors"].astype(float)
            m.weights = z["weights"].astype(float)
            m.n_train = z["n_train"]
        from xsift.report import file_hash
        m._hash = file_hash([d / "model.npz", d / "model.json"])
        return m


# --------------------------------------------------------------------------- figures


# --------------------------------------------------------------------------- CLI


def _dtype(args):
    return jnp.float32 if getattr(args, "precision", "float64") == "float32" else jnp.float64


def _read(path):
    from xsift.data.io import read_catalog
    try:
        return read_catalog(path)
    except FileNotFoundError:
        raise XsiftError(f"{path}: no such catalogue file") from None


def _training_data(args, spec: NBSpec):
    df = _read(args.catalog)
    label = args.labels or spec.label_column
    if not label or label not in df.columns:
        raise SchemaError(f"{args.catalog}: label column {label!r} not found; pass --labels COLUMN "
                          f"(columns: {', '.join(map(str, df.columns[:30]))})")
    X, dropped = properties_table(df, spec, source=str(args.catalog))
    y, left_out = class_indices(df[label], spec)
    keep = y >= 0
    return X[keep], y[keep], {"rows": int(len(df)), "training_rows": int(keep.sum()),
                              "left_out_labels": left_out, "log_of_non_positive_made_missing": dropped,
                              "label_column": label,
                              "class_counts": dict(zip(spec.classes, np.bincount(y[keep], minlength=len(spec.classes)).tolist()))}


def _apply_weights_option(model: NaiveBayesKDE, text: str | None):
    if not text:
        return
    try:
        w = [float(v) for v in text.split(",")]
    except ValueError:
        raise XsiftError(f"--weights {text!r}: expected comma-separated numbers, one per category "
                         f"{model.spec.category_names}") from None
    if len(w) != len(model.weights) or min(w) < 0:
        raise XsiftError(f"--weights: expected {len(model.weights)} non-negative numbers for categories "
                         f"{model.spec.category_names}, got {w}")
    model.weights = np.asarray(w)


def _run_fit(args, tune: bool) -> int:
    from xsift.report import write_manifest
    t0 = time.perf_counter()
    spec = load_nb_preset(args.config)
    X, y, facts = _training_data(args, spec)
    model = NaiveBayesKDE(spec, n_grid=args.grid, bandwidth=args.bandwidth, dtype=_dtype(args))
    _apply_weights_option(model, args.weights)
    summary = None
    if tune:
        cv = model.cross_validated_category_log_likelihoods(X, y, n_folds=args.folds, seed=args.seed)
        model.fit(X, y, seed=args.seed)    # priors (if 'training') from the whole sample
        summary = model.tune_weights(X, y, target=args.target, n_folds=args.folds, seed=args.seed,
                                     popsize=args.popsize, maxiter=args.maxiter, cv=cv)
        post_pred = np.argmax(np.asarray(log_numerator(jnp.asarray(cv[0]), jnp.asarray(cv[1]),
                                                       jnp.asarray(model.weights), jnp.log(jnp.asarray(model.priors)))),
                              axis=1)
        summary["cross_validated_metrics"] = classification_metrics(y, post_pred, spec.classes, model.priors)
        print(f"tuned weights {summary['weights']}: cross-validated F1({summary['target']}) "
              f"{summary['f1_equal_weights']:.3f} (equal) -> {summary['f1_tuned']:.3f}")
        print(format_metrics(summary["cross_validated_metrics"]))
    else:
        model.fit(X, y, seed=args.seed)
    model.save(args.out)
    write_manifest(args.out, command=f"nb {'tune' if tune else 'fit'}", inputs=[str(args.catalog)],
                   config=spec.preset.get("name"), precision=str(getattr(args, "precision", "float64")),
                   **facts, tuning=summary, seconds=round(time.perf_counter() - t0, 3))
    print(f"wrote naive-Bayes model ({len(spec.properties)} properties x {len(spec.classes)} classes, "
          f"{facts['training_rows']:,} training sources) to {args.out}")
    return 0


def _run_classify(args) -> int:
    from xsift.data.io import write_table
    from xsift.report import write_manifest
    t0 = time.perf_counter()
    model = NaiveBayesKDE.load(args.model, dtype=_dtype(args))
    spec = model.spec
    df = _read(args.catalog)
    out, facts = model.classify_frame(df, source=str(args.catalog))
    outdir = pathlib.Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    table = write_table(out, outdir / f"nb_classification.{args.format}")
    pred = np.asarray(pd.Categorical(out["predicted_class"], categories=spec.classes).codes)
    from xsift.report.figures import plot_outliers
    plot_outliers(out["outlier_measure"].to_numpy(), pred, spec.classes, outdir / "nb_outlier_measure.png")
    write_manifest(outdir, command="nb classify", inputs=[str(args.catalog)], model=str(args.model),
                   model_hash=model.hash, rows=int(len(df)), outputs=[table.name, "nb_outlier_measure.png"],
                   predicted_counts=facts["predicted_counts"],
                   log_of_non_positive_made_missing=facts["log_of_non_positive_made_missing"],
                   precision=str(getattr(args, "precision", "float64")),
                   seconds=round(time.perf_counter() - t0, 3))
    print(f"classified {len(df):,} sources into {table}")
    return 0


def _run_tracks(args) -> int:
    from xsift.data.io import write_table
    model = NaiveBayesKDE.load(args.model, dtype=_dtype(args))
    spec = model.spec
    df = _read(args.catalog)
    col = args.name_column or spec.source_column
    if not col or col not in df.columns:
        raise SchemaError(f"{args.catalog}: source-name column {col!r} not found; pass --name-column")
    rows = np.flatnonzero(df[col].astype("str").str.strip().to_numpy() == args.name.strip())
    if len(rows) == 0:
        raise XsiftError(f"{args.catalog}: no row with {col} = {args.name!r}")
    X, _ = properties_table(df.iloc[rows[:1]], spec, source=str(args.catalog))
    track = model.tracks(X[0])
    outdir = pathlib.Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    safe = "".join(ch if ch.isalnum() or ch in "+-._" else "_" for ch in args.name.strip())
    write_table(track, outdir / f"tracks_{safe}.csv")
    from xsift.report.figures import plot_tracks
    plot_tracks(track, spec.classes, f"{args.name}  (outlier measure {track['value'].iloc[-1]:.2f})",
                outdir / f"tracks_{safe}.png")
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(track.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if len(rows) > 1:
        print(f"note: {len(rows)} rows have {col} = {args.name!r}; showed the first", file=sys.stderr)
    print(f"wrote {outdir}/tracks_{safe}.csv and .png")
    return 0


def add_cli_arguments(parser) -> None:
    from xsift.cli import HelpFormatter, _common_options
    sub = parser.add_subparsers(dest="nb_command", metavar="fit|tune|classify|tracks", required=True,
                                help="fit KDE likelihoods, tune category weights, classify a catalogue, or draw probability tracks")

    def subparser(name, help_text, common=("device", "precision")):
        """fit/tune also read a preset (--config); classify/tracks use the saved model's preset."""
        return sub.add_parser(name, help=help_text, description=help_text, parents=[_common_options(common)],
                              formatter_class=HelpFormatter)

    for name, text in (("fit", "fit the per-(property, class) KDEs and priors on a labelled catalogue"),
                       ("tune", "tune the category weights by differential evolution on cross-validated "
                                "F1 of one class, then fit and save the model")):
        p = subparser(name, text, ("device", "precision", "config"))
        p.add_argument("catalog", help="labelled training catalogue (Parquet, CSV, FITS, VOTable)")
        p.add_argument("--labels", default=None,
                       help="column holding the class labels (default: the preset's [columns] label)")
        p.add_argument("--out", default="nb_model", help="model directory to write (model.npz + model.json)")
        p.add_argument("--weights", default=None,
                       help="comma-separated category weights in the preset's category order "
                            "(default: the preset's weights)")
        p.add_argument("--grid", type=int, default=2048, help="KDE grid nodes per (property, class) pair")
        p.add_argument("--bandwidth", choices=["scott", "cv"], default="scott",
                       help="KDE bandwidth: Scott's rule or held-out likelihood (optax)")
        p.add_argument("--seed", type=int, default=0, help="random seed (folds, DE, cv bandwidth)")
        if name == "tune":
            p.add_argument("--target", default=None, help="class whose F1 to maximise (default: preset's target)")
            p.add_argument("--folds", type=int, default=5, help="stratified cross-validation folds")
            p.add_argument("--popsize", type=int, default=15, help="DE population = popsize x categories")
            p.add_argument("--maxiter", type=int, default=100, help="maximum DE generations")
        p.set_defaults(_nb=partial(_run_fit, tune=(name == "tune")))
    p = subparser("classify", "posterior class probabilities and outlier measure of every source")
    p.add_argument("catalog", help="catalogue to classify")
    p.add_argument("--model", default="nb_model", help="model directory written by `xsift nb fit|tune`")
    p.add_argument("--out", default="nb_run", help="output directory")
    p.add_argument("--format", choices=["parquet", "csv", "fits", "vot"], default="parquet",
                   help="format of the output table")
    p.set_defaults(_nb=_run_classify)
    p = subparser("tracks", "probability tracks of one source (table + figure, the seed's Fig. 2)")
    p.add_argument("name", help="source name")
    p.add_argument("--catalog", required=True, help="catalogue holding the source")
    p.add_argument("--name-column", default=None, help="column of source names (default: preset's source)")
    p.add_argument("--model", default="nb_model", help="model directory")
    p.add_argument("--out", default="nb_tracks", help="output directory")
    p.set_defaults(_nb=_run_tracks)


def run_cli(args) -> int:
    return int(args._nb(args) or 0)
