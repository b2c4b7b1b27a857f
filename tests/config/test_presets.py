"""xsift.config: every shipped preset loads and round-trips; the CSC preset is the paper's Table 1;
malformed presets fail once, at load, naming the file and the key."""
import inspect
import json
import pickle

import numpy as np
import pandas as pd
import pytest

from xsift.config import (FORMULAS, PRESET_DIR, NBSpec, Preset, builtin_presets, load_nb_preset, load_preset,
                          spec_from_preset)
from xsift.data.features import (FORMULA_FUNCTIONS, FeatureTransform, derive_features, feature_values)
from xsift.errors import XsiftError

# Perez-Diaz et al. (2024), Table 1, in the paper's order
PAPER_FEATURES = ["hard_hm", "hard_hs", "hard_ms", "powlaw_gamma", "bb_kt", "var_prob_b", "var_ratio_b",
                  "var_prob_h", "var_ratio_h", "var_prob_s", "var_ratio_s", "var_newq_b"]
# Eq. 2 (log after + a tenth of the smallest non-zero value) and Eq. 1 (min-max) of the paper
PAPER_LOG = ["bb_kt", "var_ratio_b", "var_ratio_h", "var_ratio_s", "var_newq_b"]
PAPER_MINMAX = ["powlaw_gamma", "bb_kt", "var_ratio_b", "var_ratio_h", "var_ratio_s", "var_newq_b"]
SHIPPED = ["csc", "erass1", "nb_csc", "nb_csc_mw", "nb_muwclass", "nb_xmm", "nb_xmm4", "xmm"]


def _text(name: str) -> str:
    return (PRESET_DIR / f"{name}.toml").read_text()


def _write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def _edited(tmp_path, preset: str, old: str, new: str, name: str = "bad.toml"):
    text = _text(preset)
    assert text.count(old) == 1, f"{old!r} should occur once in {preset}.toml"
    return _write(tmp_path, name, text.replace(old, new))


# ----------------------------------------------------------------------------- shipped presets

def test_builtin_presets_are_the_shipped_files():
    assert builtin_presets() == sorted(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_preset_loads_and_round_trips(name):
    p = load_preset(name)
    assert isinstance(p, Preset) and p.name == name and p.source == str(PRESET_DIR / f"{name}.toml")
    d = p.to_dict()
    # through JSON, as a model.json keeps it: an equal preset, and the same dict again
    back = Preset.from_dict(json.loads(json.dumps(d)), source="model.json")
    assert back == p and back.to_dict() == d and back.source == "model.json"
    assert pickle.loads(pickle.dumps(p)) == p          # Dask ships presets to workers
    assert hash(back) == hash(p)
    assert load_preset(p) is p                          # a loaded preset is returned as it is
    assert load_preset(PRESET_DIR / f"{name}.toml") == p
    assert load_preset(d) == p


def test_preset_is_frozen():
    p = load_preset("csc")
    with pytest.raises(AttributeError):
        p.name = "other"
    with pytest.raises(TypeError):
        p.classes.aggregation["AGN"] = ("QSO",)


def test_csc_preset_is_the_papers_table_1_and_transform():
    p = load_preset("csc")
    assert p.method == "cluster_then_label"
    assert p.feature_names == PAPER_FEATURES
    assert p.features_with("ln_offset") == PAPER_LOG
    assert p.features_with("minmax") == PAPER_MINMAX
    # every feature's transform is exactly the paper's: ln_offset before minmax, the rest untouched
    for f in p.features:
        assert list(f.transform) == [t for t, names in (("ln_offset", PAPER_LOG), ("minmax", PAPER_MINMAX))
                                     if f.name in names], f.name
    t = FeatureTransform.from_preset("csc")
    assert (t.features, t.log, t.minmax) == (PAPER_FEATURES, PAPER_LOG, PAPER_MINMAX)
    # the derived features of the paper: var_ratio_x = var_sigma_x / var_mean_x, var_newq_b midrange / mean
    for band in "bhs":
        f = p.feature(f"var_ratio_{band}")
        assert (f.formula, f.columns) == ("ratio", (f"var_sigma_{band}", f"var_mean_{band}"))
    assert (p.feature("var_newq_b").formula, p.feature("var_newq_b").columns) == \
        ("midrange_ratio", ("var_max_b", "var_min_b", "var_mean_b"))
    assert p.columns.to_dict() == {"source": "name", "detection": "obsid", "ra": "ra", "dec": "dec",
                                   "label": "main_type", "interval": "obi"}
    assert p.classes.order == ("QSO", "AGN", "Seyfert_1", "Seyfert_2", "HMXB", "LMXB", "XB", "YSO", "TTau*",
                               "Orion_V*")
    assert dict(p.classes.aggregation) == {"AGN": ("QSO", "AGN"), "Seyfert": ("Seyfert_1", "Seyfert_2"),
                                           "XB": ("HMXB", "LMXB", "XB"), "YSO": ("YSO", "TTau*", "Orion_V*")}
    assert "Star" in p.classes.uninformative and p.classes.priors is None and p.categories == ()


def test_naive_bayes_presets_keep_their_meaning():
    csc = load_preset("csc")
    s = load_nb_preset()                                  # default: nb_csc
    assert isinstance(s, NBSpec) and s.preset == load_preset("nb_csc")
    # nb_csc takes its classes and labels from csc's aggregation (one definition)
    assert s.classes == list(csc.classes.aggregation)
    assert s.labels == {m: g for g, ms in csc.classes.aggregation.items() for m in ms}
    assert s.priors == "training" and s.target == "XB" and s.label_column == "true_class"
    assert s.category_names == ["Location", "Hardness", "Variability"]
    assert s.properties["abs_b"] == {"formula": "abs_galactic_latitude", "columns": ["ra", "dec"], "transform": []}
    assert s.properties["bb_kt"]["transform"] == ["log10"]
    m = load_nb_preset("nb_muwclass")
    assert m.classes == ["AGN", "Star", "XRB", "CV"] and m.target == "XRB"
    assert m.labels["YSO"] == "Star" and "NS" not in m.labels
    np.testing.assert_allclose(m.priors, np.array([0.66, 0.25, 0.07, 0.02]) / 1.0, rtol=1e-12)
    assert sum(m.priors) == pytest.approx(1.0)
    x = spec_from_preset("nb_xmm")
    np.testing.assert_array_equal(x.weights, [7.5, 3.2, 6.0, 2.0])   # the seed's Table 1 weights
    member = x.membership()
    assert member.shape == (4, 15) and (member.sum(axis=0) == 1).all()
    assert member[x.category_names.index("Flux ratios"), x.property_names.index("fx_fw2")] == 1
    with pytest.raises(XsiftError, match="csc.toml.*cluster_then_label.*naive_bayes"):
        spec_from_preset("csc")


def test_spec_round_trips_through_the_stored_preset():
    s = load_nb_preset("nb_muwclass")
    back = spec_from_preset(Preset.from_dict(json.loads(json.dumps(s.preset.to_dict())), source="model.json"))
    assert back == s


# ----------------------------------------------------------------------------- formulas

def test_formula_registry_and_implementations_agree():
    assert set(FORMULA_FUNCTIONS) == set(FORMULAS)
    for name, f in FORMULAS.items():
        assert len(inspect.signature(FORMULA_FUNCTIONS[name]).parameters) == f.arity, name


def test_formulas_against_literal_arithmetic_and_sky_positions():
    a, b, c = np.array([3.0, 1.0, 2.0]), np.array([1.0, 0.0, 2.0]), np.array([2.0, 4.0, 1.0])
    np.testing.assert_array_equal(FORMULA_FUNCTIONS["hardness_ratio"](a, b), (a - b) / (a + b))
    np.testing.assert_array_equal(FORMULA_FUNCTIONS["midrange_ratio"](a, b, c), ((a + b) / 2) / c)
    # the north Galactic pole (IAU 1958, ICRS) and the Galactic centre: |b| = 90 and 0 degrees
    ra, dec = np.array([192.85948, 266.40500, np.nan]), np.array([27.12825, -28.93617, 10.0])
    got = FORMULA_FUNCTIONS["abs_galactic_latitude"](ra, dec)
    assert got[0] == pytest.approx(90.0, abs=1e-3) and got[1] == pytest.approx(0.0, abs=1e-3)
    assert np.isnan(got[2])


def test_feature_values_apply_log10_and_count_what_it_drops():
    df = pd.DataFrame({"name": ["a", "b", "c"], "Class": ["AGN", "CV", "NS"], "ra": [10.0, 20.0, 30.0],
                       "dec": [0.0, 5.0, -5.0], "Fcsc_s": [1.0, 2.0, 1.0], "Fcsc_m": [3.0, 2.0, -1.0],
                       "Fcsc_h": [2.0, 0.0, 1.0], "powlaw_gamma_mean": [1.7, np.nan, 2.0],
                       "var_intra_prob": [0.1, 0.2, 0.3], "var_inter_prob": [0.5, 0.6, np.inf]})
    X, dropped = feature_values(df, "nb_muwclass")
    assert X.shape == (3, 7)
    with np.errstate(divide="ignore"):
        hr_ms = ((df["Fcsc_m"] - df["Fcsc_s"]) / (df["Fcsc_m"] + df["Fcsc_s"])).to_numpy()
    np.testing.assert_allclose(X[:2, 0], hr_ms[:2])
    assert np.isinf(hr_ms[2]) and np.isnan(X[2, 0])              # a non-finite result is missing
    assert np.isnan(X[1, 3]) and np.isnan(X[2, 5]) and dropped == {}
    toy = {"name": "toy", "method": "naive_bayes", "columns": {"source": "name"},
           "features": {"q": {"formula": "ratio", "columns": ["a", "b"], "transform": ["log10"]}},
           "classes": {"labels": {"x": ["x"]}}, "categories": {"All": {"features": ["q"]}}}
    X, dropped = feature_values(pd.DataFrame({"a": [100.0, -1.0, 0.0, 5.0], "b": [1.0, 1.0, 1.0, 0.0]}), toy)
    np.testing.assert_allclose(X[0, 0], 2.0)
    assert np.isnan(X[1:, 0]).all() and dropped == {"q": 2}     # -1 and 0 dropped by the log; 5/0 is not finite


# ----------------------------------------------------------------------------- names accepted everywhere

@pytest.fixture(scope="module")
def simulated():
    from xsift.simulate import simulate_catalog
    return simulate_catalog(300, seed=5)


def test_functions_taking_a_preset_accept_a_name_a_path_and_a_preset(simulated):
    df = simulated
    p = load_preset("csc")
    by_name = derive_features(df, "csc")
    pd.testing.assert_frame_equal(by_name, derive_features(df, p))
    pd.testing.assert_frame_equal(by_name, derive_features(df, PRESET_DIR / "csc.toml"))
    assert FeatureTransform.from_preset("csc") == FeatureTransform.from_preset(p)


def test_a_copy_with_source_mapped_to_another_column_loads(tmp_path, simulated):
    path = _edited(tmp_path, "csc", 'source = "name"', 'source = "csc_name"', name="renamed.toml")
    p = load_preset(path)
    assert p.name == "csc"                                # the copy keeps the name it declares
    assert p.columns.source == "csc_name" and p.input_columns[0] == "csc_name"
    assert p.feature_names == PAPER_FEATURES and p.classes == load_preset("csc").classes
    df = simulated.rename(columns={"name": "csc_name"})
    pd.testing.assert_frame_equal(derive_features(df, p), derive_features(simulated, "csc"))


# ----------------------------------------------------------------------------- malformed presets

MALFORMED = [
    # (preset, text replaced, replacement, the key the message must name, what it must say)
    ("csc", 'method = "cluster_then_label"', 'method = "cluster_then_label"\ncolour = "blue"', "colour",
     "unknown key"),
    ("csc", 'dec = "dec"  ', 'declination = "dec"  ', r"\[columns\] declination", "unknown key"),
    ("csc", 'columns = ["hard_hm"],', 'columns = ["hard_hm"], scale = 2,', r"\[features.hard_hm\] scale",
     "unknown key"),
    ("csc", 'columns = ["bb_kt"], transform = ["ln_offset", "minmax"]',
     'columns = ["bb_kt"], transform = "minmax"',
     r"\[features.bb_kt\] transform", "expected a list of strings"),
    ("csc", 'columns = ["bb_kt"], transform = ["ln_offset", "minmax"]',
     'columns = ["bb_kt"], transform = ["minmax", "ln_offset"]',
     r"\[features.bb_kt\] transform", "order"),
    ("csc", 'columns = ["bb_kt"], transform = ["ln_offset", "minmax"]',
     'columns = ["bb_kt"], transform = ["sqrt"]',
     r"\[features.bb_kt\] transform", "unknown transform 'sqrt'"),
    ("csc", 'columns = ["bb_kt"], transform = ["ln_offset", "minmax"]',
     'columns = ["bb_kt"], transform = ["log10"]',
     r"\[features.bb_kt\] transform", "not a transform of the cluster_then_label method"),
    ("csc", 'formula = "midrange_ratio"', 'formula = "midpoint"', r"\[features.var_newq_b\] formula",
     "unknown formula 'midpoint'"),
    ("csc", 'columns = ["var_max_b", "var_min_b", "var_mean_b"]', 'columns = ["var_max_b", "var_mean_b"]',
     r"\[features.var_newq_b\] columns", "takes 3 column"),
    ("csc", 'order = ["QSO", "AGN",', 'order = "QSO"\nnot_order = ["AGN",', r"\[classes\]", ""),
    ("csc", 'YSO = ["YSO", "TTau*", "Orion_V*"]', 'YSO = ["YSO", "TTau*"]', r"\[classes.aggregation\]",
     "training class 'Orion_V\\*' is in no aggregated class"),
    ("csc", 'XB = ["HMXB", "LMXB", "XB"]', 'XB = ["HMXB", "LMXB", "XB", "CV"]', r"\[classes.aggregation\] XB",
     "'CV' is not a training class"),
    ("csc", 'detection = "obsid"      # together', '# detection = "obsid"      # together',
     r"\[columns\] detection", "missing"),
    ("csc", 'uninformative = [', 'target = "XB"\nuninformative = [', r"\[classes\] target",
     "not used by the cluster_then_label method"),
    ("nb_muwclass", 'features = ["hr_ms", "hr_hm", "hr_hs", "gamma"]', 'features = ["hr_ms", "hr_hm", "hr_hs", "gama"]',
     r"\[categories.Hardness\] features", "unknown feature 'gama'"),
    ("nb_muwclass", 'weight = 1.0\nfeatures = ["abs_b"]', 'weight = "heavy"\nfeatures = ["abs_b"]',
     r"\[categories.Location\] weight", "expected a number"),
    ("nb_muwclass", 'features = ["var_intra_prob", "var_inter_prob"]', 'features = ["var_intra_prob"]',
     r"\[features.var_inter_prob\]", "in no category"),
    ("nb_muwclass", 'features = ["var_intra_prob", "var_inter_prob"]', 'features = ["var_intra_prob", "abs_b"]',
     r"\[categories.Variability\] features", "already in category 'Location'"),
    ("nb_muwclass", 'priors = [0.66, 0.25, 0.07, 0.02]', 'priors = [0.66, 0.25, 0.09]', r"\[classes\] priors",
     "4 positive numbers"),
    ("nb_muwclass", 'target = "XRB"', 'target = "NS"', r"\[classes\] target", "not one of the classes"),
    ("nb_muwclass", 'CV = ["CV"]', 'CV = ["CV", "AGN"]', r"\[classes.labels\] CV", "already means class 'AGN'"),
    ("nb_muwclass", 'gamma = { formula = "column", columns = ["powlaw_gamma_mean"] }',
     'gamma = { formula = "column", columns = ["powlaw_gamma_mean"], transform = ["minmax"] }',
     r"\[features.gamma\] transform", "not a transform of the naive_bayes method"),
    ("nb_csc", 'labels_from = "csc"', 'labels_from = "no_such_preset"', r"\[classes\] labels_from",
     "no such preset"),
    ("nb_csc", 'method = "naive_bayes"', '', "method", "missing"),
]


@pytest.mark.parametrize("preset,old,new,key,problem", MALFORMED,
                         ids=[f"{m[0]}-{m[3]}-{m[4][:20]}" for m in MALFORMED])
def test_malformed_preset_names_file_and_key(tmp_path, preset, old, new, key, problem):
    path = _edited(tmp_path, preset, old, new)
    with pytest.raises(XsiftError, match=rf"bad\.toml: {key}.*{problem}") as err:
        load_preset(path)
    assert str(path) in str(err.value)


def test_malformed_stored_preset_names_its_source():
    d = load_preset("csc").to_dict()
    d["features"]["bb_kt"]["transform"] = ["ln_offset", 3]
    with pytest.raises(XsiftError, match=r"model/model.json: \[features.bb_kt\] transform: expected a list of strings"):
        Preset.from_dict(d, source="model/model.json")


def test_labels_from_cycle_is_an_error_not_a_recursion(tmp_path):
    text = _text("nb_csc").replace('labels_from = "csc"', f'labels_from = "{tmp_path / "b.toml"}"')
    _write(tmp_path, "a.toml", text)
    _write(tmp_path, "b.toml", _text("nb_csc").replace('labels_from = "csc"', f'labels_from = "{tmp_path / "a.toml"}"'))
    with pytest.raises(XsiftError, match="refers back"):
        load_preset(tmp_path / "a.toml")


def test_unknown_name_and_bad_toml(tmp_path):
    with pytest.raises(XsiftError, match="no_such_preset: no such preset file; built-in presets: csc, erass1, nb_csc"):
        load_preset("no_such_preset")
    bad = _write(tmp_path, "broken.toml", "[features\n")
    with pytest.raises(XsiftError, match="broken.toml: not valid TOML"):
        load_preset(bad)
