"""The run directory of a resumable classification: its run record and its per-shard ledger.

Layout of ``RUN/``::

    .lock                       held (fcntl.flock) by the command writing into the run directory
    run.json                    the run record: model hash, model directory, catalogue, classes, aggregation
    detection_level/<stem>.parquet   one output shard per input shard, named after it
    ledger/<stem>.json          one record per finished input shard (written after its output)
    uniquely_classified/, ambiguous/, vote.json   the vote across shards (xsift.distributed.vote)

A ledger record holds the model hash, the input's path, size and modification time, the output's
name and the row counts. A shard is *done* when its record matches the run's model hash and the
input's current size and mtime, and its output exists; a rerun skips done shards and redoes the
others (the output name is fixed by the input name, so a redo overwrites, never duplicates).
One command at a time writes into a run directory: :func:`xsift.distributed.classify_shards` and
:func:`~xsift.distributed.vote_shards` hold :func:`lock_run_dir` while they run (``xsift
classify-shards`` and ``xsift vote-shards`` for the whole command), and a second one into the same
directory, from another process, refuses at once (two runs sharing it would overwrite each other's vote). A run directory holds the results of one model only: :func:`prepare_run` refuses another model
unless forced, and then clears the old results.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pathlib
import shutil
from typing import Iterator, Sequence

from xsift.errors import XsiftError

__all__ = ["LOCK_FILE", "lock_run_dir", "LEDGER_DIR", "OUTPUT_DIR", "UNIQUE_DIR", "AMBIGUOUS_DIR", "RUN_RECORD", "VOTE_RECORD",
           "output_name", "input_identity", "shard_done", "prepare_run", "read_run_record",
           "check_unique_names", "remove_stale_results", "write_ledger_record", "ledger_records"]

LEDGER_DIR = "ledger"
OUTPUT_DIR = "detection_level"
UNIQUE_DIR = "uniquely_classified"
AMBIGUOUS_DIR = "ambiguous"
RUN_RECORD = "run.json"
VOTE_RECORD = "vote.json"
LOCK_FILE = ".lock"


# run directories this process holds locked -> nesting depth (a command holding the lock calls the
# library functions that take it too: a second flock of the same file from this process would refuse)
_HELD: dict[str, int] = {}


@contextlib.contextmanager
def lock_run_dir(run_dir: str | os.PathLike, *, command: str = "xsift") -> Iterator[pathlib.Path]:
    """Hold an exclusive lock on ``run_dir`` (``fcntl.flock`` on ``run_dir/.lock``, created with the
    directory if need be) while the block runs; released when it ends or the process dies. Re-entrant
    within a process (:func:`xsift.distributed.classify_shards` and :func:`~xsift.distributed.vote_shards`
    take it themselves, and the command line holds it for the whole command).

    Raises XsiftError at once, naming the directory, when another process holds it. A directory this
    call created is removed again if the block wrote nothing into it (a command refused before any work
    leaves no empty run directory)."""
    run_dir = pathlib.Path(run_dir)
    key = str(run_dir.resolve())
    if key in _HELD:                        # this process holds it already (the directory exists)
        _HELD[key] += 1
        try:
            yield run_dir
        finally:
            _HELD[key] -= 1
        return
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise XsiftError(f"{run_dir}: cannot lock the run directory ({exc.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise XsiftError(f"{run_dir}: another xsift command is writing into this run directory "
                         f"(it holds {run_dir / LOCK_FILE}); wait for it to finish, or use another "
                         f"directory for {command}") from None
    _HELD[key] = 1
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {command}\n".encode())
        yield run_dir
    finally:
        del _HELD[key]
        if created and os.listdir(run_dir) == [LOCK_FILE]:
            (run_dir / LOCK_FILE).unlink()       # while still held: no other command is using the directory
            run_dir.rmdir()
        os.close(fd)          # closing the descriptor releases the lock


def output_name(shard: str | os.PathLike) -> str:
    """The output shard's file name: the input's own stem + ``.parquet`` (a redo overwrites, never duplicates)."""
    return pathlib.Path(shard).stem + ".parquet"


def input_identity(path: pathlib.Path) -> dict:
    """``{"input", "input_size" (bytes), "input_mtime_ns"}`` of an input shard, as the ledger records it."""
    st = path.stat()
    return {"input": str(path), "input_size": st.st_size, "input_mtime_ns": st.st_mtime_ns}


def _ledger_path(run_dir: pathlib.Path, shard: pathlib.Path) -> pathlib.Path:
    return run_dir / LEDGER_DIR / (shard.stem + ".json")


def shard_done(run_dir: pathlib.Path, shard: pathlib.Path, model_hash: str) -> bool:
    """True when ``shard`` has a ledger record under ``model_hash`` for its current bytes and its output
    exists (an empty shard's record says ``"empty": true`` and has no output)."""
    rec_path = _ledger_path(run_dir, shard)
    if not rec_path.exists():
        return False
    try:
        rec = json.loads(rec_path.read_text())
    except (OSError, ValueError):
        return False
    ident = input_identity(shard)
    return (rec.get("model_hash") == model_hash
            and rec.get("input_size") == ident["input_size"]
            and rec.get("input_mtime_ns") == ident["input_mtime_ns"]
            and (rec.get("empty") is True and rec.get("output") is None       # a 0-row shard: no output
                 or bool(rec.get("output")) and (run_dir / OUTPUT_DIR / rec["output"]).exists()))


def prepare_run(run_dir: pathlib.Path, *, model_hash: str, model_dir, catalog, classes: Sequence[str],
                aggregation: dict | None, force: bool = False) -> None:
    """Create or reopen ``run_dir`` for ``model_hash`` and write its run record.

    A run directory that holds results of another model raises XsiftError, unless ``force``: then its
    ledger, outputs and vote are removed first."""
    from xsift.data.io import write_json
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
            (run_dir / VOTE_RECORD).unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json({"model_hash": model_hash, "model": str(model_dir), "catalog": str(catalog),
                "classes": list(classes),
                "aggregation": None if aggregation is None else dict(aggregation)}, record_path)
    (run_dir / OUTPUT_DIR).mkdir(parents=True, exist_ok=True)
    (run_dir / LEDGER_DIR).mkdir(parents=True, exist_ok=True)


def read_run_record(run_dir: str | os.PathLike) -> dict:
    """The run record of ``run_dir``; XsiftError when there is none or it is not JSON."""
    path = pathlib.Path(run_dir) / RUN_RECORD
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise XsiftError(f"{run_dir}: not a classify-shards run directory (no {RUN_RECORD})") from None
    except (OSError, ValueError) as exc:
        raise XsiftError(f"{path}: unreadable run record ({exc})") from None


def check_unique_names(files: Sequence[pathlib.Path], catalog) -> None:
    """XsiftError if two shards share a stem (their outputs and ledger records would collide)."""
    stems = [f.stem for f in files]
    if len(set(stems)) != len(stems):
        dup = sorted({s for s in stems if stems.count(s) > 1})[0]
        raise XsiftError(f"{catalog}: two shards are named {dup}.parquet (in different directories); "
                         "output shards are named after their input, so input names must be unique")


def remove_stale_results(run_dir: pathlib.Path, files: Sequence[pathlib.Path], catalog, log=print) -> None:
    """Remove the outputs and ledger records of shards no longer in the catalogue."""
    current = {f.stem for f in files}
    for sub, pattern in ((LEDGER_DIR, "*.json"), (OUTPUT_DIR, "*.parquet")):
        for stale in sorted((run_dir / sub).glob(pattern)):
            if stale.stem not in current:
                log(f"{run_dir}: {stale.stem} is no longer in {catalog}; removing {stale.name} from {sub}/")
                stale.unlink()


def write_ledger_record(run_dir: pathlib.Path, shard: pathlib.Path, record: dict) -> None:
    """Write the ledger record of ``shard`` atomically (after its output is complete)."""
    from xsift.data.io import write_json
    write_json(record, _ledger_path(run_dir, shard))


def ledger_records(run_dir: str | os.PathLike) -> dict[str, dict]:
    """stem -> ledger record of every shard recorded in ``run_dir``."""
    out = {}
    for p in sorted((pathlib.Path(run_dir) / LEDGER_DIR).glob("*.json")):
        out[p.stem] = json.loads(p.read_text())
    return out
