"""Master classes of every source of a classified run, across shards, on Dask.

A source's detections may sit in different shards. The detection-level outputs of a run are read
with ``dask.dataframe.read_parquet`` and **shuffled on ``name``** (hash partitioning), so every
partition holds whole sources; each partition is voted by :func:`xsift.methods.voting.master_classes`
exactly as in memory and written as ``uniquely_classified/part-NNNNN.parquet`` and
``ambiguous/part-NNNNN.parquet``. (Why not partitions by sky position as in hats: the detections of
one source scatter by ~0.5" around it, so a source near a pixel boundary would be cut in two; the
name hash puts every source in one partition by construction, whatever the catalogue's order.)
The vote is written into a staging directory that replaces the previous vote as a whole at the end,
after its tables are checked against its inputs' counts (a mismatch is an XsiftError and saves nothing).
"""
from __future__ import annotations

import os
import pathlib
import shutil
import time

import numpy as np
import pandas as pd

from xsift.distributed.cluster import show_progress
from xsift.distributed.rundir import (AMBIGUOUS_DIR, OUTPUT_DIR, UNIQUE_DIR, VOTE_RECORD, lock_run_dir,
                                      read_run_record)
from xsift.errors import XsiftError

__all__ = ["vote_shards", "vote_run"]


def _vote_partition(part: pd.DataFrame, index: int, out_root: str, classes, aggregation,
                    provenance: dict | None = None) -> dict:
    """Worker: master classes of one partition of whole sources; write both tables; return counts
    and the (hard vote, soft vote) count table (L, L)."""
    from xsift.data.io import write_table
    from xsift.methods.voting import master_classes
    root = pathlib.Path(out_root)
    name = f"part-{index:05d}.parquet"
    L = len(classes)
    if len(part) == 0:
        return {"sources": 0, "uniquely": 0, "ambiguous": 0, "votes": np.zeros((L, L), np.int64)}
    part = part.reset_index(drop=True)
    uniquely, ambiguous, _ = master_classes(part, classes, aggregation)
    write_table(uniquely.reset_index(drop=True), root / UNIQUE_DIR / name, classes=classes, provenance=provenance)
    write_table(ambiguous.reset_index(drop=True), root / AMBIGUOUS_DIR / name, classes=classes, provenance=provenance)
    class_index = {c: i for i, c in enumerate(classes)}
    votes = np.zeros((L, L), np.int64)      # (hard vote, soft vote) counts, for Cohen's kappa
    u = np.array([class_index[c] for c in uniquely["master_class"].astype(str)], dtype=np.int64)
    np.add.at(votes, (u, u), 1)
    h = np.array([class_index[c] for c in ambiguous["hard_master_class"].astype(str)], dtype=np.int64)
    s = np.array([class_index[c] for c in ambiguous["soft_master_class"].astype(str)], dtype=np.int64)
    np.add.at(votes, (h, s), 1)
    return {"sources": len(uniquely) + len(ambiguous), "uniquely": len(uniquely),
            "ambiguous": len(ambiguous), "votes": votes}


def _voted_sources(outputs: list[pathlib.Path], classes: list[str]):
    """A Dask scalar: the distinct source names among the voted detections of ``outputs`` (those with
    every class probability finite and ``no_usable_class`` false, the rows
    :func:`xsift.methods.voting.master_classes` votes), counted without the shuffle."""
    import dask.dataframe as dd
    ddf = dd.read_parquet([str(p) for p in outputs])
    usable = ~ddf["no_usable_class"].astype(bool) if "no_usable_class" in ddf.columns else None
    for c in classes:
        finite = ddf[c].astype("float64").notnull() & (ddf[c].astype("float64").abs() != np.inf)
        usable = finite if usable is None else usable & finite
    return ddf["name"][usable].nunique()


def _check_vote_counts(client, run: pathlib.Path, outputs: list[pathlib.Path], staging: pathlib.Path,
                       classes: list[str], summary: dict) -> None:
    """Check the vote's tables against its inputs before success is reported: the rows written under
    ``staging`` (read from the Parquet footers) must equal the partitions' counts in ``summary``, and
    uniquely classified + ambiguous must equal the distinct voted sources of the detection-level
    ``outputs``. Raises XsiftError naming the run directory and both counts otherwise."""
    import pyarrow.parquet as pq
    written = {sub: sum(pq.ParquetFile(p).metadata.num_rows for p in sorted((staging / sub).glob("*.parquet")))
               for sub in (UNIQUE_DIR, AMBIGUOUS_DIR)}
    expected = int(client.compute(_voted_sources(outputs, classes)).result())
    if (written[UNIQUE_DIR], written[AMBIGUOUS_DIR]) != (summary["uniquely_classified"], summary["ambiguous"]) \
            or written[UNIQUE_DIR] + written[AMBIGUOUS_DIR] != expected:
        raise XsiftError(
            f"{run}: the vote wrote {written[UNIQUE_DIR]:,} uniquely classified + {written[AMBIGUOUS_DIR]:,} "
            f"ambiguous sources (its partitions reported {summary['uniquely_classified']:,} + "
            f"{summary['ambiguous']:,}) but {run / OUTPUT_DIR} holds {expected:,} distinct voted sources; "
            "the vote is not saved (a previous vote is left as it was); rerun vote-shards")


def _kappa_of_table(table: np.ndarray) -> float:
    """Cohen's kappa between the hard and the soft vote from their (hard, soft) count table (L, L)."""
    from xsift.methods.metrics import cohen_kappa
    L = table.shape[0]
    hard = np.repeat(np.repeat(np.arange(L), L), table.ravel())
    soft = np.repeat(np.tile(np.arange(L), L), table.ravel())
    return cohen_kappa(hard, soft, L) if len(hard) else float("nan")


def vote_shards(client, run_dir: str | os.PathLike, *, classes: list[str], aggregation: dict,
                n_partitions: int | None = None, log=print, provenance: dict | None = None) -> dict:
    """Master classes of every source of a classified run, across shards (shuffle on ``name``).

    ``classes``: the L class names of the probability columns; ``aggregation``: class -> aggregated
    class grouping of the vote (the preset's ``[classes.aggregation]``); ``n_partitions``: partitions
    of the shuffle (default: one per classified shard); ``provenance``: what made the tables
    (:func:`xsift.data.columns.provenance`), in each table's header. Writes ``RUN/uniquely_classified/`` and
    ``RUN/ambiguous/`` (replacing any previous vote as a whole) and ``RUN/vote.json``; returns the
    summary: ``sources``, ``uniquely_classified``, ``ambiguous``, ``cohen_kappa_hard_soft`` (Cohen's
    kappa between hard and soft votes), ``partitions``, ``seconds``. Before anything replaces the
    previous vote, the tables written are checked against the inputs (:func:`_check_vote_counts`:
    uniquely classified + ambiguous == the distinct voted sources of the detection-level outputs).
    Raises XsiftError when the run has no classified shard or that check fails (nothing is saved then), or
    when another process is writing into ``run_dir`` (locked while this runs:
    :func:`xsift.distributed.rundir.lock_run_dir`)."""
    if not pathlib.Path(run_dir).is_dir():        # nothing to lock: the checks below name what is missing
        return _vote_shards(client, run_dir, classes=classes, aggregation=aggregation,
                            n_partitions=n_partitions, log=log, provenance=provenance)
    with lock_run_dir(run_dir, command="vote_shards"):
        return _vote_shards(client, run_dir, classes=classes, aggregation=aggregation,
                            n_partitions=n_partitions, log=log, provenance=provenance)


def _vote_shards(client, run_dir, *, classes, aggregation, n_partitions, log, provenance) -> dict:
    import dask
    import dask.dataframe as dd
    from xsift.data.io import write_json
    t0 = time.perf_counter()
    run = pathlib.Path(run_dir)
    outputs = sorted((run / OUTPUT_DIR).glob("*.parquet"))
    if not outputs:
        from xsift.distributed.rundir import ledger_records
        if ledger_records(run):     # shards were classified, every one empty (0 rows: no output)
            raise XsiftError(f"{run}: every classified shard is empty (0 rows); there are no detections to vote on")
        raise XsiftError(f"{run / OUTPUT_DIR}: no classified shard to vote on; run classify-shards first")
    ddf = dd.read_parquet([str(p) for p in outputs])
    n_partitions = int(n_partitions or max(1, len(outputs)))
    shuffled = ddf.shuffle(on="name", npartitions=n_partitions)
    staging = run / ".vote-staging"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / UNIQUE_DIR).mkdir(parents=True)
    (staging / AMBIGUOUS_DIR).mkdir(parents=True)
    tasks = [dask.delayed(_vote_partition)(p, i, str(staging.resolve()), list(classes), dict(aggregation),
                                           provenance)
             for i, p in enumerate(shuffled.to_delayed())]
    futures = client.compute(tasks)
    show_progress(futures, "vote: partitions (shuffle on name)")
    results = client.gather(futures)
    table = sum(r["votes"] for r in results)
    summary = {"sources": int(sum(r["sources"] for r in results)),
               "uniquely_classified": int(sum(r["uniquely"] for r in results)),
               "ambiguous": int(sum(r["ambiguous"] for r in results)),
               "cohen_kappa_hard_soft": _kappa_of_table(table), "partitions": n_partitions,
               "seconds": time.perf_counter() - t0}
    try:
        _check_vote_counts(client, run, outputs, staging, list(classes), summary)
    except XsiftError:
        shutil.rmtree(staging, ignore_errors=True)      # the previous vote, if any, stays as it was
        raise
    for sub in (UNIQUE_DIR, AMBIGUOUS_DIR):     # swap the new vote in as a whole
        old = run / sub
        if old.exists():
            shutil.rmtree(old)
        os.replace(staging / sub, old)
    shutil.rmtree(staging, ignore_errors=True)
    write_json(summary, run / VOTE_RECORD)
    return summary


def vote_run(client, run_dir: str | os.PathLike, *, n_partitions: int | None = None, log=print) -> dict:
    """:func:`vote_shards` with the classes and aggregation recorded in the run's ``run.json``.

    Raises XsiftError when ``run_dir`` is not a classify-shards run, or was classified by a method
    that gives one row per source (naive Bayes: nothing to vote)."""
    record = read_run_record(run_dir)
    if record.get("aggregation") is None:
        raise XsiftError(f"{run_dir}: classified with a naive-Bayes model, which gives one row per source "
                         "already; there are no detections to vote")
    from xsift.data.columns import provenance
    return vote_shards(client, run_dir, classes=record["classes"], aggregation=record["aggregation"],
                       n_partitions=n_partitions, log=log,
                       provenance=provenance(method="cluster_then_label", model_hash=record.get("model_hash"),
                                             inputs=[str(pathlib.Path(run_dir) / OUTPUT_DIR)],
                                             command="xsift vote-shards"))
