"""A catalogue stored as Parquet shards: its files, their row counts, reads and a seeded sample.

A sharded catalogue is a directory (or a glob) of Parquet files, each a slice of the
rows of one table. :class:`ShardedCatalog` is the lsdb/hats view of it — the shard
files plus partition metadata taken from the Parquet footers (row counts, column
names), and the catalogue as a Dask DataFrame — without sky partitioning: shards
are whatever the user (or ``xsift simulate --shards``) wrote, in name order.

The thin functions (:func:`shard_files`, :func:`shard_row_counts`, :func:`read_shard`,
:func:`read_sharded`, :func:`shard_columns`, :func:`catalog_columns`, :func:`sample_catalog`) do the same jobs
for code that holds a path rather than the object. Every read failure is an
:class:`~xsift.errors.XsiftError` naming the shard.
"""
from __future__ import annotations

import functools
import os
import pathlib
from typing import Sequence

import numpy as np
import pandas as pd

from xsift.errors import XsiftError

__all__ = ["ShardedCatalog", "shard_files", "shard_row_counts", "read_shard", "read_sharded",
           "shard_columns", "catalog_columns", "sample_catalog"]


def _unreadable(path, exc: Exception) -> XsiftError:
    return XsiftError(f"{path}: cannot be read as a Parquet shard ({type(exc).__name__}: {exc})")


def shard_files(catalog: str | os.PathLike) -> list[pathlib.Path]:
    """The Parquet shards of ``catalog`` (a directory or a glob), sorted by name.

    Raises XsiftError when the path matches nothing or a match is not a ``.parquet``/``.pq`` file."""
    from xsift.data.io import PARQUET_SUFFIXES, catalog_files
    files = catalog_files(catalog)
    bad = [f for f in files if not f.name.lower().endswith(PARQUET_SUFFIXES)]
    if bad:
        raise XsiftError(f"{bad[0]}: a sharded catalogue must be Parquet shards (.parquet)")
    return files


def shard_row_counts(files: Sequence[str | os.PathLike]) -> list[int]:
    """Row count of each shard, from its Parquet footer (no column data read)."""
    import pyarrow.parquet as pq
    counts = []
    for f in files:
        try:
            counts.append(pq.ParquetFile(f).metadata.num_rows)
        except Exception as exc:
            raise _unreadable(f, exc) from None
    return counts


def read_shard(path: str | os.PathLike, columns: list[str] | None = None,
               rows: np.ndarray | None = None) -> pd.DataFrame:
    """One shard as a DataFrame: only the ``columns`` it has (all if None); only ``rows`` (0-based
    positions within the shard, shape (m,)) if given, in that order."""
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
        raise _unreadable(path, exc) from None


def read_sharded(catalog: str | os.PathLike, columns: list[str] | None = None):
    """The catalogue as a Dask DataFrame (``dask.dataframe.read_parquet`` over its shards)."""
    return ShardedCatalog(catalog).read(columns)


def shard_columns(wanted: list[str], files: Sequence[str | os.PathLike]) -> list[str]:
    """``wanted`` with the columns present in the first shard first, then the absent ones (a missing
    column is reported by the classifier's schema check, which names it)."""
    import pyarrow.parquet as pq
    try:
        names = pq.read_schema(files[0]).names
    except Exception as exc:
        raise _unreadable(files[0], exc) from None
    return [c for c in wanted if c in names] + [c for c in wanted if c not in names]


def catalog_columns(preset, files: Sequence[str | os.PathLike]) -> list[str]:
    """Every catalogue column ``preset`` names (identity, sky, reference type, raw features;
    :attr:`xsift.config.Preset.input_columns`), those present in the first shard first."""
    from xsift.config import load_preset
    return shard_columns(load_preset(preset).input_columns, files)


def sample_catalog(client, catalog: str | os.PathLike, n: int, *, seed: int,
                   columns: list[str] | None = None) -> pd.DataFrame:
    """A seeded uniform random sample of ``n`` detections of ``catalog`` (see :meth:`ShardedCatalog.sample`)."""
    return ShardedCatalog(catalog).sample(client, n, seed=seed, columns=columns)


class ShardedCatalog:
    """A catalogue held as Parquet shards (a directory or a glob of ``.parquet`` files).

    files: the shard paths, sorted by name (checked at construction: XsiftError if none or not Parquet).
    row_counts: rows per shard, read from the Parquet footers on first use (no column data read).
    n_rows: their sum.

    Nothing else is read until asked for, so a catalogue with one corrupt shard can still be listed and
    its good shards processed; reading the corrupt one raises an XsiftError naming it.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = path
        self.files: list[pathlib.Path] = shard_files(path)

    def __repr__(self) -> str:
        return f"ShardedCatalog({str(self.path)!r}, shards={len(self.files)})"

    def __len__(self) -> int:
        return len(self.files)

    @functools.cached_property
    def row_counts(self) -> list[int]:
        return shard_row_counts(self.files)

    @property
    def n_rows(self) -> int:
        return int(sum(self.row_counts))

    def columns(self, wanted: list[str]) -> list[str]:
        """``wanted`` ordered as :func:`shard_columns` orders it (present in the first shard first)."""
        return shard_columns(wanted, self.files)

    def read(self, columns: list[str] | None = None):
        """The whole catalogue as a lazy Dask DataFrame, one partition per shard."""
        import dask.dataframe as dd
        return dd.read_parquet([str(f) for f in self.files], columns=columns)

    def read_shard(self, index: int, columns: list[str] | None = None,
                   rows: np.ndarray | None = None) -> pd.DataFrame:
        """Shard number ``index`` in memory (:func:`read_shard`)."""
        return read_shard(self.files[index], columns, rows)

    def sample_rows(self, n: int, *, seed: int) -> list[tuple[pathlib.Path, np.ndarray]]:
        """The rows of a seeded uniform sample of ``n`` detections (all if fewer) as (shard, row
        positions within it) pairs in catalogue order, shards without a sampled row left out.

        The global row indices are drawn with ``numpy.random.default_rng(seed).choice(n_rows, n,
        replace=False)`` and sorted, so they depend only on (row counts, n, seed)."""
        counts = np.asarray(self.row_counts, dtype=np.int64)
        total = int(counts.sum())
        if n >= total:
            chosen = np.arange(total, dtype=np.int64)
        else:
            chosen = np.sort(np.random.default_rng(seed).choice(total, size=int(n), replace=False))
        starts = np.concatenate([[0], np.cumsum(counts)])
        out = []
        for i, f in enumerate(self.files):
            lo, hi = np.searchsorted(chosen, [starts[i], starts[i + 1]])
            if hi > lo:
                out.append((f, chosen[lo:hi] - starts[i]))
        return out

    def sample(self, client, n: int, *, seed: int, columns: list[str] | None = None) -> pd.DataFrame:
        """A seeded uniform random sample of ``n`` detections (all of them if fewer), in catalogue order.

        ``client``: a ``distributed.Client``; each chosen shard is read by a worker, which reads only its
        chosen rows (:meth:`sample_rows`), so the sample depends on (catalogue, n, seed), never on the
        cluster. Raises XsiftError when the catalogue has no rows."""
        futures = [client.submit(read_shard, str(f), columns, rows, pure=False)
                   for f, rows in self.sample_rows(n, seed=seed)]
        frames = client.gather(futures)
        if not frames:
            raise XsiftError(f"{self.path}: the catalogue has no rows to sample")
        return pd.concat(frames, ignore_index=True)
