"""nb validate's pieces (xsift.methods.nb_validation) and the multiwavelength formulas, against independent
oracles: folds by source counted directly, metrics against scikit-learn, out-of-fold probabilities against
models fitted by hand on the other folds, a model restricted to fewer properties against one fitted on them,
the magnitude -> flux zero points against the published F_nu zero points."""
import numpy as np
import pandas as pd
import pytest

from xsift.config import Preset, load_preset, spec_from_preset
from xsift.errors import SchemaError, XsiftError
from xsift.methods.naive_bayes import NaiveBayesKDE
from xsift.methods.nb_validation import (aggregate_probabilities, aggregation_of, preset_for_columns,
                                         restricted_model, source_folds, validate_naive_bayes)

from shared_data import shared_file

C_A_PER_S = 2.99792458e18      # speed of light, Angstrom / s

SMALL = {
    "name": "small", "method": "naive_bayes",
    "columns": {"source": "src", "label": "cls"},
    "classes": {"order": ["A", "B", "C"], "labels": {"A": ["a"], "B": ["b"], "C": ["c"]}, "priors": "training",
                "target": "C", "aggregation": {"AB": ["A", "B"]}},
    "features": {"x1": {"formula": "column", "columns": ["x1"]},
                 "x2": {"formula": "column", "columns": ["x2"], "error": ["e_x2"]},
                 "x3": {"formula": "difference", "columns": ["m1", "m2"]}},
    "categories": {"One": {"weight": 1.0, "features": ["x1"]}, "Two": {"weight": 2.0, "features": ["x2"]},
                   "Three": {"weight": 1.0, "features": ["x3"]}},
}


def small_table(n=150, seed=1):
    rng = np.random.default_rng(seed)
    cls = rng.choice(["a", "b", "c"], size=n, p=[0.5, 0.3, 0.2])
    shift = pd.Series(cls).map({"a": 0.0, "b": 1.5, "c": 3.0}).to_numpy()
    df = pd.DataFrame({"src": [f"S{i // 2}" for i in range(n)],        # two rows per source
                       "cls": cls, "x1": rng.normal(shift, 1.0), "x2": rng.normal(-shift, 1.5),
                       "e_x2": rng.uniform(0.1, 1.0, n), "m1": rng.normal(15 + shift, 1.0), "m2": 15.0})
    df.loc[rng.random(n) < 0.2, "x2"] = np.nan
    df["cls"] = df.groupby("src")["cls"].transform("first")            # one class per source
    return df


def test_preset_for_columns_drops_properties_categories_and_errors():
    full = Preset.from_dict(SMALL)
    same, facts = preset_for_columns(full, ["src", "cls", "x1", "x2", "e_x2", "m1", "m2"])
    assert same is full and facts["properties_absent"] == {} and facts["properties_used"] == ["x1", "x2", "x3"]
    reduced, facts = preset_for_columns(full, ["src", "cls", "x1", "x2", "m1"])
    assert facts["properties_used"] == ["x1", "x2"]
    assert facts["properties_absent"] == {"x3": ["m2"]}
    assert facts["errors_absent"] == {"x2": ["e_x2"]}
    assert facts["categories_dropped"] == ["Three"]
    assert reduced.feature_names == ["x1", "x2"] and [c.name for c in reduced.categories] == ["One", "Two"]
    assert reduced.feature("x2").error == () and reduced.classes == full.classes
    with pytest.raises(SchemaError, match="my.csv: missing columns 'x1', 'x2', 'm1', 'm2'"):
        preset_for_columns(full, ["src", "cls"], source="my.csv")


def test_source_folds_keep_sources_whole_and_spread_each_class():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 90, 400)
    cls_of_group = rng.integers(0, 3, 90)
    y = cls_of_group[groups]
    folds = source_folds(y, groups, 5, seed=3)
    for g in np.unique(groups):
        assert len(np.unique(folds[groups == g])) == 1           # a source never straddles two folds
    for c in range(3):
        per_fold = [len(np.unique(groups[(folds == k) & (y == c)])) for k in range(5)]
        assert max(per_fold) - min(per_fold) <= 1                # the class's sources spread evenly
    assert np.array_equal(folds, source_folds(y, groups, 5, seed=3))
    with pytest.raises(XsiftError, match="folds"):
        source_folds(y, groups, 1, seed=0)


def test_aggregation_sums_member_probabilities():
    names, index = aggregation_of(["A", "B", "C", "D"], {"X": ["B", "D"], "Y": ["A"]})
    assert names == ["X", "Y", "C"] and index.tolist() == [1, 0, 2, 0]
    p = np.random.default_rng(2).dirichlet(np.ones(4), size=7)
    agg = aggregate_probabilities(p, index, 3)
    np.testing.assert_allclose(agg, np.c_[p[:, 1] + p[:, 3], p[:, 0], p[:, 2]], rtol=0, atol=1e-15)


def test_validation_matches_hand_fitted_folds_and_sklearn_metrics():
    from sklearn.metrics import f1_score, precision_score, recall_score
    df = small_table()
    population = [0.7, 0.2, 0.1]
    res = validate_naive_bayes(df, SMALL, n_folds=2, seed=4, model_params={"n_grid": 256}, priors=population)
    spec = spec_from_preset(Preset.from_dict(SMALL))
    y = df["cls"].map({"a": 0, "b": 1, "c": 2}).to_numpy()
    np.testing.assert_array_equal(res.y, y)
    np.testing.assert_array_equal(res.folds, source_folds(y, df["src"].to_numpy(), 2, seed=4))
    for k in range(2):                                            # oracle: each fold fitted by hand
        tr, te = res.folds != k, res.folds == k
        m = NaiveBayesKDE(spec, n_grid=256, seed=4 + k).fit(df[tr], y[tr])
        np.testing.assert_allclose(res.proba[te], m.predict_proba(df[te]), rtol=0, atol=1e-12)
    pred = np.argmax(res.proba, axis=1)
    per = res.per_class()
    np.testing.assert_allclose([per[c]["f1"] for c in "ABC"], f1_score(y, pred, average=None), atol=1e-12)
    np.testing.assert_allclose([per[c]["recall"] for c in "ABC"], recall_score(y, pred, average=None), atol=1e-12)
    np.testing.assert_allclose([per[c]["precision"] for c in "ABC"], precision_score(y, pred, average=None),
                               atol=1e-12)
    assert res.metrics["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"), abs=1e-12)
    # prior-corrected precision (Tranin et al. 2022, Table 2) = precision with sample weights prior_c / n_c
    weight = np.asarray(population)[y] / np.bincount(y)[y]
    np.testing.assert_allclose([per[c]["precision_prior_corrected"] for c in "ABC"],
                               precision_score(y, pred, average=None, sample_weight=weight), atol=1e-12)
    # aggregated classes: AB = A + B, C alone; predictions = largest summed probability
    ya = np.where(y == 2, 1, 0)
    pa = np.argmax(np.c_[res.proba[:, 0] + res.proba[:, 1], res.proba[:, 2]], axis=1)
    assert res.aggregated_classes == ["AB", "C"]
    agg = res.per_class(aggregated=True)
    np.testing.assert_allclose([agg["AB"]["f1"], agg["C"]["f1"]], f1_score(ya, pa, average=None), atol=1e-12)


def test_restricted_model_equals_a_model_fitted_on_the_reduced_preset():
    df = small_table(120, seed=5)
    options = {"n_grid": 256, "missing_likelihood": True, "missing_alpha": 0.4, "error_weights": True,
               "density_floor": 0.01}      # the method's per-property terms: missing values, error weights
    full = NaiveBayesKDE(SMALL, prior_shapes={"x3": {"A": {"shape": "uniform"}}}, **options).fit(df)
    reduced, _ = preset_for_columns(SMALL, [c for c in df.columns if c != "m2"])
    oracle = NaiveBayesKDE(reduced, weights={"One": 1.0, "Two": 2.0}, **options).fit(df)
    cut = restricted_model(full, reduced)
    table = df.drop(columns=["m2"])
    np.testing.assert_allclose(cut.predict_proba(table), oracle.predict_proba(table), rtol=0, atol=1e-12)
    assert full.spec_.property_names == ["x1", "x2", "x3"]       # the model itself is unchanged


def test_log_xray_over_band_formulas_and_zero_points():
    from xsift.config.formulas import PHOTOMETRIC_BANDS
    from xsift.data.features import FORMULA_FUNCTIONS, band_flux
    # zero points against the published F_nu of magnitude 0 at the band's reference wavelength:
    # Gaia G 3228.75 Jy at 6217.6 A (pivot), 2MASS J 1594 Jy at 1.235 um (Cohen et al. 2003), WISE W1 309.54 Jy
    # at 3.3526 um (Jarrett et al. 2011)
    for band, jy, lam in (("gaia_g", 3228.75, 6217.59), ("2mass_j", 1594.0, 12350.0), ("wise_w1", 309.54, 33526.0)):
        f_lambda = jy * 1e-23 * C_A_PER_S / lam ** 2
        assert PHOTOMETRIC_BANDS[band][0] == pytest.approx(f_lambda, rel=0.015), band
    fs, fm, fh = np.array([1e-14, 2e-15, 0.0]), np.array([1e-14, 0.0, 0.0]), np.array([3e-14, 1e-15, 0.0])
    mag = np.array([15.0, 18.5, 12.0])
    out = FORMULA_FUNCTIONS["log_xray_over_2mass_j"](fs, fm, fh, mag)
    expect = np.log10((fs + fm + fh)[:2] / (3.129e-10 * 1620.0 * 10 ** (-0.4 * mag[:2])))
    np.testing.assert_allclose(out[:2], expect, rtol=1e-13)
    assert np.isnan(out[2])                                      # no X-ray flux: missing
    np.testing.assert_allclose(FORMULA_FUNCTIONS["log_xray_over_wise_w1"](fs, mag),
                               np.where(fs > 0, np.log10(np.where(fs > 0, fs, 1) / band_flux(mag, "wise_w1")), np.nan))


def test_multiwavelength_presets_read_the_real_tables():
    from xsift.data.features import feature_values
    for preset, parts in (("nb_csc_mw", ("muwclass", "td_multiwavelength_2023.csv")),
                          ("nb_xmm4", ("xmm", "4xmm_dr13_training_sample.csv"))):
        df = pd.read_csv(shared_file(*parts))
        p = load_preset(preset)
        assert Preset.from_dict(p.to_dict()) == p                    # aggregation survives the round trip
        values, _ = feature_values(df, p)
        assert values.shape == (len(df), len(p.features))
        assert np.isfinite(values).any(axis=0).all()                 # every property observed somewhere
    p = load_preset("nb_csc_mw")
    assert dict(p.classes.aggregation) == {"AGN": ("AGN",), "Star": ("YSO", "LM-STAR", "HM-STAR"),
                                           "XRB": ("HMXB", "LMXB"), "CV": ("CV",)}
    # the G-band ratio of the first source with a counterpart, by hand
    df = pd.read_csv(shared_file("muwclass", "td_multiwavelength_2023.csv"))
    row = df[df["Gmag"].notna()].iloc[0]
    fx = row["Fcsc_s"] + row["Fcsc_m"] + row["Fcsc_h"]
    v = feature_values(df[df["Gmag"].notna()].iloc[:1], p)[0][0, p.feature_names.index("log_fx_fg")]
    assert v == pytest.approx(np.log10(fx / (2.50e-9 * 4052.97 * 10 ** (-0.4 * row["Gmag"]))), rel=1e-12)


def test_naive_bayes_aggregation_must_name_classes_once():
    for groups, bad in (({"AB": ["A", "Z"]}, "'Z'"), ({"AB": ["A", "B"], "BC": ["B", "C"]}, "'B'")):
        with pytest.raises(XsiftError, match=rf"\[classes.aggregation\] .*{bad}"):
            Preset.from_dict({**SMALL, "classes": {**SMALL["classes"], "aggregation": groups}})
    no_groups = {**SMALL, "classes": {k: v for k, v in SMALL["classes"].items() if k != "aggregation"}}
    assert "aggregation" not in Preset.from_dict(no_groups).to_dict()["classes"]   # stored form unchanged
