"""Catalogue I/O: formats, round trips, shards and globs, atomic writes."""
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

import xsift.data.io as io
from xsift.errors import XsiftError


def sample_table(n=50, seed=0):
    rng = np.random.default_rng(seed)
    names = pd.array([f"2CXO J{i:06d}.0+000000" if i % 7 else None for i in range(n)], dtype="str")
    return pd.DataFrame({
        "name": names,
        "obsid": rng.integers(0, 30000, n).astype(np.int64),
        "ra": rng.uniform(0, 360, n),
        "hard_hs": np.where(rng.random(n) < 0.2, np.nan, rng.uniform(-1, 1, n)),
        "flag": rng.random(n) < 0.5,
        "count32": rng.integers(0, 100, n).astype(np.int32),
    })


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".fits", ".vot"])
def test_round_trip_keeps_values_and_dtypes(tmp_path, suffix):
    df = sample_table()
    path = io.write_table(df, tmp_path / f"cat{suffix}")
    back = io.read_catalog(path)
    assert list(back.columns) == list(df.columns)
    for col in ["obsid", "ra", "hard_hs", "flag"]:
        assert back[col].dtype == df[col].dtype, (suffix, col, back[col].dtype)
        np.testing.assert_array_equal(back[col].to_numpy(), df[col].to_numpy())
    assert pd.api.types.is_string_dtype(back["name"].dtype)
    assert back["name"].isna().tolist() == df["name"].isna().tolist()
    assert back["name"].dropna().tolist() == df["name"].dropna().tolist()
    if suffix != ".csv":  # CSV has no integer widths
        assert back["count32"].dtype == np.int32


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=False, width=64), min_size=1, max_size=30))
def test_parquet_and_fits_round_trip_any_float(tmp_path_factory, values):
    tmp = tmp_path_factory.mktemp("rt")
    df = pd.DataFrame({"x": np.array(values, dtype=np.float64)})
    for suffix in (".parquet", ".fits"):
        back = io.read_catalog(io.write_table(df, tmp / f"t{suffix}"))
        np.testing.assert_array_equal(back["x"].to_numpy(), df["x"].to_numpy())


def test_directory_of_shards_and_glob(tmp_path):
    df = sample_table(90)
    for i in range(3):
        io.write_table(df.iloc[30 * i:30 * (i + 1)], tmp_path / "cat" / f"part-{i:05d}.parquet")
    (tmp_path / "cat" / "_SUCCESS").write_text("")
    for target in (tmp_path / "cat", str(tmp_path / "cat" / "part-*.parquet")):
        back = io.read_catalog(target)
        pd.testing.assert_frame_equal(back, df.reset_index(drop=True))
    back = io.read_catalog(tmp_path / "cat", columns=["ra", "obsid"])
    assert list(back.columns) == ["ra", "obsid"]


def test_clear_errors_name_the_file(tmp_path):
    with pytest.raises(XsiftError, match="nope.parquet: no such file"):
        io.read_catalog(tmp_path / "nope.parquet")
    with pytest.raises(XsiftError, match="unknown table format"):
        (tmp_path / "cat.txt").write_text("x")
        io.read_catalog(tmp_path / "cat.txt")
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1 this is not a parquet file")
    with pytest.raises(XsiftError, match="corrupt.parquet: cannot be read as parquet"):
        io.read_catalog(corrupt)
    with pytest.raises(XsiftError, match="matches no file"):
        io.read_catalog(str(tmp_path / "none-*.parquet"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(XsiftError, match="holds no .parquet shard"):
        io.read_catalog(tmp_path / "empty")


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".fits"])
def test_interrupted_write_leaves_no_partial_file(tmp_path, monkeypatch, suffix):
    """A writer that dies half-way leaves neither a truncated table nor a temp file;
    an earlier complete version survives untouched."""
    df = sample_table()
    target = tmp_path / f"out{suffix}"
    io.write_table(df.iloc[:10], target)
    before = target.read_bytes()

    def half_then_crash(self, path, *args, **kwargs):
        with open(path, "wb") as fh:
            fh.write(b"partial bytes")
        raise OSError("disk full")

    import pyarrow.parquet as pq
    monkeypatch.setattr(pq, "write_table", half_then_crash)   # the Parquet writer (metadata kept)
    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_crash)
    from astropy.table import Table
    monkeypatch.setattr(Table, "write", lambda self, path, **kw: half_then_crash(None, path))
    with pytest.raises(OSError, match="disk full"):
        io.write_table(df, target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]
    with pytest.raises(OSError):
        io.write_table(df, tmp_path / f"fresh{suffix}")
    assert not (tmp_path / f"fresh{suffix}").exists()


def test_write_json_is_atomic(tmp_path, monkeypatch):
    io.write_json({"a": np.int64(3), "b": np.arange(2)}, tmp_path / "m.json")
    assert (tmp_path / "m.json").read_text().count("3") == 1
    import json
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 3, "b": [0, 1]}
    with pytest.raises(TypeError):
        io.write_json({"x": object()}, tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 3, "b": [0, 1]}


def test_write_json_is_standard_json_with_null_for_nan(tmp_path):
    import json

    def strict(constant):
        raise ValueError(f"not JSON: {constant}")
    io.write_json({"kappa": float("nan"), "p": [np.float64(0.5), np.inf], "a": np.array([1.0, np.nan]),
                   "n": np.int64(2)}, tmp_path / "m.json")
    got = json.loads((tmp_path / "m.json").read_text(), parse_constant=strict)
    assert got == {"kappa": None, "p": [0.5, None], "a": [1.0, None], "n": 2}
