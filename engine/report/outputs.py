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

import pathlib

import numpy as np
import pandas as pd

__all__ = ["FORMAT_SUFFIX", "write_tables", "run_figures", "confusion_frame", "write_validation"]

# output table format -> file suffix
FORMAT_SUFFIX = {"parquet": ".parquet", "csv": ".csv", "fits": ".fits"}


def write_tables(tables: dict[str, pd.DataFrame], out: str | pathlib.Path, fmt: str, classes,
                 published: bool) -> dict[str, str]:
    """Write each table as ``out/<name><suffix of fmt>``; with ``published`` the master-class tables'
    probabilities become the paper's ``mean±std`` text columns (:func:`xsift.methods.voting.published_format`).
    Returns name -> path written."""
    from xsift.data.io import write_table
    from xsift.methods.voting import published_format
    out = pathlib.Path(out)
    written = {}
    for name, table in tables.items():
        if published and name in ("uniquely_classified", "ambiguous"):
            table = published_format(table, list(classes))
        written[name] = str(write_table(table, out / f"{name}{FORMAT_SUFFIX[fmt]}"))
    return written


def run_figures(tables: dict[str, pd.DataFrame], n_clusters: int, out: str | pathlib.Path) -> dict[str, str]:
    """The run's PNG figures into ``out``: hardness ratios by cluster, the sky by cluster and by the
    uniquely classified sources' aggregated class (those whose tables are there). Returns name -> path."""
    from xsift.report import figures
    out = pathlib.Path(out)
    made = {}
    if "clusters" in tables and len(tables["clusters"]):
        clusters = tables["clusters"]
        feats_cols = ("hard_hm", "hard_ms", "var_prob_h")
        if "detection_level" in tables and all(c in tables["detection_level"].columns for c in feats_cols):
            made["hardness_by_cluster"] = str(figures.hardness_by_cluster(
                tables["detection_level"], out / "hardness_by_cluster.png", n_clusters=n_clusters))
        made["sky_by_cluster"] = str(figures.sky_map(clusters["ra"], clusters["dec"], clusters["cluster"],
                                                     out / "sky_by_cluster.png", title="Clusters"))
    if "uniquely_classified" in tables and len(tables["uniquely_classified"]):
        u = tables["uniquely_classified"]
        made["sky_by_class"] = str(figures.sky_map(u["ra"], u["dec"], u["agg_master_class"],
                                                   out / "sky_by_class.png",
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


def write_validation(result: dict, out: str | pathlib.Path, *, figures: bool = True) -> dict[str, str]:
    """Write the CSV tables (and, with ``figures``, PNG figures) of a
    :func:`xsift.methods.validation.validate` result into ``out``: ``confusion_{classes,aggregated}.csv``
    (row-normalised) and ``_counts.csv``, ``metrics_{classes,aggregated}.csv`` (precision, recall, F1,
    support per class), ``test_predictions.csv``. Returns name -> path written."""
    from xsift.data.io import write_table
    out = pathlib.Path(out)
    written = {}
    for key, labels, stem in (("confusion", result["classes"], "classes"),
                              ("confusion_aggregated", result["aggregated_classes"], "aggregated")):
        cm = result[key]
        written[f"confusion_{stem}"] = str(write_table(confusion_frame(cm, labels, True),
                                                       out / f"confusion_{stem}.csv"))
        written[f"confusion_{stem}_counts"] = str(write_table(confusion_frame(cm, labels, False),
                                                              out / f"confusion_{stem}_counts.csv"))
        metrics = result["metrics" if stem == "classes" else "metrics_aggregated"]
        written[f"metrics_{stem}"] = str(write_table(metrics, out / f"metrics_{stem}.csv"))
        if figures:
            from xsift.methods.metrics import row_normalised
            from xsift.report.figures import confusion_figure
            written[f"confusion_{stem}_png"] = str(confusion_figure(
                row_normalised(cm), labels, out / f"confusion_{stem}.png",
                title=f"validation, {'training' if stem == 'classes' else 'aggregated'} classes (row-normalised)"))
    written["predictions"] = str(write_table(result["predictions"], out / "test_predictions.csv"))
    return written
