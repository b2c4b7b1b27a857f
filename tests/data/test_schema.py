"""Schema checks: every bad input gets a clear message naming the file and the column."""
import numpy as np
import pandas as pd
import pytest

from xsift.errors import SchemaError
from xsift.data.schema import check_catalog, duplicated_keys

KEY = ["name", "obsid"]


def good():
    return pd.DataFrame({"name": ["a", "a", "b"], "obsid": [1, 2, 1], "hard_hs": [0.1, 0.2, -0.3],
                         "bb_kt": [1.0, 2.0, 3.0]})


def check(df, **kw):
    return check_catalog(df, required=KEY + ["hard_hs", "bb_kt"], numeric=["obsid"],
                         features=["hard_hs", "bb_kt"], key=KEY, source="cat.csv", **kw)


def test_good_table_passes_unchanged():
    df, report = check(good())
    pd.testing.assert_frame_equal(df, good().astype({"hard_hs": float, "bb_kt": float}))
    assert report.as_dict() == {"rows_in": 3, "rows_out": 3, "duplicates_dropped": 0, "infinite_to_missing": {},
                                "all_null_features": []}


def test_missing_column_names_file_column_and_near_name():
    with pytest.raises(SchemaError, match=r"cat.csv: missing column 'bb_kt' \(did you mean 'bb_k'\?\)"):
        check(good().rename(columns={"bb_kt": "bb_k"}))


def test_non_numeric_value_names_column_row_and_value():
    df = good().astype({"hard_hs": object})
    df.loc[1, "hard_hs"] = "0.2?"
    with pytest.raises(SchemaError, match=r"cat.csv: column 'hard_hs' must be numeric but row 1 holds '0.2\?'"):
        check(df)
    # numbers stored as text are accepted
    df.loc[1, "hard_hs"] = "0.2"
    out, _ = check(df)
    assert out["hard_hs"].tolist() == [0.1, 0.2, -0.3]


def test_all_null_feature_column():
    with pytest.raises(SchemaError, match="feature column 'bb_kt' is null in every row"):
        check(good().assign(bb_kt=np.nan))
    # applying a saved model: listed in the report, the table kept as it is
    df, report = check(good().assign(bb_kt=np.nan), all_null="count")
    assert report.all_null_features == ["bb_kt"] and len(df) == 3 and df["bb_kt"].isna().all()


def test_empty_table():
    with pytest.raises(SchemaError, match="cat.csv: the table is empty"):
        check(good().iloc[:0])


def test_infinities_become_missing_and_are_counted():
    df = good()
    df.loc[0, "bb_kt"] = np.inf
    df.loc[2, "hard_hs"] = -np.inf
    out, report = check(df)
    assert np.isnan(out.loc[0, "bb_kt"]) and np.isnan(out.loc[2, "hard_hs"])
    assert report.infinite_to_missing == {"hard_hs": 1, "bb_kt": 1}
    assert np.isposinf(df.loc[0, "bb_kt"]) and np.isneginf(df.loc[2, "hard_hs"])   # the caller's frame is kept


def test_duplicates_identical_dropped_conflicting_refused():
    df = pd.concat([good(), good().iloc[[1]]], ignore_index=True)
    out, report = check(df)
    assert report.duplicates_dropped == 1 and len(out) == 3
    df.loc[3, "bb_kt"] = 99.0
    with pytest.raises(SchemaError, match=r"1 \(name, obsid\) key\(s\) appear on rows with different values, e.g. a, 2"):
        check(df)


def test_duplicated_keys_matches_pandas():
    """The integer-key duplicate check against pandas' own DataFrame.duplicated (the oracle), with
    string, float (NaN) and integer key columns, and the caller's frame left as it was."""
    rng = np.random.default_rng(7)
    n = 5000
    names = pd.array(rng.choice([f"src{i}" for i in range(3000)] + [None], n), dtype="str")
    df = pd.DataFrame({"name": names, "obsid": rng.integers(0, 40, n),
                       "ccd": np.where(rng.random(n) < 0.05, np.nan, rng.integers(0, 3, n).astype(float))})
    before = df.copy()
    for key in (["name"], ["name", "obsid"], ["name", "obsid", "ccd"], ["ccd"]):
        ours = duplicated_keys(df, key)
        ref = df.duplicated(subset=key, keep=False)
        assert ours.any()
        pd.testing.assert_series_equal(ours, ref, check_names=False)
    assert not duplicated_keys(df, ["name", "obsid"]).all()
    pd.testing.assert_frame_equal(df, before)


def test_feature_columns_come_out_as_float64():
    """float32 and nullable columns are converted (a float64 column is kept as it is, unchanged)."""
    df = good().astype({"hard_hs": np.float32, "bb_kt": "Float64"})
    df.loc[1, "bb_kt"] = pd.NA
    out, _ = check(df)
    assert out["hard_hs"].dtype == np.float64 and out["bb_kt"].dtype == np.float64
    assert np.isnan(out.loc[1, "bb_kt"]) and out.loc[2, "bb_kt"] == 3.0
    np.testing.assert_array_equal(out["hard_hs"].to_numpy(), good()["hard_hs"].to_numpy(np.float32))


def test_key_codes_follow_the_checked_rows():
    """The codes of the source names kept for later steps: one per row of the checked table (after
    the identical duplicates are dropped), equal exactly where the names are."""
    # (null names are refused by the check: tests/reliability/test_null_source_names.py)
    more = pd.DataFrame({"name": ["c", "a", "e", "d", "e"], "obsid": [5, 6, 7, 8, 9],
                         "hard_hs": [0.5, 0.6, 0.7, 0.8, 0.9], "bb_kt": [5.0, 6.0, 7.0, 8.0, 9.0]})
    df = pd.concat([good(), good().iloc[[1]], more], ignore_index=True)
    out, report = check(df)
    assert report.duplicates_dropped == 1 and len(report.key_codes) == len(out) == 8
    names = out["name"].astype(object).where(out["name"].notna(), "<null>").to_numpy()
    codes = report.key_codes
    assert np.array_equal(codes[:, None] == codes[None, :], names[:, None] == names[None, :])
