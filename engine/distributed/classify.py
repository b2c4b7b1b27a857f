"""Resumable classification of a sharded catalogue on Dask, with any :class:`~xsift.methods.base.Classifier`.

One task per input shard (``client.map`` over the shard files; the shard is the unit of
resumption, so a task is exactly one input file): read the shard's wanted columns, classify it with
:meth:`Classifier.classify_frame`, write the output shard ``detection_level/<input stem>.parquet``
atomically, then the shard's ledger record (:mod:`xsift.distributed.rundir`) atomically.

Each worker loads the model from its directory once and keeps it (not scattered: scattered data dies
with the worker holding it, the model file does not); the JAX kernels work on fixed-size padded row
chunks, so each worker compiles each kernel once.

Faults: a worker that dies mid-task has its task rerun elsewhere by the scheduler; because outputs
are written atomically under a name fixed by the input, the rerun overwrites rather than duplicates.
An unreadable or corrupt shard fails the run with an XsiftError naming its path; shards already
finished keep their complete outputs and ledger records, and a rerun redoes only the others.
An empty (0-row) shard contributes 0 rows: its ledger record has ``"empty": true`` and no output,
the summary counts it in ``shards_empty``, and a rerun skips it like any finished shard.
"""
from __future__ import annotations

import os
import pathlib
import time

from xsift.distributed.cluster import show_progress
from xsift.distributed.rundir import (OUTPUT_DIR, check_unique_names, input_identity, ledger_records,
                                      lock_run_dir,
                                      output_name, prepare_run, remove_stale_results, shard_done,
                                      write_ledger_record)
from xsift.errors import XsiftError
from xsift.methods.base import Classifier

__all__ = ["load_classifier", "classify_shards"]

# the report entries of a shard copied into its ledger record
_LEDGER_COUNTS = ("complete", "dropped_incomplete", "labelled_not_classified", "other_type_not_classified",
                  "no_usable_class", "predicted_counts", "log_of_non_positive_made_missing", "missing",
                  "classified_incomplete")


def load_classifier(model_dir: str | os.PathLike) -> Classifier:
    """The fitted :class:`~xsift.methods.base.Classifier` saved in ``model_dir``, whatever its method
    (:func:`xsift.methods.persistence.load_model` dispatches on the ``kind`` in ``model.json``).

    Raises XsiftError naming the directory when it holds no readable model, or a model that lacks a
    member of the Classifier interface this layer relies on."""
    from xsift.methods.persistence import load_model
    model = load_model(model_dir)
    if not isinstance(model, Classifier):
        missing = [m for m in ("kind", "classes_", "model_hash", "wanted_columns", "classify_frame",
                               "vote_aggregation") if not hasattr(model, m)]
        raise XsiftError(f"{model_dir}: a {type(model).__name__} is not a fitted xsift Classifier "
                         f"(missing {', '.join(missing) or 'members of the interface'})")
    return model


# the model each worker process has loaded, by (model directory, hash): loaded once per worker
_WORKER_MODELS: dict = {}


def _with_missing(model, missing: str | None, model_dir):
    """``model`` classifying with the missing-feature mode ``missing`` (None: the model's own). Raises
    XsiftError for a model without the modes (naive Bayes classifies rows with missing properties as it is)."""
    if missing is None:
        return model
    if "missing" not in model.get_params(deep=False):
        raise XsiftError(f"{model_dir}: a {model.kind} model has no --missing modes (only cluster-then-label)")
    return model.set_params(missing=missing)


def _worker_model(model_dir: str, expected_hash: str, missing: str | None = None):
    """The model of ``model_dir`` in this worker process, loaded on first use and kept.

    Workers read the model directory themselves (like the shards, it must be on storage every worker
    sees) instead of receiving scattered data: a scattered object is lost with the worker holding
    it, a file is not, so a worker that dies and is replaced costs nothing but a reload."""
    key = (model_dir, expected_hash)
    if key not in _WORKER_MODELS:
        model = _with_missing(load_classifier(model_dir), missing, model_dir)
        found = model.model_hash
        if found != expected_hash:
            raise XsiftError(f"{model_dir}: the model changed on disk during the run (hash "
                             f"{found[:12]}... instead of {expected_hash[:12]}...); rerun classify-shards")
        _WORKER_MODELS.clear()
        _WORKER_MODELS[key] = model
    return _WORKER_MODELS[key]


def _classify_shard(path: str, run_dir: str, model_dir: str, expected_hash: str, columns: list[str],
                    missing: str | None = None) -> dict:
    """Worker: classify one shard, write its output then its ledger record (both atomic); return the record."""
    from xsift.data.io import write_table
    from xsift.data.shards import read_shard
    t0 = time.perf_counter()
    shard = pathlib.Path(path)
    run = pathlib.Path(run_dir)
    model = _worker_model(model_dir, expected_hash, missing)
    df = read_shard(shard, columns)
    if len(df) == 0:
        # an empty shard (0 rows): nothing to classify and no output shard (a 0-row output would
        # carry no schema the vote could read); its ledger record says so, so a rerun skips it
        record = {**input_identity(shard), "output": None, "model_hash": expected_hash, "rows_in": 0,
                  "rows_classified": 0, "empty": True, "counts": {},
                  "seconds": round(time.perf_counter() - t0, 4), "worker_pid": os.getpid()}
        write_ledger_record(run, shard, record)
        return record
    try:
        det, report = model.classify_frame(df, source=str(shard))
    except XsiftError as exc:
        raise XsiftError(str(exc) if str(exc).startswith(str(shard)) else f"{shard}: {exc}") from None
    except Exception as exc:
        raise XsiftError(f"{shard}: classification failed ({type(exc).__name__}: {exc})") from exc
    out = run / OUTPUT_DIR / output_name(shard)
    from xsift.data.columns import provenance
    preset = getattr(model, "preset_", None)
    write_table(det.reset_index(drop=True), out, classes=list(model.classes_),
                provenance=provenance(method=model.kind, preset=getattr(preset, "name", None),
                                      model_hash=expected_hash, inputs=[str(shard)], command="xsift classify-shards"))
    record = {**input_identity(shard), "output": out.name, "model_hash": expected_hash,
              "rows_in": int(len(df)), "rows_classified": int(len(det)),
              "counts": {k: report[k] for k in _LEDGER_COUNTS if k in report},
              "seconds": round(time.perf_counter() - t0, 4), "worker_pid": os.getpid()}
    write_ledger_record(run, shard, record)
    return record


def _shards_lacking_features(model, files, catalog) -> dict:
    """The rule of :func:`xsift.data.schema.check_shard_features` for a cluster-then-label model, up front:
    a shard lacking a feature column the others have is refused under ``missing="drop"``, else listed
    ({shard: [columns]}) and classified on the features it has. Naive Bayes classifies missing
    properties as they come (no rule: {})."""
    if getattr(model, "missing", None) is None or getattr(model, "preset_", None) is None:
        return {}
    from xsift.data.features import raw_feature_columns
    from xsift.data.schema import check_shard_features
    from xsift.methods.cluster_then_label import _absent_allowed
    return check_shard_features(files, raw_feature_columns(model.preset_), source=str(catalog),
                                absent_ok=_absent_allowed(model.preset_) if model.missing != "drop" else ())


def classify_shards(client, catalog: str | os.PathLike, model_dir: str | os.PathLike,
                    run_dir: str | os.PathLike, *, force: bool = False, missing: str | None = None,
                    log=print) -> dict:
    """Classify every shard of ``catalog`` with the model in ``model_dir`` into ``run_dir``, resumably.

    Shards already done under this model are skipped; results of shards no longer in the catalogue
    are removed. ``missing``: a cluster-then-label model's missing-feature mode for this run (None: the
    model's own; the run's model hash covers it). Returns a summary dict: ``shards``, ``shards_classified_now``, ``shards_skipped``,
    ``rows_in`` and ``rows_classified`` (over every ledger record), ``shards_empty`` (the stems of
    the 0-row shards, recorded with no output), ``model_hash``,
    ``one_row_per_source`` (True for a method without a vote) and ``seconds``.
    Raises XsiftError when ``run_dir`` holds another model's results (unless ``force``), when two
    shards share a name, when a shard fails (after every other shard has finished), or when another
    process is writing into ``run_dir`` (the run directory is locked while this runs:
    :func:`xsift.distributed.rundir.lock_run_dir`).
    """
    with lock_run_dir(run_dir, command="classify_shards"):
        return _classify_shards(client, catalog, model_dir, run_dir, force=force, missing=missing, log=log)


def _classify_shards(client, catalog, model_dir, run_dir, *, force, missing, log) -> dict:
    from distributed import wait
    from xsift.data.shards import ShardedCatalog
    t0 = time.perf_counter()
    cat = ShardedCatalog(catalog)
    files = cat.files
    run = pathlib.Path(run_dir)
    model = _with_missing(load_classifier(model_dir), missing, model_dir)
    digest = model.model_hash
    check_unique_names(files, catalog)
    by_file = _shards_lacking_features(model, files, catalog)
    prepare_run(run, model_hash=digest, model_dir=model_dir, catalog=catalog,
                classes=[str(c) for c in model.classes_], aggregation=model.vote_aggregation, force=force)
    remove_stale_results(run, files, catalog, log)
    pending = [f for f in files if not shard_done(run, f, digest)]
    skipped = len(files) - len(pending)
    if skipped:
        log(f"{run}: {skipped} of {len(files)} shards already classified with this model; skipping them")
    columns = cat.columns(model.wanted_columns())
    if pending:
        futures = client.map(_classify_shard, [str(f) for f in pending], run_dir=str(run.resolve()),
                             model_dir=str(pathlib.Path(model_dir).resolve()), expected_hash=digest,
                             columns=columns, missing=missing, pure=False,
                             key=[f"xsift-classify-{f.stem}-{digest[:8]}-{time.time_ns()}" for f in pending])
        show_progress(futures, "classify: shards")
        wait(futures)
        if any(fut.status == "cancelled" for fut in futures):
            # a Ctrl-C that Dask's wait absorbed cancels the shards still running: the run was interrupted
            # (never reported as a finished run with rows missing); the shards done are kept for a rerun
            raise KeyboardInterrupt
        failures = []
        for f, fut in zip(pending, futures):
            if fut.status == "error":
                exc = fut.exception()
                failures.append(exc if isinstance(exc, XsiftError)
                                else XsiftError(f"{f}: {type(exc).__name__}: {exc}"))
        if failures:
            more = f" (and {len(failures) - 1} more failed shard(s))" if len(failures) > 1 else ""
            raise XsiftError(f"{failures[0]}{more}; the other shards' outputs are complete and a rerun "
                             "redoes only the unfinished ones")
    ledger = ledger_records(run)
    if by_file:
        log(f"{run}: {len(by_file)} shard(s) lack feature column(s), their rows classified on the features "
            f"they have (--missing {model.missing}): " + "; ".join(f"{pathlib.Path(f).name}: {', '.join(c)}"
                                                                 for f, c in list(by_file.items())[:5]))
    empty = [stem for stem, r in ledger.items() if r.get("empty")]
    if empty:
        log(f"{run}: {len(empty)} empty shard(s) (0 rows), recorded in the ledger with no output: "
            f"{', '.join(empty[:5])}{' ...' if len(empty) > 5 else ''}")
    return {"shards": len(files), "shards_classified_now": len(pending), "shards_skipped": skipped,
            "rows_in": int(sum(r["rows_in"] for r in ledger.values())),
            "rows_classified": int(sum(r["rows_classified"] for r in ledger.values())),
            "shards_empty": empty, **({"features_missing_by_file": by_file} if by_file else {}),
            "model_hash": digest, "one_row_per_source": model.vote_aggregation is None,
            "seconds": time.perf_counter() - t0}
