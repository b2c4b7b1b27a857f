"""Schema checks: a catalogue is checked against what the chosen preset needs before any work.

What is checked, and what happens:

=====================================  ==============================================================
problem                                handling
=====================================  ==============================================================
empty table                            SchemaError
a required column spelled otherwise    found case-insensitively (``sc_hr1`` for ``SC_HR1``) or under
                                       one of its preset aliases (``HR1``), renamed, listed in the
                                       report (``columns_matched``); two candidates: SchemaError
a required column is missing           SchemaError naming the column(s), the file, near names, and
                                       which of the preset's feature columns were found and missing
non-numeric text in a numeric column   SchemaError naming the column, a bad value and its row
a feature column null in every row     SchemaError naming the column when fitting; when a saved
                                       model is applied (classify, one shard of many) the column is
                                       listed in the report and its rows count as incomplete
+/-inf in a numeric column             treated as missing (set to NaN), counted per column
a number beyond +/-MAGNITUDE_LIMIT     (1e150: its square overflows float64, so no distance or
                                       density of it is finite; e.g. a 1e200 sentinel) treated as
                                       missing, counted per column (``beyond_range_to_missing``)
a file of a catalogue of several       (a shard without a feature column the others have) the rule of
files lacking a feature column         a one-file table lacking it: refused (SchemaError naming the file
                                       and column) unless the caller accepts the feature absent
                                       (``absent_ok``: classifying under --missing median/marginalise);
                                       then its rows are classified on the features they have and the
                                       file is listed (``features_missing_by_file``). The shard commands
                                       apply it up front to the Parquet footers
                                       (:func:`check_shard_features`)
ra / dec (``positions=``)               text that is not a number: SchemaError naming the row (the reader
                                       already parsed sexagesimal text); ``ra`` outside [0, 360): wrapped
                                       into it, counted (``ra_wrapped``); ``dec`` past +/-90 by at most
                                       1e-9 deg (rounding): clamped, counted (``dec_clamped``); further:
                                       SchemaError naming the row; missing (NaN) ra or dec: counted
                                       (``missing_positions``), the row is kept
a null source name (first ``key``      SchemaError naming the column and the first such row: a null name
column)                                would vote unrelated detections as one source
duplicate (source, detection) rows     equal in every column the check reads (required, numeric,
                                       feature and key columns): all but the first dropped, counted
                                       (a table listing one detection under several names of its own,
                                       as a per-object download does, keeps one); duplicates that
                                       differ in those columns: SchemaError listing the first keys
=====================================  ==============================================================

The counts are returned in a :class:`CheckReport` and go into the run's manifest, with what the
reader did to the file (:func:`xsift.data.io.read_catalog`'s ``attrs["xsift_read"]``) and the
feature columns found, under ``input``.
"""
from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from xsift.errors import SchemaError

# a declination this far past +/-90 deg is rounding (a position written with a few more digits than
# it holds) and is clamped; further is refused
DEC_TOLERANCE_DEG = 1e-9
# values whose range is at most this fraction of their magnitude are equal up to rounding (float32
# data read as float64 included): a feature or property constant to this precision carries no
# information, and stretching its rounding noise (min-max scaling, a KDE bandwidth) would invent some
ROUNDING_SPAN = 1e-6


def constant_to_rounding(lo, hi) -> np.ndarray:
    """True where the range [lo, hi] (arrays or scalars) is 0 or at most ROUNDING_SPAN of its magnitude."""
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    return ~(hi - lo > ROUNDING_SPAN * np.maximum(np.abs(lo), np.abs(hi)))


# a number this large (in magnitude) is missing: its square overflows float64 (1.8e308), so no
# distance, variance or density computed from it is finite
MAGNITUDE_LIMIT = 1e150
# a header line split on one of these (a file read with the wrong delimiter) names one column holding them
_DELIMITERS = {";": "';'", "\t": "tab", "|": "'|'"}


@dataclass
class CheckReport:
    rows_in: int
    rows_out: int
    duplicates_dropped: int = 0
    infinite_to_missing: dict = field(default_factory=dict)
    all_null_features: list = field(default_factory=list)
    # required name -> the table's name for it, where it was found case-insensitively or by an alias
    columns_matched: dict = field(default_factory=dict)
    # what the reader did to the file (xsift.data.io.ReadReport) and the feature columns found; None
    # for a frame that did not come from read_catalog
    input: dict | None = None
    # feature columns the table lacks entirely, added as null columns (``absent_ok``): listed, not refused
    absent_features: list = field(default_factory=list)
    # codes of the first key column (the source name) for the rows of the checked frame: equal exactly
    # where the names are; kept so that later steps need not factorise the names again (not reported)
    key_codes: np.ndarray | None = field(default=None, repr=False, compare=False)
    # positions (``positions=``): ra values wrapped into [0, 360), dec values clamped to +/-90 (within
    # DEC_TOLERANCE_DEG), missing (NaN) ra or dec per column
    ra_wrapped: int = 0
    dec_clamped: int = 0
    missing_positions: dict = field(default_factory=dict)
    # numbers beyond +/-MAGNITUDE_LIMIT set to missing, per column
    beyond_range_to_missing: dict = field(default_factory=dict)
    # file of a several-file catalogue -> the feature columns it lacks (accepted by ``absent_ok``)
    features_missing_by_file: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        out = {"rows_in": self.rows_in, "rows_out": self.rows_out,
               "duplicates_dropped": self.duplicates_dropped,
               "infinite_to_missing": dict(self.infinite_to_missing),
               "all_null_features": list(self.all_null_features)}
        if self.columns_matched:
            out["columns_matched"] = dict(self.columns_matched)
        if self.absent_features:
            out["absent_features"] = list(self.absent_features)
        if self.beyond_range_to_missing:
            out["beyond_range_to_missing"] = dict(self.beyond_range_to_missing)
        if self.features_missing_by_file:
            out["features_missing_by_file"] = {k: list(v) for k, v in self.features_missing_by_file.items()}
        if self.missing_positions or self.ra_wrapped or self.dec_clamped:
            out["positions"] = {"ra_wrapped": self.ra_wrapped, "dec_clamped": self.dec_clamped,
                                "missing": dict(self.missing_positions)}
        if self.input is not None:
            out["input"] = dict(self.input)
        return out


def match_columns(df: pd.DataFrame, wanted: Sequence[str], aliases: Mapping[str, Sequence[str]] | None = None,
                  *, source: str = "catalogue") -> tuple[pd.DataFrame, dict[str, str]]:
    """``df`` with each ``wanted`` column that it lacks under that exact name renamed from the table's
    column of the same name in another case (``sc_hr1`` for ``SC_HR1``) or from one of its
    ``aliases`` (exactly, then in any case), and the renames ``{wanted: name in the table}``.

    A column the table has under its exact name is never renamed, and a table column that is itself
    wanted is never taken for another. Raises :class:`SchemaError` naming ``source`` when two table
    columns could be the wanted one.
    """
    wanted = list(dict.fromkeys(wanted))
    names = [str(c) for c in df.columns]
    present = set(names)
    taken = {w for w in wanted if w in present}
    renames: dict[str, str] = {}
    for w in wanted:
        if w in present:
            continue
        for candidate in [w, *((aliases or {}).get(w, ()))]:
            exact = [n for n in names if n == candidate and n not in taken]
            found = exact or [n for n in names if n.lower() == candidate.lower() and n not in taken]
            if len(found) > 1:
                raise SchemaError(f"{source}: columns {', '.join(repr(f) for f in found)} could each be the "
                                  f"preset's column {w!r}; keep one, or rename the columns")
            if found:
                renames[w] = found[0]
                taken.add(found[0])
                break
    if renames:
        df = df.rename(columns={v: k for k, v in renames.items()})
    return df, renames


def check_catalog(df: pd.DataFrame, *, required: list[str], numeric: list[str] = (),
                  features: list[str] = (), key: list[str] = (), source: str = "catalogue",
                  all_null: str = "error", aliases: Mapping[str, Sequence[str]] | None = None,
                  optional: Sequence[str] = (), positions: tuple[str, str] | None = None,
                  absent_ok: Sequence[str] = ()) -> tuple[pd.DataFrame, CheckReport]:
    """Check ``df`` and return it cleaned (infinities to NaN, identical duplicates dropped) with a report.

    ``required``: columns that must exist; ``numeric``: columns that must hold numbers;
    ``features``: numeric columns that must not be null in every row; ``key``: columns
    that identify one row (e.g. ``["name", "obsid"]``); ``source``: the file name
    used in messages; ``all_null``: ``"error"`` (default) raises on a feature column null in
    every row, ``"count"`` lists it in the report instead (its rows are then incomplete);
    ``aliases``: required column -> other names it may have in a table (a preset's ``[aliases]``);
    required columns are also found in another letter case (:func:`match_columns`); ``optional``:
    columns found the same way when the table has them (e.g. a reference-label column when classifying);
    ``positions``: the (ra, dec) columns, in degrees, checked as the module's table says (they must
    also be listed in ``numeric``). A null value in the first ``key`` column (the source name) raises
    :class:`SchemaError`: the vote groups detections by that name. ``absent_ok``: feature columns the
    table may lack entirely (a model classifying on the observed features, ``missing="median"`` or
    ``"marginalise"``): each absent one is added as a null column and listed in ``absent_features``
    (and, with ``all_null="count"``, in ``all_null_features``).
    """
    if all_null not in ("error", "count"):
        raise ValueError(f"all_null must be 'error' or 'count', got {all_null!r}")
    if len(df) == 0:
        raise SchemaError(f"{source}: the table is empty; expected at least one detection")
    read = df.attrs.get("xsift_read")
    df, matched = match_columns(df, list(required) + list(numeric) + list(features) + list(optional), aliases,
                                source=source)
    absent = [c for c in dict.fromkeys(absent_ok) if c not in df.columns]
    if absent:
        df = df.assign(**{c: np.full(len(df), np.nan) for c in absent})
    missing = [c for c in dict.fromkeys(required) if c not in df.columns]
    feature_list = list(dict.fromkeys(features))
    found_features = [c for c in feature_list if c in df.columns]
    if missing:
        delimiter = delimiter_hint(df.columns)
        if delimiter:        # the real cause: name it alone rather than every column as missing
            raise SchemaError(f"{source}: missing column{'s' if len(missing) > 1 else ''} "
                              f"{', '.join(repr(c) for c in missing[:3])}{', ...' if len(missing) > 3 else ''}"
                              + delimiter)
        hints = []
        for c in missing:
            near = _near_name(c, [str(x) for x in df.columns])
            hints.append(f"{c!r}" + (f" (did you mean {near!r}?)" if near else ""))
        absent = [c for c in feature_list if c not in df.columns]
        features_text = (f"; feature columns found: {', '.join(found_features) or 'none'}; missing: "
                         f"{', '.join(absent)}" if absent else "")
        raise SchemaError(f"{source}: missing column{'s' if len(missing) > 1 else ''} "
                          f"{', '.join(hints)}; the preset needs {', '.join(dict.fromkeys(required))}"
                          + features_text)
    report = CheckReport(rows_in=len(df), rows_out=len(df), columns_matched=matched, absent_features=absent)
    if read is not None and read.get("absent_columns"):
        report.features_missing_by_file = features_absent_by_file(
            read["absent_columns"], feature_list, absent_ok=absent_ok, source=source)
    if read is not None:
        report.input = {**read, "features_found": [c for c in found_features if c not in absent],
                        "features_missing": absent}
    df = df.copy(deep=False)    # columns are replaced below, never written in place: the caller's frame is kept
    for col in dict.fromkeys(list(numeric) + list(features)):
        series = df[col]
        original = series
        if not pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype):
            converted = pd.to_numeric(series, errors="coerce")
            bad = converted.isna() & series.notna()
            if bad.any():
                i = int(np.flatnonzero(bad.to_numpy())[0])
                raise SchemaError(f"{source}: column {col!r} must be numeric but row {i} holds "
                                  f"{series.iloc[i]!r} ({int(bad.sum())} such value(s))")
            series = converted
        # a column is replaced only if its values change: replacing one column of a frame whose
        # columns share one block copies that block (pandas' copy-on-write), ~4 ms per column at 1M rows
        if pd.api.types.is_integer_dtype(series.dtype) and not series.isna().any():
            if series is not original:
                df[col] = series  # integers cannot be infinite: keep their dtype
            continue
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            beyond = np.abs(values) > MAGNITUDE_LIMIT            # infinities included
        if beyond.any():
            inf = np.isinf(values)
            if inf.any():
                report.infinite_to_missing[col] = int(inf.sum())
            if (beyond & ~inf).any():
                report.beyond_range_to_missing[col] = int((beyond & ~inf).sum())
            values = np.where(beyond, np.nan, values)
        elif series is original and series.dtype == np.dtype(np.float64):
            continue                # already float64 NumPy values without infinities
        df[col] = values
    if positions is not None:
        df = _check_positions(df, positions, report, source)
    for col in features:
        if df[col].isna().all():
            if all_null == "count":
                report.all_null_features.append(col)
                continue
            raise SchemaError(f"{source}: feature column {col!r} is null in every row; "
                              "expected measured values")
    if key:
        names = df[key[0]]
        null = names.isna().to_numpy()
        if null.any():
            i = int(np.flatnonzero(null)[0])
            raise SchemaError(f"{source}: column {key[0]!r} (the source name) is null in row {i} "
                              f"({int(null.sum())} such row(s)); expected a name for every detection, since "
                              "detections are voted per source name (drop those rows or give each a name)")
        dup, key_codes = _duplicated_keys(df, list(key))
        report.key_codes = key_codes
        if dup.any():
            # compared on the columns the caller reads: columns the method never sees (a download's
            # own row numbers or object names) do not make two copies of one detection different
            read = [c for c in dict.fromkeys(list(required) + list(numeric) + list(features) + list(key))
                    if c in df.columns]
            exact = df.duplicated(subset=read, keep="first")
            conflicting = df.loc[dup, read].drop_duplicates()
            if conflicting.duplicated(subset=list(key), keep=False).any():
                keys = conflicting.loc[conflicting.duplicated(subset=list(key), keep=False), list(key)]
                shown = "; ".join(", ".join(str(v) for v in row) for row in
                                  keys.drop_duplicates().head(5).itertuples(index=False))
                raise SchemaError(f"{source}: {len(keys.drop_duplicates())} ({', '.join(key)}) key(s) "
                                  f"appear on rows with different values, e.g. {shown}; "
                                  "expected one row per detection")
            report.duplicates_dropped = int(exact.sum())
            df = df[~exact].reset_index(drop=True)
            report.key_codes = key_codes[~exact.to_numpy()]
    report.rows_out = len(df)
    return df, report


def features_absent_by_file(absent_columns: Mapping[str, Sequence[str]], features: Sequence[str], *,
                            absent_ok: Sequence[str] = (), source: str = "catalogue") -> dict[str, list[str]]:
    """The rule for a catalogue of several files (shards) some of which lack a feature column: ``{file:
    [feature columns it lacks]}`` (files lacking none left out), after raising :class:`SchemaError`
    naming the first file and column when a lacking feature is not in ``absent_ok``.

    ``absent_columns``: file -> the column names it lacks (compared case-insensitively with
    ``features``). A file lacking a feature is treated as a one-file table lacking it: refused, unless
    the caller accepts that feature absent (``absent_ok``: a model classifying on the observed features,
    ``--missing median`` or ``marginalise``), when its rows are classified on the features they have.
    """
    wanted = {str(f).lower(): f for f in features}
    allowed = {str(f).lower() for f in absent_ok}
    out: dict[str, list[str]] = {}
    for file, columns in absent_columns.items():
        lacking = [wanted[str(c).lower()] for c in columns if str(c).lower() in wanted]
        if not lacking:
            continue
        refused = [c for c in lacking if str(c).lower() not in allowed]
        if refused:
            others = sum(1 for f, cols in absent_columns.items() if f != file
                         and any(str(c).lower() in wanted and str(c).lower() not in allowed for c in cols))
            raise SchemaError(f"{file}: missing feature column{'s' if len(refused) > 1 else ''} "
                              f"{', '.join(repr(c) for c in refused)}, which the other files of {source} have"
                              + (f" ({others} more file(s) lack one too)" if others else "")
                              + "; add the column or leave the file out (classifying with --missing "
                                "marginalise or median classifies its rows on the features they have)")
        out[str(file)] = lacking
    return out


def check_shard_features(files: Sequence, features: Sequence[str], *, absent_ok: Sequence[str] = (),
                         source: str = "catalogue") -> dict[str, list[str]]:
    """:func:`features_absent_by_file` for Parquet shards, read from their footers before any work: the
    check ``fit-shards`` and ``classify-shards`` make up front, the one ``classify DIR`` makes on the
    table it read. A feature column that every shard lacks is left to the per-table check."""
    import pyarrow.parquet as pq
    names = {}
    for f in files:
        try:
            names[str(f)] = {str(n).lower() for n in pq.read_schema(f).names}
        except Exception:           # an unreadable shard is named by the step that reads it
            continue
    if len(names) < 2:
        return {}
    union = set().union(*names.values())
    wanted = [c for c in features if str(c).lower() in union]
    absent = {f: [c for c in wanted if str(c).lower() not in cols] for f, cols in names.items()}
    return features_absent_by_file({f: c for f, c in absent.items() if c}, features, absent_ok=absent_ok,
                                   source=source)


def check_shard_names(files: Sequence, column: str, *, source: str = "catalogue") -> None:
    """Raise :class:`SchemaError` naming the first Parquet shard whose ``column`` (the source name) holds
    nulls, from the null counts of its footer's statistics (no data read; a shard without statistics is
    left to the per-table check). ``fit-shards`` checks this up front: its sample would otherwise name
    only a row of the sample."""
    import pyarrow.parquet as pq
    for f in files:
        try:
            meta = pq.ParquetFile(f).metadata
            names = [meta.schema.column(j).name for j in range(meta.num_columns)]
            j = next((k for k, n in enumerate(names) if n.lower() == column.lower()), None)
            if j is None:
                continue
            stats = [meta.row_group(g).column(j).statistics for g in range(meta.num_row_groups)]
            nulls = sum(st.null_count for st in stats if st is not None and st.has_null_count)
        except Exception:       # an unreadable shard is named by the step that reads it
            continue
        if nulls:
            raise SchemaError(f"{f}: column {column!r} (the source name) is null in {nulls} row(s); expected a "
                              "name for every detection, since detections are voted per source name (drop those "
                              "rows or give each a name)")


def _near_name(wanted: str, names: list[str]) -> str | None:
    """The table's name closest to ``wanted``, compared in lower case (``Hard_HS`` for ``hard_hm``)."""
    lower = {}
    for n in names:
        lower.setdefault(n.lower(), n)
    near = difflib.get_close_matches(wanted.lower(), list(lower), n=1)
    return lower[near[0]] if near else None


def delimiter_hint(columns) -> str:
    """A hint when the table has one column whose name holds a delimiter (a file split on the wrong one)."""
    names = [str(c) for c in columns]
    if len(names) > 2:
        return ""
    for delim, said in _DELIMITERS.items():
        if any(delim in n for n in names):
            return (f"; the table has {len(names)} column{'s' if len(names) > 1 else ''}, named "
                    f"{names[0][:60]!r}...: it looks like a "
                    f"{said}-separated file; save it comma-separated (or as Parquet/FITS/VOTable)")
    return ""


def checked_declinations(dec, *, column: str = "dec", source: str = "catalogue") -> np.ndarray:
    """Declinations (n,) in degrees with values past +/-90 by at most DEC_TOLERANCE_DEG (rounding) clamped to
    +/-90; raises :class:`SchemaError` naming ``source``, ``column`` and the first row further past (the
    check every step that computes sky coordinates makes: the schema check, a galactic-latitude feature,
    the crossmatch). NaN stays NaN."""
    dec = np.asarray(dec, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        beyond = np.abs(dec) > 90.0 + DEC_TOLERANCE_DEG
        if beyond.any():
            i = int(np.flatnonzero(beyond)[0])
            raise SchemaError(f"{source}: column {column!r} row {i} holds {float(dec[i])!r}, outside [-90, 90] "
                              f"({int(beyond.sum())} such value(s)); expected a declination in degrees")
        return np.clip(dec, -90.0, 90.0) if (np.abs(dec) > 90.0).any() else dec


def _check_positions(df: pd.DataFrame, positions: tuple[str, str], report: CheckReport,
                     source: str) -> pd.DataFrame:
    """``df`` with ra wrapped into [0, 360) and dec clamped within DEC_TOLERANCE_DEG of +/-90 (counted in
    ``report``); SchemaError naming the first row whose dec lies further past +/-90. Missing values are
    counted in ``report.missing_positions`` and kept."""
    ra_col, dec_col = positions
    for col in (ra_col, dec_col):
        n = int(df[col].isna().sum())
        if n:
            report.missing_positions[col] = n
    dec = df[dec_col].to_numpy(dtype=np.float64, na_value=np.nan)
    clamp = np.abs(dec) > 90.0
    if clamp.any():
        report.dec_clamped = int(clamp.sum())
        df[dec_col] = checked_declinations(dec, column=dec_col, source=source)
    ra = df[ra_col].to_numpy(dtype=np.float64, na_value=np.nan)
    wrap = (ra < 0) | (ra >= 360)
    if wrap.any():
        report.ra_wrapped = int(wrap.sum())
        wrapped = np.mod(ra, 360.0)
        df[ra_col] = np.where(wrapped >= 360.0, 0.0, wrapped)     # -1e-17 % 360 rounds to 360
    return df


def duplicated_keys(df: pd.DataFrame, key: list[str]) -> pd.Series:
    """``df.duplicated(subset=key, keep=False)``: every row whose key occurs more than once.

    Each key column is factorised once and the codes combined into one 64-bit integer per row
    (a hash of integers is far cheaper than pandas' tuple hashing of mixed columns); keys whose
    combined range would not fit fall back to pandas. Only rows whose first key column repeats
    (a source with several detections) can be duplicates, so the other columns are factorised and
    the combined keys compared on those rows only.
    """
    return _duplicated_keys(df, key)[0]


def _duplicated_keys(df: pd.DataFrame, key: list[str]) -> tuple[pd.Series, np.ndarray]:
    """(:func:`duplicated_keys`, the codes of the first key column (nulls coded too))."""
    out = np.zeros(len(df), dtype=bool)
    first, rest = key[0], list(key[1:])
    first_codes, uniques = pd.factorize(df[first], use_na_sentinel=False)
    first_codes = first_codes.astype(np.int64, copy=False)
    repeated = np.bincount(first_codes, minlength=len(uniques))[first_codes] > 1
    if not rest or not repeated.any():
        out[:] = repeated
        return pd.Series(out, index=df.index), first_codes
    rows = np.flatnonzero(repeated)
    combined = first_codes[rows]
    span = max(len(uniques), 1)
    for col in rest:
        codes, uniques = pd.factorize(df[col].iloc[rows], use_na_sentinel=False)
        n = max(len(uniques), 1)
        if span > (1 << 62) // n:
            return df.duplicated(subset=key, keep=False), first_codes
        combined = combined * n + codes
        span *= n
    out[rows] = pd.Series(combined).duplicated(keep=False).to_numpy()
    return pd.Series(out, index=df.index), first_codes
