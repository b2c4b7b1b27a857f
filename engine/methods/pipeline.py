"""A whole cluster-then-label run as ``xsift run`` and ``xsift demo`` do it: fit and classify one
catalogue, then the clusters table, the output tables in a chosen format and the figures.

The estimator (:class:`xsift.ClusterThenLabel`) holds the method; this module only strings its
results together and writes them (:mod:`xsift.data.io`, :mod:`xsift.report.figures`).

Output tables (file stems): ``clusters`` (every complete detection with its cluster and component
probabilities), ``detection_level``, ``uniquely_classified``, ``ambiguous`` (see
:meth:`xsift.ClusterThenLabel.classify`).
"""
from __future__ import annotations

import pathlib

import pandas as pd

from xsift.methods.base import Classification

__all__ = ["FORMAT_SUFFIX", "fit_classify_tables", "write_tables", "run_figures"]

# output table format -> file suffix
FORMAT_SUFFIX = {"parquet": ".parquet", "csv": ".csv", "fits": ".fits"}


def fit_classify_tables(estimator, table, *, source: str = "catalogue"
                        ) -> tuple[dict[str, pd.DataFrame], dict, Classification]:
    """Fit ``estimator`` on ``table`` and classify it (:meth:`~xsift.ClusterThenLabel.fit_classify`);
    returns (tables by output name: ``clusters``, ``detection_level``, ``uniquely_classified``,
    ``ambiguous``; the report with ``schema``, ``fit``, ``classify``, ``voting``; the Classification)."""
    result = estimator.fit_classify(table, source=source)
    tables = {"clusters": estimator.cluster_table(table, source=source), **result.tables()}
    return tables, dict(result.report), result


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
