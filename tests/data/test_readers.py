"""Reading what users download: CSCview / CSC TAP / TOPCAT CSV, FITS and VOTable, compressed or not.

The real exports in ../shared/data/csc_raw are read with their quirks (sexagesimal RA/Dec with
leading blanks, missing values as runs of spaces or blank-padded ``NaN``, ``TRUE``/``True``
booleans, repeated column names) and compared, cell by cell for a few rows, with a reference parsed
here independently with the ``csv`` module and string operations.
"""
import bz2
import csv
import gzip

import numpy as np
import pandas as pd
import pytest

from shared_data import shared_file
from xsift.data.io import ReadReport, read_catalog, read_report
from xsift.data.schema import check_catalog, match_columns
from xsift.errors import SchemaError, XsiftError


# ----------------------------------------------------------------------------- the independent reference

def hand_rows(path):
    """(header as written, rows as written) with the csv module: no cleaning at all."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def hand_sexagesimal(text, hours):
    """Degrees of 'dd mm ss.s' / 'hh mm ss.s' text, by string operations."""
    t = text.strip()
    sign = -1.0 if t.startswith("-") else 1.0
    d, m, s = (float(x) for x in t.lstrip("+-").split())
    value = sign * (d + m / 60.0 + s / 3600.0)
    return value * 15.0 if hours else value


def assert_cell(value, text, column):
    """``value`` (as read) agrees with ``text`` (as written in the file)."""
    t = text.strip()
    if t == "" or t.lower() == "nan":
        assert pd.isna(value), f"{column}: {text!r} should be missing, read {value!r}"
        return
    try:
        number = float(t)
    except ValueError:
        number = None
    if number is not None and not isinstance(value, str):
        assert float(value) == pytest.approx(number, rel=1e-12, abs=0), (column, text, value)
    elif t.lower() in ("true", "false") and not isinstance(value, str):
        assert bool(value) is (t.lower() == "true"), (column, text, value)
    else:
        assert value == t, (column, text, value)


def compare_rows(df, header, rows, picks, *, sexagesimal=(), dropped=()):
    first = {}
    for j, name in enumerate(header):
        if name not in dropped:
            first.setdefault(name.strip(), j)
    for i in picks:
        for name, j in first.items():
            if name in sexagesimal:
                assert df[name].iloc[i] == pytest.approx(hand_sexagesimal(rows[i][j], hours=name.startswith("ra")),
                                                         abs=1e-9), (name, rows[i][j])
            else:
                assert_cell(df[name].iloc[i], rows[i][j], name)


# ----------------------------------------------------------------------------- the real CSC exports

def test_cscview_export_reads_with_its_quirks():
    path = shared_file("csc_raw", "cscview_ngc3532_per_observation.csv")
    header, rows = hand_rows(path)
    df = read_catalog(path)
    assert len(df) == len(rows) == 389
    # repeated columns: the later copies (written as name.1) are dropped, the first kept, all reported
    repeats = [h for h in header if h.endswith(".1") and h[:-2] in header]
    assert len(repeats) == 15
    assert list(df.columns) == [h for h in header if h not in repeats]
    report = read_report(df)
    assert [d["dropped"] for d in report["duplicate_columns"]] == repeats
    assert all(d["kept"] == d["dropped"][:-2] for d in report["duplicate_columns"])
    # differing rows: counted against the file's own text
    for d in report["duplicate_columns"]:
        a, b = header.index(d["kept"]), d["position"]
        expected = sum(1 for r in rows if r[a].strip() != r[b].strip())
        assert d["differing_rows"] == expected
    # sexagesimal RA (hours) and Dec (degrees) with leading blanks, now degrees
    assert report["sexagesimal"]["ra"] == "hourangle" and report["sexagesimal"]["dec"] == "deg"
    assert df["ra"].dtype == np.float64 and df["dec"].dtype == np.float64
    assert df["ra"].between(165.5, 167.0).all() and df["dec"].between(-59.5, -58.0).all()
    # booleans written TRUE/FALSE and True/False, numbers with runs of blanks for missing values
    assert pd.api.types.is_bool_dtype(df["conf_flag"]) and pd.api.types.is_bool_dtype(df["pileup_flag"])
    assert {r[header.index("pileup_flag")] for r in rows} >= {"False"}
    assert {r[header.index("conf_flag")] for r in rows} >= {"FALSE"}
    assert df["flux_aper90_s"].dtype == np.float64
    blank = [i for i, r in enumerate(rows) if r[header.index("flux_aper90_s")].strip() == ""]
    assert blank and df["flux_aper90_s"].iloc[blank].isna().all()
    # text stays text, stripped: likelihood_class is TRUE or MARGINAL
    assert set(df["likelihood_class"]) == {"TRUE", "MARGINAL"}
    # missing counts per column agree with the file
    for col in ("flux_aper90_s", "powlaw_gamma", "var_intra_prob_b"):
        j = header.index(col)
        assert report["missing"].get(col, 0) == sum(1 for r in rows if r[j].strip() in ("", "NaN", "nan"))
    # every cell of a few rows equals the hand-parsed reference
    compare_rows(df, header, rows, [0, 1, 57, 200, 388], sexagesimal=("ra", "dec", "ra_pnt", "dec_pnt"),
                 dropped=repeats)


def test_observation_source_table_reads_blank_padded_nan():
    path = shared_file("csc_raw", "observation_source_lmxb.csv")
    header, rows = hand_rows(path)
    df = read_catalog(path)
    assert df.shape == (735, 257) and list(df.columns) == [h.strip() for h in header]
    padded = [(i, j) for i, r in enumerate(rows) for j, v in enumerate(r) if v != "NaN" and v.strip() == "NaN"]
    assert len(padded) > 1000            # the quirk is real and frequent
    for i, j in padded[:200]:
        assert pd.isna(df.iloc[i, j])
    # names written with a leading blank are stripped
    j = header.index("name")
    assert rows[0][j].startswith(" ") and df["name"].iloc[0] == rows[0][j].strip()
    for col in ("hard_hm", "powlaw_gamma", "bb_kt", "var_prob_b", "var_sigma_b"):
        assert df[col].dtype == np.float64, col
    compare_rows(df, header, rows, [0, 1, 100, 400, 734])


def test_observation_source_has_every_csc_column_and_the_check_reports_what_was_read():
    """The LMXB table has every feature column of the csc preset: the check finds them all, and its
    report carries what the reader did (file, missing counts, features found)."""
    from xsift.config import load_preset
    from xsift.methods.cluster_then_label import prepare_catalog
    path = shared_file("csc_raw", "observation_source_lmxb.csv")
    df = read_catalog(path)
    missing_bb_kt = int(df["bb_kt"].isna().sum())
    preset = load_preset("csc")
    _, report = prepare_catalog(df, preset, source=str(path), need_types=False)
    assert report["input"]["source"] == str(path)
    assert report["input"]["features_found"] == preset.feature_columns
    assert report["input"]["features_missing"] == []
    assert report["input"]["missing"]["bb_kt"] == missing_bb_kt > 0


def test_observation_source_table_is_classified_as_downloaded(tmp_path):
    """The raw LMXB table (one ObsID holding several observation intervals, so (name, obsid) repeats with
    different values) is classified as it is by a model fitted on simulated data: the csc preset's
    detection key is (name, obsid, obi) where the table has `obi`, carried to the detection table; rows
    equal in every column the check reads are counted as duplicates, and every other row is answered."""
    from xsift.cli import main
    from xsift.simulate import simulate_catalog
    from xsift.data.io import write_table
    path = shared_file("csc_raw", "observation_source_lmxb.csv")
    write_table(simulate_catalog(3000, seed=2), tmp_path / "sim.parquet")
    assert main(["fit", str(tmp_path / "sim.parquet"), "--out", str(tmp_path / "model"), "--k", "3", "--quiet"]) == 0
    assert main(["classify", str(path), "--model", str(tmp_path / "model"), "--out", str(tmp_path / "out"),
                 "--format", "csv", "--no-figures", "--quiet"]) == 0
    det = pd.read_csv(tmp_path / "out" / "detection_level.csv", comment="#")
    raw = read_catalog(path)
    key = ["name", "obsid", "obi"]
    assert raw.groupby(["name", "obsid"])["obi"].nunique().max() > 1      # the quirk is there
    assert not det.duplicated(key).any()
    # copies of one detection (equal in every column the check reads) count once
    from xsift.config import load_preset
    read = key + ["ra", "dec"] + load_preset("csc").feature_columns
    distinct = raw[~raw.duplicated(subset=read)]
    assert not distinct.duplicated(key).any()
    assert set(map(tuple, det[key].to_numpy())) <= set(map(tuple, raw[key].to_numpy()))
    assert len(det) == len(distinct) - _without_any_feature(distinct)


def _without_any_feature(df):
    """Rows with no observed csc feature (plain pandas: every formula's columns)."""
    from xsift.config import load_preset
    import numpy as np
    preset = load_preset("csc")
    ok = np.zeros(len(df), bool)
    for f in preset.features:
        vals = [pd.to_numeric(df[c], errors="coerce").to_numpy(float) for c in f.columns]
        if f.formula == "column":
            v = vals[0]
        elif f.formula == "ratio":
            with np.errstate(all="ignore"):
                v = vals[0] / vals[1]
        else:
            with np.errstate(all="ignore"):
                v = (vals[0] + vals[1]) / 2 / vals[2]
        ok |= np.isfinite(v)
    return int((~ok).sum())


def test_cscview_export_lacks_csc_features_and_the_error_lists_found_and_missing():
    from xsift.config import load_preset
    from xsift.methods.cluster_then_label import ClusterThenLabel
    path = shared_file("csc_raw", "cscview_ngc3532_per_observation.csv")
    df = read_catalog(path)
    df["main_type"] = None
    df["obsid"] = df["obsid"].astype(np.int64)
    preset = load_preset("csc")
    found = [c for c in preset.feature_columns if c in df.columns]
    missing = [c for c in preset.feature_columns if c not in df.columns]
    assert found and missing                     # the export has some features and lacks others
    with pytest.raises(SchemaError) as err:
        ClusterThenLabel(preset="csc", n_components=2).fit(df, source=str(path))
    message = str(err.value)
    assert str(path) in message
    assert f"feature columns found: {', '.join(found)}; missing: {', '.join(missing)}" in message


# ----------------------------------------------------------------------------- compression

def test_gzip_and_bz2_csv_read_as_the_plain_file(tmp_path):
    path = shared_file("csc_raw", "observation_source_lmxb.csv")
    raw = path.read_bytes()
    plain = read_catalog(path)
    for suffix, opener in ((".csv.gz", gzip.open), (".csv.bz2", bz2.open)):
        target = tmp_path / f"obs{suffix}"
        with opener(target, "wb") as fh:
            fh.write(raw)
        df = read_catalog(target)
        pd.testing.assert_frame_equal(df, plain)
        assert read_report(df)["compression"] == {".csv.gz": "gzip", ".csv.bz2": "bz2"}[suffix]


def test_compressed_fits_and_votable_round_trip(tmp_path):
    from astropy.table import Table
    table = Table({"name": ["2CXO J1", "2CXO J2", "2CXO J3"], "flux": [1.5e-14, np.nan, 3.0e-15],
                   "obsid": np.array([10, 11, 12], dtype=np.int64)})
    for fmt, suffix, opener in (("fits", ".fits.gz", gzip.open), ("votable", ".vot.bz2", bz2.open),
                                ("fits", ".fits.bz2", bz2.open), ("votable", ".vot.gz", gzip.open)):
        buf = tmp_path / f"plain.{fmt}"
        table.write(buf, format=fmt, overwrite=True)
        target = tmp_path / f"t{suffix}"
        with opener(target, "wb") as fh:
            fh.write(buf.read_bytes())
        df = read_catalog(target)
        assert df["name"].tolist() == ["2CXO J1", "2CXO J2", "2CXO J3"], suffix
        np.testing.assert_array_equal(df["flux"].to_numpy(), [1.5e-14, np.nan, 3.0e-15])
        assert df["obsid"].tolist() == [10, 11, 12]


def test_compressed_parquet_is_refused_with_the_formats_named(tmp_path):
    target = tmp_path / "cat.parquet.gz"
    target.write_bytes(b"x")
    with pytest.raises(XsiftError, match=r"cat.parquet.gz: unknown table format.*compressed"):
        read_catalog(target)


# ----------------------------------------------------------------------------- each cleaning step

def test_repeated_and_padded_column_names(tmp_path):
    text = ("name, flux ,flux,hr,flux.1,Flux\n"
            "a,1.0,1.0,0.1,5,7\n"
            "b,2.0,9.0,0.2,6,8\n")
    path = tmp_path / "dup.csv"
    path.write_text(text)
    df = read_catalog(path)
    assert list(df.columns) == ["name", "flux", "hr", "Flux"]
    assert df["flux"].tolist() == [1.0, 2.0]                     # the first 'flux' is kept
    report = read_report(df)
    assert report["columns_renamed"] == {" flux ": "flux"}
    assert report["duplicate_columns"] == [
        {"dropped": "flux", "kept": "flux", "position": 2, "differing_rows": 1},
        {"dropped": "flux.1", "kept": "flux", "position": 4, "differing_rows": 2}]


def test_votable_repeated_field_names_and_padding(tmp_path):
    """A VOTable with two FIELDs named flux (astropy alone would call the second flux2) and a padded
    name and values: the first flux is kept, the repeat reported, the padding stripped."""
    path = tmp_path / "dup.vot"
    path.write_text(
        '<?xml version="1.0"?>\n<VOTABLE version="1.3" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">'
        '<RESOURCE><TABLE><FIELD name="name" datatype="char" arraysize="*"/>'
        '<FIELD name="flux" datatype="double"/><FIELD name="flux" datatype="double"/>'
        '<FIELD name=" hr " datatype="char" arraysize="*"/><DATA><TABLEDATA>'
        '<TR><TD> a </TD><TD>1.0</TD><TD>2.0</TD><TD>  0.5 </TD></TR>'
        '<TR><TD>b</TD><TD>3.0</TD><TD>3.0</TD><TD> NaN</TD></TR>'
        '</TABLEDATA></DATA></TABLE></RESOURCE></VOTABLE>\n')
    df = read_catalog(path)
    assert list(df.columns) == ["name", "flux", "hr"]
    assert df["name"].tolist() == ["a", "b"] and df["flux"].tolist() == [1.0, 3.0]
    np.testing.assert_array_equal(df["hr"].to_numpy(), [0.5, np.nan])
    report = read_report(df)
    assert report["duplicate_columns"] == [{"dropped": "flux", "kept": "flux", "position": 2, "differing_rows": 1}]
    assert report["columns_renamed"] == {" hr ": "hr"} and report["numeric_from_text"] == ["hr"]


def test_missing_texts_in_numeric_and_text_columns(tmp_path):
    text = ("name,x,y,label\n"
            "a,1.5,  null  ,AGN\n"
            "b,   , -- ,  NaN \n"
            "c,NaN,2, null\n"
            "d, nan ,3.5,   \n"
            "e,-- ,4,Star\n")
    path = tmp_path / "missing.csv"
    path.write_text(text)
    df = read_catalog(path)
    assert df["x"].dtype == np.float64 and df["y"].dtype == np.float64
    np.testing.assert_array_equal(df["x"].to_numpy(), [1.5, np.nan, np.nan, np.nan, np.nan])
    np.testing.assert_array_equal(df["y"].to_numpy(), [np.nan, np.nan, 2.0, 3.5, 4.0])
    assert df["label"].tolist()[0] == "AGN" and df["label"].isna().tolist() == [False, True, True, True, False]
    assert read_report(df)["missing"] == {"x": 4, "y": 2, "label": 3}


def test_booleans_in_any_common_spelling(tmp_path):
    values = ["TRUE", "True", "true", "T", "t", "yes", "1", "FALSE", "False", "false", "F", "f", "no", "0", ""]
    expected = [True] * 7 + [False] * 7 + [None]
    path = tmp_path / "bool.csv"
    path.write_text("name,flag\n" + "".join(f"s{i},{v}\n" for i, v in enumerate(values)))
    df = read_catalog(path)
    assert str(df["flag"].dtype) == "boolean"
    assert [None if pd.isna(v) else bool(v) for v in df["flag"]] == expected
    assert read_report(df)["boolean_from_text"] == ["flag"]


def test_sexagesimal_ra_dec_in_a_fits_table(tmp_path):
    from astropy import units as u
    from astropy.coordinates import SkyCoord
    from astropy.table import Table
    ra_text = ["11:05:07.45", "00 00 02.70", "23h59m59.9s"]
    dec_text = ["-58:51:05.47", "+44 43 41.0", "-00d30m00s"]
    Table({"RA": ra_text, "DEC": dec_text, "mag": [1.0, 2.0, 3.0]}).write(tmp_path / "s.fits")
    df = read_catalog(tmp_path / "s.fits")
    truth = SkyCoord(["11h05m07.45s -58d51m05.47s", "00h00m02.70s +44d43m41.0s", "23h59m59.9s -00d30m00s"])
    np.testing.assert_allclose(df["RA"].to_numpy(), truth.ra.deg, atol=1e-9)
    np.testing.assert_allclose(df["DEC"].to_numpy(), truth.dec.deg, atol=1e-9)
    # hand-computed: 11h05m07.45s = 15 * (11 + 5/60 + 7.45/3600) deg
    assert df["RA"].iloc[0] == pytest.approx(15 * (11 + 5 / 60 + 7.45 / 3600), abs=1e-9)
    assert read_report(df)["sexagesimal"] == {"RA": "hourangle", "DEC": "deg"}


def test_text_that_is_not_an_angle_stays_text(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("name,ra,dec\na,11 05 07.45,-58 51 05.47\nb,not here,-58 51 05\n")
    df = read_catalog(path)
    assert df["ra"].tolist() == ["11 05 07.45", "not here"]      # not every value is an angle
    assert df["dec"].dtype == np.float64
    assert read_report(df)["sexagesimal"] == {"dec": "deg"}


def test_read_report_dataclass_merges_shards():
    a = ReadReport("a.parquet", "parquet", missing_texts={"x": 2}, numeric_from_text=["x"])
    b = ReadReport("b.parquet", "parquet", missing_texts={"x": 1, "y": 4}, numeric_from_text=["x", "y"])
    merged = ReadReport.merged("dir", [a, b])
    assert merged.files == 2 and merged.missing_texts == {"x": 3, "y": 4}
    assert merged.numeric_from_text == ["x", "y"]


# ----------------------------------------------------------------------------- column matching in the check

def test_columns_found_in_another_case_or_by_alias():
    df = pd.DataFrame({"name": ["a", "b"], "hr1": [0.1, 0.2], "F8": [1e-14, 2e-14], "sc_extent": [0.0, 3.0]})
    wanted = ["name", "SC_HR1", "SC_EP_8_FLUX", "SC_EXTENT"]
    aliases = {"SC_EP_8_FLUX": ["F8"], "SC_HR1": ["HR1"]}
    out, renames = match_columns(df, wanted, aliases)
    # an alias in any case (hr1 for HR1), an alias exactly (F8), the name in another case (sc_extent)
    assert renames == {"SC_HR1": "hr1", "SC_EP_8_FLUX": "F8", "SC_EXTENT": "sc_extent"}
    assert list(out.columns) == wanted
    assert out["SC_HR1"].tolist() == [0.1, 0.2] and out["SC_EXTENT"].tolist() == [0.0, 3.0]
    # without the alias, hr1 is not SC_HR1
    assert "SC_HR1" not in match_columns(df, wanted, {})[1]
    checked, report = check_catalog(df, required=wanted, features=["SC_HR1", "SC_EXTENT"], aliases=aliases,
                                    source="t.csv")
    assert report.as_dict()["columns_matched"] == renames and list(checked.columns) == wanted


def test_two_candidate_columns_are_an_error():
    df = pd.DataFrame({"hr1": [0.1], "Hr1": [0.2]})
    with pytest.raises(SchemaError, match=r"t.csv: columns 'hr1', 'Hr1' could each be the preset's column 'HR1'"):
        match_columns(df, ["HR1"], source="t.csv")


def test_missing_message_lists_found_and_missing_features():
    df = pd.DataFrame({"name": ["a"], "hard_hs": [0.1], "bb_kt": [1.0]})
    with pytest.raises(SchemaError) as err:
        check_catalog(df, required=["name", "hard_hs", "bb_kt", "powlaw_gamma"],
                      features=["hard_hs", "bb_kt", "powlaw_gamma"], source="cat.csv")
    assert "cat.csv: missing column 'powlaw_gamma'" in str(err.value)
    assert "feature columns found: hard_hs, bb_kt; missing: powlaw_gamma" in str(err.value)


def test_lmxb_detections_classified_by_a_model_fitted_on_simulated_data():
    """The real LMXB observation_source table, read as downloaded, classified by a csc model fitted on
    the simulator: every complete detection is classified and the report says what was read and found."""
    from xsift.config import load_preset
    from xsift.methods.cluster_then_label import ClusterThenLabel
    from xsift.simulate import simulate_catalog
    path = shared_file("csc_raw", "observation_source_lmxb.csv")
    model = ClusterThenLabel(preset="csc", n_components=4, seed=0, missing="drop").fit(simulate_catalog(4000, seed=5))
    df = read_catalog(path)
    # a few ObsIDs have two observation intervals (obi 0 and 1), each its own detection: the csc
    # preset keys a detection by (name, obsid, obi) where the table has obi; without obi the check
    # refuses the (name, obsid) keys that differ, naming them
    two_obi = df.groupby(["name", "obsid"])["obi"].nunique()
    two_obi = two_obi[two_obi > 1]
    with pytest.raises(SchemaError, match=rf"{len(two_obi)} \(name, obsid\) key\(s\) appear on rows with "
                                          rf"different values, e.g. .*{two_obi.index[0][0]}, {two_obi.index[0][1]}"):
        model.classify(df.drop(columns=["obi"]), source=str(path))
    result = model.classify(df, source=str(path))
    report = result.report["classify"]
    # the table lists a CSC detection once per catalogued LMXB matched to it (crowded fields: M31):
    # those copies differ only in the table's own columns (src_id, obs_id, sepn), so all but the first
    # are dropped and counted: the check compares the columns it reads
    copies = df.duplicated(subset=["name", "obsid", "obi"], keep="first")
    assert df.loc[df.duplicated(subset=["name", "obsid", "obi"], keep=False), "src_id"].nunique() > 1
    assert report["schema"]["duplicates_dropped"] == int(copies.sum()) > 100
    df = df[~copies]
    csc = load_preset("csc")
    # complete rows by hand: every raw column present and every ratio's denominator non-zero
    raw = df[csc.feature_columns]
    complete = raw.notna().all(axis=1) & (df[["var_mean_b", "var_mean_h", "var_mean_s"]] != 0).all(axis=1)
    assert report["complete"] == report["classified"] == int(complete.sum()) > 50
    assert report["dropped_incomplete"] == len(df) - int(complete.sum())
    assert set(result.detections["name"]) == set(df.loc[complete, "name"])
    assert report["schema"]["input"]["source"] == str(path)
    assert report["schema"]["input"]["features_found"] == csc.feature_columns
    assert set(result.detections["predicted_class"].dropna()) <= set(csc.classes.order)
