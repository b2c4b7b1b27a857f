"""Positions are checked up front by the schema check: a declination past +/-90 deg by more than
rounding, or an ``ra`` that is text, is refused naming file, column and row before any work; dec within
1e-9 deg past the pole is clamped, ra outside [0, 360) wrapped, missing positions kept; all counted."""
import json

import numpy as np
import pandas as pd

from reliability_checks import refused
from xsift.cli import main
from xsift.data.io import write_table
from xsift.data.schema import DEC_TOLERANCE_DEG, check_catalog


def test_declination_past_the_pole_is_refused_before_any_output(tmp_path, capsys, catalogue):
    df = catalogue()
    df.loc[5, "dec"] = 95.0
    write_table(df, tmp_path / "cat.parquet")
    code = main(["fit", str(tmp_path / "cat.parquet"), "--out", str(tmp_path / "model"), "--k", "3"])
    refused(code, capsys.readouterr().err, "cat.parquet", "'dec'", "row 5", "95.0")
    assert not (tmp_path / "model").exists()


def test_declination_just_beyond_the_tolerance_is_refused(tmp_path, capsys, catalogue, fitted_model):
    model, _ = fitted_model
    df = catalogue()
    df.loc[11, "dec"] = -90.0 - 10 * DEC_TOLERANCE_DEG
    write_table(df, tmp_path / "cat.parquet")
    code = main(["classify", str(tmp_path / "cat.parquet"), "--model", str(model), "--out", str(tmp_path / "run")])
    refused(code, capsys.readouterr().err, "cat.parquet", "'dec'", "row 11")
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_right_ascension_as_text_is_refused_naming_the_row(tmp_path, capsys, catalogue):
    df = catalogue()
    df["ra"] = df["ra"].astype(object)
    df.loc[4, "ra"] = "north"
    df.to_csv(tmp_path / "cat.csv", index=False)
    code = main(["fit", str(tmp_path / "cat.csv"), "--out", str(tmp_path / "model"), "--k", "3"])
    refused(code, capsys.readouterr().err, "cat.csv", "'ra'", "row 4", "north")
    assert not (tmp_path / "model").exists()


def test_rounding_past_the_pole_ra_outside_the_circle_and_missing_positions_are_counted(tmp_path, catalogue):
    df = catalogue()
    df.loc[5, "dec"] = 90.0 + 0.5 * DEC_TOLERANCE_DEG
    df.loc[6, "dec"] = -90.0 - 0.5 * DEC_TOLERANCE_DEG
    df.loc[7, "ra"] = -10.0
    df.loc[8, "ra"] = 370.5
    df.loc[9, "ra"] = np.nan
    df.loc[10, "dec"] = np.nan
    write_table(df, tmp_path / "cat.parquet")
    assert main(["fit", str(tmp_path / "cat.parquet"), "--out", str(tmp_path / "model"), "--k", "3"]) == 0
    schema = json.loads((tmp_path / "model" / "manifest.json").read_text())["fit"]["schema"]
    assert schema["rows_out"] == 2000
    assert schema["positions"] == {"ra_wrapped": 2, "dec_clamped": 2, "missing": {"ra": 1, "dec": 1}}

    out, report = check_catalog(df, required=["name", "obsid", "ra", "dec"], numeric=["ra", "dec"],
                                positions=("ra", "dec"))
    assert (report.ra_wrapped, report.dec_clamped) == (2, 2)
    assert out.loc[5, "dec"] == 90.0 and out.loc[6, "dec"] == -90.0
    assert out.loc[7, "ra"] == 350.0 and out.loc[8, "ra"] == 10.5
    assert np.isnan(out.loc[9, "ra"]) and np.isnan(out.loc[10, "dec"])
    untouched = ~df.index.isin([5, 6, 7, 8, 9, 10])
    pd.testing.assert_frame_equal(out.loc[untouched, ["ra", "dec"]], df.loc[untouched, ["ra", "dec"]])
    ra = out["ra"].dropna().to_numpy()
    assert ((ra >= 0) & (ra < 360)).all()
