"""The sharded catalogue (xsift.data.shards) as the Dask layer reads it: shard files, row counts from the
Parquet footers, the catalogue as a Dask DataFrame, and a seeded uniform sample.

Oracles: the simulator's rows read whole in memory with pandas, and NumPy's generator drawing the same
global row indices."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from distributed_oracles import N_SHARDS
from xsift import distributed as D
from xsift.data.shards import ShardedCatalog
from xsift.errors import XsiftError


def test_sources_straddle_shards(catalog):
    """The fixture really splits some sources across shards (else the voting test proves nothing)."""
    names = [set(pd.read_parquet(f, columns=["name"])["name"]) for f in D.shard_files(catalog)]
    split = set()
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            split |= names[i] & names[j]
    assert len(split) >= 2


def test_read_sharded_and_row_counts(catalog, whole):
    ddf = D.read_sharded(catalog, columns=["name", "obsid"])
    assert len(ddf) == len(whole) == sum(D.shard_row_counts(D.shard_files(catalog)))


def test_sharded_catalog_metadata_and_reads(catalog, whole):
    cat = ShardedCatalog(catalog)
    assert [f.name for f in cat.files] == sorted(p.name for p in catalog.glob("*.parquet"))
    assert len(cat) == N_SHARDS
    assert cat.row_counts == [len(pd.read_parquet(f)) for f in cat.files]
    assert cat.n_rows == len(whole)
    assert cat.read(["name"]).npartitions == N_SHARDS
    pd.testing.assert_frame_equal(cat.read_shard(2, ["obsid", "name", "no_such_column"], rows=np.array([4, 0])),
                                  pd.read_parquet(cat.files[2], columns=["obsid", "name"]).iloc[[4, 0]]
                                  .reset_index(drop=True))
    assert cat.columns(["no_such_column", "name"]) == ["name", "no_such_column"]


def test_sharded_catalog_refuses_what_is_not_parquet_shards(tmp_path, catalog):
    with pytest.raises(XsiftError, match="no .parquet shard"):
        ShardedCatalog(tmp_path)
    (tmp_path / "a.csv").write_text("x\n1\n")
    with pytest.raises(XsiftError, match="must be Parquet shards"):
        ShardedCatalog(str(tmp_path / "*.csv"))
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 not a parquet file")
    cat = ShardedCatalog(str(tmp_path / "*.parquet"))     # listing reads nothing
    with pytest.raises(XsiftError, match=str(bad)):
        cat.row_counts


def test_sample_is_seeded_and_uniform(client, catalog, whole):
    a = D.sample_catalog(client, catalog, 1500, seed=5, columns=["name", "obsid", "hard_hm"])
    b = D.sample_catalog(client, catalog, 1500, seed=5, columns=["name", "obsid", "hard_hm"])
    pd.testing.assert_frame_equal(a, b)
    # oracle: the same global row indices taken from the whole catalogue in memory
    rows = np.sort(np.random.default_rng(5).choice(len(whole), size=1500, replace=False))
    expected = whole[["name", "obsid", "hard_hm"]].iloc[rows].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, expected, check_dtype=False)
    everything = D.sample_catalog(client, catalog, 10 * len(whole), seed=5, columns=["obsid"])
    assert len(everything) == len(whole)
