"""The CSC paper's cluster-then-label classifier (Pérez-Díaz et al., seed 000; Algorithm 1), end to end.

Steps (the numbers are the issue's):

1. features: the preset's features of the complete rows (rows missing any feature are
   dropped and counted), transformed by :class:`xsift.data.features.FeatureTransform`;
2. clusters: a full-covariance Gaussian mixture (``xsift.kernels.gmm.fit_gmm``, K = 6 by
   default); each detection gets its most probable component;
3. reference labels (:func:`reference_labels`): the preset's reference-type column
   (``main_type``) or a crossmatch with a reference table (:mod:`xsift.data.crossmatch`).
   Training classes are labels; null and uninformative types are *unlabelled*; any
   other type is neither a reference nor classified (counted);
4. per (cluster, class): mean and sample covariance (ddof = 1) of the references,
   pseudo-inverted (``np.cov`` and ``np.linalg.pinv``, as the published code); a class with fewer references in a cluster than there are
   features is excluded there (probability 0);
5.-6. every unlabelled complete detection gets the (squared, by default) Mahalanobis
   distance to each usable class of its own cluster and the log-space softmin of those
   (``xsift.kernels.mahalanobis``); a detection whose cluster has no usable class gets null
   probabilities and ``no_usable_class = True``;
7. master classes per source: :mod:`xsift.methods.voting`.

What is fitted is a :class:`ClusterLabelModel` (NumPy arrays + JSON, no pickle, with a
content hash); :func:`classify_detections` applies a saved model to new detections
without refitting anything (the paper's "classify your own source").

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

CLI: ``xsift fit``, ``xsift classify``, ``xsift run`` (registered as
``xsift.methods.cluster_then_label:fit`` etc.).
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from xsift.errors import SchemaError, XsiftError
from xsift.data.features import (FeatureTransform, complete_rows, derive_features, feature_names,
                             load_preset, raw_feature_columns)

MODEL_ARRAYS = ("gmm_weights", "gmm_means", "gmm_covariances", "gmm_precisions_cholesky",
                "class_means", "class_precisions", "class_mask", "class_counts")
MODEL_FORMAT = "xsift-clusterlabel-1"
DISTANCES = ("squared", "mahalanobis")
UNLABELLED, OTHER_TYPE = -1, -2


# ----------------------------------------------------------------------------
# the model
# ----------------------------------------------------------------------------

@dataclass
class ClusterLabelModel:
    """A fitted cluster-then-label classifier.

    gmm: ``xsift.kernels.gmm.GMMParams`` (K components); classes: the L training classes;
    class_means (K, L, d); class_precisions (K, L, d, d) (pseudo-inverse covariances);
    class_mask (K, L) bool (False: class excluded in that cluster); class_counts (K, L)
    references; distance: ``"squared"`` (the published tables) or ``"mahalanobis"`` (Eq. 6).
    Excluded (cluster, class) blocks hold zeros.
    """
    preset: dict
    transform: FeatureTransform
    gmm: object
    classes: list[str]
    class_means: np.ndarray
    class_precisions: np.ndarray
    class_mask: np.ndarray
    class_counts: np.ndarray
    distance: str = "squared"
    info: dict = field(default_factory=dict)

    @property
    def n_clusters(self) -> int:
        return int(np.shape(self.class_mask)[0])

    # -- the classifier interface shared with xsift.methods.naive_bayes.NaiveBayesKDE (used by xsift.distributed)
    def wanted_columns(self) -> list[str]:
        """The catalogue columns classifying reads: identity, sky, reference type, raw features."""
        return input_columns(self.preset)

    @property
    def vote_aggregation(self) -> dict:
        """The aggregation of classes used by the master-class vote (one output row per detection)."""
        return self.preset.get("classes", {}).get("aggregation", {})

    def classify_frame(self, df: pd.DataFrame, source: str = "catalogue") -> tuple[pd.DataFrame, dict]:
        """The detection-level table of ``df`` and its report (:func:`classify_catalog`)."""
        return classify_catalog(self, df, source=source)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"gmm_weights": np.asarray(self.gmm.weights, np.float64),
                "gmm_means": np.asarray(self.gmm.means, np.float64),
                "gmm_covariances": np.asarray(self.gmm.covariances, np.float64),
                "gmm_precisions_cholesky": np.asarray(self.gmm.precisions_cholesky, np.float64),
                "class_means": np.asarray(self.class_means, np.float64),
                "class_precisions": np.asarray(self.class_precisions, np.float64),
                "class_mask": np.asarray(self.class_mask, bool),
                "class_counts": np.asarray(self.class_counts, np.int64)}

    def _meta(self) -> dict:
        preset = {k: v for k, v in self.preset.items() if not k.startswith("_")}
        return {"format": MODEL_FORMAT, "preset": preset, "transform": self.transform.to_dict(),
                "classes": list(self.classes), "distance": self.distance}

    @property
    def hash(self) -> str:
        """sha256 over the model's content: the JSON description (canonical) and every array's
        name, dtype, shape and bytes. Independent of file timestamps and of ``info``."""
        h = hashlib.sha256(json.dumps(self._meta(), sort_keys=True).encode())
        for name, arr in sorted(self._arrays().items()):
            arr = np.ascontiguousarray(arr)
            h.update(f"{name}|{arr.dtype.str}|{arr.shape}".encode())
            h.update(arr.tobytes())
        return h.hexdigest()

    def save(self, directory: str | os.PathLike) -> str:
        """Write ``model.npz`` (arrays) and ``model.json`` (preset, transform, classes, distance,
        hash, fit information) into ``directory``; returns the content hash.

        Atomic: both files are written into a temporary directory beside ``directory``,
        then moved in; an existing model there is replaced only once the new one is complete.
        """
        directory = pathlib.Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        digest = self.hash
        tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            np.savez(tmp / "model.npz", **self._arrays())
            meta = {**self._meta(), "hash": digest, "info": self.info}
            (tmp / "model.json").write_text(json.dumps(meta, indent=2, default=_json_default) + "\n")
            directory.mkdir(exist_ok=True)
            for name in ("model.npz", "model.json"):   # arrays first: a json names a complete npz
                os.replace(tmp / name, directory / name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return digest

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "ClusterLabelModel":
        """Read a model written by :meth:`save` (checks its format and content hash)."""
        from xsift.kernels.gmm import GMMParams
        directory = pathlib.Path(directory)
        jpath, npath = directory / "model.json", directory / "model.npz"
        for p in (jpath, npath):
            if not p.exists():
                raise XsiftError(f"{directory}: not a cluster-then-label model directory ({p.name} "
                                 "missing); create one with `xsift fit CATALOG --out DIR`")
        try:
            meta = json.loads(jpath.read_text())
        except json.JSONDecodeError as exc:
            raise XsiftError(f"{jpath}: not valid JSON ({exc})") from None
        if meta.get("format") != MODEL_FORMAT:
            raise XsiftError(f"{jpath}: format {meta.get('format')!r}; expected {MODEL_FORMAT!r}")
        with np.load(npath, allow_pickle=False) as z:
            missing = [a for a in MODEL_ARRAYS if a not in z.files]
            if missing:
                raise XsiftError(f"{npath}: arrays {missing} missing; the model is incomplete")
            arrs = {a: z[a] for a in MODEL_ARRAYS}
        gmm = GMMParams(arrs["gmm_weights"], arrs["gmm_means"], arrs["gmm_covariances"],
                        arrs["gmm_precisions_cholesky"])
        model = cls(preset=meta["preset"], transform=FeatureTransform.from_dict(meta["transform"]),
                    gmm=gmm, classes=list(meta["classes"]), class_means=arrs["class_means"],
                    class_precisions=arrs["class_precisions"], class_mask=arrs["class_mask"],
                    class_counts=arrs["class_counts"], distance=meta["distance"],
                    info=meta.get("info", {}))
        if meta.get("hash") and meta["hash"] != model.hash:
            raise XsiftError(f"{directory}: content hash mismatch (model.json says {meta['hash'][:12]}, "
                             f"the files give {model.hash[:12]}); the model files were changed or mixed")
        return model


def _json_default(obj):
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, pathlib.Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


# ----------------------------------------------------------------------------
# preset helpers
# ----------------------------------------------------------------------------

def preset_columns(preset: dict) -> dict[str, str]:
    """name, obsid, ra, dec and reference-type column names from the preset's [columns]."""
    cols = preset.get("columns", {})
    out = {"name": cols.get("source", "name"), "obsid": cols.get("detection", "obsid"),
           "ra": cols.get("ra", "ra"), "dec": cols.get("dec", "dec"),
           "type": cols.get("reference_type", "main_type")}
    return out


def input_columns(preset: dict) -> list[str]:
    """Every catalogue column the preset's classifier reads: identity, sky, reference type, raw features."""
    return list(dict.fromkeys(list(preset.get("columns", {}).values()) + raw_feature_columns(preset)))


def preset_classes(preset: dict) -> tuple[list[str], list[str], dict[str, list[str]]]:
    """(training classes, uninformative types, aggregation) from the preset's [classes]."""
    try:
        c = preset["classes"]
        return list(c["training"]), list(c.get("uninformative", [])), dict(c.get("aggregation", {}))
    except KeyError:
        raise XsiftError(f"{preset.get('_path', 'preset')}: [classes] needs a 'training' list") from None


# ----------------------------------------------------------------------------
# steps 1 and 3: checked features and reference labels
# ----------------------------------------------------------------------------

def prepare_catalog(df: pd.DataFrame, preset: dict, *, source: str = "catalogue",
                    need_types: bool = True, all_null: str = "error") -> tuple[pd.DataFrame, dict]:
    """Schema-check ``df`` for the preset (identity, sky, feature and, if ``need_types``, type
    columns); returns the cleaned frame and the check report as a dict. ``all_null="count"``
    (applying a saved model) reports a feature column null in every row instead of refusing."""
    clean, report = _prepare(df, preset, source=source, need_types=need_types, all_null=all_null)
    return clean, report.as_dict()


def _prepare(df, preset, *, source, need_types=True, all_null="error"):
    """:func:`prepare_catalog` with the check's report as a ``CheckReport`` (which also holds the codes
    of the source names, ``key_codes``)."""
    from xsift.data.schema import check_catalog
    cols = preset_columns(preset)
    raw = raw_feature_columns(preset)
    required = [cols["name"], cols["obsid"], cols["ra"], cols["dec"]] + raw
    if need_types:
        required.append(cols["type"])
    return check_catalog(df, required=required, numeric=[cols["ra"], cols["dec"]],
                         features=raw, key=[cols["name"], cols["obsid"]], source=source,
                         all_null=all_null)


def reference_labels(df: pd.DataFrame, preset: dict) -> tuple[np.ndarray, dict]:
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
    lookup = {c: i for i, c in enumerate(classes)}
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


def features_of(df: pd.DataFrame, preset: dict) -> tuple[pd.DataFrame, np.ndarray]:
    """(untransformed features of every row, complete-row mask)."""
    feats = derive_features(df, preset)
    return feats, complete_rows(feats)


# ----------------------------------------------------------------------------
# steps 2 and 4: fitting
# ----------------------------------------------------------------------------

def _gmm_in(gmm, dtype):
    """The fitted mixture's parameters as ``xsift.kernels.gmm.GMMParams`` in ``dtype`` (default float64):
    the kernels apply a mixture in the precision of its means."""
    from xsift.kernels.gmm import GMMParams
    dt = np.dtype(dtype or np.float64)
    return GMMParams(*(np.asarray(a, dt) for a in (gmm.weights, gmm.means, gmm.covariances,
                                                    gmm.precisions_cholesky)))


def cluster_log_resp(gmm, X: np.ndarray, dtype=None) -> np.ndarray:
    """(n, K) log responsibilities of rows X under the mixture (``xsift.kernels.gmm.e_step``)."""
    from xsift.kernels.gmm import e_step
    if len(X) == 0:
        return np.zeros((0, len(np.asarray(gmm.weights))))
    return e_step(_gmm_in(gmm, dtype), X)[0].astype(np.float64, copy=False)


# NumPy's default relative cutoff of np.linalg.pinv (the published code's call)
PINV_RCOND = 1e-15


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
                        n_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Step 4 for references ``labels >= 0``: (means (K, L, d), precisions (K, L, d, d),
    mask (K, L), counts (K, L)); a class with fewer references in a cluster than features is
    excluded (mask False, zero blocks).

    Computed with the published code's own calls, ``np.cov(ddof=1)`` and ``np.linalg.pinv``
    (rcond 1e-15), on each group's references in catalogue order, so that the statistics are
    bit-for-bit those of the published method: CSC-like classes are often ill-conditioned
    (hardness ratios nearly collinear, condition numbers 1e7 and beyond), where any other
    summation order would move the probabilities by ~1e-8. This runs once per fit over at
    most K x L groups (one sort, then slices); it is not on the classify path.
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
        prec[g] = np.linalg.pinv(np.cov(ref, rowvar=False, ddof=1), rcond=PINV_RCOND)
    return (means.reshape(n_clusters, n_classes, d), prec.reshape(n_clusters, n_classes, d, d),
            mask.reshape(n_clusters, n_classes), counts.reshape(n_clusters, n_classes))


def fit_model(df: pd.DataFrame, preset: dict, *, n_components: int = 6, seed: int = 0, gmm_params=None,
              distance: str = "squared", dtype=None, source: str = "catalogue", check: bool = True
              ) -> tuple[ClusterLabelModel, dict]:
    """Fit the transform, the GMM (unless ``gmm_params`` is given: a mixture fitted elsewhere,
    e.g. by the Dask full-data EM) and the per-(cluster, class) statistics on ``df``.

    Returns (model, report): the report holds row counts per step, reference-label counts,
    cluster sizes, references per (cluster, class), excluded pairs, GMM convergence and timings.
    Raises :class:`XsiftError` when no complete detection carries a training class.
    """
    if distance not in DISTANCES:
        raise XsiftError(f"distance {distance!r}: expected one of {', '.join(DISTANCES)}")
    timings = {}
    t0 = time.perf_counter()
    report: dict = {"rows_in": int(len(df))}
    if check:
        df, report["schema"] = prepare_catalog(df, preset, source=source)
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
    X = transform.transform(feats[ok])
    timings["features_s"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    if gmm_params is None:
        from xsift.kernels.gmm import fit_gmm
        if ok.sum() < n_components:
            raise XsiftError(f"{source}: {int(ok.sum())} complete detections, fewer than the "
                             f"{n_components} clusters asked for")
        res = fit_gmm(X, n_components, seed=seed, dtype=dtype)
        from xsift.kernels.gmm import GMMParams
        gmm = GMMParams(*(np.asarray(a, np.float64) for a in (res.weights, res.means, res.covariances,
                                                               res.precisions_cholesky)))
        report["gmm"] = {"fitted": True, "n_components": n_components, "seed": seed,
                         "lower_bound": float(res.lower_bound), "n_iter": int(res.n_iter),
                         "converged": bool(res.converged)}
    else:
        from xsift.kernels.gmm import GMMParams
        gmm = GMMParams(*(np.asarray(getattr(gmm_params, a), np.float64) for a in
                          ("weights", "means", "covariances", "precisions_cholesky")))
        if gmm.means.shape[1] != d:
            raise XsiftError(f"gmm_params have {gmm.means.shape[1]} features; the preset has {d}")
        report["gmm"] = {"fitted": False, "n_components": int(len(gmm.weights))}
    K = int(len(gmm.weights))
    cluster = np.argmax(cluster_log_resp(gmm, X, dtype), axis=1)
    timings["gmm_s"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    means, prec, mask, counts = class_statistics_of(X, cluster, lab_ok, K, len(classes))
    timings["class_statistics_s"] = time.perf_counter() - t2
    model = ClusterLabelModel(preset={k: v for k, v in preset.items() if not k.startswith("_")},
                              transform=transform, gmm=gmm, classes=list(classes), class_means=means,
                              class_precisions=prec, class_mask=mask, class_counts=counts,
                              distance=distance)
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
        "timings": {k: round(v, 4) for k, v in timings.items()},
    })
    model.info = {k: report[k] for k in ("complete", "references_complete", "cluster_sizes", "gmm")}
    return model, report


# ----------------------------------------------------------------------------
# steps 5-6: classifying
# ----------------------------------------------------------------------------

def classify_catalog(model: ClusterLabelModel, df: pd.DataFrame, *, dtype=None, chunk_size=None,
                     check: bool = True, source: str = "catalogue") -> tuple[pd.DataFrame, dict]:
    """Classify the unlabelled complete detections of ``df`` with a fitted model (nothing refitted).

    Returns (detection_level, report). ``detection_level`` has one row per classified
    detection: ``name``, ``obsid``, ``cluster``, ``ra``, ``dec``, one probability column
    per class named as the class, ``predicted_class`` (null where no class is usable),
    ``no_usable_class`` and the untransformed feature columns. A catalogue without the
    reference-type column is classified whole (every detection unlabelled).
    """
    return _classify(model, df, dtype=dtype, chunk_size=chunk_size, check=check, source=source)[:2]


def _classify(model, df, *, dtype=None, chunk_size=None, check=True, source="catalogue", name_codes=None):
    """:func:`classify_catalog`'s work -> (detection_level, report, codes of the names of its rows (from
    the schema check, or from ``name_codes`` given for the rows of ``df``; None if neither),
    predicted class index of its rows (n,) int)."""
    from xsift.kernels.mahalanobis import DEFAULT_CHUNK_SIZE, classify_rows
    preset = model.preset
    cols = preset_columns(preset)
    t0 = time.perf_counter()
    report: dict = {"rows_in": int(len(df))}
    if check:
        df, checked = _prepare(df, preset, source=source, need_types=False, all_null="count")
        report["schema"] = checked.as_dict()
        name_codes = checked.key_codes
    t_check = time.perf_counter()
    feats, ok = features_of(df, preset)
    labels, label_counts = reference_labels(df, preset)
    X_all = model.transform.transform(feats)          # every row (NaN stays NaN): no row selection first
    ok_t = ok & np.isfinite(X_all).all(axis=1)        # values the fitted log cannot take -> missing
    target = np.flatnonzero(ok_t & (labels == UNLABELLED))
    X = X_all[target]
    t1 = time.perf_counter()
    cluster = cluster_assignment(model.gmm, X, dtype, chunk_size)
    t2 = time.perf_counter()
    probs, pred = classify_rows(X, cluster, model.class_means, model.class_precisions, model.class_mask,
                                squared=(model.distance == "squared"),
                                chunk_size=chunk_size or DEFAULT_CHUNK_SIZE, dtype=dtype, out_dtype=np.float64)
    t3 = time.perf_counter()
    out = _detection_table(df, feats, target, cluster, probs, pred, model.classes, cols)
    t4 = time.perf_counter()
    report.update({
        "complete": int(ok.sum()),
        "dropped_incomplete": int((~ok_t).sum()),
        "reference_labels": label_counts,
        "labelled_not_classified": int((labels[ok] >= 0).sum()),
        "other_type_not_classified": int((labels[ok] == OTHER_TYPE).sum()),
        "classified": int(len(target)),
        "no_usable_class": int((pred < 0).sum()),
        "model_hash": model.hash,
        "distance": model.distance,
        "timings": {"check_s": round(t_check - t0, 4), "features_s": round(t1 - t_check, 4), "clusters_s": round(t2 - t1, 4),
                    "distances_softmin_s": round(t3 - t2, 4), "table_s": round(t4 - t3, 4)},
    })
    codes = None if name_codes is None else np.asarray(name_codes)[target]
    return out, report, codes, pred


def classify_and_vote(model: ClusterLabelModel, df: pd.DataFrame, *, dtype=None, chunk_size=None,
                      check: bool = True, source: str = "catalogue", name_codes=None):
    """:func:`classify_catalog` followed by the master-class vote (:func:`xsift.methods.voting.master_classes`),
    the whole classify stage of an in-memory run. The results are those of the two calls one after
    the other; the vote only reuses what the classification already has (the schema check's codes of
    the source names, each detection's predicted class index) instead of computing it again.
    ``name_codes``: with ``check=False``, codes of the names of ``df``'s rows if the caller has them.

    Returns (detection_level, uniquely_classified, ambiguous, report, vote summary).
    """
    from xsift.methods.voting import master_classes
    det, report, codes, pred = _classify(model, df, dtype=dtype, chunk_size=chunk_size, check=check,
                                         source=source, name_codes=name_codes)
    t0 = time.perf_counter()
    _, _, agg = preset_classes(model.preset)
    uniq, amb, summary = master_classes(det, model.classes, agg, feature_columns=feature_names(model.preset),
                                        name_codes=codes, predicted=pred)
    summary["timings"] = {"voting_s": round(time.perf_counter() - t0, 4)}
    return det, uniq, amb, report, summary


def _detection_table(df, feats, rows, cluster, probs, pred, classes, cols) -> pd.DataFrame:
    out = {"name": df[cols["name"]].iloc[rows].astype("str").reset_index(drop=True),
           "obsid": df[cols["obsid"]].iloc[rows].reset_index(drop=True),
           "cluster": cluster.astype(np.int64),
           "ra": df[cols["ra"]].to_numpy(dtype=np.float64)[rows],
           "dec": df[cols["dec"]].to_numpy(dtype=np.float64)[rows]}
    for j, c in enumerate(classes):     # each class's column is contiguous (see classify_rows)
        out[c] = np.asarray(probs[:, j], dtype=np.float64)
    cls = pd.array(list(classes) + [None], dtype="str")          # take from L + 1 names: no per-row strings
    out["predicted_class"] = cls.take(np.where(pred < 0, len(classes), pred))
    out["no_usable_class"] = pred < 0
    for f in feats.columns:
        out[f] = feats[f].to_numpy(dtype=np.float64)[rows]
    # copy=False: the columns are fresh arrays; pandas would otherwise copy them all once more
    # into one consolidated 2-d block
    return pd.DataFrame(out, copy=False)


def classify_detections(model: ClusterLabelModel, df: pd.DataFrame, **kwargs) -> pd.DataFrame:
    """The detection-level table of :func:`classify_catalog` (without its report)."""
    return classify_catalog(model, df, **kwargs)[0]


def cluster_table(model: ClusterLabelModel, df: pd.DataFrame, *, dtype=None) -> pd.DataFrame:
    """Every complete detection of ``df`` (labelled ones included) with its cluster, component
    probabilities ``p_cluster_<k>``, reference type and reference label (a class, ``unlabelled``
    or ``other``), so a user can audit which references shaped each cluster."""
    cols = preset_columns(model.preset)
    feats, ok = features_of(df, model.preset)
    X = model.transform.transform(feats[ok])
    ok_t = np.isfinite(X).all(axis=1)
    rows = np.flatnonzero(ok)[ok_t]
    X = X[ok_t]
    log_resp = cluster_log_resp(model.gmm, X, dtype)
    labels, _ = reference_labels(df, model.preset)
    out = {"name": df[cols["name"]].to_numpy()[rows], "obsid": df[cols["obsid"]].to_numpy()[rows],
           "ra": df[cols["ra"]].to_numpy(dtype=np.float64)[rows],
           "dec": df[cols["dec"]].to_numpy(dtype=np.float64)[rows],
           "cluster": np.argmax(log_resp, axis=1) if len(X) else np.zeros(0, int)}
    resp = np.exp(log_resp)
    for k in range(resp.shape[1]):
        out[f"p_cluster_{k}"] = resp[:, k]
    out["reference_type"] = (df[cols["type"]].to_numpy()[rows] if cols["type"] in df.columns
                             else np.full(len(rows), None))
    names = np.asarray(list(model.classes) + ["other", "unlabelled"], dtype=object)
    lab = labels[rows]
    out["reference_label"] = names[np.where(lab >= 0, lab, np.where(lab == OTHER_TYPE, len(model.classes),
                                                                     len(model.classes) + 1))]
    table = pd.DataFrame(out)
    for c in ("name", "reference_type", "reference_label"):
        table[c] = table[c].astype("str")
    return table


# ----------------------------------------------------------------------------
# the whole run
# ----------------------------------------------------------------------------

def run_pipeline(df: pd.DataFrame, preset: dict, *, n_components: int = 6, seed: int = 0,
                 distance: str = "squared", dtype=None, gmm_params=None, source: str = "catalogue"):
    """Fit and classify one catalogue, as the paper did. Returns (model, tables, report) with
    tables ``clusters``, ``detection_level``, ``uniquely_classified``, ``ambiguous``."""
    df, checked = _prepare(df, preset, source=source)
    schema = checked.as_dict()
    model, fit_report = fit_model(df, preset, n_components=n_components, seed=seed, gmm_params=gmm_params,
                                  distance=distance, dtype=dtype, source=source, check=False)
    det, uniq, amb, cls_report, summary = classify_and_vote(model, df, dtype=dtype, check=False,
                                                            name_codes=checked.key_codes)
    tables = {"clusters": cluster_table(model, df, dtype=dtype), "detection_level": det,
              "uniquely_classified": uniq, "ambiguous": amb}
    return model, tables, {"schema": schema, "fit": fit_report, "classify": cls_report, "voting": summary}


# ----------------------------------------------------------------------------
# CLI: xsift fit / classify / run
# ----------------------------------------------------------------------------

fit_help = "fit the cluster-then-label model (feature transform, GMM, per-cluster class statistics)"
classify_help = "classify the unlabelled detections of a catalogue with a saved model; master classes per source"
classify_common = ("device", "precision")   # the preset is the saved model's
run_help = "fit the cluster-then-label model on a catalogue and classify it (the paper's whole run)"

FORMAT_SUFFIX = {"parquet": ".parquet", "csv": ".csv", "fits": ".fits"}


def _add_input_arguments(parser) -> None:
    parser.add_argument("catalog", metavar="CATALOG",
                        help="catalogue: Parquet file or directory of shards, CSV, FITS or VOTable")
    parser.add_argument("--reference", metavar="REF", default=None,
                        help="take reference types from a crossmatch with this table (ra, dec, type column) "
                             "instead of the catalogue's type column")
    parser.add_argument("--radius", default="1arcsec",
                        help="crossmatch radius for --reference (e.g. 1arcsec, 0.5arcsec, 2e-4deg)")
    parser.add_argument("--type-column", default="main_type",
                        help="the reference table's type column for --reference")


def _add_fit_options(parser) -> None:
    parser.add_argument("--k", type=int, default=6, help="number of GMM clusters (see `xsift bic`)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the GMM initialisation")
    parser.add_argument("--distance", choices=DISTANCES, default="squared",
                        help="squared Mahalanobis distance (the published tables) or its square root (Eq. 6)")


def _add_output_options(parser) -> None:
    parser.add_argument("--format", choices=sorted(FORMAT_SUFFIX), default="parquet",
                        help="format of the output tables")
    parser.add_argument("--published-format", action="store_true",
                        help="write the master-class tables' probabilities as the paper's 'mean±std' text columns")
    parser.add_argument("--no-figures", action="store_true", help="skip the figures")


def add_fit_arguments(parser) -> None:
    _add_input_arguments(parser)
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="model directory to write (model.npz, model.json, clusters table, manifest)")
    _add_fit_options(parser)
    parser.add_argument("--format", choices=sorted(FORMAT_SUFFIX), default="parquet",
                        help="format of the clusters table")


def add_classify_arguments(parser) -> None:
    parser.add_argument("catalog", metavar="CATALOG",
                        help="detections to classify: Parquet file or directory, CSV, FITS or VOTable "
                             "(a type column is optional; labelled detections are not classified)")
    parser.add_argument("--model", required=True, metavar="DIR", help="a model directory written by `xsift fit`")
    parser.add_argument("--out", required=True, metavar="DIR", help="directory for the tables and manifest")
    _add_output_options(parser)


def add_run_arguments(parser) -> None:
    _add_input_arguments(parser)
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="directory for the model, tables, figures and manifest")
    _add_fit_options(parser)
    _add_output_options(parser)


def _load_inputs(args, preset: dict) -> tuple[pd.DataFrame, dict]:
    from xsift.data.io import read_catalog
    df = read_catalog(args.catalog)
    inputs = {"catalog": str(args.catalog)}
    if getattr(args, "reference", None):
        from xsift.data.crossmatch import crossmatch, parse_radius
        from xsift.data.io import read_catalog as read_ref
        ref = read_ref(args.reference)
        cols = preset_columns(preset)
        df, xm = crossmatch(df, ref, radius_arcsec=parse_radius(args.radius), type_column=args.type_column,
                            out_column=cols["type"], ra=cols["ra"], dec=cols["dec"], reference_name=args.reference)
        inputs.update({"reference": str(args.reference), "crossmatch": xm})
    return df, inputs


def _dtype_of(args):
    return np.float32 if getattr(args, "precision", "float64") == "float32" else np.float64


def _write_tables(tables: dict, out: pathlib.Path, fmt: str, classes, published: bool) -> dict:
    from xsift.data.io import write_table
    from xsift.methods.voting import published_format
    written = {}
    for name, table in tables.items():
        if published and name in ("uniquely_classified", "ambiguous"):
            table = published_format(table, classes)
        written[name] = str(write_table(table, out / f"{name}{FORMAT_SUFFIX[fmt]}"))
    return written


def _figures(tables: dict, model: ClusterLabelModel, out: pathlib.Path) -> dict:
    from xsift.report import figures
    made = {}
    if "clusters" in tables and len(tables["clusters"]):
        clusters = tables["clusters"]
        feats_cols = [c for c in ("hard_hm", "hard_ms", "var_prob_h")]
        if "detection_level" in tables and all(c in tables["detection_level"].columns for c in feats_cols):
            made["hardness_by_cluster"] = str(figures.hardness_by_cluster(
                tables["detection_level"], out / "hardness_by_cluster.png", n_clusters=model.n_clusters))
        made["sky_by_cluster"] = str(figures.sky_map(clusters["ra"], clusters["dec"], clusters["cluster"],
                                                     out / "sky_by_cluster.png", title="Clusters"))
    if "uniquely_classified" in tables and len(tables["uniquely_classified"]):
        u = tables["uniquely_classified"]
        made["sky_by_class"] = str(figures.sky_map(u["ra"], u["dec"], u["agg_master_class"],
                                                   out / "sky_by_class.png",
                                                   title="Uniquely classified sources (aggregated class)"))
    return made


def run_fit(args) -> int:
    from xsift.report import write_manifest
    t0 = time.perf_counter()
    preset = load_preset(args.config or "csc")
    df, inputs = _load_inputs(args, preset)
    model, report = fit_model(df, preset, n_components=args.k, seed=args.seed, distance=args.distance,
                              dtype=_dtype_of(args), source=str(args.catalog))
    out = pathlib.Path(args.out)
    digest = model.save(out)
    from xsift.data.io import write_table
    clusters = cluster_table(model, prepare_catalog(df, preset, source=str(args.catalog))[0])
    path = write_table(clusters, out / f"clusters{FORMAT_SUFFIX[args.format]}")
    write_manifest(out, command="fit", inputs=inputs, config={"k": args.k, "seed": args.seed,
                   "distance": args.distance, "precision": args.precision, "preset": preset.get("_path")},
                   model_hash=digest, fit=report, outputs={"model": str(out), "clusters": str(path)},
                   elapsed_s=round(time.perf_counter() - t0, 3))
    print(f"model {digest[:12]} -> {out} ({report['complete']:,} complete detections, "
          f"{report['references_complete']:,} references, {len(report['excluded'])} excluded "
          f"(cluster, class) pairs)")
    return 0


def _check_output_options(args) -> None:
    if args.published_format and args.format == "fits":
        raise XsiftError("--published-format writes 'mean±std' text, which FITS (ASCII-only strings) "
                         "cannot hold; use --format csv or parquet with it, or drop --published-format")


def run_classify(args) -> int:
    from xsift.report import write_manifest
    _check_output_options(args)
    t0 = time.perf_counter()
    model = ClusterLabelModel.load(args.model)
    from xsift.data.io import read_catalog
    df = read_catalog(args.catalog)
    det, uniq, amb, report, summary = classify_and_vote(model, df, dtype=_dtype_of(args), source=str(args.catalog))
    out = pathlib.Path(args.out)
    tables = {"detection_level": det, "uniquely_classified": uniq, "ambiguous": amb}
    written = _write_tables(tables, out, args.format, model.classes, args.published_format)
    if not args.no_figures:
        written.update(_figures(tables, model, out))
    write_manifest(out, command="classify", inputs={"catalog": str(args.catalog), "model": str(args.model)},
                   config={"precision": args.precision, "format": args.format,
                           "published_format": args.published_format},
                   model_hash=model.hash, classify=report, voting=summary, outputs=written,
                   elapsed_s=round(time.perf_counter() - t0, 3))
    print(f"{report['classified']:,} detections classified ({report['no_usable_class']:,} without a usable "
          f"class); {summary['uniquely_classified']:,} sources uniquely classified, {summary['ambiguous']:,} "
          f"ambiguous (kappa {summary['cohen_kappa_hard_soft']:.3f}) -> {out}")
    not_classified = {
        "with a missing feature (dropped, as in the paper)": report.get("dropped_incomplete", 0),
        "labelled with a training class (references, not classified)": report.get("labelled_not_classified", 0),
        "of another SIMBAD type (neither reference nor classified)": report.get("other_type_not_classified", 0)}
    for what, count in not_classified.items():
        if count:
            print(f"  {count:,} detection(s) {what}")
    empty = report.get("schema", {}).get("all_null_features", [])
    if empty:
        print(f"  {args.catalog}: feature column(s) {', '.join(empty)} are null in every row, so no row of it "
              "is complete; the model needs all of " + ", ".join(raw_feature_columns(model.preset))
              + " (the naive-Bayes branch, `xsift nb classify`, classifies rows with missing properties)")
    return 0


def run_run(args) -> int:
    from xsift.report import write_manifest
    _check_output_options(args)
    t0 = time.perf_counter()
    preset = load_preset(args.config or "csc")
    df, inputs = _load_inputs(args, preset)
    model, tables, report = run_pipeline(df, preset, n_components=args.k, seed=args.seed,
                                         distance=args.distance, dtype=_dtype_of(args), source=str(args.catalog))
    out = pathlib.Path(args.out)
    digest = model.save(out / "model")
    written = _write_tables(tables, out, args.format, model.classes, args.published_format)
    if not args.no_figures:
        written.update(_figures(tables, model, out))
    write_manifest(out, command="run", inputs=inputs,
                   config={"k": args.k, "seed": args.seed, "distance": args.distance,
                           "precision": args.precision, "preset": preset.get("_path"), "format": args.format,
                           "published_format": args.published_format},
                   model_hash=digest, **report, outputs=written, elapsed_s=round(time.perf_counter() - t0, 3))
    v = report["voting"]
    print(f"{report['classify']['classified']:,} detections classified; {v['uniquely_classified']:,} sources "
          f"uniquely classified, {v['ambiguous']:,} ambiguous (kappa {v['cohen_kappa_hard_soft']:.3f}) -> {out}")
    return 0
