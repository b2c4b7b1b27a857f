"""The interpretable naive-Bayes classifier of Tranin, Webb & Godet (2022, A&A 657, A138) as an estimator.

The model (Eq. 1)
-----------------
Classes ``C`` with priors ``P(C)``; properties ``p`` grouped in categories ``t`` with
weights ``alpha_t``. Each (property, class) pair has a 1-D Gaussian KDE ``f_{p,C}``
fitted on the training sample (on the property's transformed axis, Scott's rule by
default), evaluated by :mod:`xsift.kernels.kde`. For a source ``x``::

    log L(t|C)  = sum_{p in t, x_p observed} log f_{p,C}(x_p)
    log N(C|x)  = log P(C) + sum_{t observed} alpha_t log L(t|C) / sum_{t observed} alpha_t
    P(C|x)      = N(C|x) / sum_C' N(C'|x)

A missing property contributes no factor; a category with no observed property drops
out of both the product and ``sum alpha_t``; a source with nothing observed gets the
priors. Only the ratios of the weights matter. The maths is :mod:`xsift.kernels.nbayes`;
this module shapes tables into arrays, calls the kernels and shapes their results back.

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
posterior (the paper's Fig. 2).

Weight tuning
-------------
:func:`tune_weights` runs differential evolution (:mod:`xsift.kernels.evolution`) on the F1
of one class of cross-validated predictions: the KDEs of each fold are fitted on the other
folds, the out-of-fold per-category log-likelihoods are computed once, and the objective is a
cheap weighted sum + argmax + F1 of them, vmapped over the population. Each weight is
bounded in ``[0, 1]`` (only ratios matter) and the result is reported rescaled to a mean of 1.
Tuning returns a :class:`TuningResult` and changes no estimator; apply the weights with
``model.set_params(weights=result.weights)`` or ``model.with_weights(result.weights)``.

Metrics
-------
Confusion matrix (rows = true class, columns = predicted), recall, precision, F1 and
the paper's prior-corrected precision: each true-class row of the confusion matrix is
rescaled to the prior proportion of its class before computing precision.

A fitted model is saved in the one model format of :mod:`xsift.methods.persistence`
(kind ``"naive_bayes"``: ``model.npz`` + ``model.json``, one content hash). The command
``xsift nb fit|tune|classify|tracks`` is :mod:`xsift.cli.naive_bayes`.
"""
from __future__ import annotations

import copy
import os
import pathlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from xsift.config import DEFAULT_NB_PRESET as DEFAULT_PRESET
from xsift.config import NBSpec, load_nb_preset, spec_from_preset
from xsift.errors import SchemaError, XsiftError
from xsift.methods.base import Classification, NotFittedError
from xsift.methods.calibration import apply_temperature, calibration_meta, temperature_from_meta, temperature_of
from xsift.methods.estimator import ParamsMixin, as_frame, precision_dtype
from xsift.methods.validation import stratified_folds

KIND = "naive_bayes"
BANDWIDTHS = ("scott", "cv")
MODEL_ARRAYS = ("kde_lo", "kde_step", "kde_bandwidth", "kde_density", "kde_cut", "priors", "weights",
                "membership", "n_train")

# --------------------------------------------------------------------------- preset
# The preset grammar and its naive-Bayes view (NBSpec, spec_from_preset, load_nb_preset) live in
# xsift.config; the property values (formulas, log10) in xsift.data.features.


def properties_table(df: pd.DataFrame, spec: NBSpec, source: str = "catalogue") -> tuple[np.ndarray, dict]:
    """(n, P) property values on their transformed axes (NaN = missing) and, per property, the count
    of values ``log10`` made missing (non-positive ones): :func:`xsift.data.features.feature_values`
    of the spec's preset. Raises :class:`SchemaError` naming ``source`` and the column when a column
    is absent or not numeric.
    """
    from xsift.data.features import feature_values
    return feature_values(df, spec.preset, source=source)


def class_indices(labels: pd.Series, spec: NBSpec) -> tuple[np.ndarray, dict]:
    """Map catalogue labels to class indices (-1 = left out) and count the left-out labels."""
    lab = labels.astype("object").where(labels.notna(), None).to_numpy()
    idx = np.array([spec.classes.index(spec.labels[l]) if l in spec.labels else -1 for l in lab], dtype=np.int64)
    left = pd.Series([l for l, i in zip(lab, idx) if i < 0], dtype="object").fillna("<null>").value_counts()
    return idx, {str(k): int(v) for k, v in left.items()}


def class_targets(y, spec: NBSpec, source: str = "y") -> tuple[np.ndarray, dict]:
    """(n,) class indices of ``y`` (-1 = left out) and the count of each left-out label.

    y: integer class indices ``0..K-1`` (-1 or, as floats, NaN = left out), or labels: a catalogue label of the
    preset's ``[classes.labels]`` maps to its class, a class name to itself, anything else
    (null included) is left out. Raises XsiftError for integer indices outside ``[-1, K)``.
    """
    arr = np.asarray(y.to_numpy() if isinstance(y, pd.Series) else y)
    if arr.ndim != 1:
        raise XsiftError(f"{source}: class labels must be one-dimensional, got shape {arr.shape}")
    K = len(spec.classes)
    if arr.dtype.kind == "f" and np.all(np.isnan(arr) | (arr == np.round(arr))):
        arr = np.where(np.isnan(arr), -1, arr).astype(np.int64)      # float indices, NaN = no label
    if arr.dtype.kind in "iu":
        bad = (arr < -1) | (arr >= K)
        if bad.any():
            raise XsiftError(f"{source}: integer class indices must lie in [-1, {K}) (classes {spec.classes}); "
                             f"got {arr[bad][:5].tolist()}")
        return arr.astype(np.int64), ({"<index -1>": int((arr == -1).sum())} if (arr == -1).any() else {})
    series = pd.Series(arr, dtype="object")
    idx, left = class_indices(series, spec)
    named = (idx < 0) & series.isin(spec.classes).to_numpy()
    if named.any():
        idx[named] = [spec.classes.index(v) for v in series[named]]
        for v in series[named]:
            left[str(v)] -= 1
        left = {k: v for k, v in left.items() if v > 0}
    return idx, left


def check_every_class_labelled(idx: np.ndarray, left: dict, spec: NBSpec, source: str = "y") -> None:
    """Raise XsiftError naming ``source`` when a class of ``spec`` has no labelled row in ``idx`` (the
    (n,) class indices of :func:`class_targets`, -1 = left out; ``left``: left-out label -> count).

    The message lists the left-out labels that match no class, says when they differ from the
    preset's labels or class names only in letter case (``'agn'`` for ``AGN``), and gives the
    preset's classes and labels; without it a fit fails later on the first empty (property, class)."""
    K = len(spec.classes)
    counts = np.bincount(idx[idx >= 0], minlength=K)
    empty = [c for c, k in zip(spec.classes, counts) if k == 0]
    if not empty:
        return
    known = {str(v).lower(): str(v) for v in [*spec.labels, *spec.classes]}
    unmatched = [k for k in left if k not in ("<null>", "<index -1>")]
    case = [k for k in unmatched if k.lower() in known]
    shown = case or unmatched
    labels = ""
    if shown:
        more = " ..." if len(shown) > 6 else ""
        labels = f"labels {', '.join(map(repr, shown[:6]))}{more} match no class"
        if case:
            pairs = ", ".join(f"{k!r} for {known[k.lower()]!r}" for k in case[:3])
            labels += f" (letter case differs: {pairs})"
        labels += "; "
    raise XsiftError(f"{source}: no training source of class(es) {', '.join(map(repr, empty))}: {labels}the "
                     f"preset's classes are {', '.join(spec.classes)} (catalogue labels "
                     f"{', '.join(spec.labels)})")


# --------------------------------------------------------------------------- the estimator


def _resolve_spec(preset) -> NBSpec:
    """An NBSpec from a preset name, TOML path, preset dict or NBSpec (validated once here)."""
    if isinstance(preset, NBSpec):
        return preset
    if preset is None:
        return load_nb_preset(None)
    return spec_from_preset(preset)


def _category_weights(weights, spec: NBSpec) -> np.ndarray:
    """(T,) category weights: the preset's (None), a dict category -> weight, or T numbers in the
    preset's category order. Raises XsiftError naming the categories expected."""
    names = spec.category_names
    if weights is None:
        return np.asarray(spec.weights, dtype=np.float64)
    if isinstance(weights, dict):
        unknown = sorted(set(weights) - set(names))
        if unknown:
            raise XsiftError(f"weights: unknown categor(ies) {unknown}; the preset's categories are {names}")
        w = np.asarray([float(weights.get(n, spec.weights[i])) for i, n in enumerate(names)])
    else:
        try:
            w = np.asarray(weights, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise XsiftError(f"weights {weights!r}: expected {len(names)} numbers, one per category {names}") from None
    if len(w) != len(names) or not np.all(np.isfinite(w)) or (w < 0).any() or not (w > 0).any():
        raise XsiftError(f"weights {w.tolist()}: expected {len(names)} non-negative numbers (not all 0), "
                         f"one per category {names}")
    return w


class NaiveBayesKDE(ParamsMixin):
    """The weighted naive-Bayes classifier of Eq. 1 (Tranin et al. 2022) with per-(property, class)
    binned KDE likelihoods, in scikit-learn's conventions.

    Parameters (stored by the constructor as given; checked by :meth:`fit`):

    preset: a built-in naive-Bayes preset name (``"nb_csc"``, ``"nb_xmm"``, ``"nb_muwclass"``), a
        preset TOML file, a preset dict or a loaded preset (:func:`load_nb_preset`): classes, label
        mapping, priors, properties (formula, columns, transform) and categories with weights.
    weights: None (the preset's category weights), a dict category -> weight, or one non-negative
        number per category in the preset's order. Used when predicting, not when fitting, so
        ``set_params(weights=...)`` on a fitted model takes effect at once.
    n_grid: KDE grid nodes per (property, class) pair.
    bandwidth: ``"scott"`` (Scott's rule) or ``"cv"`` (held-out likelihood, optax).
    precision: ``"float32"`` or ``"float64"`` (the reference): the precision of the kernels and of
        the probabilities returned.
    chunk_rows: rows per compiled KDE-evaluation block.
    seed: seed of the ``"cv"`` bandwidth's hold-out split.

    Inputs ``X``: a pandas DataFrame, astropy Table, NumPy structured array or dict of columns holding
    the preset's input columns (read by the preset's formulas and transforms), or a plain 2-D NumPy
    array ``(n, P)`` taken as the property matrix already on the transformed axes, in the preset's
    property order (NaN = missing). ``y``: class indices, class names or catalogue labels
    (:func:`class_targets`; rows whose label maps to no class are left out of the fit), or None to read
    the preset's label column from the table.

    Fitted attributes: ``spec_`` (the preset), ``classes_`` (K class names, object array),
    ``priors_`` (K,), ``kde_`` (:class:`xsift.kernels.kde.KDEGrid` of NumPy arrays, pair
    ``p * K + k`` = property p, class k), ``n_train_`` (P, K) training values per pair,
    ``membership_`` (T, P), ``bandwidth_rule_``, ``fit_report_`` (row counts, left-out labels),
    ``temperature_`` (None, or the temperature the posterior is scaled by: :mod:`xsift.methods.calibration`).
    """

    kind = KIND
    _estimator_type = "classifier"

    def __init__(self, preset=DEFAULT_PRESET, weights=None, n_grid: int = 2048, bandwidth: str = "scott",
                 precision: str = "float64", chunk_rows: int = 65536, seed: int = 0):
        self.preset = preset
        self.weights = weights
        self.n_grid = n_grid
        self.bandwidth = bandwidth
        self.precision = precision
        self.chunk_rows = chunk_rows
        self.seed = seed

    # -- parameters ---------------------------------------------------------------------------
    def _dtype(self):
        """np.float32 or np.float64 from ``precision`` (a name or a NumPy dtype)."""
        return precision_dtype(self.precision)

    def _check_fitted(self) -> None:
        if not hasattr(self, "kde_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit(X, y) or load a saved "
                                 "model (NaiveBayesKDE.load(directory), `xsift nb fit`)")

    def _spec(self) -> NBSpec:
        return self.spec_ if hasattr(self, "spec_") else _resolve_spec(self.preset)

    def category_weights(self) -> dict[str, float]:
        """The category weights used when predicting: category -> weight (preset order)."""
        spec = self._spec()
        return dict(zip(spec.category_names, _category_weights(self.weights, spec).tolist()))

    def with_weights(self, weights) -> "NaiveBayesKDE":
        """A copy of this estimator (fitted state included) with other category weights; ``self`` is
        unchanged. weights: as the ``weights`` parameter (e.g. ``TuningResult.weights``)."""
        _category_weights(weights, self._spec())
        new = copy.deepcopy(self)
        new.weights = dict(weights) if isinstance(weights, dict) else weights
        return new

    # -- tables -> arrays ------------------------------------------------------------------------
    def _properties(self, X, spec: NBSpec, source: str):
        """(property matrix (n, P), values made missing by log10, the table as a DataFrame or None)."""
        if isinstance(X, np.ndarray) and X.dtype.names is None:
            if X.ndim != 2 or X.shape[1] != len(spec.properties):
                raise XsiftError(f"{source}: a plain array must be the (n, {len(spec.properties)}) property matrix "
                                 f"(properties {spec.property_names}, transformed); got shape {X.shape}. Pass a "
                                 "table (DataFrame, astropy Table) to have the preset compute them")
            try:
                return np.asarray(X, dtype=np.float64), {}, None
            except (TypeError, ValueError):
                raise XsiftError(f"{source}: the property matrix must be numeric") from None
        df = as_frame(X, source=source)
        props, dropped = properties_table(df, spec, source=source)
        return props, dropped, df

    def _targets(self, y, df, spec: NBSpec, n: int, source: str):
        if y is None:
            col = spec.label_column
            if df is None or not col or col not in df.columns:
                raise SchemaError(f"{source}: y is None and the label column {col!r} of the preset is not in the "
                                  "table; pass y (class labels) or a table with that column")
            y = df[col]
        elif isinstance(y, str) and df is not None:
            if y not in df.columns:
                raise SchemaError(f"{source}: label column {y!r} not found "
                                  f"(columns: {', '.join(map(str, df.columns[:30]))})")
            y = df[y]
        idx, left = class_targets(y, spec, source=source)
        if len(idx) != n:
            raise XsiftError(f"{source}: {len(idx)} labels for {n} rows")
        return idx, left

    # -- fitting ---------------------------------------------------------------------------------
    def fit(self, X, y=None, *, source: str = "catalogue") -> "NaiveBayesKDE":
        """Fit the KDE of every (property, class) pair and the priors; returns self.

        X: table or (n, P) property matrix (see the class docstring); y: labels, a label column name,
        or None for the preset's label column. Rows whose label maps to no class are left out.
        Raises :class:`SchemaError` for a table without the preset's columns and XsiftError when a
        class has no labelled row (:func:`check_every_class_labelled`, which names labels differing
        only in letter case) or a (property, class) pair has fewer than 2 distinct observed training values.
        """
        from xsift.kernels.kde import fit_binned_kde, fit_cv_bandwidth, scott_bandwidth
        spec = _resolve_spec(self.preset)
        dtype = self._dtype()
        if self.bandwidth not in BANDWIDTHS:
            raise XsiftError(f"bandwidth {self.bandwidth!r}: expected one of {', '.join(BANDWIDTHS)}")
        n_grid = int(self.n_grid)
        if n_grid < 16:
            raise XsiftError(f"n_grid {self.n_grid!r}: expected at least 16 grid nodes")
        _category_weights(self.weights, spec)
        props, dropped, _df = self._properties(X, spec, source)
        y_idx, left_out = self._targets(y, _df, spec, len(props), source)
        check_every_class_labelled(y_idx, left_out, spec, source)     # (score may lack a class; fit may not)
        keep = y_idx >= 0
        props, y_idx = props[keep], y_idx[keep]
        K, P = len(spec.classes), len(spec.properties)
        values = []
        for p, name in enumerate(spec.property_names):
            for c, cls in enumerate(spec.classes):
                v = props[y_idx == c, p]
                v = v[np.isfinite(v)]
                if len(v) < 2 or np.ptp(v) == 0:
                    raise XsiftError(f"{source}: property {name!r} has {len(v)} observed training value(s) for "
                                     f"class {cls!r} (need at least 2 distinct): cannot fit its density; drop the "
                                     "property from the preset or add training sources")
                values.append(v)
        counts = np.array([len(v) for v in values], dtype=np.int64).reshape(P, K)
        x = np.full((P * K, int(counts.max())), np.nan)
        for j, v in enumerate(values):
            x[j, :len(v)] = v
        w = np.isfinite(x).astype(np.float64)
        if self.bandwidth == "cv":
            h = fit_cv_bandwidth(x, w, int(self.seed), dtype=dtype)
        else:
            h = scott_bandwidth(x, w, dtype=dtype)
        grid = fit_binned_kde(x, w, np.asarray(h), n_grid=n_grid, dtype=dtype)
        from xsift.kernels.kde import KDEGrid
        self.kde_ = KDEGrid(*(np.asarray(a) for a in grid))
        if spec.priors == "training":
            n = np.bincount(y_idx, minlength=K).astype(np.float64)
            self.priors_ = n / n.sum()
        else:
            self.priors_ = np.asarray(spec.priors, dtype=np.float64)
        self.spec_ = spec
        self.classes_ = np.asarray(spec.classes, dtype=object)
        self.n_train_ = counts
        self.membership_ = np.asarray(spec.membership(), dtype=np.float64)
        self.bandwidth_rule_ = self.bandwidth
        self.temperature_ = None        # uncalibrated (xsift.methods.calibration)
        self.fit_report_ = {"rows": int(len(keep)), "training_rows": int(keep.sum()), "left_out_labels": left_out,
                            "log_of_non_positive_made_missing": dropped,
                            "class_counts": dict(zip(spec.classes, np.bincount(y_idx, minlength=K).tolist()))}
        return self

    # -- evaluation ------------------------------------------------------------------------------
    def log_likelihoods(self, X, *, source: str = "catalogue") -> np.ndarray:
        """(n, P, K) ``log f_{p,C}(x_p)`` of the fitted KDEs; NaN where ``x_p`` is missing."""
        self._check_fitted()
        props = self._properties(X, self.spec_, source)[0]
        return self._log_likelihoods(props)

    def _log_likelihoods(self, props: np.ndarray) -> np.ndarray:
        from xsift.kernels.kde import evaluate_log_kde
        K, P = len(self.classes_), props.shape[1]
        columns = np.repeat(np.arange(P), K)
        ll = evaluate_log_kde(self.kde_, props, columns, chunk_rows=int(self.chunk_rows), dtype=self._dtype())
        return np.asarray(ll).reshape(len(props), P, K)

    def _eq1(self, props: np.ndarray):
        """(posterior (n, K), outlier measure (n,), observed categories (n, T)) of a property matrix."""
        from xsift.kernels.nbayes import category_log_likelihoods, posterior_and_outlier
        cat, obs = category_log_likelihoods(self._log_likelihoods(props), self.membership_)
        weights = _category_weights(self.weights, self.spec_)
        post, om = posterior_and_outlier(cat, obs, weights, np.log(self.priors_))
        post = np.asarray(post)
        post = apply_temperature(post, temperature_of(self)).astype(post.dtype, copy=False)
        return post, np.asarray(om), np.asarray(obs)

    def posterior_and_outlier(self, X, *, source: str = "catalogue") -> tuple[np.ndarray, np.ndarray]:
        """(posterior (n, K) of Eq. 1, outlier measure (n,) = -log10 sum_C numerator)."""
        self._check_fitted()
        post, om, _ = self._eq1(self._properties(X, self.spec_, source)[0])
        return post, om

    def predict_proba(self, X) -> np.ndarray:
        """(n, K) posterior of Eq. 1, columns in the order of ``classes_``, in ``precision``."""
        return self.posterior_and_outlier(X)[0]

    def outlier_measure(self, X) -> np.ndarray:
        """(n,) ``-log10 sum_C N(C|x)`` (large = unusual; see the module docstring)."""
        return self.posterior_and_outlier(X)[1]

    def predict(self, X) -> np.ndarray:
        """(n,) the most probable class name of every row (object array)."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def score(self, X, y=None) -> float:
        """Accuracy of :meth:`predict` on the rows whose label ``y`` maps to a class (labels as in
        :meth:`fit`; rows with any other label are not counted)."""
        self._check_fitted()
        props, _, df = self._properties(X, self.spec_, "catalogue")
        y_idx, _ = self._targets(y, df, self.spec_, len(props), "catalogue")
        keep = y_idx >= 0
        if not keep.any():
            raise XsiftError("score: no row has a label of the model's classes "
                             f"{list(self.classes_)}")
        pred = np.argmax(self._eq1(props[keep])[0], axis=1)
        return float(np.mean(pred == y_idx[keep]))

    def tracks(self, x) -> pd.DataFrame:
        """Probability tracks of one source (the paper's Fig. 2).

        x: the source as a one-row table or its (P,) property vector (transformed axes).
        Returns one row per observed property, per observed category and the final posterior, with
        ``level``, ``name``, ``category``, ``value`` (property value; the outlier measure on the
        posterior row), ``weight`` and one probability column per class (``P(C) f`` normalised).
        """
        self._check_fitted()
        from xsift.kernels.nbayes import track_posteriors
        spec = self.spec_
        if isinstance(x, np.ndarray) and x.dtype.names is None:
            props = np.asarray(x, dtype=np.float64).reshape(1, -1)
        else:
            props = self._properties(x, spec, "source")[0][:1]
        if props.shape != (1, len(spec.properties)):
            raise XsiftError(f"tracks: expected one source with {len(spec.properties)} properties, got {props.shape}")
        ll = self._log_likelihoods(props)
        by_prop, by_cat = (np.asarray(a)[0] for a in track_posteriors(ll, self.membership_, np.log(self.priors_)))
        weights = _category_weights(self.weights, spec)
        classes = list(self.classes_)
        rows = []
        for t, (cname, cat) in enumerate(spec.categories.items()):
            idx = [spec.property_names.index(p) for p in cat["properties"]]
            seen = [i for i in idx if np.isfinite(props[0, i])]
            for i in seen:
                rows.append({"level": "property", "name": spec.property_names[i], "category": cname,
                             "value": float(props[0, i]), "weight": np.nan, **dict(zip(classes, by_prop[i]))})
            if seen:
                rows.append({"level": "category", "name": cname, "category": cname, "value": np.nan,
                             "weight": float(weights[t]), **dict(zip(classes, by_cat[t]))})
        post, om, _ = self._eq1(props)
        rows.append({"level": "posterior", "name": "posterior (Eq. 1)", "category": "", "value": float(om[0]),
                     "weight": float(weights.sum()), **dict(zip(classes, post[0]))})
        return pd.DataFrame(rows)

    # -- the Classifier protocol (xsift.methods.base), used by the command line and the Dask layer --
    def wanted_columns(self) -> list[str]:
        """The catalogue columns classifying reads: the source column (if any), the properties' inputs and
        the optional key columns of the output (detection, ``ra``, ``dec``; read where a table has them)."""
        spec = self._spec()
        cols = spec.preset.columns
        keys = [cols.detection, cols.ra or "ra", cols.dec or "dec"]
        return list(dict.fromkeys(([spec.source_column] if spec.source_column else []) + spec.input_columns()
                                  + [c for c in keys if c]))

    @property
    def vote_aggregation(self) -> None:
        """None: one output row per source already, so there is no master-class vote."""
        return None

    def key_columns(self, df: pd.DataFrame) -> list[str]:
        """The columns of ``df`` an output row carries to join back to its catalogue: the preset's source
        and detection columns and its ``ra``, ``dec`` (``ra``/``dec`` where the preset names none),
        those ``df`` has."""
        cols = self._spec().preset.columns
        named = [cols.source, cols.detection, cols.ra or "ra", cols.dec or "dec"]
        return [c for c in dict.fromkeys(named) if c and c in df.columns]

    def classify_frame(self, df: pd.DataFrame, source: str = "catalogue",
                       keep_columns=()) -> tuple[pd.DataFrame, dict]:
        """One output row per input row, in input order, and counts.

        Columns: the preset's source column (if in ``df``), one probability column per class named as
        the class, ``predicted_class``, ``outlier_measure`` (-log10 of the summed numerator of Eq. 1),
        ``n_categories`` (categories with an observed property), then the other key columns
        (:meth:`key_columns`: detection, ``ra``, ``dec``, those ``df`` has) and the ``keep_columns``
        named, copied as they are (dtype and nulls kept) so a row joins back. The report holds ``rows``,
        ``log_of_non_positive_made_missing`` and ``predicted_counts``.
        Raises SchemaError naming ``source`` and the column when a kept column is not in ``df`` or has
        the name of an output column.
        """
        self._check_fitted()
        spec = self.spec_
        df = as_frame(df, source=source)
        classes = list(self.classes_)
        carried = list(dict.fromkeys([*self.key_columns(df), *keep_columns]))
        missing = [c for c in keep_columns if c not in df.columns]
        if missing:
            raise SchemaError(f"{source}: kept column(s) {', '.join(map(repr, missing))} not found "
                              f"(columns: {', '.join(map(str, df.columns[:30]))})")
        clash = [c for c in carried if c in (*classes, "predicted_class", "outlier_measure", "n_categories")]
        if clash:
            raise SchemaError(f"{source}: column(s) {', '.join(map(repr, clash))} would be overwritten by the "
                              "output column of the same name; rename them in the catalogue or do not keep them")
        props, dropped, _ = self._properties(df, spec, source)
        post, om, obs = self._eq1(props)
        out = pd.DataFrame(index=range(len(df)))
        if spec.source_column in carried:   # first, as it always was; as it is (dtype and nulls kept)
            out[spec.source_column] = df[spec.source_column].array
        for k, c in enumerate(classes):
            out[c] = post[:, k]
        pred = np.argmax(post, axis=1)
        out["predicted_class"] = pd.array(np.asarray(classes, dtype=object)[pred], dtype="str")
        out["outlier_measure"] = om
        out["n_categories"] = obs.sum(axis=1).astype(np.int32)
        for c in carried:
            if c not in out.columns:
                out[c] = df[c].array
        facts = {"rows": int(len(df)), "log_of_non_positive_made_missing": dropped,
                 "predicted_counts": dict(zip(classes, np.bincount(pred, minlength=len(classes)).tolist()))}
        return out, facts

    def classify(self, table, *, source: str = "catalogue", keep_columns=()) -> Classification:
        """Classify every row of ``table``: a :class:`Classification` whose ``detections`` is the table
        of :meth:`classify_frame` (key columns, ``keep_columns``, probabilities ...; no vote:
        ``uniquely_classified`` and ``ambiguous`` are None) and ``report = {"classify": counts + model hash}``."""
        out, facts = self.classify_frame(as_frame(table, source=source), source=source,
                                         keep_columns=list(keep_columns))
        return Classification(out, report={"classify": {**facts, "model_hash": self.model_hash}})

    # -- persistence -------------------------------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        g = self.kde_
        return {"kde_lo": g.lo, "kde_step": g.step, "kde_bandwidth": g.bandwidth, "kde_density": g.density,
                "kde_cut": np.asarray(g.cut), "priors": self.priors_,
                "weights": _category_weights(self.weights, self.spec_), "membership": self.membership_,
                "n_train": self.n_train_}

    def _meta(self) -> dict:
        spec = self.spec_
        return {"classes": list(self.classes_), "priors": self.priors_.tolist(), "properties": spec.properties,
                "categories": spec.category_names, "weights": self.category_weights(),
                "n_grid": int(self.kde_.density.shape[-1]), "bandwidth": self.bandwidth_rule_,
                "preset": spec.preset.to_dict(), **calibration_meta(self)}

    @property
    def model_hash(self) -> str:
        """sha256 content hash of the fitted model (:func:`xsift.methods.persistence.content_hash` over its
        arrays, preset, priors and weights); what :meth:`save` returns."""
        self._check_fitted()
        from xsift.methods.persistence import content_hash
        return content_hash(KIND, self._arrays(), self._meta())

    def save(self, directory: str | os.PathLike) -> str:
        """Write ``model.npz`` + ``model.json`` into ``directory`` atomically
        (:func:`xsift.methods.persistence.save_model`, kind ``"naive_bayes"``); returns the content hash."""
        self._check_fitted()
        from xsift.methods.persistence import save_model
        info = {"n_train": {p: dict(zip(self.spec_.classes, map(int, row)))
                            for p, row in zip(self.spec_.property_names, self.n_train_)}}
        if hasattr(self, "fit_report_"):
            info["fit"] = self.fit_report_
        return save_model(directory, kind=KIND, arrays=self._arrays(), meta=self._meta(), info=info)

    @classmethod
    def load(cls, directory: str | os.PathLike, *, precision: str = "float64") -> "NaiveBayesKDE":
        """The fitted estimator saved in ``directory`` (format, kind and content hash checked: an edited
        prior, weight or array is a one-line XsiftError naming the directory). precision: of the kernels."""
        from xsift.config import Preset
        from xsift.kernels.kde import KDEGrid
        from xsift.methods.persistence import read_model
        arrays, meta, info = read_model(directory, kind=KIND)
        where = pathlib.Path(directory) / "model.json"
        missing = [a for a in MODEL_ARRAYS if a not in arrays]
        if missing:
            raise XsiftError(f"{pathlib.Path(directory) / 'model.npz'}: arrays {missing} missing; the model is incomplete")
        try:
            spec = spec_from_preset(Preset.from_dict(meta["preset"], source=f"{where} (preset)"))
            est = cls(preset=meta["preset"], weights=dict(meta["weights"]), n_grid=int(meta["n_grid"]),
                      bandwidth=meta["bandwidth"], precision=precision)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise XsiftError(f"{where}: the model description lacks {exc}; the file is damaged") from None
        K, P, T = len(spec.classes), len(spec.properties), len(spec.categories)
        if (list(meta.get("classes", [])) != list(spec.classes) or arrays["kde_density"].shape[0] != P * K
                or arrays["membership"].shape != (T, P) or arrays["priors"].shape != (K,)):
            raise XsiftError(f"{where}: classes, properties and categories do not match the arrays' shapes; "
                             "the model files were mixed")
        est.kde_ = KDEGrid(arrays["kde_lo"], arrays["kde_step"], arrays["kde_bandwidth"], arrays["kde_density"],
                           arrays["kde_cut"])
        est.priors_ = np.asarray(arrays["priors"], dtype=np.float64)
        est.spec_ = spec
        est.classes_ = np.asarray(spec.classes, dtype=object)
        est.n_train_ = arrays["n_train"]
        est.membership_ = arrays["membership"]
        est.bandwidth_rule_ = meta["bandwidth"]
        est.temperature_ = temperature_from_meta(meta, where)
        if isinstance(info.get("fit"), dict):
            est.fit_report_ = info["fit"]
        return est

    # -- weight tuning -------------------------------------------------------------------------------
    def cross_validated_category_log_likelihoods(self, X, y=None, *, n_folds: int = 5, seed: int = 0,
                                                 source: str = "catalogue"):
        """Out-of-fold ``(log L(t|C): (n, T, K), observed: (n, T), folds: (n,), y: (n,) class indices)``
        of the labelled rows, the KDEs of each fold fitted on the other folds with this estimator's
        parameters (stratified folds). ``self`` is not changed."""
        from xsift.kernels.nbayes import category_log_likelihoods
        spec = _resolve_spec(self.preset)
        props, _, df = self._properties(X, spec, source)
        y_idx, _ = self._targets(y, df, spec, len(props), source)
        keep = y_idx >= 0
        props, y_idx = props[keep], y_idx[keep]
        folds = stratified_folds(y_idx, int(n_folds), seed)
        ll = np.full((len(props), props.shape[1], len(spec.classes)), np.nan)
        for k in range(int(n_folds)):
            train, test = folds != k, folds == k
            fold_model = type(self)(**{**self.get_params(deep=False), "preset": spec, "seed": int(self.seed) + k})
            fold_model.fit(props[train], y_idx[train], source=f"{source} (fold {k})")
            ll[test] = fold_model._log_likelihoods(props[test])
        cat, obs = category_log_likelihoods(ll, spec.membership())
        return np.asarray(cat), np.asarray(obs), folds, y_idx

    def tune_weights(self, X, y=None, **options) -> "TuningResult":
        """:func:`tune_weights` of this estimator (which it does not change)."""
        return tune_weights(self, X, y, **options)


@dataclass(frozen=True, eq=False)
class TuningResult:
    """What :func:`tune_weights` found; no estimator is changed by tuning.

    weights: category -> tuned weight, rescaled to a mean of 1 (the start weights if differential
        evolution found nothing better); apply with ``model.set_params(weights=result.weights)``.
    target: the class whose F1 was maximised.
    f1_start_weights, f1_equal_weights, f1_tuned: cross-validated F1 of ``target`` with the estimator's
        weights, with all weights equal, and with ``weights``.
    generations, evaluations, converged: of the differential evolution.
    n_folds, seed: of the stratified cross-validation.
    y, cross_validated_predictions: (n,) class indices of the labelled rows and their out-of-fold
        predictions with ``weights`` (for :func:`xsift.methods.metrics.classification_metrics`).
    """
    weights: dict
    target: str
    f1_start_weights: float
    f1_equal_weights: float
    f1_tuned: float
    generations: int
    evaluations: int
    converged: bool
    n_folds: int
    seed: int
    y: np.ndarray = field(repr=False)
    cross_validated_predictions: np.ndarray = field(repr=False)

    def as_dict(self) -> dict:
        """The scalar results as a JSON-able dict (the arrays left out)."""
        return {"target": self.target, "weights": dict(self.weights), "f1_start_weights": self.f1_start_weights,
                "f1_equal_weights": self.f1_equal_weights, "f1_tuned": self.f1_tuned,
                "generations": self.generations, "evaluations": self.evaluations, "converged": self.converged,
                "folds": self.n_folds, "seed": self.seed}


def tune_weights(model: NaiveBayesKDE, X, y=None, *, target: str | None = None, n_folds: int = 5, seed: int = 0,
                 popsize: int = 15, maxiter: int = 100, source: str = "catalogue") -> TuningResult:
    """Category weights maximising the cross-validated F1 of ``target`` by differential evolution.

    model: a NaiveBayesKDE (fitted or not) whose parameters fit each fold; it is not changed.
    X, y: the labelled training sample, as :meth:`NaiveBayesKDE.fit` takes them.
    target: the class to favour (default: the preset's ``[classes] target``).
    n_folds, seed: stratified folds; seed also seeds the evolution. popsize, maxiter: of the evolution
    (population ``popsize x categories``). Weights are searched in ``[0, 1]`` each (only ratios
    matter; the result is rescaled to a mean of 1) and kept only if their F1 is at least that of the
    start weights. Returns a :class:`TuningResult`. Raises XsiftError for an unknown target.
    """
    from xsift.kernels.nbayes import log_numerator, negative_f1_objective, tune_category_weights
    spec = _resolve_spec(model.preset)
    target = target or spec.target
    if target not in spec.classes:
        raise XsiftError(f"tuning target {target!r} is not one of the classes {spec.classes}")
    t = spec.classes.index(target)
    cat, obs, folds, y_idx = model.cross_validated_category_log_likelihoods(X, y, n_folds=n_folds, seed=seed,
                                                                            source=source)
    K = len(spec.classes)
    if spec.priors == "training":
        n = np.bincount(y_idx, minlength=K).astype(np.float64)
        priors = n / n.sum()
    else:
        priors = np.asarray(spec.priors, dtype=np.float64)
    log_prior = np.log(priors)
    dtype = model._dtype()
    cat = cat.astype(dtype)
    start_w = _category_weights(model.weights, spec)

    def f1(w):
        return -float(negative_f1_objective(np.asarray(w, dtype), cat, obs, log_prior.astype(dtype), y_idx, t))

    start, equal = f1(start_w), f1(np.ones(len(start_w)))
    res = tune_category_weights(cat, obs, log_prior, y_idx, t, int(seed), popsize=popsize,
                                maxiter=maxiter, dtype=dtype)
    best = np.asarray(res.x, dtype=np.float64)
    tuned = -float(res.fun)
    if best.sum() > 0 and tuned >= start:
        weights = best * len(best) / best.sum()
    else:
        weights, tuned = start_w * len(start_w) / start_w.sum(), start
    pred = np.argmax(np.asarray(log_numerator(cat, obs, weights.astype(dtype), log_prior.astype(dtype))), axis=1)
    return TuningResult(weights=dict(zip(spec.category_names, weights.tolist())), target=target,
                        f1_start_weights=start, f1_equal_weights=equal, f1_tuned=tuned,
                        generations=int(res.nit), evaluations=int(res.nfev), converged=bool(res.converged),
                        n_folds=int(n_folds), seed=int(seed), y=y_idx, cross_validated_predictions=pred)
