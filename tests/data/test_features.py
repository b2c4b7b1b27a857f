"""The CSC feature preset and the paper's Eq. 1-2 transform, against plain NumPy and scikit-learn."""
import json
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest

from xsift.errors import SchemaError, XsiftError
from xsift.config import load_preset
from xsift.data.features import (FeatureTransform, complete_rows, derive_features, feature_names,
                             raw_feature_columns)
from xsift.data.io import read_catalog

PAPER_FEATURES = ["hard_hm", "hard_hs", "hard_ms", "powlaw_gamma", "bb_kt", "var_prob_b", "var_ratio_b",
                  "var_prob_h", "var_ratio_h", "var_prob_s", "var_ratio_s", "var_newq_b"]


def eq1_eq2_numpy(df: pd.DataFrame) -> np.ndarray:
    """The paper's preprocessing written out literally, independent of xsift.data.features."""
    out = df[PAPER_FEATURES].to_numpy(dtype=float).copy()
    for name in ["bb_kt", "var_ratio_b", "var_ratio_h", "var_ratio_s", "var_newq_b"]:
        j = PAPER_FEATURES.index(name)
        x = out[:, j]
        xmin_star = x[x != 0].min()                      # smallest non-zero value
        out[:, j] = np.log(x + xmin_star / 10)           # Eq. 2
    for name in ["powlaw_gamma", "bb_kt", "var_ratio_b", "var_ratio_h", "var_ratio_s", "var_newq_b"]:
        j = PAPER_FEATURES.index(name)
        x = out[:, j]
        out[:, j] = (x - x.min()) / (x.max() - x.min())  # Eq. 1
    return out


def test_preset_is_the_papers_twelve_features():
    preset = load_preset("csc")
    assert feature_names(preset) == PAPER_FEATURES
    assert set(raw_feature_columns(preset)) >= {"var_sigma_b", "var_mean_b", "var_max_b", "var_min_b",
                                                "var_sigma_h", "var_mean_h", "var_sigma_s", "var_mean_s"}


@pytest.mark.parametrize("table", ["umlcaxs_unique", "umlcaxs_ambiguous"])
def test_transform_reproduces_eq1_eq2_on_real_rows(table, request):
    df = request.getfixturevalue(table)
    preset = load_preset("csc")
    feats = df[PAPER_FEATURES].astype(float)
    ok = complete_rows(feats)
    assert ok.sum() > 400
    expected = eq1_eq2_numpy(feats[ok])
    got = FeatureTransform.from_preset(preset).fit(feats[ok]).transform(feats[ok])
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_minmax_matches_scikit_learn(umlcaxs_unique):
    from sklearn.preprocessing import MinMaxScaler
    preset = load_preset("csc")
    feats = umlcaxs_unique[PAPER_FEATURES].astype(float)
    t = FeatureTransform.from_preset(preset).fit(feats)
    got = t.transform(feats)
    j = PAPER_FEATURES.index("powlaw_gamma")
    np.testing.assert_allclose(got[:, [j]], MinMaxScaler().fit_transform(feats[["powlaw_gamma"]]), atol=1e-12)
    # features the paper uses as they are stay untouched
    for name in ["hard_hm", "hard_hs", "hard_ms", "var_prob_b", "var_prob_h", "var_prob_s"]:
        k = PAPER_FEATURES.index(name)
        np.testing.assert_array_equal(got[:, k], feats[name].to_numpy())


def test_saved_transform_is_reused_not_refitted(umlcaxs_unique, tmp_path):
    preset = load_preset("csc")
    feats = umlcaxs_unique[PAPER_FEATURES].astype(float)
    train, new = feats.iloc[:4000], feats.iloc[4000:]
    t = FeatureTransform.from_preset(preset).fit(train)
    (tmp_path / "t.json").write_text(json.dumps(t.to_dict()))
    loaded = FeatureTransform.from_dict(json.loads((tmp_path / "t.json").read_text()))
    np.testing.assert_array_equal(loaded.transform(new), t.transform(new))
    # the new rows are scaled with the *training* range: literal formula with the training parameters
    j = PAPER_FEATURES.index("bb_kt")
    x = train["bb_kt"].to_numpy()
    off = x[x != 0].min() / 10
    lo, hi = np.log(x + off).min(), np.log(x + off).max()
    np.testing.assert_allclose(loaded.transform(new)[:, j], (np.log(new["bb_kt"] + off) - lo) / (hi - lo), rtol=1e-12)
    # outside the fitted range is allowed and maps outside [0, 1]
    big = new.iloc[:1].copy()
    big["bb_kt"] = x.max() * 100
    assert loaded.transform(big)[0, j] > 1


def test_real_votable_yields_the_twelve_features(example_votable):
    df = read_catalog(example_votable)
    assert len(df) == 1 and df["name"].iloc[0].startswith("2CXO J")
    feats = derive_features(df, load_preset("csc"))
    assert list(feats.columns) == PAPER_FEATURES
    # independent oracle: the raw VOTable cells parsed with the standard library
    ns = {"v": "http://www.ivoa.net/xml/VOTable/v1.2"}
    root = ET.parse(example_votable).getroot()
    names = [f.get("name") for f in root.iter("{http://www.ivoa.net/xml/VOTable/v1.2}FIELD")]
    cells = [td.text for td in root.iter("{http://www.ivoa.net/xml/VOTable/v1.2}TD")]
    raw = dict(zip(names, cells))
    val = lambda k: float(raw[k])
    assert feats["var_ratio_b"].iloc[0] == pytest.approx(val("var_sigma_b") / val("var_mean_b"), rel=1e-12)
    assert feats["var_ratio_h"].iloc[0] == pytest.approx(val("var_sigma_h") / val("var_mean_h"), rel=1e-12)
    assert feats["var_ratio_s"].iloc[0] == pytest.approx(val("var_sigma_s") / val("var_mean_s"), rel=1e-12)
    assert feats["var_newq_b"].iloc[0] == pytest.approx(
        (val("var_max_b") + val("var_min_b")) / 2 / val("var_mean_b"), rel=1e-12)
    for k in ["hard_hm", "hard_hs", "hard_ms", "var_prob_b", "var_prob_h", "var_prob_s"]:
        assert feats[k].iloc[0] == pytest.approx(val(k), rel=1e-12)
    # this real row has no spectral fit: powlaw_gamma and bb_kt are missing, so it is not complete
    for k in ["powlaw_gamma", "bb_kt"]:
        assert (raw[k] is None) == bool(np.isnan(feats[k].iloc[0]))
    assert complete_rows(feats).tolist() == [bool(np.isfinite(feats.to_numpy()).all())]


def test_zero_mean_rate_makes_the_ratio_missing_not_infinite():
    df = pd.DataFrame({c: [1.0, 1.0] for c in raw_feature_columns(load_preset("csc"))})
    df.loc[1, "var_mean_b"] = 0.0
    feats = derive_features(df, load_preset("csc"))
    assert np.isnan(feats.loc[1, "var_ratio_b"]) and np.isnan(feats.loc[1, "var_newq_b"])
    assert complete_rows(feats).tolist() == [True, False]


def test_transform_errors_are_clear():
    preset = load_preset("csc")
    df = pd.DataFrame({c: [0.5, 0.7] for c in PAPER_FEATURES})
    df.loc[0, "bb_kt"] = -1.0
    with pytest.raises(SchemaError, match="bb_kt.*negative"):
        FeatureTransform.from_preset(preset).fit(df)
    df = pd.DataFrame({c: [0.5, 0.7] for c in PAPER_FEATURES})
    df["var_newq_b"] = 0.0
    with pytest.raises(SchemaError, match="var_newq_b"):
        FeatureTransform.from_preset(preset).fit(df)
    with pytest.raises(SchemaError, match="no complete row"):
        FeatureTransform.from_preset(preset).fit(df.assign(hard_hm=np.nan))
    with pytest.raises(XsiftError, match="no such preset"):
        load_preset("no_such_preset")


def test_user_preset_file_is_read(tmp_path):
    text = load_preset("csc").source
    body = open(text).read()
    custom = tmp_path / "mine.toml"
    edited = body.replace('columns = ["powlaw_gamma"], transform = ["minmax"]', 'columns = ["powlaw_gamma"]')
    assert edited != body
    custom.write_text(edited)
    preset = load_preset(custom)
    assert "powlaw_gamma" not in FeatureTransform.from_preset(preset).minmax
    bad = tmp_path / "bad.toml"
    bad.write_text("[features\n")
    with pytest.raises(XsiftError, match="bad.toml: not valid TOML"):
        load_preset(bad)


def test_feature_errors_from_bounds_and_symmetric_columns():
    """sigma = (hilim - lolim) / 2 for bounds, the column itself for a symmetric error; NaN where the row's
    error is missing or negative, or the feature declares none; an absent error column is named."""
    import pytest
    from xsift.config import Preset, load_preset
    from xsift.data.features import feature_errors
    from xsift.errors import SchemaError
    d = load_preset("csc").to_dict()
    for spec in d["features"].values():           # only the two errors declared below
        spec.pop("error", None)
    d["features"]["hard_hm"]["error"] = ["hard_hm_lolim", "hard_hm_hilim"]
    d["features"]["hard_hs"]["error"] = ["hard_hs_err"]
    preset = Preset.from_dict(d)
    assert preset.error_columns == ["hard_hm_lolim", "hard_hm_hilim", "hard_hs_err"]
    df = pd.DataFrame({"hard_hm_lolim": [0.0, np.nan, -0.5], "hard_hm_hilim": [0.4, 0.3, -0.9],
                       "hard_hs_err": [0.05, -1.0, np.nan]})
    for c in preset.feature_columns:
        df[c] = 0.1
    err = feature_errors(df, preset, source="t.csv")
    np.testing.assert_allclose(err["hard_hm"], [0.2, np.nan, np.nan])
    np.testing.assert_allclose(err["hard_hs"], [0.05, np.nan, np.nan])
    assert err.drop(columns=["hard_hm", "hard_hs"]).isna().all().all()
    with pytest.raises(SchemaError, match="t.csv: column 'hard_hs_err'"):
        feature_errors(df.drop(columns=["hard_hs_err"]), preset, source="t.csv")
