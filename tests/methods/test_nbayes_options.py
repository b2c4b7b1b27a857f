"""NaiveBayesKDE's options (issue 19: the method as CLAXBOI runs it): preset fields and constructor
parameters, histogram properties, CLAXBOI's bandwidth, the density floor, persistence, tuning on a
prior-proportioned subsample with the missing-value exponent, alternative classes in the tracks.
Oracles: numpy histograms and formulas, the subsample's counts, the estimator's own tables."""
import json

import numpy as np
import pandas as pd
import pytest

from xsift.errors import XsiftError
from xsift.methods.naive_bayes import NaiveBayesKDE, prior_proportioned_subsample, tune_weights

CLASSES = ["A", "B", "C"]
PRESET = {
    "name": "options_toy", "method": "naive_bayes",
    "columns": {"source": "name", "label": "cls"},
    "classes": {"order": CLASSES, "priors": [0.6, 0.3, 0.1], "target": "C", "labels": {c: [c] for c in CLASSES}},
    "features": {"p0": {"formula": "column", "columns": ["p0"]},
                 "n_obs": {"formula": "column", "columns": ["n_obs"]},        # discrete: 1..4
                 "p2": {"formula": "column", "columns": ["p2"]}},
    "categories": {"One": {"weight": 1.0, "features": ["p0", "n_obs"]}, "Two": {"weight": 1.0, "features": ["p2"]}},
}


def _table(n=300, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.choice(3, n, p=[0.5, 0.3, 0.2])
    df = pd.DataFrame({"p0": rng.normal(y * 1.5, 1.0), "n_obs": rng.integers(1, 3 + y, n).astype(float),
                       "p2": rng.normal(-y, 1.0), "cls": np.asarray(CLASSES, dtype=object)[y],
                       "name": [f"s{i}" for i in range(n)]})
    df.loc[rng.uniform(size=n) < 0.15 * (1 + y), "p2"] = np.nan
    return df


@pytest.fixture(scope="module")
def data():
    return _table(300, 0), _table(80, 1)


@pytest.fixture(scope="module")
def model(data):
    preset = {**PRESET, "naive_bayes": {"histogram_max_distinct": 10, "bandwidth": "claxboi", "kernel": "exponential",
                                        "density_floor": 0.01, "missing_likelihood": True,
                                        "alternative_classes": True}}
    return NaiveBayesKDE(preset, n_grid=128).fit(data[0])


def test_preset_fields_set_options_and_constructor_parameters_win():
    preset = {**PRESET, "naive_bayes": {"missing_likelihood": True, "kernel": "exponential",
                                        "prior_shapes": {"p0": {"C": {"shape": "uniform", "fraction": 0.25}}}}}
    opts = NaiveBayesKDE(preset).options()
    assert opts["missing_likelihood"] and opts["kernel"] == "exponential" and opts["bandwidth"] == "scott"
    assert opts["prior_shapes"] == {"p0": {"C": {"shape": "uniform", "fraction": 0.25}}}
    assert NaiveBayesKDE(preset, kernel="gaussian", missing_likelihood=False).options()["kernel"] == "gaussian"
    from xsift.config import Preset
    loaded = Preset.from_dict(preset)
    assert Preset.from_dict(loaded.to_dict()) == loaded and loaded.to_dict()["naive_bayes"] == preset["naive_bayes"]
    assert "naive_bayes" not in Preset.from_dict(PRESET).to_dict()
    with pytest.raises(XsiftError, match=r"\[naive_bayes\] kernel: expected one of 'gaussian', 'exponential'"):
        NaiveBayesKDE({**PRESET, "naive_bayes": {"kernel": "box"}}).options()
    with pytest.raises(XsiftError, match=r"prior_shapes p9: unknown property"):
        NaiveBayesKDE({**PRESET, "naive_bayes": {"prior_shapes": {"p9": {"A": {"shape": "uniform"}}}}}).options()
    with pytest.raises(XsiftError, match=r"NaiveBayesKDE\(density_floor=...\): expected a number in \[0, 1\)"):
        NaiveBayesKDE(PRESET, density_floor=1.5).options()


def test_histograms_claxboi_bandwidth_and_floor(model, data):
    train, _ = data
    K = 3
    kinds = np.asarray(model.kde_.kernel).reshape(3, K)
    assert kinds[1].tolist() == [2, 2, 2] and kinds[0].tolist() == [1, 1, 1]        # n_obs: histograms
    assert model.fit_report_["histograms"] == {"n_obs": CLASSES}
    # CLAXBOI's rule: range / (5 n^(1/5)) over every class's observed values of the property
    for p, name in ((0, "p0"), (2, "p2")):
        v = train[name].dropna()
        np.testing.assert_allclose(model.kde_.bandwidth.reshape(3, K)[p], (v.max() - v.min()) / (5 * len(v) ** 0.2),
                                   rtol=1e-12)
    # the histogram of class A at n_obs = 2, with a 1 % uniform floor over the range [1, 4]
    a = train[train.cls == "A"]["n_obs"]
    step = (train["n_obs"].max() - train["n_obs"].min()) / 99
    f_hist = (a == 2).sum() / (len(a) * step)
    probe = pd.DataFrame({"p0": [np.nan, np.nan], "n_obs": [2.0, 3.5], "p2": [np.nan, np.nan]})
    f = np.exp(model.log_likelihoods(probe))[:, 1, 0]
    span = train["n_obs"].max() - train["n_obs"].min()
    np.testing.assert_allclose(f, [0.99 * f_hist + 0.01 / span, 0.01 / span], rtol=1e-9)


def test_options_saved_with_the_model_and_default_models_unchanged(model, data, tmp_path):
    _, test = data
    digest = model.save(tmp_path / "m")
    loaded = NaiveBayesKDE.load(tmp_path / "m")
    assert loaded.model_hash == digest
    np.testing.assert_array_equal(loaded.predict_proba(test), model.predict_proba(test))
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert json.dumps(meta).count('"missing_likelihood": true') >= 1
    plain = NaiveBayesKDE(PRESET, n_grid=128).fit(data[0])
    plain.save(tmp_path / "p")
    with np.load(tmp_path / "p" / "model.npz") as z:
        assert "kde_kernel" not in z.files and "present_fraction" not in z.files
    assert "options" not in json.loads((tmp_path / "p" / "model.json").read_text())["meta"]


def test_prior_proportioned_subsample_matches_the_priors():
    y = np.repeat([0, 1, 2], [500, 300, 40])
    priors = np.array([0.66, 0.25, 0.09])
    rows = prior_proportioned_subsample(y, priors, seed=3)
    counts = np.bincount(y[rows], minlength=3)
    assert counts[2] == 40                                            # the limiting class, whole
    np.testing.assert_array_equal(counts, np.floor(40 * priors / priors[2] + 1e-9).astype(int))
    np.testing.assert_allclose(counts / counts.sum(), priors, atol=1 / counts.sum())
    assert len(np.unique(rows)) == len(rows)
    np.testing.assert_array_equal(rows, prior_proportioned_subsample(y, priors, seed=3))
    assert not np.array_equal(rows, prior_proportioned_subsample(y, priors, seed=4))


def test_alternative_classes_in_the_tracks(model, data):
    _, test = data
    tracks = model.tracks(test.iloc[:1])
    alt = model.alternative_class_table(test.iloc[:1])
    cats = tracks[tracks.level == "category"].set_index("name")["alternative_class"]
    assert {c: cats[c] for c in ("One", "Two")} == {c: alt[f"alt_class_without_{c}"][0] for c in ("One", "Two")}
    with pytest.raises(XsiftError, match="missing_likelihood"):
        tune_weights(NaiveBayesKDE(PRESET, n_grid=128), data[0], n_folds=2, popsize=2, maxiter=1, tune_alpha=True)


@pytest.mark.slow
def test_tuning_alpha_on_a_prior_subsample(model, data):
    """Differential evolution over the category weights and the missing-value exponent (slow: compiles the
    DE loop for this objective)."""
    train, _ = data
    res = tune_weights(model.set_params(tune_sample="priors"), train, target="C", n_folds=3, popsize=4, maxiter=4,
                       tune_alpha=True)
    model.set_params(tune_sample=None)
    assert 0.0 <= res.missing_alpha <= 1.0 and res.f1_tuned >= res.f1_start_weights
    y = train["cls"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy()
    assert res.tune_rows == len(prior_proportioned_subsample(y, [0.6, 0.3, 0.1], 0))
    assert set(res.params) == {"weights", "missing_alpha"}
    # the reported F1 is scikit-learn's F1 of the tuned out-of-fold predictions on the subsample
    from sklearn.metrics import f1_score
    rows = prior_proportioned_subsample(res.y, [0.6, 0.3, 0.1], 0)
    assert f1_score(res.y[rows], res.cross_validated_predictions[rows], labels=[2], average=None)[0] == \
        pytest.approx(res.f1_tuned, abs=1e-12)


def test_inner_folds_keep_a_source_together():
    """tune_weights' inner folds split by the preset's source column when a source has several rows;
    with one row per source (or no source column) they are the row-stratified folds as before."""
    from xsift.methods.naive_bayes import tuning_folds
    from xsift.methods.validation import stratified_folds
    y = np.random.default_rng(2).integers(0, 3, 120)
    np.testing.assert_array_equal(tuning_folds(y, None, 3, 1), stratified_folds(y, 3, 1))
    np.testing.assert_array_equal(tuning_folds(y, [f"s{i}" for i in range(120)], 3, 1), stratified_folds(y, 3, 1))
    names = np.array([f"s{i // 3}" for i in range(120)])        # three rows per source, one class each
    y = np.repeat(y[::3], 3)
    folds = tuning_folds(y, names, 3, 1)
    assert (pd.Series(folds).groupby(names).nunique() == 1).all() and len(np.unique(folds)) == 3
    assert np.abs(np.bincount(folds) - 40).max() <= 6          # balanced folds of whole sources


XRB_TOY = ('name = "xrb_toy"\nmethod = "naive_bayes"\n[columns]\nsource = "name"\nlabel = "cls"\n'
           '[classes]\norder = ["AGN", "HMXB", "LMXB"]\ntarget = "XRB"\n'
           '[classes.labels]\nAGN = ["AGN"]\nHMXB = ["HMXB"]\nLMXB = ["LMXB"]\n[classes.aggregation]\nXRB = ["HMXB", "LMXB"]\n'
           '[features.p0]\nformula = "column"\ncolumns = ["p0"]\n[features.p2]\nformula = "column"\ncolumns = ["p2"]\n'
           '[categories.One]\nweight = 1.0\nfeatures = ["p0"]\n[categories.Two]\nweight = 1.0\nfeatures = ["p2"]\n')


@pytest.fixture(scope="module")
def xrb_toy(tmp_path_factory):
    """A three-class table (AGN, HMXB, LMXB) and a preset whose tuning target is the aggregated XRB."""
    d = tmp_path_factory.mktemp("xrb_toy")
    rng = np.random.default_rng(5)
    y = rng.choice(3, 150, p=[0.5, 0.25, 0.25])
    df = pd.DataFrame({"p0": rng.normal(y, 1.0), "p2": rng.normal(-1.5 * (y > 0), 1.0),
                       "cls": np.asarray(["AGN", "HMXB", "LMXB"])[y], "name": [f"s{i}" for i in range(150)]})
    df.to_csv(d / "t.csv", index=False)
    (d / "p.toml").write_text(XRB_TOY)
    return d, df


def test_tuning_for_an_aggregated_class(xrb_toy):
    """The preset's ``target`` (or ``target=``) may name an aggregated class (issue 19's XRB = HMXB + LMXB):
    the F1 tuned is scikit-learn's binary F1 of the out-of-fold predictions mapped to in/out of the group
    (a class alone is the group of one: test_nbayes_claxboi's kernel test, and test_nbayes's tuning tests)."""
    from sklearn.metrics import f1_score
    d, df = xrb_toy
    res = tune_weights(NaiveBayesKDE(str(d / "p.toml"), n_grid=64), df, n_folds=2, popsize=3, maxiter=3)
    assert res.target == "XRB" and res.as_dict()["target_classes"] == ["HMXB", "LMXB"]
    assert res.f1_tuned >= res.f1_start_weights
    assert f1_score(np.isin(res.y, [1, 2]), np.isin(res.cross_validated_predictions, [1, 2])) == \
        pytest.approx(res.f1_tuned, abs=1e-12)
    with pytest.raises(XsiftError, match=r"aggregated classes \['XRB'\]"):
        tune_weights(NaiveBayesKDE(str(d / "p.toml"), n_grid=64), df, target="Star", n_folds=2)


def test_nb_tune_cli_targets_an_aggregated_class(xrb_toy, capsys):
    """``xsift nb tune --tune XRB``: tunes for the F1 of HMXB + LMXB pooled and says so."""
    from xsift.cli import main
    d, _ = xrb_toy
    assert main(["nb", "tune", str(d / "t.csv"), "--config", str(d / "p.toml"), "--tune", "XRB",
                 "--out", str(d / "m"), "--folds", "2", "--popsize", "3", "--maxiter", "3", "--grid", "64",
                 "--quiet"]) == 0
    assert "F1(XRB = HMXB + LMXB)" in capsys.readouterr().out
