"""The CSC paper's cluster-then-label classifier (Pérez-Díaz et al. 2024, MNRAS, arXiv:2401.12203;
Algorithm 1) as an estimator: :class:`ClusterThenLabel`.

Steps (the numbers are the paper's):

1. features: the preset's features of the complete rows (rows missing any feature are
   dropped and counted), transformed by :class:`xsift.data.features.FeatureTransform`
   (Eq. 1-2: log of the skewed features, min-max scaling);
2. clusters: a full-covariance Gaussian mixture (``xsift.kernels.gmm.fit_gmm``, K = 6 by
   default); each detection gets its most probable component;
3. reference labels (:func:`reference_labels`): the preset's reference-type column
   (``main_type``), which a crossmatch with a reference table can fill (:mod:`xsift.data.crossmatch`).
   Training classes are labels; null and uninformative types are *unlabelled*; any
   other type is neither a reference nor classified (counted);
4. per (cluster, class): mean and sample covariance (ddof = 1) of the references,
   pseudo-inverted (``np.cov`` and ``np.linalg.pinv``, as the published code); a class with fewer
   references in a cluster than there are features is excluded there (probability 0);
5.-6. every unlabelled complete detection gets the (squared, by default) Mahalanobis
   distance (Eq. 6) to each usable class of its own cluster and the log-space softmin of those
   (``xsift.kernels.mahalanobis``); a detection whose cluster has no usable class gets null
   probabilities and ``no_usable_class = True``;
7. master classes per source: :mod:`xsift.methods.voting`.

Which rows do what:

=======================================  =========================  ================  ==========
detection                                feature transform + GMM    class statistics  classified
=======================================  =========================  ================  ==========
complete, training class                 yes                        yes               no
complete, null or uninformative type     yes                        no                yes
complete, any other type                 yes                        no                no (counted)
a feature missing                        no                         no                no (counted)
=======================================  =========================  ================  ==========

The GMM is fitted on every complete detection (the paper clusters the whole
catalogue), so adding or removing labels never moves the clusters.

Missing features (``missing=``, ``--missing``): the fit (transform, GMM, class statistics) always uses
the complete detections; the mode decides which detections are *classified*:

* ``"drop"`` (the paper's catalogue): a detection missing any feature is dropped and counted;
* ``"median"`` (the paper's "classify your own source" notebook): a missing feature is filled with the
  median of that feature over the training table's complete detections, in raw (untransformed) units,
  before the transform; the detection is then classified as complete;
* ``"marginalise"`` (default): the cluster assignment and the class distances use the observed features only, with
  exact marginal Gaussians (sub-vector of each mean, sub-block of each covariance; the class distances
  with the pseudo-inverse of the observed sub-block of the class covariance ``pinv(class_precisions)``):
  :mod:`xsift.kernels.marginal`.

In ``median`` and ``marginalise`` every detection with at least one observed feature is classified, its
detection row carries ``n_features_used``, and a table lacking a feature column entirely is classified
with the columns it has (the report's ``features_found``/``features_missing``); complete detections get
the same probabilities in every mode (they take the complete-row kernels).

Measurement errors (``errors=True``, ``--errors``): each feature's 1-sigma error is read as the preset's
``error`` field says (:func:`xsift.data.features.feature_errors`; CSC's ``_lolim``/``_hilim`` bounds, sigma =
(hilim - lolim) / 2; a feature without one, or a null error, is exact) and propagated through the fitted
transform by its derivative (:meth:`~xsift.data.features.FeatureTransform.transform_errors`), giving each
detection a diagonal noise covariance ``S_i``. The fit then clusters with extreme deconvolution
(:func:`xsift.kernels.xd.fit_xd`, Bovy, Hogg & Roweis 2011) and deconvolves each (cluster, class)
covariance by the mean noise of its references (``cov - mean_i S_i``, negative eigenvalues set to 0);
classifying assigns clusters by the noise-convolved mixture on the observed features
(:func:`xsift.kernels.xd.xd_e_step`) and measures the distance to class c with ``Sigma_c + S_i`` on the
observed features (:func:`xsift.kernels.marginal.error_classify_rows`). A detection whose errors are all 0
gets exactly the probabilities it gets without ``errors`` from the same model.

A fitted model is plain data (NumPy arrays + JSON, no pickle) saved in the one model format of
:mod:`xsift.methods.persistence` (kind ``"cluster_then_label"``); a saved model classifies new
detections without refitting anything (the paper's "classify your own source").

Files and figures of a run: :mod:`xsift.report.outputs`; the commands ``xsift fit``,
``xsift classify``, ``xsift run``: :mod:`xsift.cli.cluster_then_label`.
"""
from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd

from xsift.errors import SchemaError, XsiftError
from xsift.data.features import (FeatureTransform, complete_rows, derive_features, feature_names, measurement_variances,
                                 raw_feature_columns)
from xsift.methods.base import Classification, NotFittedError
from xsift.methods.calibration import apply_temperature, calibration_meta, temperature_from_meta, temperature_of
from xsift.methods.estimator import PRECISIONS, ParamsMixin, as_frame, precision_dtype

__all__ = ["ClusterThenLabel", "reference_labels", "DISTANCES", "MISSING", "PRECISIONS"]

KIND = "cluster_then_label"
MODEL_ARRAYS = ("gmm_weights", "gmm_means", "gmm_covariances", "gmm_precisions_cholesky",
                "class_means", "class_precisions", "class_mask", "class_counts")
DISTANCES = ("squared", "mahalanobis")
MISSING = ("drop", "median", "marginalise")
UNLABELLED, OTHER_TYPE = -1, -2
# NumPy's default relative cutoff of np.linalg.pinv (the published code's call)
PINV_RCOND = 1e-15


# ----------------------------------------------------------------------------
# preset access
# ----------------------------------------------------------------------------

def resolve_preset(preset):
    """The typed preset (:class:`xsift.config.Preset`) that ``preset`` names: a built-in name
    (``"csc"``), a TOML path, a dict in the preset grammar or a Preset. Raises XsiftError if it is not a
    cluster-then-label preset."""
    from xsift.config import load_preset
    preset = load_preset(preset)
    if preset.method != KIND:
        raise XsiftError(f"{preset.source or preset.name}: a {preset.method} preset; ClusterThenLabel needs a "
                         f"{KIND} preset (e.g. the built-in 'csc')")
    return preset


def preset_record(preset) -> dict:
    """The preset as the JSON a saved model keeps (the preset grammar, ``Preset.to_dict``)."""
    return preset.to_dict()


def preset_columns(preset) -> dict[str, str]:
    """name, obsid, ra, dec and reference-type column names from the preset's [columns]
    (roles source, detection, ra, dec, label)."""
    c = resolve_preset(preset).columns
    return {"name": c.source, "obsid": c.detection, "ra": c.ra, "dec": c.dec, "type": c.label,
            "interval": c.interval}


def _interval(df, cols) -> list[str]:
    """[the preset's optional interval column] when the table has it (third part of the detection key)."""
    return [cols["interval"]] if cols.get("interval") and cols["interval"] in df.columns else []


def input_columns(preset) -> list[str]:
    """Every catalogue column the preset's classifier reads: identity, sky, reference type, raw features."""
    return list(resolve_preset(preset).input_columns)


def preset_classes(preset) -> tuple[list[str], list[str], dict[str, list[str]]]:
    """(training classes, uninformative types, aggregation) from the preset's [classes]."""
    c = resolve_preset(preset).classes
    return list(c.order), list(c.uninformative), {g: list(m) for g, m in c.aggregation.items()}


# ----------------------------------------------------------------------------
# steps 1 and 3: checked features and reference labels
# ----------------------------------------------------------------------------

def prepare_catalog(df: pd.DataFrame, preset, *, source: str = "catalogue",
                    need_types: bool = True, all_null: str = "error") -> tuple[pd.DataFrame, dict]:
    """Schema-check ``df`` for the preset (identity, sky, feature and, if ``need_types``, type
    columns); returns the cleaned frame and the check report as a dict. ``all_null="count"``
    (applying a saved model) reports a feature column null in every row instead of refusing.
    Raises :class:`SchemaError` naming ``source``, the column and what was expected."""
    clean, report = _prepare(df, preset, source=source, need_types=need_types, all_null=all_null)
    return clean, report.as_dict()


def _prepare(df, preset, *, source, need_types=True, all_null="error", absent_ok=False):
    """:func:`prepare_catalog` with the check's report as a ``CheckReport`` (which also holds the codes
    of the source names, ``key_codes``)."""
    from xsift.data.schema import check_catalog
    cols = preset_columns(preset)
    raw = raw_feature_columns(preset)
    required = [cols["name"], cols["obsid"], cols["ra"], cols["dec"]] + raw
    if need_types:
        required.append(cols["type"])
    return check_catalog(df, required=required, numeric=[cols["ra"], cols["dec"]],
                         features=raw, key=[cols["name"], cols["obsid"]] + _interval(df, cols), source=source,
                         all_null=all_null, aliases=resolve_preset(preset).aliases,
                         optional=[] if need_types else [cols["type"]],
                         positions=(cols["ra"], cols["dec"]),
                         absent_ok=_absent_allowed(preset) if absent_ok else ())


def _absent_allowed(preset) -> list[str]:
    """The raw feature columns a table may lack when classifying on observed features: every one that is
    not also an identity or sky column (those stay required)."""
    cols = preset_columns(preset)
    keep = {cols["name"], cols["obsid"], cols["ra"], cols["dec"]}
    return [c for c in raw_feature_columns(preset) if c not in keep]


def reference_labels(df: pd.DataFrame, preset) -> tuple[np.ndarray, dict]:
    """Reference label of every row: the index of its training class, -1 for unlabelled (null or
    uninformative type, or no type column at all), -2 for any other type.

    Returns (labels (n,) int, counts) with counts of each class, of the unlabelled (null and
    uninformative separately) and of the other types (the 20 most frequent named)."""
    classes, uninformative, _ = preset_classes(preset)
    col = preset_columns(preset)["type"]
    n = len(df)
    if col not in df.columns:
        return np.full(n, UNLABELLED, dtype=np.int64), {"type_column": None, "unlabelled_null": n}
    # classify the distinct type strings once, then map every row through its code
    codes, uniques = pd.factorize(df[col], sort=False)
    lookup = {lab: classes.index(c) for lab, c in resolve_preset(preset).classes.label_to_class.items()}
    uninformative = set(uninformative)
    texts = [str(u).strip() for u in uniques]
    lut = np.array([lookup.get(t, UNLABELLED if (t == "" or t in uninformative) else OTHER_TYPE)
                    for t in texts] + [UNLABELLED], dtype=np.int64)     # code -1 (null) -> last entry
    labels = lut[codes]
    null = (codes < 0) | np.isin(codes, [i for i, t in enumerate(texts) if t == ""])
    uninf = np.isin(codes, [i for i, t in enumerate(texts) if t in uninformative])
    text_of = np.array(texts + [""], dtype=object)
    other = labels == OTHER_TYPE
    counts = {"type_column": col,
              "labelled": int((labels >= 0).sum()),
              "per_class": dict(zip(classes, np.bincount(labels[labels >= 0], minlength=len(classes)).tolist())),
              "unlabelled_null": int(null.sum()),
              "unlabelled_uninformative": int(uninf.sum()),
              "other_type": int(other.sum()),
              "other_types": {str(k): int(v) for k, v in
                              pd.Series(text_of[codes[other]]).value_counts().head(20).items()}}
    return labels, counts


def features_of(df: pd.DataFrame, preset) -> tuple[pd.DataFrame, np.ndarray]:
    """(untransformed features of every row, complete-row mask)."""
    feats = derive_features(df, preset)
    return feats, complete_rows(feats)


# ----------------------------------------------------------------------------
# steps 2 and 4: clusters and per-(cluster, class) statistics
# ----------------------------------------------------------------------------

def _gmm_in(gmm, dtype):
    """The fitted mixture's parameters as ``xsift.kernels.gmm.GMMParams`` in ``dtype`` (default float64):
    the kernels apply a mixture in the precision of its means."""
    from xsift.kernels.gmm import GMMParams
    dt = np.dtype(dtype or np.float64)
    return GMMParams(*(np.asarray(a, dt) for a in (gmm.weights, gmm.means, gmm.covariances,
                                                    gmm.precisions_cholesky)))


def within_precision(X: np.ndarray, dtype, counts: dict | None = None) -> np.ndarray:
    """``X`` with every value whose magnitude exceeds ``sqrt(finfo(dtype).max) * 1e-6`` set to NaN (missing):
    the mixture and Mahalanobis kernels square feature values and multiply them by precisions up to
    ``1 / reg_covar``, so a larger one (a sentinel such as 1.6e38 in float32) would give infinite
    distances and NaN probabilities. ``counts``: gets ``beyond_precision_to_missing``, the number set
    (only when non-zero)."""
    limit = float(np.sqrt(np.finfo(np.dtype(dtype or np.float64)).max)) * 1e-6
    with np.errstate(invalid="ignore"):
        beyond = np.abs(X) > limit
    if not beyond.any():
        return X
    if counts is not None:
        counts["beyond_precision_to_missing"] = int(beyond.sum())
    return np.where(beyond, np.nan, X)


def cluster_log_resp(gmm, X: np.ndarray, dtype=None) -> np.ndarray:
    """(n, K) log responsibilities of rows X under the mixture (``xsift.kernels.gmm.e_step``)."""
    from xsift.kernels.gmm import e_step
    if len(X) == 0:
        return np.zeros((0, len(np.asarray(gmm.weights))))
    return e_step(_gmm_in(gmm, dtype), X)[0].astype(np.float64, copy=False)


def cluster_assignment(gmm, X: np.ndarray, dtype=None, chunk_size: int | None = None) -> np.ndarray:
    """(n,) most probable component of each row (``xsift.kernels.gmm.predict`` in ``dtype``, in calls of
    ``chunk_size`` rows whatever n, so any number of rows reuses one compiled program; only the labels
    come back)."""
    from xsift.kernels.gmm import predict
    from xsift.kernels.mahalanobis import DEFAULT_CHUNK_SIZE
    if len(X) == 0:
        return np.zeros(0, dtype=np.int64)
    return predict(_gmm_in(gmm, dtype), X, block_rows=int(chunk_size or DEFAULT_CHUNK_SIZE))


def class_statistics_of(X: np.ndarray, cluster: np.ndarray, labels: np.ndarray, n_clusters: int,
                        n_classes: int, noise_var: np.ndarray | None = None
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Step 4 for references ``labels >= 0``: (means (K, L, d), precisions (K, L, d, d),
    mask (K, L), counts (K, L)); a class with fewer references in a cluster than features is
    excluded (mask False, zero blocks).

    Computed with the published code's own calls, ``np.cov(ddof=1)`` and ``np.linalg.pinv``
    (rcond 1e-15), on each group's references in catalogue order, so that the statistics are
    bit-for-bit those of the published method: CSC-like classes are often ill-conditioned
    (hardness ratios nearly collinear, condition numbers 1e7 and beyond), where any other
    summation order would move the probabilities by ~1e-8. This runs once per fit over at
    most K x L groups (one sort, then slices); it is not on the classify path.

    noise_var (n, d): the rows' measurement variances (``errors=True``): each group's covariance is
    deconvolved by its references' mean noise, ``cov - diag(mean_i S_i)`` with negative eigenvalues set to
    0 (the moment form of one-component extreme deconvolution), before the pseudo-inverse.
    """
    d = X.shape[1]
    G = n_clusters * n_classes
    group = np.where(labels >= 0, cluster * n_classes + labels, G)
    order = np.argsort(group, kind="stable")
    counts_all = np.bincount(group, minlength=G + 1)
    starts = np.concatenate([[0], np.cumsum(counts_all)])
    counts = counts_all[:G]
    mask = counts >= d
    means = np.zeros((G, d))
    prec = np.zeros((G, d, d))
    for g in np.flatnonzero(mask):
        ref = X[order[starts[g]:starts[g + 1]]]
        means[g] = ref.mean(axis=0)
        cov = np.cov(ref, rowvar=False, ddof=1)
        if noise_var is not None:
            lam, V = np.linalg.eigh(cov - np.diag(noise_var[order[starts[g]:starts[g + 1]]].mean(axis=0)))
            cov = (V * np.maximum(lam, 0.0)) @ V.T
        prec[g] = np.linalg.pinv(cov, rcond=PINV_RCOND)
    return (means.reshape(n_clusters, n_classes, d), prec.reshape(n_clusters, n_classes, d, d),
            mask.reshape(n_clusters, n_classes), counts.reshape(n_clusters, n_classes))


def _gmm_params(gmm):
    """Any mixture with ``weights``, ``means``, ``covariances``, ``precisions_cholesky`` (a
    ``xsift.kernels.gmm`` result, a fitted :class:`xsift.GaussianMixture` or scikit-learn mixture via
    their trailing-underscore names) as float64 ``GMMParams``."""
    from xsift.kernels.gmm import GMMParams
    names = ("weights", "means", "covariances", "precisions_cholesky")
    if all(hasattr(gmm, n) for n in names):
        return GMMParams(*(np.asarray(getattr(gmm, n), np.float64) for n in names))
    if all(hasattr(gmm, n + "_") for n in names):
        return GMMParams(*(np.asarray(getattr(gmm, n + "_"), np.float64) for n in names))
    raise XsiftError(f"gmm: a {type(gmm).__name__} has no weights, means, covariances and "
                     "precisions_cholesky; pass a fitted Gaussian mixture or None")


# ----------------------------------------------------------------------------
# the estimator
# ----------------------------------------------------------------------------

class ClusterThenLabel(ParamsMixin):
    """The cluster-then-label classifier of Pérez-Díaz et al. (2024), in scikit-learn's conventions.

    Parameters (stored by the constructor as given; checked by :meth:`fit`):

    preset: a built-in preset name (``"csc"``), a preset TOML file, or a loaded preset: the feature
        columns and their transform, the identity/sky/reference-type columns, the training classes,
        the uninformative types and the class aggregation.
    n_components: K, the number of Gaussian components (see ``xsift bic``).
    distance: ``"squared"`` (squared Mahalanobis distance, as the published tables) or
        ``"mahalanobis"`` (its square root, Eq. 6) inside the softmin.
    seed: seed of the GMM's k-means++ start.
    precision: ``"float32"`` or ``"float64"`` (the reference): the precision the kernels compute in;
        probabilities come back float64 either way.
    gmm: None (fit the mixture), or a mixture fitted elsewhere (``weights``, ``means``, ``covariances``,
        ``precisions_cholesky``, e.g. the Dask full-data EM), used as it is.
    chunk_size: rows per kernel call when classifying (None: the kernels' default); any number of rows
        then reuses one compiled program.
    missing: how detections with missing features are classified: ``"drop"`` (the paper's
        catalogue), ``"median"`` (filled with the training medians, the paper's notebook) or
        ``"marginalise"`` (default; observed features only, exact marginal Gaussians); see the module
        docstring.
        The fit uses the complete detections whatever the mode. Saved with the model (and covered by
        its hash); ``set_params(missing=...)`` on a loaded model classifies another way.
    errors: False (default: every value exact, as the paper) or True: use each detection's measurement
        errors (the preset's ``error`` columns): XD clustering and error-convolved class distances; see the
        module docstring. Saved with the model.

    Fitted attributes: ``preset_`` (the loaded preset), ``transform_`` (FeatureTransform),
    ``gmm_`` (``xsift.kernels.gmm.GMMParams``, float64), ``n_clusters_`` (K), ``classes_`` (L class
    names, object array), ``feature_names_`` (d), ``class_means_`` (K, L, d), ``class_precisions_``
    (K, L, d, d; pseudo-inverse covariances), ``class_covariances_`` (K, L, d, d; ``pinv`` of the
    precisions, i.e. the class covariances, used by ``missing="marginalise"``), ``feature_medians_`` (d,
    raw units; medians of the training table's complete detections, None on a model saved without
    them), ``class_mask_`` (K, L) bool (False: class excluded in that
    cluster, its blocks zero), ``class_counts_`` (K, L) references, ``fit_report_`` (row counts per step,
    reference-label counts, cluster sizes, excluded pairs, GMM convergence, timings; set by :meth:`fit`,
    absent on a loaded model), ``info_`` (what a saved model keeps of that report), ``temperature_`` (None,
    or the temperature every probability is scaled by: :mod:`xsift.methods.calibration`).

    Tables (``table``) are pandas DataFrames, astropy Tables, NumPy structured arrays or dicts of columns
    with the preset's columns (``name``, ``obsid``, ``ra``, ``dec``, ``main_type`` and the raw features
    for the CSC preset); reference labels come from the table's reference-type column, never from ``y``.
    """

    kind = KIND
    _estimator_type = "classifier"

    def __init__(self, preset="csc", n_components: int = 6, distance: str = "squared", seed: int = 0,
                 precision: str = "float64", gmm=None, chunk_size: int | None = None, missing: str = "marginalise",
                 errors: bool = False):
        self.preset = preset
        self.n_components = n_components
        self.distance = distance
        self.seed = seed
        self.precision = precision
        self.gmm = gmm
        self.chunk_size = chunk_size
        self.missing = missing
        self.errors = errors

    # -- parameters -------------------------------------------------------------
    def _dtype(self):
        """np.float32 or np.float64 from ``precision`` (a name or a NumPy dtype)."""
        return precision_dtype(self.precision)

    def _check_distance(self) -> None:
        if self.distance not in DISTANCES:
            raise XsiftError(f"distance {self.distance!r}: expected one of {', '.join(DISTANCES)}")

    def _check_missing(self) -> None:
        if self.missing not in MISSING:
            raise XsiftError(f"missing {self.missing!r}: expected one of {', '.join(MISSING)}")

    def _check_fitted(self) -> None:
        if not hasattr(self, "gmm_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit(table) or load a "
                                 "saved model (ClusterThenLabel.load(directory), `xsift fit`)")

    @property
    def model_hash(self) -> str:
        """sha256 content hash of the fitted model (:func:`xsift.methods.persistence.content_hash` over
        its arrays, preset, transform, classes and distance); what :meth:`save` returns."""
        self._check_fitted()
        from xsift.methods.persistence import content_hash
        return content_hash(KIND, self._arrays(), self._meta())

    # -- fitting ------------------------------------------------------------------
    def fit(self, table, y=None, *, source: str = "catalogue", progress=None) -> "ClusterThenLabel":
        """Fit the feature transform, the GMM (unless ``gmm`` is given) and the per-(cluster, class)
        statistics on ``table``; returns self.

        y: must be None: the reference labels are the table's reference-type column (preset
        ``[columns] label``). source: how errors name the input. progress: None (default: nothing shown),
        or a callable called with each stage's name as it begins (``check``, ``features``, ``cluster``;
        e.g. :class:`xsift.report.progress.StageProgress`).
        Raises :class:`SchemaError` for a table without the preset's columns, :class:`XsiftError` when
        no complete detection carries a training class or there are fewer complete detections than
        components.
        """
        _no_y(y, "fit")
        df = as_frame(table, source=source)
        preset = resolve_preset(self.preset)
        rows_in = len(df)
        _stage(progress, "check")
        checked, schema = prepare_catalog(df, preset, source=source)
        return self._fit_checked(checked, preset, rows_in=rows_in, schema=schema, source=source, progress=progress)

    def _fit_checked(self, df, preset, *, rows_in, schema=None, source="catalogue",
                     progress=None) -> "ClusterThenLabel":
        """:meth:`fit` on a frame already schema-checked (``schema``: the check's report, kept in the
        fit report when given)."""
        self._check_distance()
        self._check_missing()
        dtype = self._dtype()
        timings = {}
        t0 = time.perf_counter()
        report: dict = {"rows_in": int(rows_in)}
        if schema is not None:
            report["schema"] = schema
        _stage(progress, "features")
        feats, ok = features_of(df, preset)
        names = feature_names(preset)
        d = len(names)
        labels, label_counts = reference_labels(df, preset)
        classes, _, _ = preset_classes(preset)
        lab_ok = labels[ok]
        if not (lab_ok >= 0).any():
            raise XsiftError(
                f"{source}: no complete detection has a training class in column "
                f"{preset_columns(preset)['type']!r} (expected some of {', '.join(classes)}); "
                "give a catalogue with reference types or crossmatch it with a reference table "
                "(`xsift crossmatch`, or --reference)")
        transform = FeatureTransform.from_preset(preset).fit(feats[ok])
        medians = feats[ok].median().to_numpy(dtype=np.float64)      # raw units, for missing="median"
        X = transform.transform(feats[ok])
        error_counts: dict = {}
        noise = self._noise_var(df, feats, transform, source, error_counts)[ok] if self.errors else None
        timings["features_s"] = time.perf_counter() - t0

        t1 = time.perf_counter()
        _stage(progress, "cluster")
        if self.gmm is None:
            from xsift.kernels.gmm import fit_gmm
            n_components = int(self.n_components)
            if n_components < 1:
                raise XsiftError(f"n_components {self.n_components!r}: expected a positive number of clusters")
            if ok.sum() < n_components:
                raise XsiftError(f"{source}: {int(ok.sum())} complete detections, fewer than the "
                                 f"{n_components} clusters asked for")
            from xsift.methods.model_selection import check_free_parameters
            check_free_parameters(len(X), X.shape[1], n_components, source=source)
            if noise is None:
                res = fit_gmm(X, n_components, seed=int(self.seed), dtype=dtype)
            else:
                from xsift.kernels.xd import fit_xd
                res = fit_xd(X, noise, None, n_components, seed=int(self.seed), dtype=dtype)
            gmm = _gmm_params(res)
            report["gmm"] = {"fitted": True, "n_components": n_components, "seed": int(self.seed),
                             "lower_bound": float(res.lower_bound), "n_iter": int(res.n_iter),
                             "converged": bool(res.converged),
                             **({"extreme_deconvolution": True} if noise is not None else {})}
        else:
            gmm = _gmm_params(self.gmm)
            if gmm.means.shape[1] != d:
                raise XsiftError(f"gmm has {gmm.means.shape[1]} features; the preset has {d}")
            report["gmm"] = {"fitted": False, "n_components": int(len(gmm.weights))}
        K = int(len(gmm.weights))
        if noise is None:
            cluster = np.argmax(cluster_log_resp(gmm, X, dtype), axis=1)
        else:
            from xsift.kernels.xd import xd_e_step
            cluster = np.argmax(xd_e_step(_gmm_in(gmm, dtype), X, noise)[0], axis=1)
        timings["gmm_s"] = time.perf_counter() - t1

        t2 = time.perf_counter()
        means, prec, mask, counts = class_statistics_of(X, cluster, lab_ok, K, len(classes), noise_var=noise)
        timings["class_statistics_s"] = time.perf_counter() - t2
        report.update({
            "rows_checked": int(len(df)),
            "complete": int(ok.sum()),
            "dropped_incomplete": int((~ok).sum()),
            "reference_labels": label_counts,
            "references_complete": int((lab_ok >= 0).sum()),
            "unlabelled_complete": int((lab_ok == UNLABELLED).sum()),
            "other_type_complete": int((lab_ok == OTHER_TYPE).sum()),
            "cluster_sizes": np.bincount(cluster, minlength=K).tolist(),
            "references_per_cluster_class": {c: counts[:, j].tolist() for j, c in enumerate(classes)},
            "excluded": [[int(k), classes[j]] for k, j in zip(*np.nonzero(~mask))],
            "clusters_without_usable_class": [int(k) for k in np.flatnonzero(~mask.any(axis=1))],
            "min_references": d,
            **error_counts,
            "timings": {k: round(v, 4) for k, v in timings.items()},
        })
        self._set_fitted(preset, transform, gmm, classes, means, prec, mask, counts,
                         info={k: report[k] for k in ("complete", "references_complete", "cluster_sizes", "gmm")},
                         medians=medians)
        self.fit_report_ = report
        return self

    def _set_fitted(self, preset, transform, gmm, classes, means, prec, mask, counts, info,
                    medians=None) -> None:
        self.preset_ = preset
        self.transform_ = transform
        self.gmm_ = gmm
        self.n_clusters_ = int(np.shape(mask)[0])
        self.classes_ = np.asarray(list(classes), dtype=object)
        self.feature_names_ = list(feature_names(preset))
        self.class_means_ = np.asarray(means, np.float64)
        self.class_precisions_ = np.asarray(prec, np.float64)
        self.class_mask_ = np.asarray(mask, bool)
        self.class_counts_ = np.asarray(counts, np.int64)
        self.info_ = dict(info)
        self.feature_medians_ = None if medians is None else np.asarray(medians, np.float64)
        self._class_covariances = None
        self.temperature_ = None        # uncalibrated (xsift.methods.calibration)

    @property
    def class_covariances_(self) -> np.ndarray:
        """(K, L, d, d) class covariances, ``np.linalg.pinv(class_precisions_)`` (rcond 1e-15; pinv of a
        pinv is the matrix itself), computed once: the sub-blocks ``missing="marginalise"`` pseudo-inverts."""
        self._check_fitted()
        if self._class_covariances is None:
            self._class_covariances = np.linalg.pinv(self.class_precisions_, rcond=PINV_RCOND)
        return self._class_covariances

    # -- missing features -------------------------------------------------------------
    def _model_inputs(self, feats: pd.DataFrame, counts: dict | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(X (n, d) transformed features, NaN where missing; usable (n,) bool, the rows that get
        probabilities under ``missing``; used (n,) int64, each row's observed features).

        drop: usable = complete and transformable; median: NaN features filled with
        ``feature_medians_`` (raw units) before the transform, usable = at least one observed feature
        and transformable after the fill; marginalise: usable = at least one observed (transformable)
        feature. A transformed value the kernels' precision cannot square (:func:`within_precision`) is
        missing; ``counts["beyond_precision_to_missing"]`` gets their number."""
        self._check_missing()
        observed = np.isfinite(feats.to_numpy(dtype=np.float64, na_value=np.nan))
        if self.missing == "median":
            if self.feature_medians_ is None:
                raise XsiftError("missing='median': this model was saved without training medians (fitted "
                                 "before they were kept); refit it, or use missing='marginalise' or 'drop'")
            any_obs = observed.any(axis=1)
            filled = feats.where(~(np.isnan(feats.to_numpy(dtype=np.float64)) & any_obs[:, None]),
                                 pd.DataFrame(np.broadcast_to(self.feature_medians_, feats.shape),
                                              index=feats.index, columns=feats.columns))
            X = within_precision(self.transform_.transform(filled), self._dtype(), counts)
            return X, any_obs & np.isfinite(X).all(axis=1), observed.sum(axis=1).astype(np.int64)
        X = within_precision(self.transform_.transform(feats), self._dtype(), counts)
        finite = np.isfinite(X)
        if self.missing == "marginalise":
            return X, finite.any(axis=1), finite.sum(axis=1).astype(np.int64)
        usable = observed.all(axis=1) & finite.all(axis=1)
        return X, usable, np.where(usable, X.shape[1], finite.sum(axis=1)).astype(np.int64)

    def _noise_var(self, df: pd.DataFrame, feats: pd.DataFrame, transform=None, source: str = "catalogue",
                   counts: dict | None = None):
        """(n, d) measurement variances of the transformed features of every row of ``df`` (the preset's
        error columns, propagated through the transform; 0 where no error is given, and where the value is
        missing: a value filled by ``missing="median"`` is exact, a marginalised one unused). Raises
        SchemaError naming ``source`` when an error column is absent."""
        preset = getattr(self, "preset_", None) or resolve_preset(self.preset)
        try:
            return measurement_variances(df, feats, preset, transform or self.transform_, source=source,
                                         counts=counts)
        except SchemaError as exc:
            raise SchemaError(f"{exc}; this model uses each detection's measurement errors (errors=True): give a "
                              "table with them, or turn them off (errors=False; --no-errors when classifying)") from None

    def _clusters(self, X: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray:
        """(m,) most probable component of rows X (m, d), NaN where a feature is missing: complete rows
        by ``kernels.gmm.predict``, the others by the mixture's marginal on their observed features
        (:func:`xsift.kernels.marginal.marginal_predict`); with measurement variances ``noise`` (m, d),
        rows with any non-zero error by the noise-convolved marginal mixture
        (:func:`xsift.kernels.xd.xd_e_step`)."""
        from xsift.kernels.mahalanobis import DEFAULT_CHUNK_SIZE
        dtype = self._dtype()
        if noise is not None:
            observed = np.isfinite(X)
            noisy = (np.where(observed, noise, 0.0) > 0).any(axis=1)
            if noisy.any():
                from xsift.kernels.xd import xd_e_step
                cluster = np.zeros(len(X), np.int64)
                if (~noisy).any():
                    cluster[~noisy] = self._clusters(X[~noisy])
                cluster[noisy] = np.argmax(xd_e_step(_gmm_in(self.gmm_, dtype), X[noisy], noise[noisy],
                                                     observed[noisy])[0], axis=1)
                return cluster
        complete = np.isfinite(X).all(axis=1)
        if complete.all():
            return cluster_assignment(self.gmm_, X, dtype, self.chunk_size)
        from xsift.kernels.marginal import marginal_predict
        cluster = np.zeros(len(X), np.int64)
        cluster[complete] = cluster_assignment(self.gmm_, X[complete], dtype, self.chunk_size)
        cluster[~complete] = marginal_predict(_gmm_in(self.gmm_, dtype), X[~complete],
                                              chunk_size=self.chunk_size or DEFAULT_CHUNK_SIZE)
        return cluster

    def _class_probabilities(self, X: np.ndarray, cluster: np.ndarray,
                             noise: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(probs (m, L) float64 before any temperature, predicted (m,)) of rows X (m, d) in their clusters:
        complete rows by ``kernels.mahalanobis.classify_rows`` (the stored pseudo-inverses), the others by
        :func:`xsift.kernels.marginal.marginal_classify_rows` (pseudo-inverse of each class covariance's
        observed sub-block); with measurement variances ``noise`` (m, d), rows with any non-zero error by
        :func:`xsift.kernels.marginal.error_classify_rows` (``Sigma_c + S_i`` on the observed features)."""
        from xsift.kernels.mahalanobis import DEFAULT_CHUNK_SIZE, classify_rows
        dtype = self._dtype()
        chunk = self.chunk_size or DEFAULT_CHUNK_SIZE
        squared = self.distance == "squared"
        if noise is not None:
            observed = np.isfinite(X)
            noisy = (np.where(observed, noise, 0.0) > 0).any(axis=1)
            if noisy.any():
                from xsift.kernels.marginal import ERROR_CHUNK_SIZE, error_classify_rows
                probs = np.full((len(X), len(self.classes_)), np.nan)
                pred = np.full(len(X), -1, np.int64)
                if (~noisy).any():
                    probs[~noisy], pred[~noisy] = self._class_probabilities(X[~noisy], cluster[~noisy])
                probs[noisy], pred[noisy], _ = error_classify_rows(
                    X[noisy], observed[noisy], noise[noisy], cluster[noisy], self.class_means_,
                    self.class_covariances_, self.class_mask_, squared=squared, rcond=PINV_RCOND,
                    chunk_size=min(chunk, ERROR_CHUNK_SIZE), dtype=dtype)
                return probs, pred
        complete = np.isfinite(X).all(axis=1)
        if complete.all():
            probs, pred = classify_rows(X, cluster, self.class_means_, self.class_precisions_, self.class_mask_,
                                        squared=squared, chunk_size=chunk, dtype=dtype, out_dtype=np.float64)
            return np.asarray(probs), np.asarray(pred)
        from xsift.kernels.marginal import marginal_classify_rows
        probs = np.full((len(X), len(self.classes_)), np.nan)
        pred = np.full(len(X), -1, np.int64)
        if complete.any():
            probs[complete], pred[complete] = self._class_probabilities(X[complete], cluster[complete])
        p, k, _ = marginal_classify_rows(X[~complete], None, cluster[~complete], self.class_means_,
                                         self.class_covariances_, self.class_mask_, squared=squared,
                                         rcond=PINV_RCOND, chunk_size=chunk, dtype=dtype)
        probs[~complete], pred[~complete] = p, k
        return probs, pred

    # -- classifying ----------------------------------------------------------------
    def classify(self, table, *, source: str = "catalogue", progress=None) -> Classification:
        """Classify the unlabelled complete detections of ``table`` (nothing refitted) and vote master
        classes per source (:func:`xsift.methods.voting.master_classes`).

        Returns a :class:`Classification`: ``detections`` (one row per classified detection: ``name``,
        ``obsid``, ``cluster``, ``ra``, ``dec`` in degrees, one probability column per class named as the
        class, ``predicted_class`` (null where no class is usable), ``no_usable_class`` and the
        untransformed features), ``uniquely_classified``, ``ambiguous``, and
        ``report = {"classify": ..., "voting": ...}``. A table without the reference-type column is
        classified whole (every detection unlabelled). progress: None (nothing shown) or a callable
        called with each stage's name as it begins (``check``, ``features``, ``cluster``, ``distances``,
        ``vote``). Raises :class:`SchemaError`.
        """
        det, report, codes, pred = self._classify(as_frame(table, source=source), check=True, source=source,
                                                  progress=progress)
        _stage(progress, "vote")
        uniq, amb, summary = self._vote(det, codes, pred)
        return Classification(det, uniq, amb, {"classify": report, "voting": summary})

    def fit_classify(self, table, y=None, *, source: str = "catalogue", progress=None) -> Classification:
        """:meth:`fit` then :meth:`classify` on the same table, as the paper's run, with one schema check.

        Returns a :class:`Classification` whose report holds ``schema``, ``fit``, ``classify`` and
        ``voting``; the tables are those of ``fit(table).classify(table)``. progress: as in :meth:`classify`."""
        _no_y(y, "fit_classify")
        df = as_frame(table, source=source)
        preset = resolve_preset(self.preset)
        _stage(progress, "check")
        df, checked = _prepare(df, preset, source=source)
        schema = checked.as_dict()
        self._fit_checked(df, preset, rows_in=len(df), source=source, progress=progress)
        det, report, codes, pred = self._classify(df, check=False, source=source, name_codes=checked.key_codes,
                                                  progress=progress)
        _stage(progress, "vote")
        uniq, amb, summary = self._vote(det, codes, pred)
        return Classification(det, uniq, amb, {"schema": schema, "fit": self.fit_report_,
                                               "classify": report, "voting": summary})

    def classify_frame(self, df, source: str = "catalogue") -> tuple[pd.DataFrame, dict]:
        """The detection-level table of one DataFrame (one shard) and its report, without the vote:
        :meth:`classify`'s ``detections`` and ``report["classify"]``. The Dask layer calls this per shard."""
        return self._classify(as_frame(df, source=source), check=True, source=source)[:2]

    def _vote(self, det, codes, pred):
        """The master-class vote of a detection table from :meth:`_classify` (reusing its name codes and
        predicted class indices instead of computing them again)."""
        from xsift.methods.voting import master_classes
        t0 = time.perf_counter()
        _, _, agg = preset_classes(self.preset_)
        uniq, amb, summary = master_classes(det, list(self.classes_), agg,
                                            feature_columns=feature_names(self.preset_),
                                            name_codes=codes, predicted=pred)
        summary["timings"] = {"voting_s": round(time.perf_counter() - t0, 4)}
        return uniq, amb, summary

    def _classify(self, df, *, check=True, source="catalogue", name_codes=None, progress=None):
        """The classification's work -> (detection_level, report, codes of the names of its rows (from
        the schema check, or from ``name_codes`` given for the rows of ``df``; None if neither),
        predicted class index of its rows (n,) int, -1 where no class is usable)."""
        self._check_fitted()
        self._check_distance()
        self._check_missing()
        preset = self.preset_
        cols = preset_columns(preset)
        t0 = time.perf_counter()
        report: dict = {"rows_in": int(len(df))}
        if check:
            _stage(progress, "check")
            df, checked = _prepare(df, preset, source=source, need_types=False, all_null="count",
                                   absent_ok=self.missing != "drop")
            report["schema"] = checked.as_dict()
            name_codes = checked.key_codes
        t_check = time.perf_counter()
        _stage(progress, "features")
        feats, ok = features_of(df, preset)
        labels, label_counts = reference_labels(df, preset)
        # every row transformed (NaN stays NaN; values the fitted log cannot take -> missing), then the
        # rows the missing-feature mode classifies
        beyond: dict = {}
        X_all, usable, used = self._model_inputs(feats, beyond)
        target = np.flatnonzero(usable & (labels == UNLABELLED))
        X = X_all[target]
        error_counts: dict = {}
        noise = (self._noise_var(df.iloc[target], feats.iloc[target], source=source, counts=error_counts)
                 if self.errors else None)
        t1 = time.perf_counter()
        _stage(progress, "cluster")
        cluster = self._clusters(X, noise)
        t2 = time.perf_counter()
        _stage(progress, "distances")
        probs, pred = self._class_probabilities(X, cluster, noise)
        probs = apply_temperature(probs, temperature_of(self))
        # never probabilities that are not finite beside a class: such a row has no usable class (counted)
        unusable = ~np.isfinite(probs).all(axis=1) & (pred >= 0)
        if unusable.any():
            probs, pred = np.array(probs, dtype=np.float64), np.array(pred)
            probs[unusable], pred[unusable] = np.nan, -1
        t3 = time.perf_counter()
        out = _detection_table(df, feats, target, cluster, probs, pred, list(self.classes_), cols,
                               n_features_used=None if self.missing == "drop" else used[target])
        t4 = time.perf_counter()
        base = ok if self.missing == "drop" else usable
        absent = report.get("schema", {}).get("absent_features", [])
        report.update({
            "missing": self.missing,
            **({"errors": True, "classified_with_errors": int((np.where(np.isfinite(X), noise, 0.0) > 0)
                                                                .any(axis=1).sum())} if self.errors else {}),
            "complete": int(ok.sum()),
            "dropped_incomplete": int((~usable).sum()),
            "reference_labels": label_counts,
            "labelled_not_classified": int((labels[base] >= 0).sum()),
            "other_type_not_classified": int((labels[base] == OTHER_TYPE).sum()),
            "classified": int(len(target)),
            "classified_incomplete": int((~ok[target]).sum()),
            "features_found": [c for c in raw_feature_columns(preset) if c not in absent],
            "features_missing": list(absent),
            "no_usable_class": int((pred < 0).sum()),
            **({"beyond_precision_to_missing": beyond["beyond_precision_to_missing"]} if beyond else {}),
            **({"non_finite_probabilities": int(unusable.sum())} if unusable.any() else {}),
            **error_counts,
            "model_hash": self.model_hash,
            "distance": self.distance,
            "timings": {"check_s": round(t_check - t0, 4), "features_s": round(t1 - t_check, 4),
                        "clusters_s": round(t2 - t1, 4), "distances_softmin_s": round(t3 - t2, 4),
                        "table_s": round(t4 - t3, 4)},
        })
        codes = None if name_codes is None else np.asarray(name_codes)[target]
        return out, report, codes, pred

    # -- scikit-learn's classifier methods: one answer per input row ----------------------
    def _rows(self, table, source):
        """(checked frame with every input row kept, rows with a prediction, their predicted class
        index (-1: no usable class), their probabilities (m, L))."""
        from xsift.data.schema import check_catalog
        self._check_fitted()
        self._check_distance()
        self._check_missing()
        df = as_frame(table, source=source)
        raw = raw_feature_columns(self.preset_)
        df, _ = check_catalog(df, required=raw, features=raw, source=source, all_null="count",
                              aliases=self.preset_.aliases,
                              absent_ok=_absent_allowed(self.preset_) if self.missing != "drop" else ())
        feats, _ = features_of(df, self.preset_)
        X_all, usable, _ = self._model_inputs(feats)
        rows = np.flatnonzero(usable)
        X = X_all[rows]
        noise = self._noise_var(df.iloc[rows], feats.iloc[rows], source=source) if self.errors else None
        probs, pred = self._class_probabilities(X, self._clusters(X, noise), noise)
        return df, rows, np.asarray(pred), apply_temperature(np.asarray(probs), temperature_of(self))

    def predict_proba(self, table, *, source: str = "table") -> np.ndarray:
        """(n, L) float64 class probabilities of every row of ``table``, labelled or not, columns in
        ``classes_`` order (Eq. 6-7: softmin of the Mahalanobis distances to the classes of the row's
        cluster; 0 for a class excluded in that cluster). NaN rows: a feature missing (or not
        transformable) under ``missing="drop"``, no observed feature under the other modes, or no usable
        class in the row's cluster. Rows are never dropped or merged."""
        df, rows, _, probs = self._rows(table, source)
        out = np.full((len(df), len(self.classes_)), np.nan)
        out[rows] = probs
        return out

    def predict(self, table, *, source: str = "table") -> np.ndarray:
        """(n,) object array: the most probable class of every row of ``table`` (None where
        :meth:`predict_proba` is NaN)."""
        df, rows, pred, _ = self._rows(table, source)
        names = np.asarray(list(self.classes_) + [None], dtype=object)
        idx = np.full(len(df), -1, dtype=np.int64)
        idx[rows] = pred
        return names[np.where(idx < 0, len(self.classes_), idx)]

    def score(self, table, y=None, *, source: str = "table") -> float:
        """Accuracy of :meth:`predict` on the reference-labelled detections of ``table`` (rows whose
        reference type is a training class) that get a prediction; rows without one (a feature missing,
        no usable class in their cluster) are left out, as in :func:`xsift.methods.validation.validate`.
        NaN if no such row. y: must be None (the labels are the table's reference-type column).
        Raises :class:`SchemaError` if the table has no reference-type column."""
        _no_y(y, "score")
        df = as_frame(table, source=source)
        self._check_fitted()
        type_col = preset_columns(self.preset_)["type"]
        if type_col not in df.columns:
            raise SchemaError(f"{source}: no column {type_col!r}; score compares predictions with the "
                              "reference types of that column")
        df, rows, pred, _ = self._rows(df, source)
        labels, _ = reference_labels(df, self.preset_)
        got = np.full(len(df), -1, dtype=np.int64)
        got[rows] = pred
        use = (labels >= 0) & (got >= 0)
        return float(np.mean(got[use] == labels[use])) if use.any() else float("nan")

    def cluster_table(self, table, *, source: str = "catalogue") -> pd.DataFrame:
        """Every complete detection of ``table`` (labelled ones included, after the schema check) with
        its ``cluster``, component probabilities ``p_cluster_<k>``, ``reference_type`` and
        ``reference_label`` (a class, ``unlabelled`` or ``other``), so a user can audit which references
        shaped each cluster."""
        self._check_fitted()
        df = as_frame(table, source=source)
        df, _ = prepare_catalog(df, self.preset_, source=source, need_types=False, all_null="count")
        preset = self.preset_
        cols = preset_columns(preset)
        feats, ok = features_of(df, preset)
        X = self.transform_.transform(feats[ok])
        ok_t = np.isfinite(X).all(axis=1)
        rows = np.flatnonzero(ok)[ok_t]
        X = X[ok_t]
        if self.errors and len(X):      # the noise-convolved mixture, as the fit and classify assign clusters
            from xsift.kernels.xd import xd_e_step
            noise = self._noise_var(df.iloc[rows], feats.iloc[rows], source=source)
            log_resp = np.asarray(xd_e_step(_gmm_in(self.gmm_, self._dtype()), X, noise)[0], np.float64)
        else:
            log_resp = cluster_log_resp(self.gmm_, X, self._dtype())
        labels, _ = reference_labels(df, preset)
        out = {"name": df[cols["name"]].to_numpy()[rows], "obsid": df[cols["obsid"]].to_numpy()[rows],
               **{c: df[c].to_numpy()[rows] for c in _interval(df, cols)},
               "ra": df[cols["ra"]].to_numpy(dtype=np.float64)[rows],
               "dec": df[cols["dec"]].to_numpy(dtype=np.float64)[rows],
               "cluster": np.argmax(log_resp, axis=1) if len(X) else np.zeros(0, int)}
        resp = np.exp(log_resp)
        for k in range(resp.shape[1]):
            out[f"p_cluster_{k}"] = resp[:, k]
        out["reference_type"] = (df[cols["type"]].to_numpy()[rows] if cols["type"] in df.columns
                                 else np.full(len(rows), None))
        L = len(self.classes_)
        names = np.asarray(list(self.classes_) + ["other", "unlabelled"], dtype=object)
        lab = labels[rows]
        out["reference_label"] = names[np.where(lab >= 0, lab, np.where(lab == OTHER_TYPE, L, L + 1))]
        table = pd.DataFrame(out)
        for c in ("name", "reference_type", "reference_label"):
            table[c] = table[c].astype("str")
        return table

    # -- what the Dask layer asks of every classifier (xsift.methods.base.Classifier) -----------
    def wanted_columns(self) -> list[str]:
        """The catalogue columns classifying reads: identity, sky, reference type, raw features, the
        preset's optional interval column (read where a shard has it: part of the detection key), and
        the error columns of an ``errors`` model."""
        self._check_fitted()
        cols = input_columns(self.preset_)
        interval = self.preset_.columns.interval
        cols = cols + ([interval] if interval and interval not in cols else [])
        return cols + ([c for c in self.preset_.error_columns if c not in cols] if self.errors else [])

    @property
    def vote_aggregation(self) -> dict[str, list[str]]:
        """class aggregation of the master-class vote (aggregated class -> its classes)."""
        self._check_fitted()
        return preset_classes(self.preset_)[2]

    # -- persistence ------------------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        g = self.gmm_
        return {"gmm_weights": np.asarray(g.weights, np.float64),
                "gmm_means": np.asarray(g.means, np.float64),
                "gmm_covariances": np.asarray(g.covariances, np.float64),
                "gmm_precisions_cholesky": np.asarray(g.precisions_cholesky, np.float64),
                "class_means": self.class_means_, "class_precisions": self.class_precisions_,
                "class_mask": self.class_mask_, "class_counts": self.class_counts_,
                **({} if self.feature_medians_ is None else {"feature_medians": self.feature_medians_})}

    def _meta(self) -> dict:
        return {"preset": preset_record(self.preset_), "transform": self.transform_.to_dict(),
                "classes": list(self.classes_), "distance": self.distance, "missing": self.missing,
                # only when on: models without errors keep their stored form and hashes
                **({"errors": True} if self.errors else {}), **calibration_meta(self)}

    def save(self, directory: str | os.PathLike) -> str:
        """Write ``model.npz`` (arrays) and ``model.json`` (preset, transform, classes, distance, hash,
        fit information) into ``directory`` atomically (:func:`xsift.methods.persistence.save_model`);
        returns the content hash (:attr:`model_hash`). Raises XsiftError if it cannot be written."""
        self._check_fitted()
        from xsift.methods.persistence import save_model
        self._check_distance()
        self._check_missing()
        return save_model(directory, kind=KIND, arrays=self._arrays(), meta=self._meta(), info=self.info_)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "ClusterThenLabel":
        """The fitted estimator saved in ``directory`` by :meth:`save` (format, kind and content hash
        checked: a changed, truncated or hash-less model is a one-line XsiftError naming the file)."""
        import pathlib
        from xsift.kernels.gmm import GMMParams
        from xsift.methods.persistence import read_model
        arrays, meta, info = read_model(directory, kind=KIND)
        where = pathlib.Path(directory) / "model.json"
        missing = [a for a in MODEL_ARRAYS if a not in arrays]
        if missing:
            raise XsiftError(f"{pathlib.Path(directory) / 'model.npz'}: arrays {missing} missing; "
                             "the model is incomplete")
        try:
            preset, classes, distance = meta["preset"], list(meta["classes"]), meta["distance"]
            transform = FeatureTransform.from_dict(meta["transform"])
        except (KeyError, TypeError, ValueError) as exc:
            raise XsiftError(f"{where}: the model description lacks {exc}; the file is damaged") from None
        K, L = np.shape(arrays["class_mask"])
        if len(classes) != L or len(arrays["gmm_weights"]) != K:
            raise XsiftError(f"{where}: {len(classes)} classes and {len(arrays['gmm_weights'])} components "
                             f"do not match the arrays' ({K}, {L}); the model files were mixed")
        gmm_info = info.get("gmm", {}) if isinstance(info.get("gmm"), dict) else {}
        preset = resolve_preset(preset)
        # a model saved before the missing-feature modes classified as "drop" does, and keeps doing so
        missing = meta.get("missing", "drop")
        if missing not in MISSING:
            raise XsiftError(f"{where}: missing {missing!r} is not one of {', '.join(MISSING)}; the file is damaged")
        est = cls(preset=preset, n_components=int(K), distance=distance, seed=int(gmm_info.get("seed", 0)),
                  missing=missing, errors=bool(meta.get("errors", False)))
        gmm = GMMParams(arrays["gmm_weights"], arrays["gmm_means"], arrays["gmm_covariances"],
                        arrays["gmm_precisions_cholesky"])
        est._set_fitted(preset, transform, gmm, classes, arrays["class_means"],
                        arrays["class_precisions"], arrays["class_mask"], arrays["class_counts"], info,
                        medians=arrays.get("feature_medians"))
        est.temperature_ = temperature_from_meta(meta, where)
        return est


def _stage(progress, name: str) -> None:
    """Tell a method's ``progress`` callable (if any) that stage ``name`` begins."""
    if progress is not None:
        progress(name)


def _no_y(y, method: str) -> None:
    if y is not None:
        raise XsiftError(f"ClusterThenLabel.{method}: y must be None; the reference labels are the table's "
                         "reference-type column (the preset's [columns] label, `main_type` for CSC)")


def _detection_table(df, feats, rows, cluster, probs, pred, classes, cols, n_features_used=None) -> pd.DataFrame:
    out = {"name": df[cols["name"]].iloc[rows].astype("str").reset_index(drop=True),
           "obsid": df[cols["obsid"]].iloc[rows].reset_index(drop=True),
           **{c: df[c].iloc[rows].reset_index(drop=True) for c in _interval(df, cols)},
           "cluster": cluster.astype(np.int64),
           "ra": df[cols["ra"]].to_numpy(dtype=np.float64)[rows],
           "dec": df[cols["dec"]].to_numpy(dtype=np.float64)[rows]}
    for j, c in enumerate(classes):     # each class's column is contiguous (see classify_rows)
        out[c] = np.asarray(probs[:, j], dtype=np.float64)
    cls = pd.array(list(classes) + [None], dtype="str")          # take from L + 1 names: no per-row strings
    out["predicted_class"] = cls.take(np.where(pred < 0, len(classes), pred))
    out["no_usable_class"] = pred < 0
    if n_features_used is not None:      # missing="median"/"marginalise": the features observed
        out["n_features_used"] = np.asarray(n_features_used, np.int64)
    for f in feats.columns:
        out[f] = feats[f].to_numpy(dtype=np.float64)[rows]
    # copy=False: the columns are fresh arrays; pandas would otherwise copy them all once more
    # into one consolidated 2-d block
    return pd.DataFrame(out, copy=False)
