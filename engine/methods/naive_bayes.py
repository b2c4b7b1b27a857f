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

As CLAXBOI runs it
------------------
Missing-value likelihoods (with the exponent alpha, tunable), error weights, exponential kernels,
CLAXBOI's bandwidth, histograms for discrete properties, a density floor, prior-shape mixing, tuning
on a prior-proportioned subsample and the alternative class per left-out category are options of
:class:`NaiveBayesKDE` and fields of the preset's ``[naive_bayes]`` table; their defaults are Eq. 1
as above. The equations are in :mod:`xsift.kernels.nbayes` and :mod:`xsift.kernels.kde`.

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
from xsift.data.schema import constant_to_rounding
from xsift.errors import SchemaError, XsiftError
from xsift.methods.base import Classification, NotFittedError
from xsift.methods.calibration import apply_temperature, calibration_meta, temperature_from_meta, temperature_of
from xsift.methods.estimator import ParamsMixin, as_frame, precision_dtype
from xsift.methods.validation import stratified_folds

KIND = "naive_bayes"
BANDWIDTHS = ("scott", "claxboi", "cv")
MODEL_ARRAYS = ("kde_lo", "kde_step", "kde_bandwidth", "kde_density", "kde_cut", "priors", "weights",
                "membership", "n_train")
# saved only by a model whose options differ from the defaults (so a default model's files and hash
# are those of before the options existed)
OPTION_ARRAYS = ("kde_kernel", "property_range", "present_fraction")
HISTOGRAM_BINS = 100      # bins of a histogram property over its training range (CLAXBOI's N = 100)

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
    precision: ``"float32"`` or ``"float64"`` (the reference): the precision of the kernels and of
        the probabilities returned.
    chunk_rows: the most rows per compiled KDE-evaluation block (fewer with many (property, class)
        pairs, so that a block stays cache-sized: :func:`xsift.kernels.kde.evaluate_log_kde`).
    seed: seed of the ``"cv"`` bandwidth's hold-out split.

    The method as its authors' code CLAXBOI runs it (Tranin et al. 2022; equations in
    :mod:`xsift.kernels.nbayes`). Each option is also a field of the preset's ``[naive_bayes]`` table;
    None (the default) takes the preset's value, else :data:`xsift.config.naive_bayes.NB_OPTION_DEFAULTS`,
    which are Eq. 1 as before (:meth:`options` gives what runs):

    bandwidth: ``"scott"`` (Scott's rule), ``"claxboi"`` (``range / (5 n^(1/5))`` of the property's
        training values over every class) or ``"cv"`` (held-out likelihood over a grid of factors of
        Scott's rule, seeded).
    kernel: ``"gaussian"`` or ``"exponential"`` (CLAXBOI's).
    histogram_max_distinct: a (property, class) pair with fewer distinct training values is a plain
        histogram of 100 bins over the property's training range (CLAXBOI: 10); 0 = never.
    density_floor: fraction of a uniform density over the property's training range mixed into every
        density (no class gets zero likelihood; CLAXBOI's is about 0.01).
    prior_shapes: ``{property: {class: {"shape": "isotropic"|"uniform", "fraction": f}}}``: that
        density is ``(1 - f) KDE + f shape`` (CLAXBOI: XRB ``|b|`` half KDE, half isotropic ``cos b``).
    missing_likelihood: multiply by ``P(present | C)`` for each observed property and
        ``P(missing | C)**missing_alpha`` for each missing one (training shares with the floor
        ``missing_floor``: ``(share + floor) / (1 + 2 floor)``); every category then enters Eq. 1.
    missing_alpha, missing_floor: of the missing-value terms (``tune_weights(tune_alpha=True)`` tunes alpha).
    error_weights: each observed property's log-likelihood times ``(1/sigma) / mean(1/sigma)`` over the
        source's observed properties of its category (sigma from the preset's ``error`` columns, on the
        transformed axis; 1 for a property without one or with sigma unknown).
    normalisation: ``"eq1"`` (``1 / sum alpha_t`` over the entering categories) or ``"claxboi"``
        (their code's ``20 / (sum_t alpha_t (n_obs + alpha n_mis / 2))``, a per-source temperature).
    tune_sample: ``"training"`` or ``"priors"``: :func:`tune_weights` scores F1 on a seeded subsample
        of the out-of-fold rows proportioned like the priors (:func:`prior_proportioned_subsample`).
    alternative_classes: the output table gets ``alt_class_without_<category>`` (the class predicted
        with that category left out) and the tracks an ``alternative_class`` column;
        :meth:`alternative_class_table` gives them whatever the option.

    Inputs ``X``: a pandas DataFrame, astropy Table, NumPy structured array or dict of columns holding
    the preset's input columns (read by the preset's formulas and transforms), or a plain 2-D NumPy
    array ``(n, P)`` taken as the property matrix already on the transformed axes, in the preset's
    property order (NaN = missing). ``y``: class indices, class names or catalogue labels
    (:func:`class_targets`; rows whose label maps to no class are left out of the fit), or None to read
    the preset's label column from the table.

    Fitted attributes: ``spec_`` (the preset), ``classes_`` (K class names, object array),
    ``priors_`` (K,), ``kde_`` (:class:`xsift.kernels.kde.KDEGrid` of NumPy arrays, pair
    ``p * K + k`` = property p, class k), ``n_train_`` (P, K) training values per pair,
    ``membership_`` (T, P), ``bandwidth_rule_``, ``property_range_`` (P, 2) training min and max,
    ``present_fraction_`` (P, K) share of each class's training rows where the property is present,
    ``fit_report_`` (row counts, left-out labels, histogram pairs),
    ``temperature_`` (None, or the temperature the posterior is scaled by: :mod:`xsift.methods.calibration`).
    """

    kind = KIND
    _estimator_type = "classifier"

    def __init__(self, preset=DEFAULT_PRESET, weights=None, n_grid: int = 2048, bandwidth: str | None = None,
                 precision: str = "float64", chunk_rows: int = 65536, seed: int = 0,
                 missing_likelihood: bool | None = None, missing_alpha: float | None = None,
                 missing_floor: float | None = None, error_weights: bool | None = None, kernel: str | None = None,
                 histogram_max_distinct: int | None = None, density_floor: float | None = None,
                 prior_shapes: dict | None = None, normalisation: str | None = None, tune_sample: str | None = None,
                 alternative_classes: bool | None = None):
        self.preset = preset
        self.weights = weights
        self.n_grid = n_grid
        self.bandwidth = bandwidth
        self.precision = precision
        self.chunk_rows = chunk_rows
        self.seed = seed
        self.missing_likelihood = missing_likelihood
        self.missing_alpha = missing_alpha
        self.missing_floor = missing_floor
        self.error_weights = error_weights
        self.kernel = kernel
        self.histogram_max_distinct = histogram_max_distinct
        self.density_floor = density_floor
        self.prior_shapes = prior_shapes
        self.normalisation = normalisation
        self.tune_sample = tune_sample
        self.alternative_classes = alternative_classes

    def options(self) -> dict:
        """Every naive-Bayes option (:data:`xsift.config.naive_bayes.NB_OPTION_DEFAULTS`) as this estimator
        runs: a constructor parameter given (not None) wins over the preset's ``[naive_bayes]`` value, which
        wins over the default. Raises XsiftError naming the parameter for an invalid value."""
        from xsift.config.naive_bayes import check_nb_option
        spec = self._spec()
        out = spec.options
        for name in out:
            value = getattr(self, name)
            if value is not None:
                out[name] = check_nb_option(name, value, where=f"{type(self).__name__}({name}=...)",
                                            features=spec.property_names, classes=spec.classes)
        return out

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
        from xsift.kernels.kde import (KDEGrid, claxboi_bandwidth, cv_grid_bandwidth, fit_binned_kde,
                                       fit_histogram, scott_bandwidth)
        spec = _resolve_spec(self.preset)
        dtype = self._dtype()
        opts = self.options()
        rule, kernel = opts["bandwidth"], opts["kernel"]
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
        class_n = np.bincount(y_idx, minlength=K)
        max_distinct = opts["histogram_max_distinct"]
        values, is_hist = [], []
        prange = np.zeros((P, 2))
        for p, name in enumerate(spec.property_names):
            col = props[:, p]
            seen = col[np.isfinite(col)]
            prange[p] = (seen.min(), seen.max()) if len(seen) else (0.0, 0.0)
            for c, cls in enumerate(spec.classes):
                v = props[y_idx == c, p]
                v = v[np.isfinite(v)]
                hist = len(np.unique(v)) < max_distinct
                if hist and len(v) == 0 and opts["density_floor"] == 0:
                    raise XsiftError(f"{source}: property {name!r} has no observed training value for class {cls!r}: "
                                     "its histogram would be 0 everywhere; set density_floor > 0, drop the property "
                                     "or add training sources")
                if not hist and (len(v) < 2 or constant_to_rounding(v.min(), v.max())):
                    raise XsiftError(f"{source}: property {name!r} has {len(v)} observed training value(s) for "
                                     f"class {cls!r} (need at least 2 distinct beyond rounding): cannot fit its density; drop the "
                                     "property from the preset, add training sources or let such pairs be "
                                     "histograms (histogram_max_distinct)")
                values.append(v)
                is_hist.append(hist)
        counts = np.array([len(v) for v in values], dtype=np.int64).reshape(P, K)
        x = np.full((P * K, max(int(counts.max()), 1)), np.nan)
        for j, v in enumerate(values):
            x[j, :len(v)] = v
        w = np.isfinite(x).astype(np.float64)
        is_hist = np.asarray(is_hist)
        span = prange[:, 1] - prange[:, 0]
        if rule == "cv":
            h = cv_grid_bandwidth(x, w, int(self.seed), kernel=kernel, n_grid=n_grid, dtype=dtype)
        elif rule == "claxboi":
            n_prop = np.repeat(np.isfinite(props).sum(axis=0), K)
            h = claxboi_bandwidth(np.repeat(span, K), n_prop, dtype=dtype)
        else:
            h = scott_bandwidth(x, w, dtype=dtype)
        h = np.asarray(h, dtype=np.float64)
        h = np.where(is_hist | ~(h > 0), np.repeat(np.where(span > 0, span, 1.0), K) / 100.0, h)  # unused by histograms
        grid = fit_binned_kde(x, w, h, n_grid=n_grid, dtype=dtype, kernel=kernel)
        grid = KDEGrid(*(None if a is None else np.asarray(a) for a in grid))
        if is_hist.any():
            bins = min(HISTOGRAM_BINS, n_grid)
            step = np.repeat(np.where(span > 0, span, 1.0) / (bins - 1), K)
            hist = fit_histogram(x, w, np.repeat(prange[:, 0], K), step, n_grid=n_grid, dtype=dtype)
            kinds = grid.kernel if grid.kernel is not None else np.zeros(P * K, np.int32)
            pick = is_hist[:, None]
            grid = KDEGrid(lo=np.where(is_hist, np.asarray(hist.lo), grid.lo),
                           step=np.where(is_hist, np.asarray(hist.step), grid.step),
                           bandwidth=np.where(is_hist, np.asarray(hist.bandwidth), grid.bandwidth),
                           density=np.where(pick, np.asarray(hist.density), grid.density).astype(grid.density.dtype),
                           cut=grid.cut, kernel=np.where(is_hist, np.asarray(hist.kernel), kinds).astype(np.int32))
        self.kde_ = grid
        if spec.priors == "training":
            self.priors_ = class_n.astype(np.float64) / class_n.sum()
        else:
            self.priors_ = np.asarray(spec.priors, dtype=np.float64)
        self.spec_ = spec
        self.classes_ = np.asarray(spec.classes, dtype=object)
        self.n_train_ = counts
        self.membership_ = np.asarray(spec.membership(), dtype=np.float64)
        self.bandwidth_rule_ = rule
        self.property_range_ = prange
        self.present_fraction_ = counts / np.maximum(class_n, 1)[None, :]
        self.temperature_ = None        # uncalibrated (xsift.methods.calibration)
        self.fit_report_ = {"rows": int(len(keep)), "training_rows": int(keep.sum()), "left_out_labels": left_out,
                            "log_of_non_positive_made_missing": dropped,
                            "class_counts": dict(zip(spec.classes, class_n.tolist()))}
        if is_hist.any():
            self.fit_report_["histograms"] = {p: [c for c, hh in zip(spec.classes, row) if hh]
                                              for p, row in zip(spec.property_names, is_hist.reshape(P, K)) if row.any()}
        return self

    # -- evaluation ------------------------------------------------------------------------------
    def log_likelihoods(self, X, *, source: str = "catalogue") -> np.ndarray:
        """(n, P, K) ``log f_{p,C}(x_p)`` of the fitted KDEs; NaN where ``x_p`` is missing."""
        self._check_fitted()
        props = self._properties(X, self.spec_, source)[0]
        return self._log_likelihoods(props)

    def _fitted_array(self, name: str, option: str) -> np.ndarray:
        value = getattr(self, name, None)
        if value is None:
            raise XsiftError(f"option {option}: this model was fitted (or saved) without the arrays it needs "
                             f"({name.rstrip('_')}); fit it again")
        return value

    def _log_likelihoods(self, props: np.ndarray) -> np.ndarray:
        """(n, P, K) log-densities of the fitted KDEs/histograms, with the prior shapes and the density
        floor mixed in (:func:`xsift.kernels.kde.mix_log_densities`) when the options ask for them."""
        from xsift.kernels.kde import SHAPES, evaluate_log_kde, mix_log_densities
        K, P = len(self.classes_), props.shape[1]
        columns = np.repeat(np.arange(P), K)
        ll = evaluate_log_kde(self.kde_, props, columns, chunk_rows=int(self.chunk_rows), dtype=self._dtype())
        ll = np.asarray(ll).reshape(len(props), P, K)
        opts = self.options()
        shapes = opts["prior_shapes"]
        if opts["density_floor"] > 0 or shapes:
            prange = self._fitted_array("property_range_", "density_floor/prior_shapes")
            kind = np.zeros((P, K), np.int32)
            frac = np.zeros((P, K))
            names, classes = self.spec_.property_names, list(self.classes_)
            for prop, per_class in shapes.items():
                for cls, sh in per_class.items():
                    kind[names.index(prop), classes.index(cls)] = SHAPES[sh["shape"]]
                    frac[names.index(prop), classes.index(cls)] = sh["fraction"]
            span = prange[:, 1] - prange[:, 0]
            log_u = -np.log(np.where(span > 0, span, 1.0))
            ll = np.asarray(mix_log_densities(ll, props.astype(ll.dtype), kind, frac.astype(ll.dtype),
                                              opts["density_floor"], log_u.astype(ll.dtype),
                                              prange[:, 0].astype(ll.dtype), prange[:, 1].astype(ll.dtype)))
        return ll

    def _sigma(self, df, spec: NBSpec, source: str) -> np.ndarray | None:
        """(n, P) 1-sigma errors on the properties' transformed axes (NaN = none), or None without a table
        or without error weights. A ``log10`` property's error is propagated, ``sigma / (x ln 10)``."""
        if df is None or not self.options()["error_weights"]:
            return None
        from xsift.data.features import derive_features, feature_errors
        sigma = np.array(feature_errors(df, spec.preset, source=source).to_numpy(dtype=np.float64))
        logged = [j for j, f in enumerate(spec.preset.features) if "log10" in f.transform and f.error]
        if logged:
            raw = derive_features(df, spec.preset, source=source).to_numpy(dtype=np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                for j in logged:
                    sigma[:, j] = np.where(raw[:, j] > 0, sigma[:, j] / (raw[:, j] * np.log(10.0)), np.nan)
        return sigma

    def _blocks(self, n: int):
        """(rows per block, [slices]): the fixed-shape row blocks (:func:`xsift.kernels.blocks.padded_rows`)
        in which the kernels after the density evaluation run, so tables of any length reuse a few
        compiled programs."""
        from xsift.kernels.blocks import padded_rows
        rows = padded_rows(n, int(self.chunk_rows), 1024)
        return rows, [slice(s, min(s + rows, n)) for s in range(0, max(n, 1), rows)]

    @staticmethod
    def _padded(a: np.ndarray, rows: int, fill):
        """``a`` with rows appended (``fill``) up to ``rows``."""
        if len(a) == rows:
            return a
        return np.concatenate([a, np.full((rows - len(a),) + a.shape[1:], fill, dtype=a.dtype)])

    def _terms(self, props: np.ndarray, sigma: np.ndarray | None = None):
        """:class:`xsift.kernels.nbayes.CategoryTerms` of a property matrix (and its errors), computed in
        fixed-shape row blocks."""
        from xsift.kernels.nbayes import CategoryTerms
        rows, blocks = self._blocks(len(props))
        parts = []
        for sl in blocks:
            sb = None if sigma is None else self._padded(sigma[sl], rows, np.nan)
            t = self._terms_block(self._padded(props[sl], rows, np.nan), sb)
            parts.append([a[:sl.stop - sl.start] for a in t])
        return CategoryTerms(*(np.concatenate([p[i] for p in parts]) for i in range(len(CategoryTerms._fields))))

    def _terms_block(self, props: np.ndarray, sigma: np.ndarray | None = None):
        from xsift.kernels.nbayes import CategoryTerms, category_terms, error_exponents
        opts = self.options()
        ll = self._log_likelihoods(props)
        n, P, K = ll.shape
        spec = self.spec_
        if opts["error_weights"] and sigma is not None:
            has_error = np.array([bool(f.error) for f in spec.preset.features])
            exponents = np.asarray(error_exponents(sigma.astype(ll.dtype), np.isfinite(props), has_error,
                                                   self.membership_))
        else:
            exponents = np.ones((n, P), ll.dtype)
        missing = bool(opts["missing_likelihood"])
        if missing:
            eps = opts["missing_floor"]
            q = (self._fitted_array("present_fraction_", "missing_likelihood") + eps) / (1.0 + 2.0 * eps)
            log_present, log_absent = np.log(q), np.log1p(-q)
        else:
            log_present = log_absent = np.zeros((P, K))
        terms = category_terms(ll, self.membership_, exponents, log_present.astype(ll.dtype),
                               log_absent.astype(ll.dtype), missing)
        return CategoryTerms(*(np.asarray(a) for a in terms))

    def _eq1(self, props: np.ndarray, sigma: np.ndarray | None = None):
        """(posterior (n, K), outlier measure (n,), entering categories (n, T), CategoryTerms) of a property
        matrix: Eq. 1, or CLAXBOI's form under the options (:mod:`xsift.kernels.nbayes`)."""
        from xsift.kernels.nbayes import weighted_posterior_and_outlier
        opts = self.options()
        terms = self._terms(props, sigma)
        weights = _category_weights(self.weights, self.spec_)
        claxboi = opts["normalisation"] == "claxboi"
        post, om = self._by_blocks(terms, lambda tb: weighted_posterior_and_outlier(
            tb, weights, opts["missing_alpha"], np.log(self.priors_), claxboi=claxboi))
        post = apply_temperature(post, temperature_of(self)).astype(post.dtype, copy=False)
        return post, om, np.asarray(terms.observed), terms

    def _by_blocks(self, terms, fn):
        """``fn`` (a kernel of CategoryTerms) over fixed-shape row blocks of ``terms``; its outputs
        concatenated as NumPy arrays (a tuple, or one array)."""
        from xsift.kernels.nbayes import CategoryTerms
        n = len(terms.observed)
        rows, blocks = self._blocks(n)
        fills = (0.0, 0.0, False, 0.0, 0.0)
        outs = []
        for sl in blocks:
            out = fn(CategoryTerms(*(self._padded(a[sl], rows, f) for a, f in zip(terms, fills))))
            outs.append([np.asarray(o)[:sl.stop - sl.start] for o in (out if isinstance(out, tuple) else (out,))])
        res = tuple(np.concatenate([o[i] for o in outs]) for i in range(len(outs[0])))
        return res if len(res) > 1 else res[0]

    def _alternatives(self, terms) -> np.ndarray:
        """(n, T) class index predicted with each category left out."""
        from xsift.kernels.nbayes import alternative_classes
        opts = self.options()
        weights = _category_weights(self.weights, self.spec_)
        claxboi = opts["normalisation"] == "claxboi"
        return self._by_blocks(terms, lambda tb: alternative_classes(tb, weights, opts["missing_alpha"],
                                                                     np.log(self.priors_), claxboi=claxboi))

    def alternative_class_table(self, X, *, source: str = "catalogue") -> pd.DataFrame:
        """For every row and category t, the class predicted when t is left out (weight 0; CLAXBOI's
        ``alt``, what the paper's probability tracks show): columns ``alt_class_without_<category>``,
        one row per input row. The output table carries them when ``alternative_classes`` is on."""
        self._check_fitted()
        props, _, df = self._properties(X, self.spec_, source)
        alt = self._alternatives(self._terms(props, self._sigma(df, self.spec_, source)))
        classes = np.asarray(self.classes_, dtype=object)
        return pd.DataFrame({f"alt_class_without_{c}": pd.array(classes[alt[:, t]], dtype="str")
                             for t, c in enumerate(self.spec_.category_names)})

    def posterior_and_outlier(self, X, *, source: str = "catalogue") -> tuple[np.ndarray, np.ndarray]:
        """(posterior (n, K) of Eq. 1, outlier measure (n,) = -log10 sum_C numerator)."""
        self._check_fitted()
        props, _, df = self._properties(X, self.spec_, source)
        post, om, _, _ = self._eq1(props, self._sigma(df, self.spec_, source))
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
        sigma = self._sigma(df, self.spec_, "catalogue")
        pred = np.argmax(self._eq1(props[keep], None if sigma is None else sigma[keep])[0], axis=1)
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
        from xsift.kernels.nbayes import category_track_posteriors
        spec = self.spec_
        sigma = None
        if isinstance(x, np.ndarray) and x.dtype.names is None:
            props = np.asarray(x, dtype=np.float64).reshape(1, -1)
        else:
            props, _, df = self._properties(x, spec, "source")
            sigma = self._sigma(df, spec, "source")
            props, sigma = props[:1], (None if sigma is None else sigma[:1])
        if props.shape != (1, len(spec.properties)):
            raise XsiftError(f"tracks: expected one source with {len(spec.properties)} properties, got {props.shape}")
        opts = self.options()
        ll = self._log_likelihoods(props)
        by_prop = np.asarray(track_posteriors(ll, self.membership_, np.log(self.priors_))[0])[0]
        post, om, _, terms = self._eq1(props, sigma)
        by_cat = np.asarray(category_track_posteriors(terms, opts["missing_alpha"], np.log(self.priors_)))[0]
        alt = self._alternatives(terms)[0] if opts["alternative_classes"] else None
        weights = _category_weights(self.weights, spec)
        classes = list(self.classes_)
        rows = []
        for t, (cname, cat) in enumerate(spec.categories.items()):
            idx = [spec.property_names.index(p) for p in cat["properties"]]
            seen = [i for i in idx if np.isfinite(props[0, i])]
            for i in seen:
                rows.append({"level": "property", "name": spec.property_names[i], "category": cname,
                             "value": float(props[0, i]), "weight": np.nan, **dict(zip(classes, by_prop[i]))})
            if np.isfinite(by_cat[t]).all():
                row = {"level": "category", "name": cname, "category": cname, "value": np.nan,
                       "weight": float(weights[t]), **dict(zip(classes, by_cat[t]))}
                if alt is not None:
                    row["alternative_class"] = classes[int(alt[t])]
                rows.append(row)
        rows.append({"level": "posterior", "name": "posterior (Eq. 1)", "category": "", "value": float(om[0]),
                     "weight": float(weights.sum()), **dict(zip(classes, post[0]))})
        out = pd.DataFrame(rows)
        if alt is not None:
            out["alternative_class"] = out["alternative_class"].astype("object")
        return out

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
        post, om, obs, terms = self._eq1(props, self._sigma(df, spec, source))
        out = pd.DataFrame(index=range(len(df)))
        if spec.source_column in carried:   # first, as it always was; as it is (dtype and nulls kept)
            out[spec.source_column] = df[spec.source_column].array
        for k, c in enumerate(classes):
            out[c] = post[:, k]
        pred = np.argmax(post, axis=1)
        out["predicted_class"] = pd.array(np.asarray(classes, dtype=object)[pred], dtype="str")
        out["outlier_measure"] = om
        out["n_categories"] = ((np.isfinite(props).astype(np.float64) @ self.membership_.T) > 0).sum(axis=1).astype(np.int32)
        if self.options()["alternative_classes"]:
            alt = self._alternatives(terms)
            for t, cname in enumerate(spec.category_names):
                out[f"alt_class_without_{cname}"] = pd.array(np.asarray(classes, dtype=object)[alt[:, t]], dtype="str")
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
    def _changed_options(self) -> dict:
        """The options that differ from :data:`xsift.config.naive_bayes.NB_OPTION_DEFAULTS` (bandwidth aside,
        stored as before)."""
        from xsift.config.naive_bayes import NB_OPTION_DEFAULTS
        return {k: v for k, v in self.options().items() if k != "bandwidth" and v != NB_OPTION_DEFAULTS[k]}

    def _arrays(self) -> dict[str, np.ndarray]:
        g = self.kde_
        out = {"kde_lo": g.lo, "kde_step": g.step, "kde_bandwidth": g.bandwidth, "kde_density": g.density,
               "kde_cut": np.asarray(g.cut), "priors": self.priors_,
               "weights": _category_weights(self.weights, self.spec_), "membership": self.membership_,
               "n_train": self.n_train_}
        if g.kernel is not None:
            out["kde_kernel"] = np.asarray(g.kernel, dtype=np.int32)
        if self._changed_options():
            for name in ("property_range", "present_fraction"):
                if getattr(self, name + "_", None) is not None:
                    out[name] = getattr(self, name + "_")
        return out

    def _meta(self) -> dict:
        spec = self.spec_
        meta = {"classes": list(self.classes_), "priors": self.priors_.tolist(), "properties": spec.properties,
                "categories": spec.category_names, "weights": self.category_weights(),
                "n_grid": int(self.kde_.density.shape[-1]), "bandwidth": self.bandwidth_rule_,
                "preset": spec.preset.to_dict(), **calibration_meta(self)}
        changed = self._changed_options()
        if changed:     # absent for a default model: its files and hash are those of before the options existed
            meta["options"] = changed
        return meta

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
                      bandwidth=meta["bandwidth"], precision=precision, **dict(meta.get("options", {})))
            est.options()
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise XsiftError(f"{where}: the model description lacks {exc}; the file is damaged") from None
        except XsiftError as exc:
            raise XsiftError(f"{where}: {exc}") from None
        K, P, T = len(spec.classes), len(spec.properties), len(spec.categories)
        if (list(meta.get("classes", [])) != list(spec.classes) or arrays["kde_density"].shape[0] != P * K
                or arrays["membership"].shape != (T, P) or arrays["priors"].shape != (K,)):
            raise XsiftError(f"{where}: classes, properties and categories do not match the arrays' shapes; "
                             "the model files were mixed")
        est.kde_ = KDEGrid(arrays["kde_lo"], arrays["kde_step"], arrays["kde_bandwidth"], arrays["kde_density"],
                           arrays["kde_cut"], arrays.get("kde_kernel"))
        est.property_range_ = arrays.get("property_range")
        est.present_fraction_ = arrays.get("present_fraction")
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
    def cross_validated_terms(self, X, y=None, *, n_folds: int = 5, seed: int = 0, source: str = "catalogue"):
        """Out-of-fold ``(CategoryTerms (n rows), folds: (n,), y: (n,) class indices)`` of the labelled rows
        (:class:`xsift.kernels.nbayes.CategoryTerms`: per-category sums of the log-likelihoods, error
        exponents and missing-value terms), the densities of each fold fitted on the other folds with
        this estimator's parameters (stratified folds; by source, as :func:`xsift.methods.nb_validation.source_folds`,
        when the table has the preset's source column and some source has several rows). ``self`` is not changed."""
        from xsift.kernels.nbayes import CategoryTerms
        spec = _resolve_spec(self.preset)
        props, _, df = self._properties(X, spec, source)
        y_idx, _ = self._targets(y, df, spec, len(props), source)
        probe = type(self)(**{**self.get_params(deep=False), "preset": spec})
        sigma = probe._sigma(df, spec, source)
        keep = y_idx >= 0
        props, y_idx = props[keep], y_idx[keep]
        sigma = None if sigma is None else sigma[keep]
        names = (df[spec.source_column].astype(str).to_numpy()[keep]
                 if df is not None and spec.source_column and spec.source_column in df.columns else None)
        folds = tuning_folds(y_idx, names, n_folds, seed)
        parts, where = [], []
        for k in range(int(n_folds)):
            train, test = folds != k, folds == k
            fold_model = type(self)(**{**self.get_params(deep=False), "preset": spec, "seed": int(self.seed) + k})
            fold_model.fit(props[train], y_idx[train], source=f"{source} (fold {k})")
            parts.append(fold_model._terms(props[test], None if sigma is None else sigma[test]))
            where.append(np.flatnonzero(test))
        order = np.argsort(np.concatenate(where), kind="stable")
        terms = CategoryTerms(*(np.concatenate([getattr(t, f) for t in parts])[order] for f in CategoryTerms._fields))
        return terms, folds, y_idx

    def cross_validated_category_log_likelihoods(self, X, y=None, *, n_folds: int = 5, seed: int = 0,
                                                 source: str = "catalogue"):
        """Out-of-fold ``(log L(t|C): (n, T, K), observed: (n, T), folds: (n,), y: (n,) class indices)``
        of the labelled rows (:meth:`cross_validated_terms`' ``observed_ll`` and ``observed``; with the
        default options, Eq. 1's per-category log-likelihoods). ``self`` is not changed."""
        terms, folds, y_idx = self.cross_validated_terms(X, y, n_folds=n_folds, seed=seed, source=source)
        return terms.observed_ll, terms.observed, folds, y_idx

    def tune_weights(self, X, y=None, **options) -> "TuningResult":
        """:func:`tune_weights` of this estimator (which it does not change)."""
        return tune_weights(self, X, y, **options)


@dataclass(frozen=True, eq=False)
class TuningResult:
    """What :func:`tune_weights` found; no estimator is changed by tuning.

    weights: category -> tuned weight, rescaled to a mean of 1 (the start weights if differential
        evolution found nothing better); apply with ``model.set_params(weights=result.weights)``.
    target: the class (or aggregated class: F1 of its pooled members) whose F1 was maximised.
    f1_start_weights, f1_equal_weights, f1_tuned: cross-validated F1 of ``target`` with the estimator's
        weights, with all weights equal, and with ``weights``.
    generations, evaluations, converged: of the differential evolution.
    n_folds, seed: of the stratified cross-validation.
    y, cross_validated_predictions: (n,) class indices of the labelled rows and their out-of-fold
        predictions with ``weights`` (for :func:`xsift.methods.metrics.classification_metrics`).
    missing_alpha: the tuned missing-value exponent ``a`` (None when it was not tuned).
    tune_rows: rows whose F1 was maximised (all labelled rows, or the prior-proportioned subsample).
    target_classes: the classes pooled into ``target`` (``(target,)`` for a class).
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
    missing_alpha: float | None = None
    tune_rows: int | None = None
    target_classes: tuple = ()

    @property
    def params(self) -> dict:
        """What to apply: ``model.set_params(**result.params)`` (weights, and ``missing_alpha`` when tuned)."""
        out = {"weights": dict(self.weights)}
        if self.missing_alpha is not None:
            out["missing_alpha"] = float(self.missing_alpha)
        return out

    def as_dict(self) -> dict:
        """The scalar results as a JSON-able dict (the arrays left out)."""
        out = {"target": self.target, "weights": dict(self.weights), "f1_start_weights": self.f1_start_weights,
               "f1_equal_weights": self.f1_equal_weights, "f1_tuned": self.f1_tuned,
               "generations": self.generations, "evaluations": self.evaluations, "converged": self.converged,
               "folds": self.n_folds, "seed": self.seed}
        if self.missing_alpha is not None:
            out["missing_alpha"] = float(self.missing_alpha)
        if self.tune_rows is not None:
            out["tune_rows"] = int(self.tune_rows)
        if tuple(self.target_classes) not in ((), (self.target,)):   # an aggregated class: its members
            out["target_classes"] = list(self.target_classes)
        return out


def prior_proportioned_subsample(y_idx: np.ndarray, priors, seed: int = 0) -> np.ndarray:
    """Sorted row indices of a seeded subsample whose class proportions match ``priors`` (CLAXBOI's
    sample for tuning, "useful to get proper false positive rates").

    y_idx: (n,) class indices (0..K-1); priors: (K,) positive. The limiting class ``L`` (smallest
    ``n_c / prior_c``) is kept whole; class c keeps ``floor(n_L prior_c / prior_L)`` rows drawn
    without replacement (``numpy.random.default_rng(seed)``)."""
    y_idx = np.asarray(y_idx)
    priors = np.asarray(priors, dtype=np.float64)
    priors = priors / priors.sum()
    n = np.bincount(y_idx, minlength=len(priors)).astype(np.float64)
    lim = int(np.argmin(n / priors))
    want = np.minimum(np.floor(n[lim] * priors / priors[lim] + 1e-9).astype(np.int64), n.astype(np.int64))
    rng = np.random.default_rng(int(seed))
    picks = [rng.choice(np.flatnonzero(y_idx == c), size=int(k), replace=False) for c, k in enumerate(want)]
    return np.sort(np.concatenate(picks)).astype(np.int64)


def tuning_folds(y_idx: np.ndarray, sources, n_folds: int, seed: int) -> np.ndarray:
    """(n,) inner fold of every labelled row for :func:`tune_weights`: stratified k-fold by source
    (:func:`xsift.methods.nb_validation.source_folds`: the rows of one source in one fold) when some
    source has several rows, else the row-stratified folds (:func:`xsift.methods.validation.stratified_folds`).
    y_idx: (n,) class indices >= 0; sources: (n,) source keys or None."""
    if sources is not None and len(np.unique(sources)) < len(sources):
        from xsift.methods.nb_validation import source_folds
        return source_folds(y_idx, sources, int(n_folds), int(seed))
    return stratified_folds(y_idx, int(n_folds), int(seed))


def target_classes(spec: NBSpec, target: str) -> tuple[str, ...]:
    """The classes whose pooled F1 a tuning ``target`` names: a class of the preset (the group of one),
    or an aggregated class of its ``[classes.aggregation]`` table (XRB -> HMXB, LMXB; a name that is
    both a class and a group is the class). Raises XsiftError naming both lists for anything else."""
    if target in spec.classes:
        return (target,)
    aggregation = dict(spec.preset.classes.aggregation) if spec.preset is not None else {}
    if target in aggregation:
        return tuple(aggregation[target])
    groups = f" or aggregated classes {sorted(aggregation)}" if aggregation else ""
    raise XsiftError(f"tuning target {target!r} is not one of the classes {list(spec.classes)}{groups}")


def tune_weights(model: NaiveBayesKDE, X, y=None, *, target: str | None = None, n_folds: int = 5, seed: int = 0,
                 popsize: int = 15, maxiter: int = 100, tune_alpha: bool = False,
                 source: str = "catalogue") -> TuningResult:
    """Category weights (and with ``tune_alpha`` the missing-value exponent) maximising the cross-validated
    F1 of ``target`` by differential evolution.

    model: a NaiveBayesKDE (fitted or not) whose parameters fit each fold; it is not changed.
    X, y: the labelled training sample, as :meth:`NaiveBayesKDE.fit` takes them.
    target: the class to favour (default: the preset's ``[classes] target``), or an aggregated class of
    the preset's ``[classes.aggregation]`` (:func:`target_classes`): then the F1 maximised is that of
    "predicted class in the group" against "true class in the group" (XRB = HMXB + LMXB).
    n_folds, seed: stratified folds; seed also seeds the evolution (and the subsample). popsize,
    maxiter: of the evolution (population ``popsize x parameters``). Weights are searched in
    ``[0, 1]`` each (only ratios matter; the result is rescaled to a mean of 1), the exponent ``a``
    in ``[0, 1]`` (CLAXBOI's bounds); kept only if their F1 is at least that of the start values.
    tune_alpha: also tune ``missing_alpha`` (needs ``missing_likelihood``). The model's
    ``tune_sample`` option ``"priors"`` scores F1 on a prior-proportioned subsample of the
    out-of-fold rows (:func:`prior_proportioned_subsample`) instead of all of them.
    Returns a :class:`TuningResult` (apply with ``model.set_params(**result.params)``). Raises
    XsiftError for an unknown target, or ``tune_alpha`` without missing-value likelihoods.
    """
    from xsift.kernels.nbayes import (CategoryTerms, negative_f1_of_terms, target_membership, tune_weights_and_alpha,
                                      weighted_log_numerator)
    spec = _resolve_spec(model.preset)
    opts = type(model)(**{**model.get_params(deep=False), "preset": spec}).options()
    target = target or spec.target
    members = target_classes(spec, target)
    if tune_alpha and not opts["missing_likelihood"]:
        raise XsiftError("tune_alpha: the missing-value exponent is tuned only with missing_likelihood on")
    t = target_membership([spec.classes.index(c) for c in members], len(spec.classes))
    terms, folds, y_idx = model.cross_validated_terms(X, y, n_folds=n_folds, seed=seed, source=source)
    K = len(spec.classes)
    if spec.priors == "training":
        n = np.bincount(y_idx, minlength=K).astype(np.float64)
        priors = n / n.sum()
    else:
        priors = np.asarray(spec.priors, dtype=np.float64)
    log_prior = np.log(priors)
    dtype = model._dtype()
    terms = CategoryTerms(*(np.asarray(a, bool) if f == "observed" else np.asarray(a, dtype)
                            for f, a in zip(CategoryTerms._fields, terms)))
    rows = np.arange(len(y_idx))
    if opts["tune_sample"] == "priors":
        rows = prior_proportioned_subsample(y_idx, priors, seed)
    sub = CategoryTerms(*(a[rows] for a in terms))
    claxboi = opts["normalisation"] == "claxboi"
    alpha0 = float(opts["missing_alpha"])
    start_w = _category_weights(model.weights, spec)

    def f1(w, a):
        return -float(negative_f1_of_terms(np.asarray(w, dtype), sub, log_prior.astype(dtype), y_idx[rows], t,
                                           np.asarray(a, dtype), claxboi=claxboi))

    start, equal = f1(start_w, alpha0), f1(np.ones(len(start_w)), alpha0)
    res = tune_weights_and_alpha(sub, log_prior, y_idx[rows], t, int(seed), alpha=alpha0, tune_alpha=tune_alpha,
                                 claxboi=claxboi, popsize=popsize, maxiter=maxiter, dtype=dtype)
    x = np.asarray(res.x, dtype=np.float64)
    best, best_alpha = (x[:-1], float(x[-1])) if tune_alpha else (x, alpha0)
    tuned = -float(res.fun)
    if best.sum() > 0 and tuned >= start:
        weights, alpha = best * len(best) / best.sum(), best_alpha
    else:
        weights, tuned, alpha = start_w * len(start_w) / start_w.sum(), start, alpha0
    pred = np.argmax(np.asarray(weighted_log_numerator(terms, weights.astype(dtype), np.asarray(alpha, dtype),
                                                       log_prior.astype(dtype), claxboi=claxboi)), axis=1)
    return TuningResult(weights=dict(zip(spec.category_names, weights.tolist())), target=target,
                        f1_start_weights=start, f1_equal_weights=equal, f1_tuned=tuned,
                        generations=int(res.nit), evaluations=int(res.nfev), converged=bool(res.converged),
                        n_folds=int(n_folds), seed=int(seed), y=y_idx, cross_validated_predictions=pred,
                        missing_alpha=alpha if tune_alpha else None,
                        tune_rows=int(len(rows)) if opts["tune_sample"] == "priors" else None,
                        target_classes=tuple(members))
