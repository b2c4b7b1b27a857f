"""Catalogue input and output.

Reads Parquet (one file, a directory of shards, or a glob), CSV, FITS and
VOTable (the last two through astropy) into pandas DataFrames, and writes
Parquet, CSV, FITS and VOTable. Every write is atomic: the table goes to a
temporary file in the destination's directory, which is renamed over the
destination only once it is complete, so a crash or an exception mid-write
never leaves a truncated table behind.

Formats are recognised by suffix:

============  ======================================
suffix        format
============  ======================================
.parquet .pq  Apache Parquet (pyarrow)
.csv .csv.gz  comma-separated values (pandas)
.fits .fit    FITS binary table, first table HDU (astropy)
.vot .xml     VOTable (astropy)
============  ======================================
"""
from __future__ import annotations

import contextlib
import glob as _glob
import json
import os
import pathlib
import tempfile
from typing import Iterator

import numpy as np
import pandas as pd

from xsift.errors import XsiftError

PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv", ".csv.gz")
FITS_SUFFIXES = (".fits", ".fit", ".fits.gz", ".fit.gz")
VOTABLE_SUFFIXES = (".vot", ".votable", ".xml")


def table_format(path: str | os.PathLike) -> str:
    """The format of ``path`` from its suffix: 'parquet', 'csv', 'fits' or 'votable'."""
    name = str(path).lower()
    for fmt, suffixes in (("parquet", PARQUET_SUFFIXES), ("csv", CSV_SUFFIXES),
                          ("fits", FITS_SUFFIXES), ("votable", VOTABLE_SUFFIXES)):
        if name.endswith(suffixes):
            return fmt
    raise XsiftError(
        f"{path}: unknown table format; expected a name ending in .parquet, .csv, .fits or .vot "
        "(or a directory of .parquet shards)")


def catalog_files(path: str | os.PathLike) -> list[pathlib.Path]:
    """The files a catalogue path stands for: the file itself, the ``*.parquet`` shards of a
    directory (sorted by name), or the sorted matches of a glob pattern."""
    text = str(path)
    if any(ch in text for ch in "*?["):
        files = sorted(pathlib.Path(p) for p in _glob.glob(text))
        if not files:
            raise XsiftError(f"{text}: the pattern matches no file")
        return files
    p = pathlib.Path(text)
    if p.is_dir():
        files = sorted(q for q in p.iterdir() if q.name.lower().endswith(PARQUET_SUFFIXES)
                       and not q.name.startswith((".", "_")))
        if not files:
            raise XsiftError(f"{p}: the directory holds no .parquet shard")
        return files
    if not p.exists():
        raise XsiftError(f"{p}: no such file or directory")
    return [p]


def read_catalog(path: str | os.PathLike, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a whole catalogue into memory.

    ``path`` is a Parquet file, a directory of Parquet shards, a glob, or a CSV,
    FITS or VOTable file. ``columns`` limits what is read (Parquet reads only
    those columns from disk); a missing column is reported by
    :func:`xsift.data.schema.check_catalog`, not here. String columns come back as
    pandas strings with nulls, numeric columns as float64/int64 with NaN for
    masked values.
    """
    files = catalog_files(path)
    frames = [_read_one(f, columns) for f in files]
    if len(frames) == 1:
        return frames[0]
    return pd.concat(frames, ignore_index=True)


def _read_one(path: pathlib.Path, columns: list[str] | None) -> pd.DataFrame:
    fmt = table_format(path)
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq
            schema_names = pq.read_schema(path).names
            cols = None if columns is None else [c for c in columns if c in schema_names]
            return pq.read_table(path, columns=cols).to_pandas()
        if fmt == "csv":
            df = pd.read_csv(path)
        else:
            df = _read_astropy(path, fmt)
    except XsiftError:
        raise
    except Exception as exc:  # any parser failure: name the file, keep the reason
        raise XsiftError(f"{path}: cannot be read as {fmt} ({type(exc).__name__}: {exc})") from exc
    if columns is not None:
        df = df[[c for c in columns if c in df.columns]]
    return df


def _read_astropy(path: pathlib.Path, fmt: str) -> pd.DataFrame:
    from astropy.table import Table
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # VOTable/FITS unit and spec warnings are not the user's problem here
        if fmt == "votable":
            # VOTable FIELDs carry a machine ID (col0 ...) and the column's real name: use the name
            table = Table.read(path, format="votable", use_names_over_ids=True)
        else:
            table = Table.read(path, format="fits")
    return astropy_to_frame(table)


def astropy_to_frame(table) -> pd.DataFrame:
    """An astropy ``Table`` as a DataFrame, as every reader of xsift returns one.

    Multidimensional columns are left out; masked numbers become NaN; strings (bytes decoded) become
    pandas strings, with empty or masked strings as null (FITS stores a null string as empty).
    """
    # multidimensional columns cannot become DataFrame columns
    table = table[[name for name in table.colnames if len(table[name].shape) <= 1]]
    df = table.to_pandas()
    for name in df.columns:
        col = df[name]
        if col.dtype == object or pd.api.types.is_string_dtype(col.dtype):
            values = [v.decode("utf-8") if isinstance(v, bytes) else v for v in col.tolist()]
            # FITS stores a null string as empty: read it back as null
            df[name] = pd.array([None if (v is None or v is pd.NA or v == "" or (isinstance(v, float)
                                 and np.isnan(v))) else str(v) for v in values], dtype="str")
    return df


def process_umask() -> int:
    """The process umask, read without changing it (Linux: ``/proc/self/status``; elsewhere set and
    restored at once, since ``os.umask`` only reads by writing)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Yield a temporary path beside ``path``; on normal exit rename it over ``path``.

    If the body raises, the temporary file is removed and ``path`` is left as it
    was (absent, or the previous complete version). The file gets the mode a new file gets under the
    process umask (``0o666 & ~umask``: 0644 under umask 022), as ``open(path, "w")`` would give it,
    not the 0600 of :func:`tempfile.mkstemp`: colleagues, shared storage and Dask workers running as
    another user can read the results.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = pathlib.Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~process_umask())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_table(df: pd.DataFrame, path: str | os.PathLike, fmt: str | None = None, *,
                classes=(), provenance: dict | None = None, columns: dict | None = None) -> pathlib.Path:
    """Write ``df`` to ``path`` atomically, in ``fmt`` ('parquet', 'csv', 'fits', 'votable') or the
    format of the suffix, with the metadata each format can hold.

    Column metadata (unit, description, UCD) comes from :mod:`xsift.data.columns`: the registry,
    ``classes`` (the model's class names: those columns are class probabilities, ``<class>_std``
    their standard deviations) and ``columns`` (name -> :class:`~xsift.data.columns.ColumnInfo`,
    overriding the registry for this table). ``provenance`` (:func:`xsift.data.columns.provenance`:
    xsift version, method, preset, model hash, input files) goes into the header.

    * FITS: ``TUNITn``, ``TCOMMn`` (description) and ``TUCDn`` cards and astropy's column block
      (``Table.read`` gives back ``unit``, ``description`` and ``meta['ucd']``); provenance as the
      keywords of :data:`~xsift.data.columns.PROVENANCE_KEYWORDS` and ``INPUT1``, ``INPUT2``...
    * VOTable: ``FIELD`` ``unit``, ``ucd`` and ``DESCRIPTION``; provenance as ``INFO`` elements of the
      ``RESOURCE`` (``xsift_version``, ``method``, ``preset``, ``model_hash``, ``input``) and a
      one-line table ``DESCRIPTION``.
    * Parquet: each field's key-value metadata (``unit``, ``description``, ``ucd``) and the schema's
      ``xsift`` key (provenance as JSON).
    * CSV: values only.

    The file gets the umask's mode (:func:`atomic_write`). Raises XsiftError for an unknown format.
    """
    from xsift.data.columns import describe_columns
    path = pathlib.Path(path)
    fmt = fmt or table_format(path)
    if fmt not in ("parquet", "csv", "fits", "votable"):
        raise XsiftError(f"{path}: cannot write format {fmt!r}; use parquet, csv, fits or votable")
    described = describe_columns(df.columns, classes, columns)
    provenance = dict(provenance or {})
    with atomic_write(path) as tmp:
        if fmt == "parquet":
            _write_parquet(df, tmp, described, provenance)
        elif fmt == "csv":
            df.to_csv(tmp, index=False)
        else:
            import warnings
            table = _to_astropy(df, described)
            with warnings.catch_warnings():
                # astropy warns that VOUnit deprecates 'erg', and of FITS keywords it has no rule for
                warnings.simplefilter("ignore")
                if fmt == "fits":
                    table.meta.update(_fits_keywords(table, described, provenance))
                    table.write(tmp, format="fits", overwrite=True)
                else:
                    _write_votable(table, tmp, provenance)
    return path


def _write_parquet(df: pd.DataFrame, tmp: pathlib.Path, described: dict, provenance: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    table = pa.Table.from_pandas(df, preserve_index=False)
    fields = []
    for f in table.schema:
        info = described.get(f.name)
        meta = {} if info is None else {k: v for k, v in (("unit", info.unit), ("description", info.description),
                                                           ("ucd", info.ucd)) if v is not None}
        fields.append(f.with_metadata(meta) if meta else f)
    schema_meta = dict(table.schema.metadata or {})
    if provenance:
        schema_meta[b"xsift"] = json.dumps(provenance).encode()
    table = pa.Table.from_arrays(table.columns, schema=pa.schema(fields, metadata=schema_meta))
    # dictionary-encode only the text columns: on random floats it costs time and space
    text = [str(c) for c in df.columns if not pd.api.types.is_numeric_dtype(df[c].dtype)
            and not pd.api.types.is_bool_dtype(df[c].dtype)]
    pq.write_table(table, tmp, use_dictionary=text or False)


def _fits_keywords(table, described: dict, provenance: dict) -> dict:
    """Header keywords -> (value, comment): TCOMMn/TUCDn of the described columns, then provenance."""
    from xsift.data.columns import PROVENANCE_KEYWORDS
    cards = {}
    for n, name in enumerate(table.colnames, start=1):
        info = described.get(name)
        if info is not None and info.description:
            cards[f"TCOMM{n}"] = (info.description, f"description of {name}"[:40])
        if info is not None and info.ucd:
            cards[f"TUCD{n}"] = (info.ucd, f"UCD of {name}"[:40])
    for key, (keyword, comment) in PROVENANCE_KEYWORDS.items():
        if key in provenance:
            cards[keyword] = (str(provenance[key]), comment)
    for i, name in enumerate(provenance.get("inputs", ()), start=1):
        cards[f"INPUT{i}"] = (str(name), "input file")
    return cards


def _write_votable(table, tmp: pathlib.Path, provenance: dict) -> None:
    from astropy.io.votable import from_table
    from astropy.io.votable.tree import Info
    votable = from_table(table)
    resource = votable.resources[0]
    for key, value in provenance.items():
        if key == "inputs":   # one INFO per input file, each with its own XML ID
            for i, item in enumerate(value, start=1):
                resource.infos.append(Info(ID=f"xsift_input{i}", name="input", value=str(item)))
        else:
            resource.infos.append(Info(ID=key if key.startswith("xsift_") else f"xsift_{key}", name=key,
                                       value=str(value)))
    if provenance:
        words = [f"written by xsift {provenance.get('xsift_version', '')}".strip()]
        words += [f"{k.replace('_', ' ')} {provenance[k]}" for k in ("method", "preset", "model_hash")
                  if k in provenance]
        words += [f"input {p}" for p in provenance.get("inputs", ())]
        votable.get_first_table().description = "; ".join(words)
    votable.to_xml(str(tmp))


def _to_astropy(df: pd.DataFrame, described: dict | None = None):
    """A DataFrame as an astropy Table, with nulls in string columns masked and, for the columns in
    ``described`` (name -> ColumnInfo), their unit, description and ``meta['ucd']``."""
    from astropy.table import MaskedColumn, Table
    table = Table()
    for name in df.columns:
        col = df[name]
        if pd.api.types.is_string_dtype(col.dtype) or col.dtype == object:
            mask = col.isna().to_numpy()
            values = np.array(["" if m else str(v) for v, m in zip(col.tolist(), mask)], dtype=str)
            table[name] = MaskedColumn(values, mask=mask) if mask.any() else values
        elif pd.api.types.is_bool_dtype(col.dtype):
            table[name] = col.to_numpy(dtype=bool)
        elif isinstance(col.dtype, pd.api.extensions.ExtensionDtype) and col.isna().any():
            mask = col.isna().to_numpy()
            table[name] = MaskedColumn(col.to_numpy(dtype=float, na_value=np.nan), mask=mask)
        else:
            table[name] = col.to_numpy()
        info = (described or {}).get(str(name))
        if info is not None:
            column = table[name]
            if info.unit is not None:
                column.unit = info.unit
            if info.description:
                column.description = info.description
            if info.ucd:
                column.meta["ucd"] = info.ucd
    return table


def write_json(obj, path: str | os.PathLike) -> pathlib.Path:
    """Write ``obj`` as indented, standard JSON, atomically (NaN and infinities become ``null``,
    which every JSON reader accepts; Python's bare ``NaN`` is not JSON)."""
    path = pathlib.Path(path)
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(_finite(obj), indent=2, sort_keys=False, default=_json_default,
                                  allow_nan=False) + "\n")
    return path


def _finite(obj):
    """``obj`` with every non-finite float (Python or NumPy, in dicts, lists, tuples, arrays) as None."""
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _finite(obj.tolist())
    return obj


def _json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (pathlib.Path,)):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
