"""write_table under a compression suffix writes a compressed file that read_catalog reads back."""
import bz2
import gzip
import lzma

import numpy as np
import pandas as pd
import pytest

import xsift
import xsift.data.io as io
from xsift.errors import XsiftError

MAGIC = {".gz": b"\x1f\x8b", ".bz2": b"BZh", ".xz": b"\xfd7zXZ\x00"}
OPEN = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


def sample_table(n=40, seed=3):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "name": pd.array([f"2CXO J{i:06d}.0+000000" for i in range(n)], dtype="str"),
        "obsid": rng.integers(0, 30000, n).astype(np.int64),
        "ra": rng.uniform(0, 360, n),
        "hard_hs": np.where(rng.random(n) < 0.2, np.nan, rng.uniform(-1, 1, n)),
    })


@pytest.mark.parametrize("name", ["cat.csv.gz", "cat.csv.bz2", "cat.csv.xz", "cat.fits.gz", "cat.fits.bz2",
                                  "cat.vot.gz"])
def test_compressed_round_trip(tmp_path, name):
    df = sample_table()
    path = io.write_table(df, tmp_path / name)
    suffix = "." + name.rsplit(".", 1)[1]
    raw = path.read_bytes()
    # really compressed: the codec's magic bytes, and the decompressed bytes are the plain format
    assert raw.startswith(MAGIC[suffix]), raw[:8]
    with OPEN[suffix](path, "rb") as fh:
        plain = fh.read()
    if ".csv" in name:
        assert plain.startswith(b"name,obsid,ra,hard_hs")
    elif ".fits" in name:
        assert plain.startswith(b"SIMPLE  =")
    else:
        assert b"<VOTABLE" in plain[:400]
    back = xsift.read_catalog(path)
    assert list(back.columns) == list(df.columns)
    assert back["name"].tolist() == df["name"].tolist()
    np.testing.assert_array_equal(back["obsid"].to_numpy(), df["obsid"].to_numpy())
    np.testing.assert_array_equal(back["ra"].to_numpy(), df["ra"].to_numpy())
    np.testing.assert_array_equal(back["hard_hs"].to_numpy(), df["hard_hs"].to_numpy())
    # atomic: only the final file is left in the directory
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_failed_compressed_write_leaves_nothing(tmp_path, monkeypatch):
    path = tmp_path / "cat.csv.gz"
    io.write_table(sample_table(seed=1), path)
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(io, "_compress", broken)
    with pytest.raises(OSError, match="disk full"):
        io.write_table(sample_table(seed=2), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cat.csv.gz"]


def test_compressed_parquet_refused(tmp_path):
    with pytest.raises(XsiftError, match="Parquet"):
        io.write_table(sample_table(), tmp_path / "cat.parquet.gz", "parquet")
