"""Output tables with metadata: units, descriptions and UCDs in FITS, VOTable and Parquet, the header's
provenance, every format round-tripping its values, files created with the umask's mode, and the
naive-Bayes output joining back to its catalogue.

The expected units and UCDs are the IVOA/FITS words an astronomer looks for (``deg`` and
``pos.eq.ra;meta.main`` for ``ra`` ...), written here by hand, not read from the registry.
"""
import json
import os
import stat
import warnings

import numpy as np
import pandas as pd
import pytest

import xsift
from xsift.data.columns import column_info, provenance
from xsift.data.io import read_catalog, write_table

CLASSES = ["AGN", "XB"]
HASH = "0123456789abcdef" * 4


def _frame() -> pd.DataFrame:
    """A detection-level table: identity, position, class probabilities, features, nulls in every kind."""
    return pd.DataFrame({
        "name": pd.array(["2CXO J000001.0+000001", None, "2CXO J000003.0-000003"], dtype="str"),
        "obsid": np.array([101, 102, 103], dtype=np.int64),
        "ra": [0.25, 180.5, 359.75], "dec": [-30.0, 0.0, 89.5],
        "AGN": [0.1, 0.75, np.nan], "XB": [0.9, 0.25, np.nan],
        "predicted_class": pd.array(["XB", "AGN", None], dtype="str"),
        "hard_hm": [-0.5, 0.25, 0.99], "bb_kt": [0.3, 1.5, np.nan], "flux_aper_b": [1e-14, 2.5e-15, 3e-13],
        "no_usable_class": [False, False, True], "n_categories": np.array([3, 2, 0], dtype=np.int32),
        "my_column": [1.0, 2.0, 3.0]})


def _provenance():
    return provenance(method="naive_bayes", preset="nb_csc", model_hash=HASH, inputs=["/data/catalogue.fits"],
                      command="xsift nb classify")


def _read_astropy(path, fmt):
    from astropy.table import Table
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # VOUnit's deprecation of erg
        return Table.read(path, format=fmt)


@pytest.mark.parametrize("fmt, suffix", [("fits", ".fits"), ("votable", ".vot")])
def test_fits_and_votable_columns_carry_units_descriptions_and_ucds(tmp_path, fmt, suffix):
    import astropy.units as u
    path = write_table(_frame(), tmp_path / f"t{suffix}", classes=CLASSES, provenance=_provenance())
    t = _read_astropy(path, fmt)
    assert t["ra"].unit == u.deg and t["dec"].unit == u.deg
    assert t["ra"].meta["ucd"] == "pos.eq.ra;meta.main" and t["dec"].meta["ucd"] == "pos.eq.dec;meta.main"
    assert "right ascension" in t["ra"].description.lower()
    assert t["name"].meta["ucd"] == "meta.id;meta.main" and t["obsid"].meta["ucd"] == "meta.id"
    # a class probability: dimensionless (an explicit empty unit), described as its class's probability
    assert u.Unit(t["AGN"].unit or "") == u.dimensionless_unscaled
    assert t["AGN"].meta["ucd"] == "stat.probability"
    assert "probability" in t["AGN"].description and "AGN" in t["AGN"].description
    assert t["predicted_class"].meta["ucd"] == "src.class"
    assert t["hard_hm"].meta["ucd"] == "phot.color"
    assert t["bb_kt"].unit == u.keV
    assert t["flux_aper_b"].unit == u.erg / u.cm ** 2 / u.s
    # a column xsift knows nothing of is written without metadata, not with a guess
    assert t["my_column"].unit is None and not t["my_column"].description
    if fmt == "fits":
        from astropy.io import fits
        header = fits.getheader(path, 1)
        n = {header[f"TTYPE{i}"]: i for i in range(1, header["TFIELDS"] + 1)}
        assert header[f"TUNIT{n['AGN']}"] == ""          # dimensionless, declared
        assert header[f"TUCD{n['ra']}"] == "pos.eq.ra;meta.main"   # the convention TOPCAT reads
        assert "probability of class AGN" in header[f"TCOMM{n['AGN']}"]


def test_fits_header_records_version_method_preset_model_hash_and_input(tmp_path):
    from astropy.io import fits
    path = write_table(_frame(), tmp_path / "t.fits", classes=CLASSES, provenance=_provenance())
    header = fits.getheader(path, 1)
    assert header["XSIFTVER"] == xsift.__version__
    assert header["METHOD"] == "naive_bayes" and header["PRESET"] == "nb_csc"
    assert header["MODELHSH"] == HASH and header["INPUT1"] == "/data/catalogue.fits"
    assert _read_astropy(path, "fits").meta["MODELHSH"] == HASH      # and astropy's Table shows them


def test_votable_infos_record_version_method_preset_model_hash_and_input(tmp_path):
    from astropy.io.votable import parse
    path = write_table(_frame(), tmp_path / "t.vot", classes=CLASSES, provenance=_provenance())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        votable = parse(str(path))
    infos = {i.name: i.value for i in votable.resources[0].infos}
    assert infos == {"xsift_version": xsift.__version__, "method": "naive_bayes", "preset": "nb_csc",
                     "model_hash": HASH, "command": "xsift nb classify", "input": "/data/catalogue.fits"}
    field = {f.name: f for f in votable.get_first_table().fields}
    assert field["ra"].ucd == "pos.eq.ra;meta.main" and str(field["ra"].unit) == "deg"


def test_parquet_keeps_column_metadata_and_provenance(tmp_path):
    import pyarrow.parquet as pq
    path = write_table(_frame(), tmp_path / "t.parquet", classes=CLASSES, provenance=_provenance())
    schema = pq.read_schema(path)
    ra = schema.field("ra").metadata
    assert ra[b"unit"] == b"deg" and ra[b"ucd"] == b"pos.eq.ra;meta.main"
    assert schema.field("XB").metadata[b"ucd"] == b"stat.probability"
    record = json.loads(schema.metadata[b"xsift"])
    assert record == {"xsift_version": xsift.__version__, "method": "naive_bayes", "preset": "nb_csc",
                      "model_hash": HASH, "command": "xsift nb classify", "inputs": ["/data/catalogue.fits"]}
    assert b"pandas" in schema.metadata          # pandas' own record kept: dtypes round-trip


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".fits", ".vot"])
def test_every_format_round_trips_the_values(tmp_path, suffix):
    df = _frame()
    back = read_catalog(write_table(df, tmp_path / f"t{suffix}", classes=CLASSES, provenance=_provenance()))
    pd.testing.assert_frame_equal(back, df, check_dtype=False)
    for c in df.columns:   # numbers stay numbers, booleans booleans, text text
        assert back[c].dtype.kind == df[c].dtype.kind or (pd.api.types.is_string_dtype(back[c])
                                                          and pd.api.types.is_string_dtype(df[c])), c


def test_class_columns_are_recognised_only_from_the_models_classes():
    assert column_info("AGN") is None
    assert column_info("AGN", CLASSES).ucd == "stat.probability"
    assert column_info("AGN_std", CLASSES).ucd == "stat.stdev"
    # case-insensitive lookup for survey columns, and the column families
    assert column_info("SC_EP_8_FLUX").unit == column_info("sc_ep_8_flux").unit == "erg cm-2 s-1"
    assert column_info("p_cluster_3").ucd == "stat.probability"
    assert column_info("HR2").ucd == "phot.color"


# ------------------------------------------------------------------------------------ file modes

def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_tables_figures_and_manifests_get_the_umasks_mode(tmp_path, umask, expected):
    from xsift.report import write_manifest
    from xsift.report.figures import plot_outliers
    old = os.umask(umask)
    try:
        table = write_table(_frame(), tmp_path / "t.fits")
        parquet = write_table(_frame(), tmp_path / "t.parquet")
        figure = tmp_path / "om.png"
        plot_outliers(np.array([0.5, 1.0, 2.0]), np.array([0, 1, 1]), CLASSES, figure)
        manifest = write_manifest(tmp_path, command="test")
    finally:
        os.umask(old)
    assert {p.name: _mode(p) for p in (table, parquet, figure, manifest)} == dict.fromkeys(
        ("t.fits", "t.parquet", "om.png", "manifest.json"), expected)
    # still atomic: nothing but the finished files in the directory
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json", "om.png", "t.fits", "t.parquet"]


# ------------------------------------------------------------------- naive Bayes joins back

@pytest.fixture(scope="module")
def nb_run(tmp_path_factory):
    """A naive-Bayes model fitted on a simulated catalogue and the catalogue, shuffled, to classify."""
    from xsift import NaiveBayesKDE
    from xsift.simulate import simulate_catalog
    root = tmp_path_factory.mktemp("nb")
    df = simulate_catalog(2000, seed=3)
    NaiveBayesKDE("nb_csc", n_grid=256).fit(df).save(root / "model")
    shuffled = df.sample(frac=1.0, random_state=1).reset_index(drop=True)
    return root, write_table(shuffled, root / "catalogue.parquet"), shuffled


@pytest.mark.parametrize("fmt, suffix", [("fits", ".fits"), ("votable", ".vot"), ("csv", ".csv")])
def test_nb_output_joins_back_to_its_catalogue_with_kept_columns(nb_run, fmt, suffix):
    from xsift.cli import main
    root, catalogue, df = nb_run
    out = root / f"run_{fmt}"
    assert main(["nb", "classify", str(catalogue), "--model", str(root / "model"), "--out", str(out),
                 "--format", fmt, "--keep-columns", "hard_hm, main_type"]) == 0
    result = read_catalog(out / f"nb_classification{suffix}")
    assert len(result) == len(df)
    assert {"name", "obsid", "ra", "dec", "hard_hm", "main_type"} <= set(result.columns)
    joined = df.merge(result, on=["name", "obsid"], how="inner", suffixes=("", "_out"), validate="one_to_one")
    assert len(joined) == len(df)
    for c in ("ra", "dec", "hard_hm"):
        np.testing.assert_array_equal(joined[c].to_numpy(), joined[f"{c}_out"].to_numpy())
    pd.testing.assert_series_equal(joined["main_type"], joined["main_type_out"], check_names=False,
                                   check_dtype=False)
    # the probabilities of each row are those of its own detection: classify the catalogue in memory
    from xsift import NaiveBayesKDE
    direct = NaiveBayesKDE.load(root / "model").predict_proba(joined)
    classes = ["AGN", "Seyfert", "XB", "YSO"]
    np.testing.assert_allclose(joined[classes].to_numpy(), direct, rtol=1e-12, atol=1e-15)


def test_nb_output_header_names_the_model_and_input(nb_run):
    from astropy.io import fits
    from xsift.cli import main
    from xsift.methods.persistence import read_model
    root, catalogue, _ = nb_run
    assert main(["nb", "classify", str(catalogue), "--model", str(root / "model"), "--out", str(root / "h"),
                 "--format", "fits"]) == 0
    header = fits.getheader(root / "h" / "nb_classification.fits", 1)
    model_json = json.loads((root / "model" / "model.json").read_text())
    read_model(root / "model")   # the hash it records is the model's checked hash
    assert header["MODELHSH"] == model_json["hash"]
    assert (header["METHOD"], header["PRESET"], header["INPUT1"]) == ("naive_bayes", "nb_csc", str(catalogue))


def test_nb_keep_columns_names_a_missing_column(nb_run, capsys):
    from xsift.cli import main
    root, catalogue, _ = nb_run
    assert main(["nb", "classify", str(catalogue), "--model", str(root / "model"), "--out", str(root / "x"),
                 "--keep-columns", "no_such_column"]) == 2
    err = capsys.readouterr().err
    assert "no_such_column" in err and str(catalogue) in err


# ------------------------------------------------------------------ every table command, every format

def test_run_and_validate_write_votable_and_fits_with_metadata(tmp_path):
    from xsift.cli import main
    from xsift.simulate import simulate_catalog
    cat = write_table(simulate_catalog(2500, seed=2), tmp_path / "sim.parquet")
    assert main(["run", str(cat), "--out", str(tmp_path / "r"), "--k", "3", "--format", "votable",
                 "--no-figures"]) == 0
    digest = json.loads((tmp_path / "r" / "model" / "model.json").read_text())["hash"]
    for stem in ("clusters", "detection_level", "uniquely_classified", "ambiguous"):
        t = _read_astropy(tmp_path / "r" / f"{stem}.vot", "votable")
        assert t["ra"].meta["ucd"] == "pos.eq.ra;meta.main", stem
        assert [c for c in t.colnames if not t[c].description] == [], stem      # every column described
    t = _read_astropy(tmp_path / "r" / "detection_level.vot", "votable")
    assert t["LMXB"].meta["ucd"] == "stat.probability" and "LMXB" in t["LMXB"].description
    u = _read_astropy(tmp_path / "r" / "uniquely_classified.vot", "votable")
    assert u["LMXB_std"].meta["ucd"] == "stat.stdev"
    from astropy.io.votable import parse
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        infos = {i.name: i.value for i in parse(str(tmp_path / "r" / "detection_level.vot")).resources[0].infos}
    assert (infos["method"], infos["preset"], infos["model_hash"], infos["input"]) == (
        "cluster_then_label", "csc", digest, str(cat))
    # the paper's 'mean±std' text columns are described as such, not as probabilities
    assert main(["classify", str(cat), "--model", str(tmp_path / "r" / "model"), "--out", str(tmp_path / "p"),
                 "--format", "vot", "--published-format", "--no-figures"]) == 0
    p = _read_astropy(tmp_path / "p" / "uniquely_classified.vot", "votable")
    assert "±" in p["LMXB"][0] and "mean±std" in p["LMXB"].description and "ucd" not in p["LMXB"].meta
    assert main(["validate", str(cat), "--out", str(tmp_path / "v"), "--k", "3", "--format", "fits",
                 "--no-figures"]) == 0
    from astropy.io import fits
    header = fits.getheader(tmp_path / "v" / "test_predictions.fits", 1)
    assert header["METHOD"] == "cluster_then_label" and header["INPUT1"] == str(cat)
    assert read_catalog(tmp_path / "v" / "metrics_classes.fits")["class"].tolist()[:2] == ["QSO", "AGN"]


def test_crossmatch_format_follows_the_suffix_or_the_option(tmp_path, capsys):
    from xsift.cli import main
    cat = write_table(pd.DataFrame({"name": ["a", "b"], "obsid": [1, 2], "ra": [10.0, 20.0], "dec": [0.0, 5.0]}),
                      tmp_path / "cat.csv")
    ref = write_table(pd.DataFrame({"ra": [10.0], "dec": [0.0], "main_type": ["QSO"]}), tmp_path / "ref.csv")
    assert main(["crossmatch", str(cat), "--reference", str(ref), "--out", str(tmp_path / "x.vot")]) == 0
    assert _read_astropy(tmp_path / "x.vot", "votable")["dec"].meta["ucd"] == "pos.eq.dec;meta.main"
    assert main(["crossmatch", str(cat), "--reference", str(ref), "--out", str(tmp_path / "x.fits"),
                 "--format", "csv"]) == 2
    assert "--format is csv" in capsys.readouterr().err
