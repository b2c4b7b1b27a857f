"""FITS and VOTable tables with datetime, nullable-boolean (pandas ``boolean`` with NA) and
categorical columns are written by the one writer (``xsift.write_table``, which every command
uses): datetimes as ISO 8601 text (timezone-aware ones in UTC), NaT and NA masked, and read back
to the same values; a dtype neither format holds (a timedelta) is refused in one line naming the
file and the column, and nothing is written under its name."""
import pandas as pd
import pytest

from xsift.data.io import read_catalog, write_table
from xsift.errors import XsiftError


def _frame():
    return pd.DataFrame({
        "name": ["a", "b", "c"], "x": [1.0, 2.0, 3.0],
        "observed": pd.to_datetime(["2020-01-01T00:00:00", None, "2021-06-30T12:34:56.5"], format="ISO8601"),
        "observed_utc": pd.to_datetime(["2020-01-01T01:00:00", "2020-01-02T00:00:00", None],
                                       format="ISO8601").tz_localize("Europe/Paris"),
        "flag": pd.array([True, None, False], dtype="boolean"),
        "kind": pd.Categorical(["u", "v", None])})


@pytest.mark.parametrize("suffix", ["fits", "vot"])
def test_datetime_boolean_and_categorical_columns_round_trip(tmp_path, suffix):
    df = _frame()
    path = write_table(df, tmp_path / f"t.{suffix}")
    back = read_catalog(path)
    # oracle: pandas' own ISO text of each timestamp (the zone-aware one converted to UTC first)
    assert back["observed"].tolist()[0::2] == [t.isoformat() for t in df["observed"][0::2]]
    assert pd.isna(back["observed"][1])
    assert back["observed_utc"].tolist()[:2] == [t.tz_convert("UTC").isoformat() for t in df["observed_utc"][:2]]
    assert back["observed_utc"].tolist()[0] == "2020-01-01T00:00:00+00:00"
    assert pd.isna(back["observed_utc"][2])
    assert back["flag"].dtype == "boolean"
    assert back["flag"].tolist()[0::2] == [True, False] and pd.isna(back["flag"][1])
    assert back["kind"].tolist()[:2] == ["u", "v"] and pd.isna(back["kind"][2])


@pytest.mark.parametrize("suffix", ["fits", "vot"])
def test_a_timedelta_column_is_refused_naming_file_and_column(tmp_path, suffix):
    df = _frame().assign(exposure=pd.to_timedelta([1, 2, 3], unit="s"))
    target = tmp_path / f"t.{suffix}"
    with pytest.raises(XsiftError, match=r"t\.(fits|vot): column 'exposure' has dtype timedelta64"):
        write_table(df, target)
    assert list(tmp_path.iterdir()) == []

