"""The cluster-then-label classifier against a plain-NumPy oracle of the paper's steps 4-7.

The oracle follows the published code literally, one cluster and one class at a time:
``np.cov`` (ddof = 1) and ``np.linalg.pinv`` of the references, the N x N product
``diag(D P D^T)`` for the distances, the softmin, then ``Counter.most_common`` for the hard
vote and the mean probability for the soft vote. Clusters come from scikit-learn's
``GaussianMixture`` given the same parameters (an independent GMM implementation).
"""
import copy
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from scipy.special import softmax
from sklearn.metrics import cohen_kappa_score
from sklearn.mixture import GaussianMixture

from xsift.methods.base import Classification, Classifier
from xsift.methods.cluster_then_label import ClusterThenLabel, reference_labels
from xsift.errors import SchemaError, XsiftError
from xsift.config import load_preset
from xsift.data.features import derive_features, feature_names
from xsift.simulate import simulate_catalog
from xsift.methods.voting import master_classes

# the oracle GMMs run a fixed, small number of EM iterations on purpose
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

PRESET = load_preset("csc")
CLASSES = list(PRESET.classes.order)
AGG = {group: list(members) for group, members in PRESET.classes.aggregation.items()}


class Params:
    def __init__(self, gm):
        self.weights, self.means = gm.weights_, gm.means_
        self.covariances, self.precisions_cholesky = gm.covariances_, gm.precisions_cholesky_


def sklearn_gmm(X, k, seed):
    return GaussianMixture(k, covariance_type="full", random_state=seed, max_iter=15).fit(X)


@pytest.fixture(scope="module")
def scenario():
    """A simulated catalogue whose cluster 0 has no reference left (no usable class) and with
    some classes under 12 references in some clusters (excluded); many multi-detection sources."""
    df = simulate_catalog(6000, seed=11)
    feats = derive_features(df, PRESET)
    ok = np.isfinite(feats.to_numpy()).all(axis=1)
    from xsift.data.features import FeatureTransform
    X = FeatureTransform.from_preset(PRESET).fit(feats[ok]).transform(feats[ok])
    gm = sklearn_gmm(X, 7, seed=3)
    cluster = gm.predict(X)
    labels, _ = reference_labels(df, PRESET)
    # remove every reference of cluster 0: that cluster has no usable class
    drop = np.flatnonzero(ok)[(cluster == 0) & (labels[ok] >= 0)]
    df.loc[drop, "main_type"] = None
    return df, gm


def oracle(df, model, gm, squared=True):
    """Steps 4-7 literally, per cluster and class, in plain NumPy."""
    feats = derive_features(df, PRESET)
    ok = np.isfinite(feats.to_numpy()).all(axis=1)
    X = model.transform_.transform(feats[ok])
    sub = df[ok].reset_index(drop=True)
    cluster = gm.predict(X)
    types = sub["main_type"].astype("object")
    uninformative = set(PRESET.classes.uninformative)
    is_class = types.isin(CLASSES).to_numpy()
    unlabelled = (types.isna() | types.isin(uninformative)).to_numpy()
    d = X.shape[1]
    rows = []
    for k in range(gm.n_components):
        target = np.flatnonzero(unlabelled & (cluster == k))
        if len(target) == 0:
            continue
        dist = np.full((len(target), len(CLASSES)), np.inf)
        for j, c in enumerate(CLASSES):
            ref = X[is_class & (types == c).to_numpy() & (cluster == k)]
            if len(ref) < d:
                continue
            mu = ref.mean(axis=0)
            P = np.linalg.pinv(np.cov(ref, rowvar=False, ddof=1))
            D = X[target] - mu
            m = np.diag(D @ P @ D.T)                     # the published N x N product
            dist[:, j] = m if squared else np.sqrt(m)
        usable = np.isfinite(dist[0])
        block = pd.DataFrame({"name": sub["name"].to_numpy()[target], "obsid": sub["obsid"].to_numpy()[target],
                              "cluster": k})
        if usable.any():
            p = np.zeros((len(target), len(CLASSES)))
            p[:, usable] = softmax(-dist[:, usable], axis=1)
            pred = np.asarray(CLASSES, dtype=object)[np.argmax(p, axis=1)]
        else:
            p, pred = np.full((len(target), len(CLASSES)), np.nan), None
        block[CLASSES] = p
        block["predicted_class"] = pred
        rows.append(block)
    det = pd.concat(rows, ignore_index=True)
    # step 7
    det = det.sort_values(["name", "obsid"], kind="stable")
    votes = {}
    for name, g in det.dropna(subset=["predicted_class"]).groupby("name", sort=False):
        hard = Counter(g["predicted_class"]).most_common(1)[0][0]
        means = g[CLASSES].mean(axis=0).to_numpy()
        soft = CLASSES[int(np.argmax(means))]
        votes[name] = (hard, soft, len(g), means, g[CLASSES].std(axis=0, ddof=0).to_numpy())
    return det, votes


@pytest.fixture(scope="module")
def fitted(scenario):
    df, gm = scenario
    model = ClusterThenLabel(preset=PRESET, gmm=Params(gm), missing="drop").fit(df)      # the paper's rows
    return model, model.fit_report_


def test_fit_reports_exclusions_and_empty_cluster(fitted):
    model, report = fitted
    assert report["clusters_without_usable_class"] == [0]
    assert not model.class_mask_[0].any()
    assert len(report["excluded"]) > 7                 # cluster 0's ten + small classes elsewhere
    assert (model.class_counts_[model.class_mask_] >= 12).all()
    assert (model.class_counts_[~model.class_mask_] < 12).all()
    assert report["complete"] + report["dropped_incomplete"] == report["rows_checked"]


@pytest.mark.parametrize("distance", ["squared", "mahalanobis"])
def test_agrees_with_plain_numpy_oracle(scenario, fitted, distance):
    df, gm = scenario
    model, _ = fitted
    model = copy.copy(model).set_params(distance=distance)
    result = model.classify(df)
    assert isinstance(result, Classification) and isinstance(model, Classifier)
    det = result.detections
    ref, votes = oracle(df, model, gm, squared=(distance == "squared"))
    merged = ref.merge(det, on=["name", "obsid"], suffixes=("_o", ""), validate="one_to_one")
    assert len(merged) == len(ref) == len(det)
    assert (merged["cluster_o"] == merged["cluster"]).all()
    po = merged[[f"{c}_o" for c in CLASSES]].to_numpy(dtype=float)
    px = merged[CLASSES].to_numpy(dtype=float)
    assert np.array_equal(np.isnan(po), np.isnan(px))
    np.testing.assert_allclose(px[~np.isnan(px)], po[~np.isnan(po)], rtol=0, atol=1e-10)
    flagged = merged["predicted_class_o"].isna().to_numpy()
    assert flagged.sum() > 0                                   # cluster 0's detections
    assert (merged["no_usable_class"].to_numpy() == flagged).all()
    assert (merged["predicted_class"][~flagged].astype(str).to_numpy()
            == merged["predicted_class_o"][~flagged].astype(str).to_numpy()).all()

    uniq, amb, summary = master_classes(det, CLASSES, AGG, feature_columns=feature_names(PRESET))
    assert summary["uniquely_classified"] + summary["ambiguous"] == len(votes)
    assert len(amb) > 0 and (uniq["detection_count"] > 1).any()
    expected = pd.DataFrame({"name": list(votes), "hard": [v[0] for v in votes.values()],
                             "soft": [v[1] for v in votes.values()], "n": [v[2] for v in votes.values()]})
    means = np.array([v[3] for v in votes.values()])
    stds = np.array([v[4] for v in votes.values()])
    for table, hard_col, soft_col in ((uniq, "master_class", "master_class"),
                                      (amb, "hard_master_class", "soft_master_class")):
        m = table.merge(expected.reset_index(), on="name", validate="one_to_one")
        assert len(m) == len(table)
        assert (m[hard_col].astype(str) == m["hard"]).all() and (m[soft_col].astype(str) == m["soft"]).all()
        assert (m["detection_count"] == m["n"]).all()
        idx = m["index"].to_numpy()
        np.testing.assert_allclose(m[CLASSES].to_numpy(float), means[idx], atol=1e-10, rtol=0)
        np.testing.assert_allclose(m[[f"{c}_std" for c in CLASSES]].to_numpy(float), stds[idx],
                                   atol=1e-10, rtol=0)
    agg_of = {m: a for a, ms in AGG.items() for m in ms}
    assert (uniq["agg_master_class"].astype(str) == uniq["master_class"].astype(str).map(agg_of)).all()
    hard = [votes[n][0] for n in votes]
    soft = [votes[n][1] for n in votes]
    assert summary["cohen_kappa_hard_soft"] == pytest.approx(cohen_kappa_score(hard, soft), abs=1e-12)


def test_save_load_roundtrip_and_hash(tmp_path, scenario, fitted):
    df, _ = scenario
    model, _ = fitted
    digest = model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.json", "model.npz"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # no temporary left
    loaded = ClusterThenLabel.load(tmp_path / "m")
    assert loaded.model_hash == digest == model.model_hash
    assert loaded.get_params()["n_components"] == model.n_clusters_ == 7
    a, b = model.classify(df), loaded.classify(df)
    for name, table in a.tables().items():
        pd.testing.assert_frame_equal(table, b.tables()[name])
    # a changed array is detected
    with np.load(tmp_path / "m" / "model.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["class_means"] = arrays["class_means"] + 1e-9
    np.savez(tmp_path / "m" / "model.npz", **arrays)
    with pytest.raises(XsiftError, match="hash mismatch"):
        ClusterThenLabel.load(tmp_path / "m")
    with pytest.raises(XsiftError, match="no such model directory"):
        ClusterThenLabel.load(tmp_path / "nowhere")


def test_classify_own_source_with_saved_model(tmp_path, fitted, example_votable, capsys):
    """The paper's 'classify your own source': a real CSC VOTable row against a saved model."""
    from xsift.data.io import read_catalog
    model, _ = fitted
    model.save(tmp_path / "m")
    model = ClusterThenLabel.load(tmp_path / "m")
    row = read_catalog(example_votable)
    # the real row misses powlaw_gamma and bb_kt: applying a model, it is counted as incomplete
    # and the report names the empty columns (fitting on such a table is refused: test_schema)
    result = model.classify(row)
    det, report = result.detections, result.report["classify"]
    assert len(det) == 0 and report["classified"] == 0 and report["dropped_incomplete"] == 1
    assert set(report["schema"]["all_null_features"]) == {"powlaw_gamma", "bb_kt"}
    from xsift.cli import main
    capsys.readouterr()
    assert main(["classify", str(example_votable), "--model", str(tmp_path / "m"), "--out", str(tmp_path / "r"),
                 "--no-figures"]) == 0
    said = capsys.readouterr().out
    assert "0 detections classified" in said and "powlaw_gamma, bb_kt are null in every row" in said
    filled = row.assign(powlaw_gamma=1.7, bb_kt=0.6)
    det, report = model.classify_frame(filled)
    assert report["classified"] == 1 and len(det) == 1
    if not det["no_usable_class"].iloc[0]:
        assert det[CLASSES].to_numpy().sum() == pytest.approx(1.0, abs=1e-12)
        assert det["predicted_class"].iloc[0] == CLASSES[int(np.argmax(det[CLASSES].to_numpy()[0]))]


def test_cluster_table_lists_every_complete_detection(scenario, fitted):
    df, gm = scenario
    model, report = fitted
    table = model.cluster_table(df)
    assert len(table) == report["complete"]
    feats = derive_features(df, PRESET)
    ok = np.isfinite(feats.to_numpy()).all(axis=1)
    X = model.transform_.transform(feats[ok])
    assert (table["cluster"].to_numpy() == gm.predict(X)).all()
    p = table[[c for c in table.columns if c.startswith("p_cluster_")]].to_numpy()
    np.testing.assert_allclose(p, gm.predict_proba(X), atol=1e-8)
    assert set(table["reference_label"]) <= set(CLASSES) | {"unlabelled", "other"}


def test_reference_labels_counts():
    df = pd.DataFrame({"main_type": ["QSO", None, "Star", "Pulsar", "Orion_V*", "X", "GlCl", " AGN "]})
    labels, counts = reference_labels(df, PRESET)
    assert labels.tolist() == [0, -1, -1, -2, 9, -1, -2, 1]
    assert counts["labelled"] == 3 and counts["other_type"] == 2
    assert counts["unlabelled_null"] == 1 and counts["unlabelled_uninformative"] == 2


def test_no_labelled_detections_is_a_clear_error(scenario):
    df, gm = scenario
    with pytest.raises(XsiftError, match="no complete detection has a training class"):
        ClusterThenLabel(preset=PRESET, gmm=Params(gm)).fit(df.assign(main_type=None))
    with pytest.raises(XsiftError, match="no complete detection has a training class"):
        ClusterThenLabel(preset=PRESET, gmm=Params(gm)).fit(df.assign(main_type="Pulsar"))   # unknown types only
    with pytest.raises(SchemaError, match="main_type"):
        ClusterThenLabel(preset=PRESET, gmm=Params(gm)).fit(df.drop(columns=["main_type"]))


def test_duplicate_detections(scenario, fitted):
    df, gm = scenario
    model, report = fitted
    dup = pd.concat([df, df.iloc[:50]], ignore_index=True)
    rep2 = ClusterThenLabel(preset=PRESET, gmm=Params(gm)).fit(dup).fit_report_
    assert rep2["schema"]["duplicates_dropped"] == 50
    assert rep2["complete"] == report["complete"]
    conflicting = dup.copy()
    conflicting.loc[len(df), "hard_hm"] = 0.123456
    with pytest.raises(SchemaError, match="different values"):
        ClusterThenLabel(preset=PRESET, gmm=Params(gm)).fit(conflicting)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_classify_equals_classify_frame_then_vote(scenario, fitted, dtype):
    """The in-memory stage that hands the schema check's name codes and the kernel's predicted classes
    to the vote gives exactly the tables of classify_frame followed by master_classes -- on a
    catalogue whose identical duplicate rows the check drops (so the codes must follow the dropping)
    and whose labelled rows are interleaved with the classified ones."""
    df, _ = scenario
    model, _ = fitted
    model = copy.copy(model).set_params(precision=np.dtype(dtype).name)
    dup = pd.concat([df, df.iloc[:300]], ignore_index=True).sample(frac=1.0, random_state=5)
    det, report = model.classify_frame(dup)
    assert report["schema"]["duplicates_dropped"] == 300
    uniq, amb, summary = master_classes(det, CLASSES, AGG, feature_columns=feature_names(PRESET))
    result = model.classify(dup)
    det2, uniq2, amb2, summary2 = result.detections, result.uniquely_classified, result.ambiguous, result.report["voting"]
    assert result.counts == {"detections": len(det), "uniquely_classified": len(uniq), "ambiguous": len(amb),
                             "sources": len(uniq) + len(amb)}
    assert det2.equals(det) and uniq2.equals(uniq) and amb2.equals(amb)
    assert {k: v for k, v in summary2.items() if k != "timings"} == summary
    assert len(amb) > 0 and (uniq["detection_count"] > 1).any()


def test_cli_run_with_no_labels_writes_nothing(tmp_path, scenario):
    from xsift.cli import main
    from xsift.data.io import write_table
    df, _ = scenario
    write_table(df.assign(main_type=None), tmp_path / "cat.parquet")
    assert main(["run", str(tmp_path / "cat.parquet"), "--out", str(tmp_path / "run")]) == 2
    assert not (tmp_path / "run").exists()


def test_cli_classify_formats(tmp_path, scenario, fitted):
    """A saved model applied by the CLI: FITS tables read back with astropy; the paper's text format
    is refused for FITS (ASCII) before anything is written, and written to CSV."""
    from astropy.table import Table
    from xsift.cli import main
    from xsift.data.io import write_table
    df, _ = scenario
    model, _ = fitted
    model.save(tmp_path / "m")
    write_table(df.iloc[:1500], tmp_path / "cat.parquet")
    args = ["classify", str(tmp_path / "cat.parquet"), "--model", str(tmp_path / "m"), "--no-figures"]
    assert main(args + ["--out", str(tmp_path / "bad"), "--format", "fits", "--published-format"]) == 2
    assert not (tmp_path / "bad").exists()
    assert main(args + ["--out", str(tmp_path / "fits"), "--format", "fits"]) == 0
    det = Table.read(tmp_path / "fits" / "detection_level.fits")
    assert set(CLASSES) <= set(det.colnames) and len(det) > 0
    assert main(args + ["--out", str(tmp_path / "csv"), "--format", "csv", "--published-format"]) == 0
    uniq = pd.read_csv(tmp_path / "csv" / "uniquely_classified.csv")
    assert uniq["QSO"].astype(str).str.contains("±").all() and "QSO_std" not in uniq.columns


def test_classify_compiles_once_for_any_number_of_rows(scenario, fitted):
    """Catalogues of different sizes reuse the compiled programs (fixed, padded chunk shapes):
    after the first, classifying new sizes compiles nothing."""
    import jax.monitoring
    df, _ = scenario
    model, _ = fitted
    box = [0]
    jax.monitoring.register_event_duration_secs_listener(
        lambda name, secs, **kw: box.__setitem__(0, box[0] + (name == "/jax/core/compile/backend_compile_duration")))
    counts = []
    for part in (df.iloc[:700], df.iloc[700:3100], df.iloc[3100:3160]):
        model.classify_frame(part)
        counts.append(box[0])
    assert counts[1] == counts[0] and counts[2] == counts[0], f"recompiled: {counts}"


# ----------------------------------------------------------------------------
# the estimator's scikit-learn conventions, inputs and persistence
# ----------------------------------------------------------------------------

def test_clone_and_cross_val_score():
    """scikit-learn's clone and cross_val_score (KFold over a simulated catalogue) run the estimator;
    each fold's score is scikit-learn's accuracy_score of the fold's reference-labelled detections
    that get a prediction, from a model fitted by hand on the fold's training rows."""
    from sklearn.base import clone
    from sklearn.metrics import accuracy_score
    from sklearn.model_selection import KFold, cross_val_score
    df = simulate_catalog(4000, seed=7)
    est = ClusterThenLabel(n_components=4, seed=1)
    twin = clone(est)
    assert twin is not est and twin.get_params() == est.get_params()
    assert not hasattr(twin, "gmm_")
    est.set_params(distance="mahalanobis")
    assert twin.distance == "squared" and est.get_params()["distance"] == "mahalanobis"
    est.set_params(distance="squared")
    cv = KFold(3, shuffle=True, random_state=0)
    scores = cross_val_score(est, df, cv=cv)
    assert not hasattr(est, "gmm_")                     # cross_val_score fits clones
    for (train, test), score in zip(cv.split(df), scores):
        model = ClusterThenLabel(n_components=4, seed=1).fit(df.iloc[train])
        pred = model.predict(df.iloc[test])
        truth = df["main_type"].iloc[test].to_numpy(dtype=object)
        use = np.isin(truth, CLASSES) & (pred != None)  # noqa: E711 (element-wise)
        assert use.sum() > 100
        assert score == pytest.approx(accuracy_score(truth[use].astype(str), pred[use].astype(str)), abs=1e-15)
        assert score > 0.2                              # ten classes: chance is about 0.1


def test_predict_proba_covers_every_row_and_agrees_with_classify(scenario, fitted):
    """predict_proba answers every input row: the unlabelled complete detections get the probabilities of
    classify's detection table; labelled ones those classify gives them once their types are hidden;
    incomplete rows NaN."""
    df, _ = scenario
    model, _ = fitted
    proba = model.predict_proba(df)
    pred = model.predict(df)
    assert proba.shape == (len(df), len(CLASSES)) and pred.shape == (len(df),)
    det = model.classify(df).detections
    pos = df.reset_index(drop=True).reset_index().merge(det[["name", "obsid"]].reset_index(),
                                                        on=["name", "obsid"], suffixes=("", "_det"))
    np.testing.assert_array_equal(proba[pos["index"]], det[CLASSES].to_numpy()[pos["index_det"]])
    hidden = df.assign(main_type=None)
    every = model.classify(hidden).detections
    assert len(every) == np.isfinite(proba).all(axis=1).sum() + every["no_usable_class"].sum()
    pos = df.reset_index(drop=True).reset_index().merge(every[["name", "obsid"]].reset_index(),
                                                        on=["name", "obsid"], suffixes=("", "_det"))
    np.testing.assert_array_equal(proba[pos["index"]], every[CLASSES].to_numpy()[pos["index_det"]])
    got = every["predicted_class"].astype(object).where(every["predicted_class"].notna(), None).to_numpy()
    assert (pred[pos["index"]] == got[pos["index_det"]]).all()
    incomplete = ~np.isfinite(derive_features(df, PRESET).to_numpy()).all(axis=1)
    assert incomplete.any() and np.isnan(proba[incomplete]).all() and (pred[incomplete] == None).all()  # noqa: E711


def test_astropy_table_input_gives_the_same_result(scenario):
    """An astropy Table (as read from FITS or VOTable) is the same catalogue as the DataFrame: the same
    fitted model (content hash) and the same tables."""
    from astropy.table import Table
    df, gm = scenario
    df = df.iloc[:3000].reset_index(drop=True)
    table = Table.from_pandas(df)
    a = ClusterThenLabel(preset=PRESET, gmm=Params(gm)).fit(df)
    b = ClusterThenLabel(preset=PRESET, gmm=Params(gm)).fit(table)
    assert a.model_hash == b.model_hash
    ra, rb = a.classify(df), b.classify(table)
    assert ra.counts == rb.counts and ra.counts["detections"] > 0
    for name, t in ra.tables().items():
        pd.testing.assert_frame_equal(t, rb.tables()[name])
    np.testing.assert_array_equal(a.predict_proba(df), b.predict_proba(table))
    assert a.score(df) == b.score(table)
    records = df.to_records(index=False)                # a NumPy structured array
    pd.testing.assert_frame_equal(a.classify(records).detections, ra.detections)


def test_unfitted_and_misused_estimator_errors(scenario):
    df, _ = scenario
    est = ClusterThenLabel()
    assert "ClusterThenLabel()" == repr(est)
    assert not hasattr(est, "model_hash") and not isinstance(est, Classifier)
    with pytest.raises(XsiftError, match="not fitted"):
        est.predict(df)
    with pytest.raises(XsiftError, match="y must be None"):
        est.fit(df, df["main_type"])
    with pytest.raises(XsiftError, match="naive_bayes preset"):
        ClusterThenLabel(preset="nb_csc").fit(df)
    with pytest.raises(XsiftError, match="distance 'euclid'"):
        ClusterThenLabel(distance="euclid").fit(df)
    with pytest.raises(XsiftError, match="precision 'float16'"):
        ClusterThenLabel(precision="float16").fit(df)
    with pytest.raises(XsiftError, match="cannot read a list"):
        ClusterThenLabel().fit([1, 2, 3])


def test_damaged_models_are_refused(tmp_path, fitted):
    """A truncated array file, a model.json without its hash, another kind, mixed files: one-line XsiftErrors."""
    import json
    import xsift
    model, _ = fitted
    good = tmp_path / "good"
    digest = model.save(good)
    record = json.loads((good / "model.json").read_text())
    assert record["kind"] == "cluster_then_label" and record["hash"] == digest
    loaded = xsift.load_model(good)
    assert isinstance(loaded, ClusterThenLabel) and loaded.model_hash == digest

    def copy_of(name):
        import shutil
        shutil.copytree(good, tmp_path / name)
        return tmp_path / name

    d = copy_of("truncated")
    data = (d / "model.npz").read_bytes()
    (d / "model.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(XsiftError, match="truncated"):
        ClusterThenLabel.load(d)
    d = copy_of("hashless")
    (d / "model.json").write_text(json.dumps({k: v for k, v in record.items() if k != "hash"}))
    with pytest.raises(XsiftError, match="'hash' missing"):
        ClusterThenLabel.load(d)
    d = copy_of("kind")
    (d / "model.json").write_text(json.dumps({**record, "kind": "naive_bayes"}))
    with pytest.raises(XsiftError, match="expected a cluster_then_label model"):
        ClusterThenLabel.load(d)
    d = copy_of("preset")
    meta = {**record["meta"], "distance": "mahalanobis"}
    (d / "model.json").write_text(json.dumps({**record, "meta": meta}))
    with pytest.raises(XsiftError, match="hash mismatch"):
        ClusterThenLabel.load(d)
