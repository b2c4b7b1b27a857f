"""Scale-out on Dask: Parquet-sharded catalogues classified out of core.

A catalogue here is a directory (or glob) of Parquet shards, read with Dask
(``dask.dataframe``: :func:`read_sharded`) -- the lsdb/hats view of a catalogue as
a Dask DataFrame plus partition metadata (the shard files, their row counts from
the Parquet footers). The same functions run on a ``distributed.LocalCluster``
sized to the machine (default) or on any running Dask cluster
(``--scheduler tcp://HOST:PORT``): nothing in the code changes, only the address.

Stages
------
fit on a sample (:func:`sample_catalog`, ``--fit-sample N``)
    a seeded random sample of N detections drawn uniformly from the whole
    catalogue (global row indices chosen on the client from the footers' row
    counts; each worker reads only its shard's chosen rows); the cluster-then-
    label model is fitted on it in memory. The model has a few hundred
    parameters, so a million rows determine it.
full-data EM (:func:`distributed_em`, ``--full-em``)
    the feature rows of every shard are transformed on the workers into fixed-
    size padded chunks and *persisted* there when they fit in the workers'
    memory (re-read from the shards at every iteration otherwise). Each EM
    iteration maps the GMM kernel's jitted ``sufficient_statistics`` over the
    chunks of every partition, sums the statistics with a tree reduction
    (pairwise ``client.submit``) and does the M-step on the client, in exactly
    the order of :func:`xsift.kernels.gmm.fit_gmm`, so both give the same parameters
    from the same start to float rounding.
classification (:func:`classify_shards`)
    one task per input shard (``client.map`` over the shard files; the shard is the unit of
    resumption, so a task is exactly one input file):
    read the shard, ``classify_detections`` of the fitted model, write the output
    shard ``detection_level/<input name>`` atomically, then the shard's ledger
    record ``ledger/<input stem>.json`` atomically. Each worker loads the model
    from its directory once and keeps it (not scattered: scattered data dies with
    the worker holding it, the model file does not); the JAX kernels work
    on fixed-size padded row chunks, so each worker compiles each kernel once.
voting (:func:`vote_shards`)
    a source's detections may sit in different shards. The detection-level
    outputs are read with ``dask.dataframe.read_parquet`` and **shuffled on
    ``name``** (hash partitioning), so every partition holds whole sources; each
    partition is voted by :func:`xsift.methods.voting.master_classes` exactly as in
    memory and written as ``uniquely_classified/part-NNNNN.parquet`` and
    ``ambiguous/part-NNNNN.parquet``. (Why not partitions by sky position as in
    hats: the detections of one source scatter by ~0.5" around it, so a source
    near a pixel boundary would be cut in two; the name hash puts every source
    in one partition by construction, whatever the catalogue's order.) The vote
    is written into a fresh directory that replaces the previous one at the end.

Resumable runs
--------------
``RUN/run.json`` records the model hash the run was started with. For each input
shard, the ledger record (written only after the output shard is complete)
holds the model hash, the input's size and modification time, and the row
counts. A rerun skips every shard whose record matches (same model hash, same
input size and mtime, output present) and redoes the others; the output name is
derived from the input name, so a redo overwrites and never duplicates (so input shard
names must be unique; the results of shards no longer in the catalogue are removed). A rerun
with a *different* model refuses (``XsiftError``) unless ``force=True``
(``--force``), which clears the ledger, the outputs and the vote and redoes
everything: a run directory never mixes two models.

Faults: a worker that dies mid-task has its task rerun elsewhere by the
scheduler; because outputs are written atomically under a name fixed by the
input, the rerun overwrites rather than duplicates. An unreadable or corrupt
shard fails the run with an :class:`~xsift.errors.XsiftError` naming its path;
shards already finished keep their complete outputs and ledger records.

Workers: the LocalCluster uses processes with one thread each and the
environment :data:`WORKER_ENV` (single-threaded XLA/BLAS), so two workers on two
cores do not oversubscribe.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import pathlib
import shutil
import sys
import time
from typing import Iterator

import numpy as np
import pandas as pd

from xsift.errors import XsiftError

# single-threaded kernels in each worker process: the workers are the parallelism
WORKER_ENV = {
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}

LEDGER_DIR = "ledger"
OUTPUT_DIR = "detection_level"
UNIQUE_DIR = "uniquely_classified"
AMBIGUOUS_DIR = "ambiguous"
RUN_RECORD = "run.json"
EM_CHUNK_ROWS = 16384


# ----------------------------------------------------------------------------
# cluster and client
# ----------------------------------------------------------------------------

def local_cluster(n_workers: int | None = None, *, memory_limit: str | int = "auto",
                  env: dict | None = None, pin: bool = True):
    """A ``distributed.LocalCluster`` of worker *processes*, one thread each, sized to the machine.

    ``n_workers`` defaults to ``os.cpu_count()``; ``env`` (default :data:`WORKER_ENV`) is set in
    each worker process before JAX is imported there. With ``pin`` (default) and no more workers
    than usable cores, worker ``i`` is pinned to the ``i``-th core (:mod:`xsift.distributed.worker_setup`):
    JAX's CPU runtime starts thread pools that no flag limits, and unpinned they make two
    workers on two cores compete.
    """
    from distributed import LocalCluster
    from xsift.distributed.worker_setup import CORES_ENV
    n = int(n_workers or os.cpu_count() or 1)
    env = dict(WORKER_ENV if env is None else env)
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if pin and cores and n <= len(cores):
        env[CORES_ENV] = ",".join(map(str, cores))
    return LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                        memory_limit=memory_limit, dashboard_address=None,
                        silence_logs=logging.ERROR, env=env, preload=["xsift.distributed.worker_setup"])


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, *, n_workers: int | None = None,
                device: str | None = None) -> Iterator:
    """Yield a ``distributed.Client``: to ``scheduler`` (``tcp://HOST:PORT``) if given, else to a
    new :func:`local_cluster` that is closed on exit.

    ``device="cpu"`` keeps the local workers' JAX on the CPU (``JAX_PLATFORMS=cpu``); otherwise they
    use JAX's default device (a GPU when a CUDA jaxlib finds one). On a running cluster each worker's
    device is whatever its own environment gives it."""
    from distributed import Client
    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise XsiftError(f"--scheduler {scheduler}: cannot reach a Dask scheduler there ({exc}); "
                             "start one with `dask scheduler` or omit --scheduler for a local cluster") from None
        try:
            yield client
        finally:
            client.close()
        return
    env = dict(WORKER_ENV)
    if device == "cpu":
        env["JAX_PLATFORMS"] = "cpu"
    cluster = local_cluster(n_workers, env=env)
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def _show_progress(futures) -> None:
    """Dask's own progress bar at a terminal; nothing otherwise."""
    if sys.stderr.isatty():
        from distributed import progress
        progress(futures)


# ----------------------------------------------------------------------------
# shards
# ----------------------------------------------------------------------------

def shard_files(catalog: str | os.PathLike) -> list[pathlib.Path]:
    """The Parquet shards of ``catalog`` (a directory or a glob), sorted by name."""
    from xsift.data.io import catalog_files
    files = catalog_files(catalog)
    bad = [f for f in files if not f.name.lower().endswith((".parquet", ".pq"))]
    if bad:
        raise XsiftError(f"{bad[0]}: a sharded catalogue must be Parquet shards (.parquet)")
    return files


def shard_row_counts(files: list[pathlib.Path]) -> list[int]:
    """Row count of each shard, from its Parquet footer (no data read)."""
    import pyarrow.parquet as pq
    counts = []
    for f in files:
        try:
            counts.append(pq.ParquetFile(f).metadata.num_rows)
        except Exception as exc:
            raise XsiftError(f"{f}: cannot be read as a Parquet shard ({type(exc).__name__}: {exc})") from None
    return counts


def read_shard(path: str | os.PathLike, columns: list[str] | None = None,
               rows: np.ndarray | None = None) -> pd.DataFrame:
    """One shard as a DataFrame (only ``columns`` that exist; only ``rows`` if given).

    Any read failure is an :class:`XsiftError` naming the shard."""
    import pyarrow.parquet as pq
    path = pathlib.Path(path)
    try:
        pf = pq.ParquetFile(path)
        names = pf.schema_arrow.names
        cols = None if columns is None else [c for c in columns if c in names]
        table = pf.read(columns=cols)
        if rows is not None:
            table = table.take(np.asarray(rows, dtype=np.int64))
        return table.to_pandas()
    except Exception as exc:
        raise XsiftError(f"{path}: cannot be read as a Parquet shard ({type(exc).__name__}: {exc})") from None


def read_sharded(catalog: str | os.PathLike, columns: list[str] | None = None):
    """The catalogue as a Dask DataFrame (``dask.dataframe.read_parquet`` over its shards)."""
    import dask.dataframe as dd
    files = shard_files(catalog)
    return dd.read_parquet([str(f) for f in files], columns=columns)


def shard_columns(wanted: list[str], files: list[pathlib.Path]) -> list[str]:
    """``wanted`` with the columns present in the first shard first (a missing one is reported by the
    classifier's schema check, which names it)."""
    import pyarrow.parquet as pq
    try:
        names = pq.read_schema(files[0]).names
    except Exception as exc:
        raise XsiftError(f"{files[0]}: cannot be read as a Parquet shard ({type(exc).__name__}: {exc})") from None
    return [c for c in wanted if c in names] + [c for c in wanted if c not in names]


def catalog_columns(preset: dict, files: list[pathlib.Path]) -> list[str]:
    """The columns the cluster-then-label classifier needs (identity, sky, reference type, raw features)."""
    from xsift.methods.cluster_then_label import input_columns
    return shard_columns(input_columns(preset), files)


# ----------------------------------------------------------------------------
# fitting: a seeded sample, or full-data EM
# ----------------------------------------------------------------------------

def sample_catalog(client, catalog: str | os.PathLike, n: int, *, seed: int,
                   columns: list[str] | None = None) -> pd.DataFrame:
    """A seeded uniform random sample of ``n`` detections (all of them if fewer), in catalogue order.

    The global row indices are drawn on the client from the shards' row counts, so the sample
    depends only on (catalogue, n, seed), never on the cluster; each worker reads its shard's rows.
    """
    files = shard_files(catalog)
    counts = np.asarray(shard_row_counts(files), dtype=np.int64)
    total = int(counts.sum())
    rng = np.random.default_rng(seed)
    if n >= total:
        chosen = np.arange(total, dtype=np.int64)
    else:
        chosen = np.sort(rng.choice(total, size=int(n), replace=False))
    starts = np.concatenate([[0], np.cumsum(counts)])
    tasks = []
    for i, f in enumerate(files):
        lo, hi = np.searchsorted(chosen, [starts[i], starts[i + 1]])
        if hi > lo:
            tasks.append((f, chosen[lo:hi] - starts[i]))
    futures = [client.submit(read_shard, str(f), columns, rows, pure=False) for f, rows in tasks]
    frames = client.gather(futures)
    if not frames:
        raise XsiftError(f"{catalog}: the catalogue has no rows to sample")
    return pd.concat(frames, ignore_index=True)


def _feature_chunks(path, preset, transform_dict, chunk_rows, dtype_name):
    """Worker: a shard's complete, transformed feature rows as (Xc (m, c, d), maskc (m, c)), padded."""
    from xsift.data.features import FeatureTransform, complete_rows, derive_features, raw_feature_columns
    df = read_shard(path, raw_feature_columns(preset))
    feats = derive_features(df, preset)
    X = FeatureTransform.from_dict(transform_dict).transform(feats)
    X = X[complete_rows(X)]
    return pad_chunks(X, chunk_rows, np.dtype(dtype_name))


def pad_chunks(X: np.ndarray, chunk_rows: int, dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """X (n, d) -> (Xc (m, chunk_rows, d), maskc (m, chunk_rows)) with zero padding masked out (m >= 1)."""
    n, d = X.shape
    m = max(1, math.ceil(n / chunk_rows))
    Xc = np.zeros((m * chunk_rows, d), dtype=dtype)
    Xc[:n] = X
    mask = np.zeros(m * chunk_rows, dtype=bool)
    mask[:n] = True
    return Xc.reshape(m, chunk_rows, d), mask.reshape(m, chunk_rows)


def partition_statistics(params, chunks) -> tuple:
    """Worker: the GMM sufficient statistics of one partition's chunks, summed, as float64 NumPy arrays.

    ``chunks`` is ``(Xc (m, c, d), maskc (m, c))``; every call of the jitted kernel has the
    same shape (c, d), so it compiles once per worker."""
    from xsift.kernels.gmm import sufficient_statistics
    Xc, maskc = chunks
    total = None
    for x, m in zip(Xc, maskc):
        s = tuple(np.asarray(v, dtype=np.float64) for v in sufficient_statistics(params, x, m))
        total = s if total is None else tuple(a + b for a, b in zip(total, s))
    return total


def _file_statistics(params, path, preset, transform_dict, chunk_rows, dtype_name):
    """Worker: statistics of a shard re-read from disk (when the data are not persisted)."""
    return partition_statistics(params, _feature_chunks(path, preset, transform_dict, chunk_rows, dtype_name))


def _sum_statistics(*parts):
    return tuple(sum(vals) for vals in zip(*parts))


def tree_sum(client, futures, fan_in: int = 4):
    """Sum futures of statistics tuples by a tree reduction on the workers; returns one future."""
    futures = list(futures)
    if not futures:
        raise XsiftError("no partition to reduce")
    while len(futures) > 1:
        futures = [client.submit(_sum_statistics, *futures[i:i + fan_in], pure=False)
                   if len(futures[i:i + fan_in]) > 1 else futures[i]
                   for i in range(0, len(futures), fan_in)]
    return futures[0]


def _worker_memory_bytes(client) -> int:
    info = client.scheduler_info()
    return int(sum(w.get("memory_limit") or 0 for w in info.get("workers", {}).values()))


def distributed_em(client, catalog: str | os.PathLike, preset: dict, transform, init, *,
                   max_iter: int = 100, tol: float = 1e-3, reg_covar: float = 1e-6,
                   dtype=np.float64, chunk_rows: int = EM_CHUNK_ROWS, persist: bool | None = None,
                   on_iteration=None):
    """Full-data EM over every complete detection of a sharded catalogue; returns a ``GMMResult``.

    ``transform``: the fitted :class:`~xsift.data.features.FeatureTransform`; ``init``: starting
    parameters (``weights``, ``means``, ``precisions_cholesky``). Each iteration maps
    :func:`partition_statistics` over the partitions, tree-sums them on the workers and does the
    M-step on the client (scikit-learn's order: the lower bound is the mean log-likelihood of the
    parameters *entering* the iteration; stop when it changes by less than ``tol``).
    ``persist``: keep the transformed chunks in worker memory (default: when they take less
    than a third of the workers' memory), else re-read the shards at every iteration.
    ``on_iteration(i, lower_bound, seconds)`` is called after each iteration.
    """
    from xsift.kernels.gmm import GMMParams, GMMResult, SuffStats, m_step
    files = shard_files(catalog)
    dtype_name = np.dtype(dtype).name
    tdict = transform.to_dict()
    d = len(tdict["features"])
    if persist is None:
        rows = sum(shard_row_counts(files))
        need = rows * d * np.dtype(dtype).itemsize
        mem = _worker_memory_bytes(client)
        persist = mem == 0 or need < mem / 3
    if persist:
        parts = [client.submit(_feature_chunks, str(f), preset, tdict, chunk_rows, dtype_name, pure=False)
                 for f in files]
    K = np.shape(init.means)[0]
    params = GMMParams(np.asarray(init.weights, dtype), np.asarray(init.means, dtype),
                       np.asarray(getattr(init, "covariances", np.zeros((K, d, d))), dtype),
                       np.asarray(init.precisions_cholesky, dtype))
    lb = -np.inf
    converged = False
    n_iter = 0
    try:
        for it in range(int(max_iter)):
            t0 = time.perf_counter()
            small = GMMParams(params.weights, params.means, params.covariances, params.precisions_cholesky)
            if persist:
                stats = [client.submit(partition_statistics, small, p, pure=False) for p in parts]
            else:
                stats = [client.submit(_file_statistics, small, str(f), preset, tdict, chunk_rows,
                                       dtype_name, pure=False) for f in files]
            total = SuffStats(*tree_sum(client, stats).result())
            if total.n <= 0:
                raise XsiftError(f"{catalog}: no complete detection to fit the mixture on")
            new_lb = float(total.loglik / total.n)
            stats_dt = SuffStats(*(np.asarray(v, dtype) for v in total))
            new = m_step(stats_dt, reg_covar)
            params = GMMParams(*(np.asarray(v) for v in new))
            n_iter = it + 1
            converged = abs(new_lb - lb) < tol
            lb = new_lb
            if on_iteration is not None:
                on_iteration(n_iter, lb, time.perf_counter() - t0)
            if converged:
                break
    finally:
        if persist:
            client.cancel(parts)
    return GMMResult(params.weights, params.means, params.covariances, params.precisions_cholesky,
                     lb, n_iter, bool(converged))


def fit_shards(client, catalog: str | os.PathLike, out_dir: str | os.PathLike, *, preset: dict,
               fit_sample: int = 1_000_000, full_em: bool = False, n_components: int = 6, seed: int = 0,
               max_iter: int = 100, tol: float = 1e-3, reg_covar: float = 1e-6, dtype=np.float64,
               persist: bool | None = None, log=print) -> tuple[object, dict]:
    """Fit the cluster-then-label model on a sharded catalogue and save it in ``out_dir``.

    Always: a seeded sample of ``fit_sample`` detections gives the feature transform, the reference
    statistics and (without ``full_em``) the mixture. With ``full_em`` the sample's mixture is only
    the starting point of :func:`distributed_em` over every complete detection, and the model is
    refitted on the sample with the full-data mixture. Returns (model, report).
    """
    from xsift.methods.cluster_then_label import fit_model
    files = shard_files(catalog)
    t0 = time.perf_counter()
    sample = sample_catalog(client, catalog, fit_sample, seed=seed,
                            columns=catalog_columns(preset, files))
    t_sample = time.perf_counter() - t0
    log(f"sampled {len(sample):,} detections from {len(files)} shards in {t_sample:.1f} s")
    t0 = time.perf_counter()
    model, report = fit_model(sample, preset, n_components=n_components, seed=seed, dtype=dtype)
    t_fit = time.perf_counter() - t0
    report = dict(report or {})
    timings = {"sample_s": t_sample, "fit_sample_s": t_fit}
    if full_em:
        t0 = time.perf_counter()
        iterations = []
        em = distributed_em(client, catalog, preset, model.transform, model.gmm, max_iter=max_iter,
                            tol=tol, reg_covar=reg_covar, dtype=dtype, persist=persist,
                            on_iteration=lambda i, lb, s: (iterations.append(s),
                                                           log(f"EM iteration {i}: lower bound {lb:.6f} ({s:.2f} s)")))
        timings["full_em_s"] = time.perf_counter() - t0
        report["full_em"] = {"n_iter": int(em.n_iter), "converged": bool(em.converged),
                             "lower_bound": float(em.lower_bound), "iteration_s": iterations}
        if not em.converged:
            log(f"warning: full-data EM did not converge in {max_iter} iterations (tol {tol})")
        model, report2 = fit_model(sample, preset, n_components=n_components, seed=seed, dtype=dtype,
                                   gmm_params=em)
        report.update(report2 or {})
    model_hash = model.save(out_dir)
    report.update({"fit_sample": int(len(sample)), "full_em": report.get("full_em", False),
                   "model_hash": model_hash, "timings": timings})
    return model, report


# ----------------------------------------------------------------------------
# classification, resumable
# ----------------------------------------------------------------------------

def output_name(shard: pathlib.Path) -> str:
    """The output shard's file name: the input's own name (so a redo overwrites, never duplicates)."""
    return pathlib.Path(shard).stem + ".parquet"


def _input_identity(path: pathlib.Path) -> dict:
    st = path.stat()
    return {"input": str(path), "input_size": st.st_size, "input_mtime_ns": st.st_mtime_ns}


def shard_done(run_dir: pathlib.Path, shard: pathlib.Path, model_hash: str) -> bool:
    """True when ``shard`` has a ledger record under ``model_hash`` for its current bytes and its output exists."""
    rec_path = run_dir / LEDGER_DIR / (shard.stem + ".json")
    if not rec_path.exists():
        return False
    try:
        rec = json.loads(rec_path.read_text())
    except (OSError, ValueError):
        return False
    ident = _input_identity(shard)
    return (rec.get("model_hash") == model_hash
            and rec.get("input_size") == ident["input_size"]
            and rec.get("input_mtime_ns") == ident["input_mtime_ns"]
            and (run_dir / OUTPUT_DIR / rec.get("output", "")).exists())


def load_classifier(model_dir: str | os.PathLike):
    """The model saved in ``model_dir``: a cluster-then-label model (``xsift fit``/``fit-shards``) or
    a naive-Bayes model (``xsift nb fit``/``nb tune``), told apart by ``model.json``'s format."""
    from xsift.methods import cluster_then_label as clusterlabel, naive_bayes as nbayes
    d = pathlib.Path(model_dir)
    try:
        fmt = json.loads((d / "model.json").read_text()).get("format")
    except FileNotFoundError:
        raise XsiftError(f"{d}: not a model directory (no model.json; write one with `xsift fit`, "
                         "`xsift fit-shards` or `xsift nb fit`)") from None
    except ValueError as exc:
        raise XsiftError(f"{d}/model.json: not valid JSON ({exc})") from None
    if fmt == nbayes.MODEL_FORMAT:
        return nbayes.NaiveBayesKDE.load(d)
    return clusterlabel.ClusterLabelModel.load(d)


# the model each worker process has loaded, by (model directory, hash): loaded once per worker
_WORKER_MODELS: dict = {}


def _worker_model(model_dir: str, model_hash: str):
    """The model of ``model_dir`` in this worker process, loaded on first use and kept.

    Workers read the model directory themselves (like the shards, it must be on storage every worker
    sees) instead of receiving scattered data: a scattered object is lost with the worker holding
    it, a file is not, so a worker that dies and is replaced costs nothing but a reload."""
    key = (model_dir, model_hash)
    if key not in _WORKER_MODELS:
        model = load_classifier(model_dir)
        if model.hash != model_hash:
            raise XsiftError(f"{model_dir}: the model changed on disk during the run (hash "
                             f"{model.hash[:12]}... instead of {model_hash[:12]}...); rerun classify-shards")
        _WORKER_MODELS.clear()
        _WORKER_MODELS[key] = model
    return _WORKER_MODELS[key]


def _classify_shard(path: str, run_dir: str, model_dir: str, model_hash: str, columns: list[str]) -> dict:
    """Worker: classify one shard, write its output then its ledger record (both atomic); return the record."""
    from xsift.data.io import write_json, write_table
    t0 = time.perf_counter()
    shard = pathlib.Path(path)
    run = pathlib.Path(run_dir)
    model = _worker_model(model_dir, model_hash)
    df = read_shard(shard, columns)
    try:
        det, report = model.classify_frame(df, source=str(shard))
    except XsiftError as exc:
        raise XsiftError(f"{shard}: {exc}") from None
    except Exception as exc:
        raise XsiftError(f"{shard}: classification failed ({type(exc).__name__}: {exc})") from exc
    out = run / OUTPUT_DIR / output_name(shard)
    write_table(det.reset_index(drop=True), out)
    record = {**_input_identity(shard), "output": out.name, "model_hash": model_hash,
              "rows_in": int(len(df)), "rows_classified": int(len(det)),
              "counts": {k: report[k] for k in ("complete", "dropped_incomplete", "labelled_not_classified",
                                                 "other_type_not_classified", "no_usable_class",
                                                 "predicted_counts", "log_of_non_positive_made_missing")
                         if k in report},
              "seconds": round(time.perf_counter() - t0, 4), "worker_pid": os.getpid()}
    write_json(record, run / LEDGER_DIR / (shard.stem + ".json"))
    return record


def _prepare_run(run_dir: pathlib.Path, model_hash: str, model_dir, catalog, force: bool,
                 classes: list[str], aggregation: dict | None) -> None:
    record_path = run_dir / RUN_RECORD
    if record_path.exists():
        try:
            previous = json.loads(record_path.read_text()).get("model_hash")
        except (OSError, ValueError):
            previous = None
        if previous != model_hash:
            if not force:
                raise XsiftError(
                    f"{run_dir}: this run directory holds results of model {str(previous)[:12]}..., not of "
                    f"{model_hash[:12]}... ({model_dir}); use another --out, or --force to discard them "
                    "and classify everything again with the new model")
            for sub in (LEDGER_DIR, OUTPUT_DIR, UNIQUE_DIR, AMBIGUOUS_DIR):
                shutil.rmtree(run_dir / sub, ignore_errors=True)
            (run_dir / "vote.json").unlink(missing_ok=True)
    from xsift.data.io import write_json
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json({"model_hash": model_hash, "model": str(model_dir), "catalog": str(catalog),
                "classes": list(classes),
                "aggregation": None if aggregation is None else dict(aggregation)}, record_path)


def classify_shards(client, catalog: str | os.PathLike, model_dir: str | os.PathLike,
                    run_dir: str | os.PathLike, *, force: bool = False, log=print) -> dict:
    """Classify every shard of ``catalog`` with the model in ``model_dir`` into ``run_dir``, resumably.

    Shards already done under this model are skipped. Returns a summary dict (shards done and
    skipped, rows in and classified, seconds).
    """
    t0 = time.perf_counter()
    files = shard_files(catalog)
    run = pathlib.Path(run_dir)
    model = load_classifier(model_dir)
    model_hash = model.hash
    _prepare_run(run, model_hash, model_dir, catalog, force, model.classes, model.vote_aggregation)
    (run / OUTPUT_DIR).mkdir(parents=True, exist_ok=True)
    (run / LEDGER_DIR).mkdir(parents=True, exist_ok=True)
    stems = [f.stem for f in files]
    if len(set(stems)) != len(stems):
        dup = sorted({s for s in stems if stems.count(s) > 1})[0]
        raise XsiftError(f"{catalog}: two shards are named {dup}.parquet (in different directories); "
                         "output shards are named after their input, so input names must be unique")
    current = set(stems)
    for sub, pattern in ((LEDGER_DIR, "*.json"), (OUTPUT_DIR, "*.parquet")):
        for stale in sorted((run / sub).glob(pattern)):
            if stale.stem not in current:   # a shard no longer in the catalogue: drop its results
                log(f"{run}: {stale.stem} is no longer in {catalog}; removing {stale.name} from {sub}/")
                stale.unlink()
    pending = [f for f in files if not shard_done(run, f, model_hash)]
    skipped = len(files) - len(pending)
    if skipped:
        log(f"{run}: {skipped} of {len(files)} shards already classified with this model; skipping them")
    columns = shard_columns(model.wanted_columns(), files)
    records = []
    if pending:
        futures = client.map(_classify_shard, [str(f) for f in pending], run_dir=str(run.resolve()),
                             model_dir=str(pathlib.Path(model_dir).resolve()), model_hash=model_hash, columns=columns,
                             pure=False, key=[f"xsift-classify-{f.stem}-{model_hash[:8]}-{time.time_ns()}"
                                              for f in pending])
        _show_progress(futures)
        failures = []
        from distributed import wait
        wait(futures)
        for f, fut in zip(pending, futures):
            if fut.status == "error":
                exc = fut.exception()
                failures.append(exc if isinstance(exc, XsiftError)
                                else XsiftError(f"{f}: {type(exc).__name__}: {exc}"))
            else:
                records.append(fut.result())
        if failures:
            more = f" (and {len(failures) - 1} more failed shard(s))" if len(failures) > 1 else ""
            raise XsiftError(f"{failures[0]}{more}; the other shards' outputs are complete and a rerun "
                             "redoes only the unfinished ones")
    ledger = ledger_records(run)
    summary = {"shards": len(files), "shards_classified_now": len(pending), "shards_skipped": skipped,
               "rows_in": int(sum(r["rows_in"] for r in ledger.values())),
               "rows_classified": int(sum(r["rows_classified"] for r in ledger.values())),
               "model_hash": model_hash, "one_row_per_source": model.vote_aggregation is None,
               "seconds": time.perf_counter() - t0}
    return summary


def ledger_records(run_dir: str | os.PathLike) -> dict[str, dict]:
    """stem -> ledger record of every shard recorded in ``run_dir``."""
    out = {}
    for p in sorted((pathlib.Path(run_dir) / LEDGER_DIR).glob("*.json")):
        out[p.stem] = json.loads(p.read_text())
    return out


# ----------------------------------------------------------------------------
# voting across shards
# ----------------------------------------------------------------------------

def _vote_partition(part: pd.DataFrame, index: int, out_root: str, classes, aggregation) -> dict:
    """Worker: master classes of one partition of whole sources; write both tables; return counts."""
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

    Writes ``RUN/uniquely_classified/`` and ``RUN/ambiguous/`` (replacing any previous vote as a
    whole) and ``RUN/vote.json``; returns the summary (sources, uniquely, ambiguous, kappa)."""
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
    parts = shuffled.to_delayed()
    tasks = [dask.delayed(_vote_partition)(p, i, str(staging.resolve()), list(classes), dict(aggregation))
             for i, p in enumerate(parts)]
    futures = client.compute(tasks)
    _show_progress(futures)
    results = client.gather(futures)
    table = sum(r["votes"] for r in results)
    summary = {"sources": int(sum(r["sources"] for r in results)),
               "uniquely_classified": int(sum(r["uniquely"] for r in results)),
               "ambiguous": int(sum(r["ambiguous"] for r in results)),
               "cohen_kappa_hard_soft": _kappa_of_table(table), "partitions": n_partitions,
               "seconds": time.perf_counter() - t0}
    # swap the new vote in as a whole
    for sub in (UNIQUE_DIR, AMBIGUOUS_DIR):
        old = run / sub
        if old.exists():
            shutil.rmtree(old)
        os.replace(staging / sub, old)
    shutil.rmtree(staging, ignore_errors=True)
    write_json(summary, run / "vote.json")
    return summary
