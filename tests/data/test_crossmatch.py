"""Crossmatch of a catalogue with a reference table (astropy sky matching)."""
import numpy as np
import pandas as pd
import pytest

from xsift.data.crossmatch import crossmatch, parse_radius
from xsift.errors import SchemaError, XsiftError


def _offset(ra, dec, arcsec, pa_deg):
    """Position ``arcsec`` away from (ra, dec) at position angle pa (exact, via astropy)."""
    from astropy.coordinates import SkyCoord
    import astropy.units as u
    c = SkyCoord(ra * u.deg, dec * u.deg).directional_offset_by(pa_deg * u.deg, arcsec * u.arcsec)
    return c.ra.deg, c.dec.deg


@pytest.fixture()
def tables():
    cat = pd.DataFrame({"name": ["a", "b", "c", "d", "e"], "obsid": [1, 2, 3, 4, 5],
                        "ra": [10.0, 10.0, 200.0, 359.9999, 45.0], "dec": [20.0, 20.0, -30.0, 89.9999, 0.0],
                        "main_type": ["old"] * 5})
    refs = []
    refs.append(("QSO",) + _offset(10.0, 20.0, 0.4, 30))      # a, b: 0.4" away
    refs.append(("Star",) + _offset(10.0, 20.0, 0.9, 200))    # farther candidate for a, b
    refs.append(("YSO",) + _offset(200.0, -30.0, 1.5, 90))    # c: 1.5" away -> no match at 1"
    refs.append(("HMXB",) + _offset(359.9999, 89.9999, 0.7, 120))   # d: near the pole and RA wrap
    ref = pd.DataFrame(refs, columns=["otype", "ra", "dec"])
    return cat, ref


def test_nearest_within_radius_every_row_kept(tables):
    cat, ref = tables
    out, counts = crossmatch(cat, ref, radius_arcsec=1.0, type_column="otype")
    assert list(out["name"]) == list(cat["name"])
    assert out["main_type"].tolist()[:2] == ["QSO", "QSO"]            # nearest of two candidates
    assert pd.isna(out["main_type"].iloc[2]) and pd.isna(out["main_type"].iloc[4])
    assert out["main_type"].iloc[3] == "HMXB"
    np.testing.assert_allclose(out["match_separation_arcsec"].iloc[[0, 2, 3]], [0.4, 1.5, 0.7], atol=1e-6)
    assert counts["matched"] == 3
    wider, _ = crossmatch(cat, ref, radius_arcsec=2.0, type_column="otype")
    assert wider["main_type"].iloc[2] == "YSO"


def test_missing_type_column_is_a_clear_error(tables):
    cat, ref = tables
    with pytest.raises(SchemaError, match=r"reference table: missing column.*main_type.*--type-column"):
        crossmatch(cat, ref, type_column="main_type")
    with pytest.raises(SchemaError, match="empty"):
        crossmatch(cat, ref.iloc[:0], type_column="otype")


def test_parse_radius():
    assert parse_radius("1arcsec") == pytest.approx(1.0)
    assert parse_radius("0.5 arcmin") == pytest.approx(30.0)
    assert parse_radius("2e-4deg") == pytest.approx(0.72)
    assert parse_radius("300mas") == pytest.approx(0.3)
    assert parse_radius(2) == 2.0
    with pytest.raises(XsiftError, match="expected a number with a unit"):
        parse_radius("one arcsec")


def test_crossmatch_cli_with_votable_reference_then_fit(tmp_path, tables):
    """A VOTable reference, the CLI, and `xsift fit --reference` taking its labels from it."""
    from xsift.cli import main
    from xsift.data.io import read_catalog, write_table
    from xsift.simulate import simulate_catalog
    cat, ref = tables
    write_table(cat, tmp_path / "cat.csv")
    write_table(ref, tmp_path / "ref.vot")
    assert main(["crossmatch", str(tmp_path / "cat.csv"), "--reference", str(tmp_path / "ref.vot"),
                 "--type-column", "otype", "--out", str(tmp_path / "out.parquet")]) == 0
    out = read_catalog(tmp_path / "out.parquet")
    assert out["main_type"].tolist()[:2] == ["QSO", "QSO"]
    assert main(["crossmatch", str(tmp_path / "cat.csv"), "--reference", str(tmp_path / "ref.vot"),
                 "--out", str(tmp_path / "bad.parquet")]) == 2
    assert not (tmp_path / "bad.parquet").exists()
    # a simulated catalogue whose labels come only from a reference table built from its own types
    sim = simulate_catalog(3000, seed=8)
    labelled = sim[sim["main_type"].notna()]
    reference = pd.DataFrame({"ra": labelled["ra"], "dec": labelled["dec"], "main_type": labelled["main_type"]})
    write_table(sim.drop(columns=["main_type"]), tmp_path / "sim.parquet")
    write_table(reference, tmp_path / "simref.csv")
    assert main(["fit", str(tmp_path / "sim.parquet"), "--reference", str(tmp_path / "simref.csv"),
                 "--out", str(tmp_path / "model"), "--k", "3"]) == 0
    import json
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert manifest["inputs"]["crossmatch"]["matched"] >= len(labelled)
    assert manifest["fit"]["references_complete"] > 0
