"""One model format for both methods: ``model.npz`` (arrays) + ``model.json`` (description), one hash.

A model directory holds

* ``model.npz`` — every fitted array, stored without pickle (object arrays are refused);
* ``model.json`` — ``{"format": "xsift-model-1", "kind": KIND, "hash": SHA256, "meta": {...}, "info": {...}}``:
  ``kind`` names the method (``"cluster_then_label"``, ``"naive_bayes"``), ``meta`` everything else the
  model needs to classify (preset, transform, classes, options), ``info`` how it was fitted (timings,
  counts — not part of the model's identity).

The content hash is sha256 over the kind, the canonical JSON of ``meta`` (sorted keys) and, for every
array in name order, its name, dtype, shape and bytes. It does not depend on file times or on
``info``. Reading a model checks the format, the kind, that every file is readable and that the hash
matches — a model without a hash is refused — so an edited prior, a swapped array or a truncated file
is a one-line :class:`~xsift.errors.XsiftError` naming the file, never a silently different model.

Writes are atomic: both files are written into a temporary directory beside the target and moved in,
arrays first, so a ``model.json`` always names a complete ``model.npz``; the files get the permissions
the user's umask gives a new file.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import tempfile
import zipfile

import numpy as np

from xsift.errors import XsiftError

__all__ = ["FORMAT", "KINDS", "content_hash", "save_model", "read_model", "model_kind", "load_model"]

FORMAT = "xsift-model-1"
# kind -> (module, class) of the estimator that loads it (see load_model)
KINDS = {
    "cluster_then_label": ("xsift.methods.cluster_then_label", "ClusterThenLabel"),
    "naive_bayes": ("xsift.methods.naive_bayes", "NaiveBayesKDE"),
}


def _json_default(obj):
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, pathlib.Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _canonical(meta: dict) -> str:
    return json.dumps(meta, sort_keys=True, default=_json_default, allow_nan=True)


def content_hash(kind: str, arrays: dict[str, np.ndarray], meta: dict) -> str:
    """sha256 hex digest over ``kind``, the canonical JSON of ``meta`` and every array's name, dtype, shape, bytes."""
    h = hashlib.sha256(kind.encode())
    h.update(_canonical(meta).encode())
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        if arr.dtype == object:
            raise XsiftError(f"model array {name!r} has dtype object; models hold numeric and string arrays only")
        h.update(f"|{name}|{arr.dtype.str}|{arr.shape}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_model(directory: str | os.PathLike, *, kind: str, arrays: dict[str, np.ndarray], meta: dict,
               info: dict | None = None) -> str:
    """Write ``model.npz`` and ``model.json`` into ``directory`` atomically; returns the content hash.

    kind: the method (a key of :data:`KINDS`); arrays: name -> array (no object dtype); meta: JSON-able
    description the model needs; info: JSON-able fit information, kept but not hashed.
    Raises XsiftError if ``directory`` exists and is not a directory, or cannot be written.
    """
    if kind not in KINDS:
        raise XsiftError(f"unknown model kind {kind!r}; known kinds: {', '.join(KINDS)}")
    directory = pathlib.Path(directory)
    if directory.exists() and not directory.is_dir():
        raise XsiftError(f"{directory}: exists and is not a directory; choose another model directory")
    digest = content_hash(kind, arrays, meta)
    record = {"format": FORMAT, "kind": kind, "hash": digest, "meta": meta, "info": info or {}}
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    except OSError as exc:
        raise XsiftError(f"{directory}: cannot write the model here ({exc.strerror or exc})") from None
    try:
        np.savez(tmp / "model.npz", **{k: np.asarray(v) for k, v in arrays.items()})
        (tmp / "model.json").write_text(json.dumps(record, indent=2, default=_json_default) + "\n")
        mode = 0o666 & ~_umask()
        for name in ("model.npz", "model.json"):
            os.chmod(tmp / name, mode)
        directory.mkdir(exist_ok=True)
        for name in ("model.npz", "model.json"):   # arrays first: a json names a complete npz
            os.replace(tmp / name, directory / name)
    except OSError as exc:
        raise XsiftError(f"{directory}: cannot write the model ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return digest


def _read_record(directory: pathlib.Path) -> dict:
    jpath, npath = directory / "model.json", directory / "model.npz"
    if not directory.is_dir():
        raise XsiftError(f"{directory}: no such model directory; create one with `xsift fit` or `xsift nb fit`")
    for p in (jpath, npath):
        if not p.exists():
            raise XsiftError(f"{directory}: not an xsift model directory ({p.name} missing)")
    try:
        record = json.loads(jpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise XsiftError(f"{jpath}: not valid JSON ({exc})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        found = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise XsiftError(f"{jpath}: model format {found!r}; expected {FORMAT!r} (refit the model with this xsift)")
    for key, typ in (("kind", str), ("meta", dict), ("hash", str)):
        if not isinstance(record.get(key), typ):
            raise XsiftError(f"{jpath}: key {key!r} missing or not a {typ.__name__}; the model file is damaged")
    return record


def model_kind(directory: str | os.PathLike) -> str:
    """The ``kind`` of the model in ``directory`` (reads model.json only). Raises XsiftError."""
    return _read_record(pathlib.Path(directory))["kind"]


def read_model(directory: str | os.PathLike, *, kind: str | None = None) -> tuple[dict, dict, dict]:
    """Read and verify a model directory; returns ``(arrays, meta, info)``.

    kind: the expected kind (None: any). Raises XsiftError naming the file when a file is missing,
    unreadable or truncated, the format or kind differ, an array is an object array, the hash is
    missing, or the content does not match the hash.
    """
    directory = pathlib.Path(directory)
    record = _read_record(directory)
    jpath, npath = directory / "model.json", directory / "model.npz"
    if kind is not None and record["kind"] != kind:
        raise XsiftError(f"{jpath}: a {record['kind']} model; expected a {kind} model")
    try:
        with np.load(npath, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
    except ValueError as exc:   # object arrays need pickle, which is refused
        raise XsiftError(f"{npath}: holds an array that is not plain data ({exc}); the model is damaged") from None
    except (OSError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise XsiftError(f"{npath}: cannot be read ({type(exc).__name__}: {exc}); the file is truncated "
                         "or damaged") from None
    actual = content_hash(record["kind"], arrays, record["meta"])
    if actual != record["hash"]:
        raise XsiftError(f"{directory}: content hash mismatch (model.json says {record['hash'][:12]}, the files "
                         f"give {actual[:12]}); the model files were changed or mixed")
    info = record.get("info") if isinstance(record.get("info"), dict) else {}
    return arrays, record["meta"], info


def load_model(directory: str | os.PathLike):
    """The fitted estimator saved in ``directory``, whatever its method (dispatch on ``kind``), or a
    model shipped with xsift by its name (``"csc-mw"``, :mod:`xsift.models`) when no such directory exists.

    Returns a fitted :class:`~xsift.ClusterThenLabel` or :class:`~xsift.NaiveBayesKDE`. Raises XsiftError.
    """
    import importlib
    from xsift.models import resolve_model
    directory = resolve_model(directory)
    kind = model_kind(directory)
    if kind not in KINDS:
        raise XsiftError(f"{pathlib.Path(directory) / 'model.json'}: unknown model kind {kind!r}; "
                         f"known kinds: {', '.join(KINDS)}")
    module, name = KINDS[kind]
    cls = getattr(importlib.import_module(module), name)
    return cls.load(directory)
