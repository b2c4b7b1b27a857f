"""Master classes of every source of a classified run, across shards, on Dask.

A source's detections may sit in different shards. The detection-level outputs of a run are read
with ``dask.dataframe.read_parquet`` and **shuffled on ``name``** (hash partitioning), so every
partition holds whole sources; each partition is voted by :func:`xsift.methods.voting.master_classes`
exactly as in memory and written as ``uniquely_classified/part-NNNNN.parquet`` and
``ambiguous/part-NNNNN.parquet``. (Why not partitions by sky position as in hats: the detections of
one source scatter by ~0.5" around it, so a source near a pixel boundary would be cut in two; the
name hash puts every source in one partition by construction, whatever the catalogue's order.)
The vote is written into a staging directory that replaces the previous vote as a whole at the end.
"""
from __future__ import annotations

import os
import pathlib
import shutil
import time

import numpy as np
import pandas as pd

from xsift.distributed.cluster import show_progress
from xsift.distributed.rundir import AMBIGUOUS_DIR, OUTPUT_DIR, UNIQUE_DIR, VOTE_RECORD, read_run_record
from xsift.errors import XsiftError

__all__ = ["vote_shards", "vote_run"]


def _vote_partition(part: pd.DataFrame, index: int, out_root: str, classes, aggregation) -> dict:
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
    write_table(uniquely.reset_index(drop=True), root / UNIQUE_DIR / name)
    write_table(ambiguous.reset_index(drop=True), root / AMBIGUOUS_DIR / name)
    class_index = {c: i for i, c in enumerate(classes)}
    votes = np.zeros((L, L), np.int64)      # (hard vote, soft vote) counts, for Cohen's kappa
    u = np.array([class_index[c] for c in uniquely["master_class"].astype(str)], dtype=np.int64)
    np.add.at(votes, (u, u), 1)
    h = np.array([class_index[c] for c in ambiguous["hard_master_class"].astype(str)], dtype=np.int64)
    s = np.array([class_index[c] for c in ambiguous["soft_master_class"].astype(str)], dtype=np.int64)
    np.add.at(votes, (h, s), 1)
    return {"sources": len(uniquely) + len(ambiguous), "uniquely": len(uniquely),
            "ambiguous": len(ambiguous), "votes": votes}


def _kappa_of_table(table: np.ndarray) -> float:
    """Cohen's kappa between the hard and the soft vote from their (hard, soft) count table (L, L)."""
    from xsift.methods.metrics import cohen_kappa
    L = table.shape[0]
    hard = np.repeat(np.repeat(np.arange(L), L), table.ravel())
    soft = np.repeat(np.tile(np.arange(L), L), table.ravel())
    return cohen_kappa(hard, soft, L) if len(hard) else float("nan")


def vote_shards(client, run_dir: str | os.PathLike, *, classes: list[str], aggregation: dict,
                n_partitions: int | None = None, log=print) -> dict:
    """Master classes of every source of a classified run, across shards (shuffle on ``name``).

    ``classes``: the L class names of the probability columns; ``aggregation``: class -> aggregated
    class grouping of the vote (the preset's ``[classes.aggregation]``); ``n_partitions``: partitions
    of the shuffle (default: one per classified shard). Writes ``RUN/uniquely_classified/`` and
    ``RUN/ambiguous/`` (replacing any previous vote as a whole) and ``RUN/vote.json``; returns the
    summary: ``sources``, ``uniquely_classified``, ``ambiguous``, ``cohen_kappa_hard_soft`` (Cohen's
    kappa between hard and soft votes), ``partitions``, ``seconds``. Raises XsiftError when the run
    has no classified shard."""
    import dask
    import dask.dataframe as dd
    from xsift.data.io import write_json
    t0 = time.perf_counter()
    run = pathlib.Path(run_dir)
    outputs = sorted((run / OUTPUT_DIR).glob("*.parquet"))
    if not outputs:
        raise XsiftError(f"{run / OUTPUT_DIR}: no classified shard to vote on; run classify-shards first")
    ddf = dd.read_parquet([str(p) for p in outputs])
    n_partitions = int(n_partitions or max(1, len(outputs)))
    shuffled = ddf.shuffle(on="name", npartitions=n_partitions)
    staging = run / ".vote-staging"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / UNIQUE_DIR).mkdir(parents=True)
    (staging / AMBIGUOUS_DIR).mkdir(parents=True)
    tasks = [dask.delayed(_vote_partition)(p, i, str(staging.resolve()), list(classes), dict(aggregation))
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
    return vote_shards(client, run_dir, classes=record["classes"], aggregation=record["aggregation"],
                       n_partitions=n_partitions, log=log)
