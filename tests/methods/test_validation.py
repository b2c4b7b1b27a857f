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
