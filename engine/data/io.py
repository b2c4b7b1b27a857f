"""Catalogue input and output.

Reads Parquet (one file, a directory of shards, or a glob), CSV, FITS and
VOTable (the last two through astropy) into pandas DataFrames, and writes
Parquet, CSV, FITS and VOTable. Every write is atomic: the table goes to a
temporary file in the destination's directory, which is renamed over the
destination only once it is complete, so a crash or an exception mid-write
never leaves a truncated table behind.

Formats are recognised by suffix; CSV, FITS and VOTable files may be compressed (``.gz``,
``.bz2``, ``.xz`` after the suffix: ``cat.csv.gz``, ``cat.fits.bz2``) and are decompressed as read:

============  ======================================
suffix        format
============  ======================================
.parquet .pq  Apache Parquet (pyarrow)
.csv          comma-separated values (pandas)
.fits .fit    FITS binary table, first table HDU (astropy)
.vot .xml     VOTable (astropy)
============  ======================================

Reading what users download (CSCview and CSC TAP exports, TOPCAT CSV, FITS, VOTable):
:func:`read_catalog` strips blank padding from column names and text values; reads blank values and
the texts ``NaN``, ``nan``, ``null``, ``None``, ``NA``, ``N/A``, ``--`` as missing; turns text
columns holding only numbers into numbers and only booleans (``TRUE``/``True``/``true``/``T``/
``yes``/``1``/...) into a nullable boolean column; parses sexagesimal right ascension (hours) and
declination (degrees) text in columns named ``ra``/``dec`` (or ``*_ra``, ``ra_*``, ``raj2000``...)
into degrees with astropy; and keeps the first of repeated column names (including pandas-style
``name.1`` copies of ``name``), dropping the others. What was done is returned with the table as
``df.attrs["xsift_read"]`` (:class:`ReadReport`), which the schema check copies into the run report.
"""
from __future__ import annotations

import contextlib
import glob as _glob
import json
import os
import pathlib
import re
import tempfile
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import pandas as pd

from xsift.errors import XsiftError

PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv", ".csv.gz")
FITS_SUFFIXES = (".fits", ".fit", ".fits.gz", ".fit.gz")
VOTABLE_SUFFIXES = (".vot", ".votable", ".xml")
# compression read transparently after a CSV, FITS or VOTable suffix -> its name
COMPRESSION_SUFFIXES = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz"}


def table_format(path: str | os.PathLike) -> str:
    """The format of ``path`` from its suffix: 'parquet', 'csv', 'fits' or 'votable' (a compression
    suffix ``.gz``/``.bz2``/``.xz`` after a CSV, FITS or VOTable suffix is allowed)."""
    name, compression = _split_compression(str(path).lower())
    for fmt, suffixes in (("parquet", PARQUET_SUFFIXES), ("csv", CSV_SUFFIXES),
                          ("fits", FITS_SUFFIXES), ("votable", VOTABLE_SUFFIXES)):
        if name.endswith(suffixes) and not (fmt == "parquet" and compression):
            return fmt
    raise XsiftError(
        f"{path}: unknown table format; expected a name ending in .parquet, .csv, .fits or .vot, "
        "the last three optionally compressed (.gz, .bz2, .xz), or a directory of .parquet shards")


def _split_compression(name: str) -> tuple[str, str | None]:
    """(``name`` without a compression suffix, the compression's name or None)."""
    for suffix, compression in COMPRESSION_SUFFIXES.items():
        if name.endswith(suffix):
            return name[:-len(suffix)], compression
    return name, None


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
    FITS or VOTable file (those three optionally ``.gz``/``.bz2``/``.xz`` compressed). ``columns``
    limits what is read (Parquet reads only those columns from disk; names match exactly, else
    case-insensitively); a missing column is reported by :func:`xsift.data.schema.check_catalog`,
    not here. String columns come back as pandas strings with nulls, numeric columns as
    float64/int64 with NaN for masked or missing values, boolean text as pandas' nullable boolean.

    CSV, FITS and VOTable tables are cleaned as the module docstring says (blank padding, missing
    texts, numbers and booleans written as text, sexagesimal ``ra``/``dec``, repeated column names);
    the returned frame's ``attrs["xsift_read"]`` is :meth:`ReadReport.as_dict` of what was done.
    Raises :class:`XsiftError` naming the file for a file that cannot be read.
    """
    files = catalog_files(path)
    reports = []
    frames = []
    for f in files:
        df, report = _read_one(f, columns)
        frames.append(df)
        reports.append(report)
    df = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    report = reports[0] if len(reports) == 1 else ReadReport.merged(str(path), reports)
    report.rows = len(df)
    report.missing = {str(c): int(n) for c, n in df.isna().sum().items() if n}
    df.attrs["xsift_read"] = report.as_dict()
    if len(frames) > 1:     # file -> columns it lacks that others have (xsift.data.schema's rule applies)
        union = set().union(*(map(str, f.columns) for f in frames))
        absent = {str(f): sorted(union - set(map(str, fr.columns))) for f, fr in zip(files, frames)}
        df.attrs["xsift_read"]["absent_columns"] = {f: c for f, c in absent.items() if c}
    return df


@dataclass
class ReadReport:
    """What :func:`read_catalog` did to a file to read it (``df.attrs["xsift_read"]``).

    ``columns_renamed``: name in the file -> name with its blank padding stripped;
    ``duplicate_columns``: one dict per dropped repeat (``dropped``: its name in the file,
    ``kept``: the earlier column of that name, ``position``: its 0-based column number,
    ``differing_rows``: rows where its values differ from the kept column's); ``numeric_from_text`` /
    ``boolean_from_text``: columns whose text became numbers / booleans; ``sexagesimal``: column ->
    the unit its text was read in (``hourangle`` or ``deg``; now degrees); ``missing_texts``: column ->
    values of a text column read as missing from a text such as ``NaN``, ``null`` or blanks (in a CSV
    column the parser types as numbers it reads them as missing itself); ``missing``: column ->
    missing values after reading, whatever their cause (every column with any).
    """
    source: str
    format: str
    compression: str | None = None
    files: int = 1
    rows: int = 0
    columns_renamed: dict = field(default_factory=dict)
    duplicate_columns: list = field(default_factory=list)
    numeric_from_text: list = field(default_factory=list)
    boolean_from_text: list = field(default_factory=list)
    sexagesimal: dict = field(default_factory=dict)
    missing_texts: dict = field(default_factory=dict)
    missing: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"source": self.source, "format": self.format, "compression": self.compression,
                "files": self.files, "rows": self.rows, "columns_renamed": dict(self.columns_renamed),
                "duplicate_columns": [dict(d) for d in self.duplicate_columns],
                "numeric_from_text": list(self.numeric_from_text),
                "boolean_from_text": list(self.boolean_from_text), "sexagesimal": dict(self.sexagesimal),
                "missing_texts": dict(self.missing_texts), "missing": dict(self.missing)}

    @classmethod
    def merged(cls, source: str, reports: list["ReadReport"]) -> "ReadReport":
        """One report for the files of one catalogue (shards): lists joined, counts summed."""
        out = cls(source=source, format=",".join(dict.fromkeys(r.format for r in reports)), files=len(reports))
        for r in reports:
            out.columns_renamed.update(r.columns_renamed)
            out.duplicate_columns += [d for d in r.duplicate_columns if d not in out.duplicate_columns]
            out.numeric_from_text += [c for c in r.numeric_from_text if c not in out.numeric_from_text]
            out.boolean_from_text += [c for c in r.boolean_from_text if c not in out.boolean_from_text]
            out.sexagesimal.update(r.sexagesimal)
            for c, n in r.missing_texts.items():
                out.missing_texts[c] = out.missing_texts.get(c, 0) + n
        return out


def read_report(df: pd.DataFrame) -> dict | None:
    """The :class:`ReadReport` (as a dict) of a frame :func:`read_catalog` returned, else None."""
    return df.attrs.get("xsift_read")


def _read_one(path: pathlib.Path, columns: list[str] | None) -> tuple[pd.DataFrame, "ReadReport"]:
    fmt = table_format(path)
    report = ReadReport(source=str(path), format=fmt, compression=_split_compression(str(path).lower())[1])
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq
            schema_names = pq.read_schema(path).names
            cols = None if columns is None else _select(columns, schema_names)
            return pq.read_table(path, columns=cols).to_pandas(), report
        if fmt == "csv":
            # the header as written (pandas would rename a repeated name to name.1)
            header = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False,
                                 compression="infer").iloc[0].tolist()
            import warnings
            with warnings.catch_warnings():
                # a column typed differently in two chunks comes back as mixed objects, which
                # _clean_column makes one type of: pandas' warning about it is not the user's concern
                warnings.simplefilter("ignore", pd.errors.DtypeWarning)
                df = pd.read_csv(path, skipinitialspace=True, na_values=list(_EXTRA_MISSING_TEXTS),
                                 compression="infer")
            df.columns = [str(h) for h in header]
            if len(header) == 1:        # one column named 'a;b;c': a file split on another delimiter
                from xsift.data.schema import delimiter_hint
                if delimiter_hint(header):
                    raise XsiftError(f"{path}: missing columns: {delimiter_hint(header).removeprefix('; ')}")
        else:
            df = _read_astropy(path, fmt)
    except XsiftError:
        raise
    except Exception as exc:  # any parser failure: name the file, keep the reason
        raise XsiftError(f"{path}: cannot be read as {fmt} ({type(exc).__name__}: {exc})") from exc
    df = _clean_frame(df, report, str(path))
    if columns is not None:
        df = df[_select(columns, list(df.columns))]
    return df, report


def _select(columns: list[str], names: list[str]) -> list[str]:
    """The names of ``names`` that ``columns`` ask for: exact matches, else case-insensitive ones."""
    lower = {}
    for n in names:
        lower.setdefault(str(n).lower(), n)
    out = []
    for c in columns:
        name = c if c in names else lower.get(str(c).lower())
        if name is not None and name not in out:
            out.append(name)
    return out


def _read_astropy(path: pathlib.Path, fmt: str) -> pd.DataFrame:
    from astropy.table import Table
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # VOTable/FITS unit and spec warnings are not the user's problem here
        if fmt == "votable":
            # VOTable FIELDs carry a machine ID (col0 ...) and the column's real name: use the name
            # (astropy decompresses .gz/.bz2/.xz files itself, for both formats). astropy renames a
            # repeated FIELD name (flux, flux2): keep the names as written, so the repeat is reported
            from astropy.io.votable import parse
            votable = parse(str(path)).get_first_table()
            table = votable.to_table(use_names_over_ids=True)
            written = dict(zip(table.colnames, (f.name or f.ID for f in votable.fields)))
            df = astropy_to_frame(table)
            df.columns = [written.get(c, c) for c in df.columns]
            return df
        table = Table.read(path, format="fits")
    return astropy_to_frame(table)


# ----------------------------------------------------------------------------- cleaning what users download

# texts read as missing besides pandas' defaults ("", "NaN", "nan", "null", "NULL", "None", "NA", "N/A" ...)
# ("NONE" is left a value: CSC's grating column says NONE for no grating)
_EXTRA_MISSING_TEXTS = ("--", "Null", "NAN")
_MISSING_TEXTS = frozenset(("", "nan", "-nan", "+nan", "null", "na", "n/a", "--", "<na>"))
_TRUE_TEXTS = frozenset(("true", "t", "yes", "1", "1.0"))
_FALSE_TEXTS = frozenset(("false", "f", "no", "0", "0.0"))
_RA_NAMES = frozenset(("ra", "raj2000", "ra2000", "ra_icrs", "radeg"))
_DEC_NAMES = frozenset(("dec", "de", "dej2000", "decj2000", "dec2000", "de_icrs", "dec_icrs", "dedeg"))
_MANGLED = re.compile(r"^(?P<base>.+)\.(?P<n>[1-9][0-9]*)$")


def _clean_frame(df: pd.DataFrame, report: ReadReport, source: str) -> pd.DataFrame:
    """Strip column names, drop repeated columns, clean every text column (see the module docstring)."""
    raw = [str(c) for c in df.columns]
    names = [c.strip() for c in raw]
    report.columns_renamed = {r: n for r, n in zip(raw, names) if r != n}
    data = {}
    kept_at: dict[str, int] = {}
    dropped = []
    for i, name in enumerate(names):
        base = name
        m = _MANGLED.match(name)
        if name not in kept_at and m is not None and m.group("base") in kept_at:
            base = m.group("base")             # pandas' or an earlier export's copy: name.1 of name
        if base in kept_at:
            dropped.append((i, name, base))
            continue
        kept_at[base] = i
        data[base] = _clean_column(df.iloc[:, i], name, report)
    for i, name, base in dropped:
        values = _clean_column(df.iloc[:, i], name, ReadReport(source, report.format))
        report.duplicate_columns.append({"dropped": raw[i], "kept": base, "position": i,
                                         "differing_rows": _differing_rows(data[base], values)})
    # one block per dtype (a frame built column by column is fragmented, and pandas warns on inserts)
    return pd.DataFrame(data, index=df.index).copy()


def _differing_rows(a: pd.Series, b: pd.Series) -> int:
    """Rows where two columns differ (both missing counts as equal)."""
    na, nb = a.isna().to_numpy(), b.isna().to_numpy()
    try:
        same = (a.to_numpy(dtype=object) == b.to_numpy(dtype=object))
        same = np.asarray(same, dtype=bool)
    except Exception:
        same = np.zeros(len(a), dtype=bool)
    return int((~((na & nb) | (~na & ~nb & same))).sum())


def _clean_column(col: pd.Series, name: str, report: ReadReport) -> pd.Series:
    """One column as xsift reads it: numbers and booleans kept; text stripped, missing texts null,
    then numbers, booleans or sexagesimal angles where every value is one."""
    if pd.api.types.is_numeric_dtype(col.dtype) or pd.api.types.is_bool_dtype(col.dtype):
        return col
    if not (col.dtype == object or pd.api.types.is_string_dtype(col.dtype)):
        return col
    if col.dtype == object and col.map(lambda v: isinstance(v, bytes)).any():
        col = col.map(lambda v: v.decode("utf-8") if isinstance(v, bytes) else v)
    text = col.astype("str").str.strip()                     # vectorised; null stays null
    missing_text = text.notna() & text.str.lower().isin(_MISSING_TEXTS)
    if missing_text.any():
        report.missing_texts[name] = int(missing_text.sum())
        text = text.mask(missing_text)
    present = text.notna().to_numpy()
    if not present.any():
        return text
    kept = text[present]
    lowered = kept.str.lower()
    # a quick look at the first value: most text columns (names, classes) are none of the below
    first, first_lower = kept.iloc[0], lowered.iloc[0]
    could_be_number = not np.isnan(pd.to_numeric(pd.Series([first]), errors="coerce").iloc[0])
    could_be_bool = first_lower in _TRUE_TEXTS or first_lower in _FALSE_TEXTS
    kind = _angle_kind(name)
    if could_be_number:
        numbers = pd.to_numeric(kept, errors="coerce")
        if not numbers.isna().any():
            report.numeric_from_text.append(name)
            out = np.full(len(text), np.nan)
            out[present] = numbers.to_numpy(dtype=np.float64)
            if present.all() and (out == np.round(out)).all() and np.abs(out).max() < 2 ** 53:
                return pd.Series(out.astype(np.int64), index=col.index, name=col.name)
            return pd.Series(out, index=col.index, name=col.name)
    if could_be_bool:
        is_true, is_false = lowered.isin(_TRUE_TEXTS).to_numpy(), lowered.isin(_FALSE_TEXTS).to_numpy()
        if (is_true | is_false).all():
            report.boolean_from_text.append(name)
            out = pd.array([None] * len(text), dtype="boolean")
            out[np.flatnonzero(present)] = is_true
            return pd.Series(out, index=col.index, name=col.name)
    if kind is not None:
        degrees = _sexagesimal(kept.to_numpy(dtype=object), kind)
        if degrees is not None:
            report.sexagesimal[name] = "hourangle" if kind == "ra" and not degrees[1] else "deg"
            out = np.full(len(text), np.nan)
            out[present] = degrees[0]
            return pd.Series(out, index=col.index, name=col.name)
    return text


def _angle_kind(name: str) -> str | None:
    """'ra' or 'dec' for a column named as a right ascension or declination, else None."""
    tokens = re.split(r"[_\s]+", name.strip().lower())
    if any(t in _RA_NAMES for t in tokens):
        return "ra"
    if any(t in _DEC_NAMES for t in tokens):
        return "dec"
    return None


def _sexagesimal(texts: np.ndarray, kind: str) -> tuple[np.ndarray, bool] | None:
    """(degrees, whether the text gave degrees) of sexagesimal angle texts (right ascension in
    hours unless written with d/°), or None if any text is not a sexagesimal angle."""
    from astropy import units as u
    from astropy.coordinates import Angle
    texts = [str(t) for t in texts]
    if not all(re.fullmatch(r"[+-]?\d{1,3}\s*[ :hd°]\s*\d{1,2}(\s*[ :m']\s*\d{1,2}(\.\d*)?)?\s*[s\"]?", t)
               for t in texts):
        return None
    in_degrees = kind == "dec" or any(("d" in t or "°" in t) for t in texts)
    try:
        return Angle(texts, unit=u.deg if in_degrees else u.hourangle).deg.astype(np.float64), in_degrees
    except Exception:
        return None


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

    A CSV, FITS or VOTable ``path`` ending in ``.gz``, ``.bz2`` or ``.xz`` is written compressed
    (what :func:`read_catalog` reads back): the table is written to a plain temporary file, then
    compressed into the temporary file that is renamed over ``path``, so the compression follows the
    final name, not the temporary one's suffix.

    The file gets the umask's mode (:func:`atomic_write`). Raises XsiftError for an unknown format or
    a compressed Parquet name (Parquet compresses its own pages).
    """
    from xsift.data.columns import describe_columns
    path = pathlib.Path(path)
    fmt = fmt or table_format(path)
    if fmt not in ("parquet", "csv", "fits", "votable"):
        raise XsiftError(f"{path}: cannot write format {fmt!r}; use parquet, csv, fits or votable")
    compression = _split_compression(str(path).lower())[1]
    if compression and fmt == "parquet":
        raise XsiftError(f"{path}: Parquet is not written under a {compression} suffix (it compresses its own "
                         "pages); name the file .parquet")
    described = describe_columns(df.columns, classes, columns)
    provenance = dict(provenance or {})
    with atomic_write(path) as final_tmp:
        tmp = final_tmp.with_name(final_tmp.name + ".plain") if compression else final_tmp
        try:
            _write_plain(df, tmp, fmt, described, provenance, target=path)
            if compression:
                _compress(tmp, final_tmp, compression)
        finally:
            if compression:
                tmp.unlink(missing_ok=True)
    return path


def _compress(plain: pathlib.Path, target: pathlib.Path, compression: str) -> None:
    """Copy ``plain`` into ``target`` compressed with ``compression`` ('gzip', 'bz2' or 'xz')."""
    import bz2
    import gzip
    import lzma
    import shutil
    opener = {"gzip": gzip.open, "bz2": bz2.open, "xz": lzma.open}[compression]
    with open(plain, "rb") as src, opener(target, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)


def _write_plain(df: pd.DataFrame, tmp: pathlib.Path, fmt: str, described: dict, provenance: dict,
                 target=None) -> None:
    """Write ``df`` uncompressed to ``tmp`` in ``fmt`` with the metadata :func:`write_table` describes
    (``target``: the final file, named in errors)."""
    if fmt == "parquet":
        _write_parquet(df, tmp, described, provenance)
    elif fmt == "csv":
        df.to_csv(tmp, index=False)
    else:
        import warnings
        table = _to_astropy(df, described, target, fits=fmt == "fits")
        with warnings.catch_warnings():
            # astropy warns that VOUnit deprecates 'erg', and of FITS keywords it has no rule for
            warnings.simplefilter("ignore")
            if fmt == "fits":
                table.meta.update(_fits_keywords(table, described, provenance))
                table.write(tmp, format="fits", overwrite=True)
            else:
                _write_votable(table, tmp, provenance)


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


def _to_astropy(df: pd.DataFrame, described: dict | None = None, target=None, fits: bool = False):
    """A DataFrame as an astropy Table, for FITS and VOTable: nulls in string columns masked;
    datetimes as ISO 8601 text (``2020-01-31T12:00:00``; timezone-aware ones converted to UTC and
    suffixed ``+00:00``), NaT masked; nullable booleans (pandas ``boolean``) as booleans with NA
    masked — for ``fits``, whose logical columns astropy writes without nulls, a boolean column holding
    NA is written as the text ``True``/``False`` with NA masked (empty), which :func:`read_catalog`
    reads back as a nullable boolean; categoricals as their values; and, for the columns in
    ``described`` (name -> ColumnInfo), their unit, description and ``meta['ucd']``.

    Raises XsiftError naming ``target`` (the file written) and the column for a dtype neither
    format holds (timedelta, complex, interval, period...)."""
    from astropy.table import MaskedColumn, Table
    table = Table()
    for name in df.columns:
        col = df[name]
        if isinstance(col.dtype, pd.CategoricalDtype):
            kind = col.cat.categories.dtype
            col = col.astype(object if not pd.api.types.is_numeric_dtype(kind) else "float64")
        if pd.api.types.is_datetime64_any_dtype(col.dtype):
            mask = col.isna().to_numpy()
            if getattr(col.dtype, "tz", None) is not None:
                col = col.dt.tz_convert("UTC")
            values = np.array(["" if m else v.isoformat() for v, m in zip(col.tolist(), mask)], dtype=str)
            table[name] = MaskedColumn(values, mask=mask) if mask.any() else values
        elif pd.api.types.is_string_dtype(col.dtype) or col.dtype == object:
            mask = col.isna().to_numpy()
            values = np.array(["" if m else str(v) for v, m in zip(col.tolist(), mask)], dtype=str)
            table[name] = MaskedColumn(values, mask=mask) if mask.any() else values
        elif pd.api.types.is_bool_dtype(col.dtype):
            mask = col.isna().to_numpy()
            values = col.to_numpy(dtype=bool, na_value=False)
            if mask.any() and fits:
                values = np.where(mask, "", np.where(values, "True", "False"))
            table[name] = MaskedColumn(values, mask=mask) if mask.any() else values
        elif not (pd.api.types.is_numeric_dtype(col.dtype)) or pd.api.types.is_complex_dtype(col.dtype):
            raise XsiftError(f"{target if target is not None else 'table'}: column {str(name)!r} has dtype "
                             f"{col.dtype}, which FITS and VOTable cannot hold; convert it (e.g. a duration "
                             "to seconds as float) or write Parquet")
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
