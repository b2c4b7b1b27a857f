"""The files a run leaves: a cluster-then-label run's tables in the chosen format and its figures
(``xsift run``, ``xsift classify``, ``xsift demo``), and a validation's tables and figures
(``xsift validate``).

The methods compute (:class:`xsift.ClusterThenLabel`, :func:`xsift.methods.validation.validate`);
this module only writes what they return (:mod:`xsift.data.io`, :mod:`xsift.report.figures`).

Output tables of a run (file stems): ``clusters`` (every complete detection with its cluster and
component probabilities: :meth:`xsift.ClusterThenLabel.cluster_table`), ``detection_level``,
``uniquely_classified``, ``ambiguous`` (:meth:`xsift.ClusterThenLabel.classify`).
"""
from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import shutil
from typing import Iterator

import numpy as np
import pandas as pd

__all__ = ["FORMAT_SUFFIX", "table_path", "write_tables", "run_figures", "confusion_frame", "write_validation",
           "all_or_nothing", "DISK_FULL_ERRNOS"]

# the errors of a write that found no room: disk full, quota exceeded, file-size limit (RLIMIT_FSIZE)
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


_PREVIOUS = ".xsift-previous-"


def _files_under(out: pathlib.Path) -> dict[str, tuple[int, int]]:
    """relative path -> (inode, mtime in ns) of every file under ``out`` (nothing if it is absent), but
    those of a kept previous version (:func:`all_or_nothing`)."""
    found = {}
    if out.is_dir():
        for root, dirs, files in os.walk(out):
            dirs[:] = [d for d in dirs if not d.startswith(_PREVIOUS)]
            for name in files:
                path = pathlib.Path(root) / name
                try:
                    st = path.stat()
                except OSError:
                    continue
                found[str(path.relative_to(out))] = (st.st_ino, st.st_mtime_ns)
    return found


@contextlib.contextmanager
def all_or_nothing(out: str | os.PathLike) -> Iterator[pathlib.Path]:
    """A command's writes into the directory ``out``: kept whole, or undone when the command fails.

    Each file is written atomically (:func:`xsift.data.io.atomic_write`); this makes the directory so:
    the files already under ``out`` are hard-linked into a hidden ``.xsift-previous-<pid>`` directory
    first, and if the block raises anything (an error, a full disk, Ctrl-C), every file it created or
    replaced is removed, the previous versions are put back, the directories it created are removed
    (``out`` itself if it made it), and the exception goes on. So a run directory never holds some
    tables without the manifest written last (a disk that filled up while ``xsift run`` wrote left its
    model and one table), nor a previous run's manifest beside new tables. The resumable run
    directories of the shard commands keep their own ledger (:mod:`xsift.distributed.rundir`) and do
    not use this."""
    out = pathlib.Path(out)
    existed = out.is_dir()
    before = _files_under(out)
    dirs_before = {str(pathlib.Path(r).relative_to(out)) for r, _, _ in os.walk(out)} if existed else set()
    previous = out / f"{_PREVIOUS}{os.getpid()}"
    kept = {}
    for rel in before:
        try:
            (previous / rel).parent.mkdir(parents=True, exist_ok=True)
            os.link(out / rel, previous / rel)
            kept[rel] = previous / rel
        except OSError:         # no hard links here (or no room for the link): that file is not restorable
            pass
    try:
        yield out
    except BaseException:
        if not existed:
            shutil.rmtree(out, ignore_errors=True)
            raise
        for rel, ident in _files_under(out).items():
            if before.get(rel) != ident:
                with contextlib.suppress(OSError):
                    (out / rel).unlink()
        for rel, link in kept.items():
            with contextlib.suppress(OSError):
                if not (out / rel).exists():
                    (out / rel).parent.mkdir(parents=True, exist_ok=True)
                    os.replace(link, out / rel)
        shutil.rmtree(previous, ignore_errors=True)
        for root, _, _ in sorted(os.walk(out), key=lambda w: -len(w[0])):
            rel = str(pathlib.Path(root).relative_to(out))
            if rel not in dirs_before:
                with contextlib.suppress(OSError):
                    pathlib.Path(root).rmdir()
        raise
    shutil.rmtree(previous, ignore_errors=True)

# output table format -> file suffix
FORMAT_SUFFIX = {"parquet": ".parquet", "csv": ".csv", "fits": ".fits", "votable": ".vot"}


def table_path(out: str | pathlib.Path, stem: str, fmt: str) -> pathlib.Path:
    """``out/<stem><suffix of fmt>`` (:data:`FORMAT_SUFFIX`)."""
    return pathlib.Path(out) / f"{stem}{FORMAT_SUFFIX[fmt]}"


def write_tables(tables: dict[str, pd.DataFrame], out: str | pathlib.Path, fmt: str, classes,
                 published: bool, provenance: dict | None = None) -> dict[str, str]:
    """Write each table as ``out/<name><suffix of fmt>``; with ``published`` the master-class tables'
    probabilities become the paper's ``mean±std`` text columns (:func:`xsift.methods.voting.published_format`).
    Column metadata from :mod:`xsift.data.columns` (``classes``: the probability columns), ``provenance``
    (:func:`xsift.data.columns.provenance`) in each table's header. Returns name -> path written."""
    from xsift.data.io import write_table
    from xsift.methods.voting import published_format
    from xsift.data.columns import ColumnInfo
    written = {}
    for name, table in tables.items():
        classes_here, text = list(classes), {}
        if published and name in ("uniquely_classified", "ambiguous"):
            table = published_format(table, list(classes))
            classes_here = []   # the 'mean±std' text columns are text, not probabilities
            text = {c: ColumnInfo(None, f"probability of class {c} over the source's detections, as the text "
                                        "'mean±std'") for c in classes}
        written[name] = str(write_table(table, table_path(out, name, fmt), fmt, classes=classes_here,
                                        provenance=provenance, columns=text))
    return written


def run_figures(tables: dict[str, pd.DataFrame], n_clusters: int, out: str | pathlib.Path) -> dict[str, str]:
    """The run's PNG figures into ``out``, each a density per panel (one panel per cluster or class,
    :mod:`xsift.report.figures`): hardness ratios by cluster and by predicted class, the sky by cluster
    and by the uniquely classified sources' aggregated class (those whose tables are there).
    Returns name -> path."""
    from xsift.report import figures
    out = pathlib.Path(out)
    made = {}
    if "clusters" in tables and len(tables["clusters"]):
        clusters = tables["clusters"]
        feats_cols = ("hard_hm", "hard_ms")
        if "detection_level" in tables and all(c in tables["detection_level"].columns for c in feats_cols):
            det = tables["detection_level"]
            made["hardness_by_cluster"] = str(figures.hardness_by_cluster(
                det, out / "hardness_by_cluster.png", n_clusters=n_clusters))
            if det["predicted_class"].notna().any():
                made["hardness_by_class"] = str(figures.hardness_diagram(
                    det, out / "hardness_by_class.png", by="predicted_class", label="class",
                    title="Classified detections by predicted class"))
        made["sky_by_cluster"] = str(figures.sky_map(clusters["ra"], clusters["dec"], clusters["cluster"],
                                                     out / "sky_by_cluster.png", title="Clusters",
                                                     label="cluster"))
    if "uniquely_classified" in tables and len(tables["uniquely_classified"]):
        u = tables["uniquely_classified"]
        made["sky_by_class"] = str(figures.sky_map(u["ra"], u["dec"], u["agg_master_class"],
                                                   out / "sky_by_class.png", label="class", what="sources",
                                                   title="Uniquely classified sources (aggregated class)"))
    return made


def confusion_frame(cm: np.ndarray, labels: list[str], normalise: bool) -> pd.DataFrame:
    """A confusion matrix (rows true, columns predicted) as a table with a ``true_class`` column first;
    ``normalise``: each row divided by its sum."""
    from xsift.methods.metrics import row_normalised
    values = row_normalised(cm) if normalise else cm
    out = pd.DataFrame(values, columns=labels)
    out.insert(0, "true_class", labels)
    return out


def write_validation(result: dict, out: str | pathlib.Path, *, figures: bool = True, fmt: str = "csv",
                     provenance: dict | None = None) -> dict[str, str]:
    """Write the tables (in ``fmt``, CSV by default; and, with ``figures``, PNG figures) of a
    :func:`xsift.methods.validation.validate` result into ``out``: ``confusion_{classes,aggregated}``
    (row-normalised) and ``_counts``, ``metrics_{classes,aggregated}`` (precision, recall, F1,
    support per class), ``test_predictions``; ``provenance`` in each table's header. Returns name -> path
    written."""
    from xsift.data.io import write_table
    out = pathlib.Path(out)
    written = {}

    from xsift.data.columns import ColumnInfo
    # the metric tables' 'class' column names the class a row is about, not a source's label
    row_class = {"class": ColumnInfo(None, "class the row is about", "src.class")}

    def write(frame, stem, classes=()):
        return str(write_table(frame, table_path(out, stem, fmt), fmt, classes=classes, provenance=provenance,
                               columns=row_class))

    for key, labels, stem in (("confusion", result["classes"], "classes"),
                              ("confusion_aggregated", result["aggregated_classes"], "aggregated")):
        cm = result[key]
        if cm is None:      # a method without aggregated classes (naive Bayes)
            continue
        written[f"confusion_{stem}"] = write(confusion_frame(cm, labels, True), f"confusion_{stem}")
        written[f"confusion_{stem}_counts"] = write(confusion_frame(cm, labels, False), f"confusion_{stem}_counts")
        metrics = result["metrics" if stem == "classes" else "metrics_aggregated"]
        written[f"metrics_{stem}"] = write(metrics, f"metrics_{stem}")
        if figures:
            from xsift.methods.metrics import row_normalised
            from xsift.report.figures import confusion_figure
            written[f"confusion_{stem}_png"] = str(confusion_figure(
                row_normalised(cm), labels, out / f"confusion_{stem}.png",
                title=f"validation, {'training' if stem == 'classes' else 'aggregated'} classes (row-normalised)"))
    written["predictions"] = write(result["predictions"], "test_predictions", result["classes"])
    written.update(_write_reliability(result, out, figures))
    return written


def _write_reliability(result: dict, out: pathlib.Path, figures: bool) -> dict[str, str]:
    """``reliability.csv`` (per bin and curve: edges, detections, mean confidence, fraction correct),
    ``validation.json`` (counts, split, priors, reliability with ECE, calibration, metric tables) and,
    with ``figures``, ``reliability.png`` of a validation result."""
    from xsift.data.io import write_json, write_table
    written = {}
    rel = result.get("reliability") or {}
    if not rel:
        return written
    rows = []
    for curve, r in rel.items():
        for b in range(r["n_bins"]):
            rows.append({"curve": curve, "bin_low": r["edges"][b], "bin_high": r["edges"][b + 1],
                         "detections": r["count"][b], "mean_confidence": r["confidence"][b],
                         "fraction_correct": r["accuracy"][b]})
    written["reliability"] = str(write_table(pd.DataFrame(rows), out / "reliability.csv"))
    report = {key: result.get(key) for key in ("method", "model_hash", "counts", "split", "priors", "calibration",
                                               "reliability")}
    for key in ("metrics", "metrics_aggregated"):
        if result.get(key) is not None:
            report[key] = result[key].to_dict(orient="records")
    written["report"] = str(write_json(report, out / "validation.json"))
    if figures:
        from xsift.report.figures import reliability_figure
        cal = result.get("calibration") or {}
        labels = {"raw": "raw probabilities",
                  "calibrated": f"calibrated, T = {cal.get('temperature', float('nan')):.3g}"}
        written["reliability_png"] = str(reliability_figure(
            {labels.get(k, k): r for k, r in rel.items()}, out / "reliability.png",
            title=f"{result.get('method', '')} validation: held-out detections ({rel['raw']['n']:,})"))
    return written
