"""Validation split, metrics (vs scikit-learn) and the validate command."""
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.metrics import precision_recall_fscore_support
from sklearn.mixture import GaussianMixture

from xsift.config import load_preset
from xsift.data.features import FeatureTransform, derive_features
from xsift.methods.metrics import cohen_kappa, confusion_matrix, precision_recall_f1, row_normalised
from xsift.simulate import simulate_catalog
from xsift.methods.validation import stratified_split, validate
from xsift.report.outputs import write_validation

# the oracle GMMs run a fixed, small number of EM iterations on purpose
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

PRESET = load_preset("csc")
CLASSES = list(PRESET.classes.order)


def test_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    t = rng.integers(0, 6, 500)
    p = np.where(rng.random(500) < 0.6, t, rng.integers(0, 6, 500))
    p[p == 5] = 4                                     # a class never predicted: precision 0 by convention
    cm = confusion_matrix(t, p, 6)
    assert (cm == sk_confusion(t, p, labels=range(6))).all()
    m = precision_recall_f1(cm)
    pr, rc, f1, sup = precision_recall_fscore_support(t, p, labels=range(6), zero_division=0)
    np.testing.assert_allclose(m["precision"], pr)
    np.testing.assert_allclose(m["recall"], rc)
    np.testing.assert_allclose(m["f1"], f1)
    assert (m["support"] == sup).all()
    assert cohen_kappa(t, p, 6) == pytest.approx(cohen_kappa_score(t, p), abs=1e-12)
    np.testing.assert_allclose(row_normalised(cm).sum(axis=1), 1.0)


def test_stratified_split_is_seeded_and_stratified():
    rng = np.random.default_rng(1)
    labels = np.concatenate([rng.integers(0, 10, 3000), np.full(200, -1), np.full(7, 3)])
    a = stratified_split(labels, 0.3, seed=5)
    assert (a == stratified_split(labels, 0.3, seed=5)).all()
    assert not (a == stratified_split(labels, 0.3, seed=6)).all()
    assert not a[labels < 0].any()
    for c in range(10):
        n = int((labels == c).sum())
        assert a[labels == c].sum() == round(0.3 * n)


@pytest.fixture(scope="module")
def sim_and_gmm():
    df = simulate_catalog(6000, seed=21)
    feats = derive_features(df, PRESET)
    ok = np.isfinite(feats.to_numpy()).all(axis=1)
    X = FeatureTransform.from_preset(PRESET).fit(feats[ok]).transform(feats[ok])
    gm = GaussianMixture(4, covariance_type="full", random_state=0, max_iter=15).fit(X)

    class P:
        weights, means, covariances, precisions_cholesky = (gm.weights_, gm.means_, gm.covariances_,
                                                            gm.precisions_cholesky_)
    return df, P


def test_validate_holds_out_and_scores_against_the_hidden_labels(tmp_path, sim_and_gmm):
    df, gmm = sim_and_gmm
    res = validate(df, PRESET, gmm_params=gmm, split_seed=3)
    c = res["counts"]
    assert c["test"] == res["predictions"].shape[0]
    assert res["confusion"].sum() == c["test_scored"] == res["confusion_aggregated"].sum()
    assert c["test"] + c["train"] == c["labelled_complete"]
    # the predictions' true classes are the catalogue's own labels
    truth = df.set_index(["name", "obsid"])["main_type"]
    pred = res["predictions"]
    assert (truth.loc[list(zip(pred["name"], pred["obsid"]))].to_numpy() == pred["true_class"].to_numpy()).all()
    # aggregated matrix is the 10-class matrix summed over the aggregation blocks
    agg = PRESET.classes.aggregation
    idx = [[CLASSES.index(m) for m in agg[a]] for a in res["aggregated_classes"]]
    summed = np.array([[res["confusion"][np.ix_(r, s)].sum() for s in idx] for r in idx])
    assert (summed == res["confusion_aggregated"]).all()
    assert c["accuracy_aggregated"] > 0.4                    # far above chance (0.25)
    written = write_validation(res, tmp_path)
    cm = pd.read_csv(tmp_path / "confusion_classes.csv")
    assert list(cm.columns) == ["true_class", *CLASSES]
    np.testing.assert_allclose(cm[CLASSES].to_numpy().sum(axis=1)[res["confusion"].sum(axis=1) > 0], 1.0)
    for key in ("confusion_classes_png", "confusion_aggregated_png"):
        assert (tmp_path / written[key].split("/")[-1]).stat().st_size > 1000


def test_validate_cli(tmp_path):
    from xsift.cli import main
    from xsift.data.io import write_table
    write_table(simulate_catalog(3000, seed=4), tmp_path / "cat.parquet")
    assert main(["validate", str(tmp_path / "cat.parquet"), "--out", str(tmp_path / "val"), "--k", "3",
                 "--no-figures"]) == 0
    manifest = json.loads((tmp_path / "val" / "manifest.json").read_text())
    assert manifest["command"] == "validate" and manifest["counts"]["test"] > 0
    assert (tmp_path / "val" / "metrics_aggregated.csv").exists()


def test_a_preset_mapping_the_source_column_elsewhere_gives_the_same_results(sim_and_gmm):
    """A copy of the csc preset whose ``columns.source`` names another column, on the catalogue with its
    source column renamed so: fit, classify and validate give exactly the original's results. The renamed
    catalogue also carries a decoy ``name`` column (one value for every row): a step reading ``name``
    instead of the preset's column would merge every detection into one source."""
    from xsift.methods.cluster_then_label import ClusterThenLabel
    df, gmm = sim_and_gmm
    spec = PRESET.to_dict()
    spec["columns"]["source"] = "source_id"
    moved = load_preset(spec)
    assert moved.columns.source == "source_id"
    renamed = df.rename(columns={"name": "source_id"}).assign(name="decoy")

    a = ClusterThenLabel(preset=PRESET, gmm=gmm).fit(df)
    b = ClusterThenLabel(preset=moved, gmm=gmm).fit(renamed)
    assert a.fit_report_["references_complete"] == b.fit_report_["references_complete"] > 0
    np.testing.assert_array_equal(a.class_means_, b.class_means_)
    ra, rb = a.classify(df), b.classify(renamed)
    assert ra.counts == rb.counts and ra.counts["sources"] > 100
    for name, table in ra.tables().items():
        pd.testing.assert_frame_equal(table, rb.tables()[name])
    assert "source_id" in b.wanted_columns() and "name" not in b.wanted_columns()

    va = validate(df, PRESET, gmm_params=gmm, split_seed=3)
    vb = validate(renamed, moved, gmm_params=gmm, split_seed=3)
    assert (va["confusion"] == vb["confusion"]).all() and va["confusion"].sum() > 0
    pd.testing.assert_frame_equal(va["predictions"], vb["predictions"])
    assert va["counts"] == vb["counts"]


# --------------------------------------------------------------------------- split by source, ECE, priors


def _majority_class(df, labels):
    """Each labelled source's class from pandas: its most common label, the lowest on a tie."""
    lab = pd.DataFrame({"name": df["name"].to_numpy(), "label": labels})
    lab = lab[lab["label"] >= 0]
    counts = lab.groupby(["name", "label"]).size().reset_index(name="n")
    counts = counts.sort_values(["name", "n", "label"], ascending=[True, False, True])
    return counts.drop_duplicates("name").set_index("name")["label"]


def test_split_by_source_puts_every_source_on_one_side_stratified_and_seeded(sim_and_gmm):
    from xsift.methods.cluster_then_label import reference_labels
    df, _ = sim_and_gmm
    labels, _ = reference_labels(df, PRESET)
    held = stratified_split(labels, 0.3, 7, groups=df["name"])
    names = df["name"].to_numpy()
    test_names = set(names[held])
    train_names = set(names[~held & (labels >= 0)])
    assert test_names and not (test_names & train_names)
    # whole sources: every row of a held-out source is held out, multi-detection ones included
    per_source = pd.Series(held).groupby(names).agg(["min", "max", "size"])
    assert (per_source["min"] == per_source["max"]).all()
    assert (per_source.loc[list(test_names), "size"] > 1).sum() > 20
    # stratified by the source's majority class: round(0.3 n) sources of each class held out
    cls = _majority_class(df, labels)
    for c, group in cls.groupby(cls):
        assert sum(n in test_names for n in group.index) == round(0.3 * len(group))
    # the detection-level class mix of the held-out part stays close to the whole labelled sample's (sources
    # with many detections make it lumpy: at 6,000 detections the largest move of a class's share is 0.044
    # for the median split seed and 0.097 for the worst of seeds 0-39)
    lab = labels >= 0
    whole = np.bincount(labels[lab], minlength=len(CLASSES)) / lab.sum()
    part = np.bincount(labels[held & lab], minlength=len(CLASSES)) / (held & lab).sum()
    assert np.abs(whole - part).max() < 0.1
    # sources without a label are never held out; seeded
    unlabelled = set(names) - set(cls.index)
    assert not (unlabelled & test_names)
    assert (held == stratified_split(labels, 0.3, 7, groups=df["name"])).all()
    assert not (held == stratified_split(labels, 0.3, 8, groups=df["name"])).all()


@pytest.mark.parametrize("seed", [0, 3])
def test_split_is_independent_of_the_simulation_with_the_same_seed(seed):
    """A simulated catalogue split with the seed it was simulated with: the held-out labelled sources have
    as many multi-detection sources as the labelled sources overall (within 0.05). The split once drew
    from the simulator's own first stream (default_rng(seed) == default_rng([seed, 0])) and then held
    out only single-detection sources."""
    from xsift.methods.cluster_then_label import reference_labels
    from xsift.simulate import simulate_catalog
    df = simulate_catalog(20_000, seed=seed)
    labels, _ = reference_labels(df, PRESET)
    held = stratified_split(labels, 0.3, seed, groups=df["name"])
    names = df["name"].to_numpy()
    size = pd.Series(names).value_counts()
    labelled = pd.unique(names[labels >= 0])
    test = pd.unique(names[held])
    overall = float((size[labelled] > 1).mean())
    assert overall > 0.1
    assert abs(float((size[test] > 1).mean()) - overall) < 0.05


def _ece_numpy(conf, correct, n_bins):
    """Guo et al. (2017) ECE written out: bins ((m-1)/M, m/M], weighted |accuracy - confidence|."""
    total = 0.0
    for m in range(1, n_bins + 1):
        lo, hi = (m - 1) / n_bins, m / n_bins
        sel = (conf > lo) & (conf <= hi) if m > 1 else (conf >= 0) & (conf <= hi)
        if sel.any():
            total += sel.sum() / len(conf) * abs(correct[sel].mean() - conf[sel].mean())
    return total


@pytest.mark.parametrize("n_bins", [10, 15])
def test_ece_equals_plain_numpy_transcription(n_bins):
    from xsift.methods.metrics import reliability, top_class_reliability
    rng = np.random.default_rng(11)
    p = rng.dirichlet(np.ones(4) * 0.5, size=3000)
    p[:7] = np.array([1.0, 0.0, 0.0, 0.0])             # confidence exactly on a bin edge (1.0)
    y = (p.cumsum(axis=1) > rng.random((3000, 1)) ** 0.7).argmax(axis=1)
    conf, correct = p.max(axis=1), p.argmax(axis=1) == y
    rel = reliability(conf, correct, n_bins)
    assert rel["ece"] == pytest.approx(_ece_numpy(conf, correct, n_bins), rel=1e-12)
    assert sum(rel["count"]) == 3000
    p_nan = np.vstack([p, np.full((3, 4), np.nan)])
    top = top_class_reliability(p_nan, np.r_[y, 0, 1, 2], n_bins)
    assert top["ece"] == rel["ece"] and top["left_out"] == 3


def test_prior_corrected_precision_is_precision_with_prior_weights():
    from sklearn.metrics import precision_score
    from xsift.methods.metrics import prior_corrected_precision
    from xsift.methods.metrics import classification_metrics
    rng = np.random.default_rng(2)
    t = rng.choice(4, 2000, p=[0.4, 0.3, 0.2, 0.1])
    p = np.where(rng.random(2000) < 0.7, t, rng.integers(0, 4, 2000))
    priors = np.array([0.66, 0.25, 0.07, 0.02])          # Tranin et al.'s AGN, star, XRB, CV priors
    n = np.bincount(t, minlength=4)
    ours = prior_corrected_precision(confusion_matrix(t, p, 4), priors)
    ref = precision_score(t, p, labels=range(4), average=None, sample_weight=(priors / n)[t], zero_division=0)
    np.testing.assert_allclose(ours, ref, rtol=1e-12)
    nb = classification_metrics(t, p, ["a", "b", "c", "d"], priors)
    np.testing.assert_allclose(ours, nb["precision_prior_corrected"], rtol=1e-12)


def test_validate_calibrated_holds_out_whole_sources_and_reports_ece(tmp_path, sim_and_gmm):
    from xsift.methods.metrics import prior_corrected_precision, top_class_reliability
    df, gmm = sim_and_gmm
    from xsift.methods.cluster_then_label import ClusterThenLabel
    res = validate(df, PRESET, estimator=ClusterThenLabel(preset=PRESET, gmm=gmm, missing="drop"), split_seed=5,
                   calibrate=True)
    pred = res["predictions"]
    # no source on both sides: every labelled complete detection of a held-out source is held out
    from xsift.methods.cluster_then_label import features_of, reference_labels
    labels, _ = reference_labels(df, PRESET)
    _, ok = features_of(df, PRESET)
    usable = df[(labels >= 0) & ok]
    held_names = set(pred["name"])
    assert len(usable[usable["name"].isin(held_names)]) == len(pred)
    assert res["split"]["by"] == "source" and res["split"]["sources_on_both_sides"] == 0
    assert res["counts"]["test_sources"] == len(held_names)
    # ECE of the raw and calibrated probabilities, recomputed from the prediction table
    truth = pred["true_class"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy()
    raw = top_class_reliability(pred[CLASSES].to_numpy(), truth)
    cal = top_class_reliability(pred[[f"{c}_calibrated" for c in CLASSES]].to_numpy(), truth)
    assert res["counts"]["ece"] == pytest.approx(raw["ece"]) and res["counts"]["ece_calibrated"] == pytest.approx(cal["ece"])
    assert res["calibration"]["nll_calibrated"] <= res["calibration"]["nll_raw"]
    assert res["counts"]["ece_calibrated"] < res["counts"]["ece"]
    assert res["model"].temperature_ == res["calibration"]["temperature"] > 0
    # the prior-corrected precision uses the reported priors
    prior = np.array([res["priors"]["values"][c] for c in CLASSES])
    np.testing.assert_allclose(res["metrics"]["precision_prior_corrected"],
                               prior_corrected_precision(res["confusion"], prior))
    written = write_validation(res, tmp_path)
    report = json.loads((tmp_path / "validation.json").read_text())
    assert report["counts"]["ece"] == pytest.approx(raw["ece"])
    assert report["reliability"]["calibrated"]["ece"] == pytest.approx(cal["ece"])
    assert (tmp_path / "reliability.png").stat().st_size > 1000 and written["reliability_png"].endswith("reliability.png")
    rel_csv = pd.read_csv(tmp_path / "reliability.csv")
    assert set(rel_csv["curve"]) == {"raw", "calibrated"} and rel_csv["detections"].sum() == 2 * raw["n"]


def test_validate_takes_a_naive_bayes_estimator():
    from xsift.methods.metrics import prior_corrected_precision
    from xsift.methods.naive_bayes import NaiveBayesKDE
    df = simulate_catalog(3000, seed=6)
    est = NaiveBayesKDE("nb_csc", n_grid=256)
    res = validate(df, estimator=est, split_seed=1)
    assert res["method"] == "naive_bayes" and res["aggregated_classes"] is None
    assert not hasattr(est, "kde_")                       # the given estimator is not fitted, a copy is
    assert res["split"]["by"] == "source" and res["split"]["sources_on_both_sides"] == 0
    held = set(res["predictions"]["name"])
    assert not held & set(df["name"][~df["name"].isin(held)])
    assert len(res["predictions"]) == df["name"].isin(held).sum()     # every detection of a held-out source
    assert res["priors"]["source"] == "the model's class priors"
    np.testing.assert_allclose(res["metrics"]["precision_prior_corrected"],
                               prior_corrected_precision(res["confusion"], res["model"].priors_))
    assert 0 <= res["counts"]["ece"] <= 1 and res["counts"]["accuracy"] > 0.5


@pytest.mark.slow      # the default suite stays under 5 minutes on 2 cores; CI runs it
def test_validate_cli_calibrates_and_saves_the_temperature_with_the_model(tmp_path):
    from xsift.cli import main
    from xsift.data.io import write_table
    from xsift.methods.persistence import load_model
    write_table(simulate_catalog(3000, seed=4), tmp_path / "cat.parquet")
    assert main(["validate", str(tmp_path / "cat.parquet"), "--out", str(tmp_path / "val"), "--k", "3",
                 "--calibrate", "--quiet"]) == 0
    manifest = json.loads((tmp_path / "val" / "manifest.json").read_text())
    report = json.loads((tmp_path / "val" / "validation.json").read_text())
    model = load_model(tmp_path / "val" / "model")
    assert model.temperature_ == pytest.approx(manifest["counts"]["temperature"])
    assert model.model_hash == manifest["model_hash"] == report["model_hash"]
    assert report["counts"]["ece_calibrated"] is not None and (tmp_path / "val" / "reliability.png").exists()


def test_validate_cli_method_nb_validates_naive_bayes(tmp_path, capsys):
    from xsift.cli import main
    from xsift.data.io import write_table
    from xsift.methods.persistence import load_model
    write_table(simulate_catalog(3000, seed=5), tmp_path / "cat.parquet")
    assert main(["validate", str(tmp_path / "cat.parquet"), "--out", str(tmp_path / "val"), "--method", "nb",
                 "--no-figures", "--quiet"]) == 0
    manifest = json.loads((tmp_path / "val" / "manifest.json").read_text())
    assert manifest["config"]["method"] == "naive_bayes" and manifest["config"]["preset"] == "nb_csc"
    assert type(load_model(tmp_path / "val" / "model")).__name__ == "NaiveBayesKDE"
    metrics = pd.read_csv(tmp_path / "val" / "metrics_classes.csv")
    assert list(metrics["class"]) == ["AGN", "Seyfert", "XB", "YSO"] and "precision_prior_corrected" in metrics
    assert not (tmp_path / "val" / "metrics_aggregated.csv").exists()
    # a preset of the other method is refused, naming it
    assert main(["validate", str(tmp_path / "cat.parquet"), "--out", str(tmp_path / "v2"), "--method", "nb",
                 "--config", "csc", "--quiet"]) == 2
    assert "--method nb needs a naive_bayes preset" in capsys.readouterr().err
    assert main(["validate", str(tmp_path / "cat.parquet"), "--out", str(tmp_path / "v3"), "--method", "nb",
                 "--k", "4", "--quiet"]) == 2
    assert "naive Bayes has neither" in capsys.readouterr().err
