"""Master classes of sources from the classes of their detections (step 7 of the CSC paper's method).

For each source (``name``), over its classified detections:

* soft vote: the class with the highest mean probability (a tie goes to the first
  class in the preset's class order, as ``argmax``);
* hard vote: the most common predicted class; a tie goes to the tied class that
  appears first in (``name``, ``obsid``) order, which is what Python's
  ``collections.Counter(...).most_common(1)`` returns in the published code.

Sources whose two votes agree form the *uniquely classified* table
(``master_class``, ``agg_master_class``); the others the *ambiguous* table
(``hard_master_class``, ``soft_master_class``). Both tables carry
``detection_count``, the mean probability of each class in a column named exactly
as the class, its population standard deviation (ddof = 0) in ``<class>_std``,
``ra``, ``dec`` and the features of the source's first detection (in obsid order).
Rows are sorted by ``detection_count``, largest first (as the published tables);
sources with equal counts keep the order in which they first appear in the input. :func:`published_format` turns the numeric columns into the
paper's ``mean±std`` text columns.

Detections flagged ``no_usable_class`` (their cluster had no class with enough
references) have no probabilities; they take no part in the votes and are counted
in the summary (a source with only such detections gets no master class).

Everything is vectorised: source codes from one ``pd.factorize``, one stable sort
by (source, obsid); a source with one detection takes its detection's values as they are, the
others weighted ``np.bincount`` for the per-source sums and the vote counts. The function works on
any set of whole sources, so a distributed run can call it per partition after
grouping rows by ``name``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from xsift.errors import SchemaError
from xsift.methods.metrics import cohen_kappa

IDENTITY_COLUMNS = ("name", "obsid", "cluster", "ra", "dec", "predicted_class", "no_usable_class")


def aggregated_class_of(classes: list[str], aggregation: dict[str, list[str]]) -> dict[str, str]:
    """class -> aggregated class (a class not named in the aggregation keeps its own name)."""
    out = {c: c for c in classes}
    for agg, members in aggregation.items():
        for m in members:
            out[m] = agg
    return out


def source_codes(names) -> tuple[np.ndarray, int]:
    """(code of each row's source, number of sources); codes follow the sources' first appearance
    (rows with a null name form one source, as they do in the schema check's duplicate keys)."""
    codes, uniques = pd.factorize(pd.Series(names), sort=False, use_na_sentinel=False)
    return codes.astype(np.int64), len(uniques)


def _take(series: pd.Series, at: np.ndarray):
    """The values of ``series`` at positions ``at``: a NumPy take for NumPy-typed columns (pandas'
    extension-array take is several times slower), the column's own take otherwise (keeps its dtype)."""
    if isinstance(series.dtype, np.dtype):
        return series.to_numpy().take(at)
    return series.array.take(at)


def sort_detections(codes: np.ndarray, obsids) -> np.ndarray:
    """A stable order grouping each source's detections together (sources by code),
    by obsid within a source. Integer obsids use one combined 64-bit key; others a lexsort."""
    obs = np.asarray(obsids)
    if len(obs) and np.issubdtype(obs.dtype, np.integer):
        lo, hi = int(obs.min()), int(obs.max())
        span = hi - lo + 1
        if span < (1 << 62) // max(int(codes.max()) + 1, 1):
            return np.argsort(codes * span + (obs.astype(np.int64) - lo), kind="stable")
    return np.lexsort((obs, codes))


def hard_vote(source_sorted: np.ndarray, predicted_sorted: np.ndarray, n_sources: int,
              n_classes: int) -> np.ndarray:
    """Most common class per source; ties -> the class appearing first in row order.

    source_sorted (n,) int source codes, rows grouped by source in (name, obsid) order;
    predicted_sorted (n,) int in [0, n_classes). Returns (n_sources,) int.
    """
    n = len(source_sorted)
    key = source_sorted.astype(np.int64) * n_classes + predicted_sorted
    count = np.bincount(key, minlength=n_sources * n_classes).reshape(n_sources, n_classes)
    best = np.argmax(count, axis=1)
    # only sources whose top count is shared by several classes need the first-occurrence rule
    tied = (count == count[np.arange(n_sources), best][:, None]).sum(axis=1) > 1
    if tied.any():
        rows = np.flatnonzero(tied[source_sorted])
        first = np.full(n_sources * n_classes, n, dtype=np.int64)
        np.minimum.at(first, key[rows], rows)              # first occurrence of each (source, class)
        t = np.flatnonzero(tied)
        c = count[t].astype(np.int64)
        score = c * (n + 1) - first.reshape(n_sources, n_classes)[t]
        best[t] = np.argmax(score, axis=1)
    return best


def master_classes(detection_level: pd.DataFrame, classes: list[str], aggregation: dict[str, list[str]],
                   *, feature_columns: list[str] | None = None, name_codes=None, predicted=None
                   ) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Uniquely classified and ambiguous tables, and a summary (counts, Cohen's kappa).

    ``detection_level`` needs ``name``, ``obsid``, ``ra``, ``dec``, one probability column
    per class (named as the class) and ``predicted_class``; ``no_usable_class`` is optional
    (rows with any null probability are treated as flagged). ``feature_columns``: columns
    reported from the first detection (default: every column that is not an identity or
    probability column).

    Two optional arrays, one value per row of ``detection_level``, spare work a caller has already
    done (the results are the same without them): ``name_codes``, integers equal exactly where the
    rows' ``name`` is equal (e.g. the codes the schema check computed; they are renumbered here by
    first appearance, so any integers do), and ``predicted``, each row's class index — the argmax of
    its probabilities (first on a tie), -1 where it has none — as ``xsift.kernels.mahalanobis.classify_rows``
    returns it.
    """
    df = detection_level
    missing = [c for c in ("name", "obsid", "ra", "dec", *classes) if c not in df.columns]
    if missing:
        raise SchemaError(f"detection-level table: missing column(s) {missing}; expected the output "
                          "of ClusterThenLabel.classify (its detections table)")
    if feature_columns is None:
        skip = set(IDENTITY_COLUMNS) | set(classes)
        feature_columns = [c for c in df.columns if c not in skip]
    L = len(classes)
    columns = [df[c].to_numpy(dtype=np.float64, na_value=np.nan) for c in classes]
    usable = np.ones(len(df), dtype=bool)
    for p in columns:
        usable &= np.isfinite(p)
    if "no_usable_class" in df.columns:
        usable &= ~df["no_usable_class"].to_numpy(dtype=bool)
    for what, given in (("name_codes", name_codes), ("predicted", predicted)):
        if given is not None and np.shape(given) != (len(df),):
            raise ValueError(f"{what} must hold one value per row of the detection-level table "
                             f"({len(df)}), got shape {np.shape(given)}")
    if not len(df):
        codes_all, n_sources_all = np.zeros(0, np.int64), 0
    elif name_codes is not None:
        # the same renumbering by first appearance; integers factorise ~8x faster than the names
        codes_all, n_sources_all = source_codes(np.asarray(name_codes, dtype=np.int64))
    else:
        codes_all, n_sources_all = source_codes(df["name"])
    rows = np.flatnonzero(usable)
    rows = rows[sort_detections(codes_all[rows], df["obsid"].to_numpy()[rows])]
    src = codes_all[rows]
    n = len(rows)
    if n:
        starts = np.flatnonzero(np.r_[True, src[1:] != src[:-1]])
    else:
        starts = np.zeros(0, dtype=np.int64)
    S = len(starts)
    counts = np.diff(np.r_[starts, n]).astype(np.int64)
    if S:
        # Results are kept class-major (L, S): the tables take their columns from these rows.
        if predicted is None:
            # the predicted class of each voted detection: the argmax of its probabilities
            probs_t = np.empty((L, n))
            for j, p in enumerate(columns):
                np.take(p, rows, out=probs_t[j])
            pred = np.argmax(probs_t, axis=0)
            del probs_t
        else:
            pred = np.asarray(predicted, dtype=np.int64)[rows]
            if pred.min() < 0 or pred.max() >= L:
                raise ValueError(f"predicted: a detection with probabilities has class index outside [0, {L})")
        mean = np.empty((L, S))
        std = np.zeros((L, S))
        hard = np.empty(S, dtype=np.int64)
        soft = np.empty(S, dtype=np.int64)
        # a source with one detection: its probabilities are the means (exactly, as np.mean of one
        # value), its std 0, both its votes its detection's class (the argmax of those probabilities)
        multi = counts > 1
        one = np.flatnonzero(~multi)
        rows_one = rows[starts[one]]
        for j, p in enumerate(columns):
            mean[j, one] = p.take(rows_one)
        hard[one] = soft[one] = pred[starts[one]]
        many = np.flatnonzero(multi)
        if many.size:
            # the others: mean and population std (two passes, as np.mean / np.std) by weighted
            # bincounts along their source-sorted rows, and the hard vote over those rows
            in_many = np.repeat(multi, counts)
            rows_many = rows[in_many]
            cm = counts[many]
            code = np.repeat(np.arange(many.size), cm)
            for j, p in enumerate(columns):
                pm = p.take(rows_many)
                m = np.bincount(code, weights=pm, minlength=many.size) / cm
                dev = pm - m[code]
                dev *= dev
                mean[j, many] = m
                std[j, many] = np.sqrt(np.bincount(code, weights=dev, minlength=many.size) / cm)
            hard[many] = hard_vote(code, pred[in_many], many.size, L)
            soft[many] = np.argmax(mean[:, many], axis=0)
    else:
        mean = std = np.zeros((L, 0))
        hard = soft = np.zeros(0, dtype=np.int64)
    first = rows[starts]
    agree = hard == soft
    # the tables list sources by detection count, largest first, then in order of first appearance
    order = np.argsort(-counts, kind="stable")
    agg_of = aggregated_class_of(classes, aggregation)
    cls = pd.array(list(classes), dtype="str")
    agg_cls = pd.array([agg_of[c] for c in classes], dtype="str")
    name_col = df["name"].array

    def table(idx, label_columns):
        """The sources ``idx`` (in table order), with the given class-label columns after name;
        every column is one gather from the per-source arrays or the detections' columns."""
        at = first[idx]
        cols = {"name": name_col.take(at).astype("str"), **label_columns, "detection_count": counts[idx]}
        cols.update({c: mean[j].take(idx) for j, c in enumerate(classes)})
        cols.update({f"{c}_std": std[j].take(idx) for j, c in enumerate(classes)})
        cols.update({"ra": df["ra"].to_numpy(dtype=np.float64)[at], "dec": df["dec"].to_numpy(dtype=np.float64)[at]})
        cols.update({c: _take(df[c], at) for c in feature_columns})
        return pd.DataFrame(cols, copy=False)      # fresh columns: no consolidating copy

    # class labels as (cheap) takes from the L-entry arrays of names
    iu = order[agree[order]]
    ia = order[~agree[order]]
    uniq = table(iu, {"agg_master_class": agg_cls.take(hard[iu]), "master_class": cls.take(hard[iu])})
    amb = table(ia, {"hard_master_class": cls.take(hard[ia]), "soft_master_class": cls.take(soft[ia])})

    flagged = int((~usable).sum())
    summary = {
        "detections": int(len(df)),
        "detections_voted": int(n),
        "detections_without_usable_class": flagged,
        "sources": n_sources_all,
        "sources_voted": int(S),
        "sources_without_usable_class": n_sources_all - int(S),
        "uniquely_classified": int(agree.sum()),
        "ambiguous": int((~agree).sum()),
        "cohen_kappa_hard_soft": cohen_kappa(hard, soft, L) if S else float("nan"),
    }
    return uniq, amb, summary


def published_format(table: pd.DataFrame, classes: list[str], digits: int = 3) -> pd.DataFrame:
    """The paper's layout: each class column holds the text ``mean±std`` (Python's ``round(x, 3)``,
    e.g. ``0.056±0.152``, ``1.0±0.0``) and the ``<class>_std`` columns are dropped."""
    out = table.copy()
    for c in classes:
        means = out[c].to_numpy(dtype=np.float64)
        stds = out[f"{c}_std"].to_numpy(dtype=np.float64)
        out[c] = pd.array([f"{round(float(m), digits)}±{round(float(s), digits)}"
                           for m, s in zip(means, stds)], dtype="str")
    return out.drop(columns=[f"{c}_std" for c in classes])
