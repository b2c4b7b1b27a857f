"""ClusterThenLabel's missing-feature modes (``missing="drop" | "median" | "marginalise"``).

Oracles: a plain-NumPy per-row computation of the marginalised classification (the GMM's marginal
log-densities on each row's observed features, then ``np.linalg.pinv`` of the observed sub-block of
each class covariance and the softmin), the drop mode's results on complete rows (today's method),
pandas' median of the training table's complete rows, and hand counts of the simulated catalogue.
"""
import json

import numpy as np
import pandas as pd
import pytest

from xsift.config import load_preset
from xsift.data.features import derive_features, raw_feature_columns
from xsift.errors import SchemaError, XsiftError
from xsift.methods.cluster_then_label import ClusterThenLabel, reference_labels
from xsift.simulate import simulate_catalog

PRESET = load_preset("csc")
CLASSES = list(PRESET.classes.order)
KEY = ["name", "obsid"]


@pytest.fixture(scope="module")
def catalogue():
    """A simulated catalogue (some detections miss a band's features) and a model fitted on it."""
    df = simulate_catalog(5000, seed=21)
    model = ClusterThenLabel(n_components=4, seed=1).fit(df)
    return df, model


def _classified(model, df, mode):
    det, report = model.set_params(missing=mode).classify_frame(df)
    return det.set_index(KEY), report


def oracle_row(model, x, observed):
    """(cluster, probabilities (L,)) of one transformed row x (d,) on its observed features, in NumPy:
    cluster = argmax_k log w_k N(x_o | mu_ko, Sigma_koo); distance to class c of that cluster
    (x - mu_kc)_o^T pinv(Sigma_kc,oo) (x - mu_kc)_o (the stored precisions when every feature is
    observed), probabilities = softmin over the usable classes."""
    g = model.gmm_
    o = observed
    logp = np.empty(len(g.weights))
    for k in range(len(g.weights)):
        C = g.covariances[k][np.ix_(o, o)]
        r = x[o] - g.means[k, o]
        logp[k] = (np.log(g.weights[k]) - 0.5 * (o.sum() * np.log(2 * np.pi) + np.linalg.slogdet(C)[1]
                                                 + r @ np.linalg.solve(C, r)))
    k = int(np.argmax(logp))
    mask = model.class_mask_[k]
    if not mask.any():
        return k, np.full(len(CLASSES), np.nan)
    dist = np.full(len(CLASSES), np.inf)
    for c in np.flatnonzero(mask):
        r = x[o] - model.class_means_[k, c, o]
        P = (model.class_precisions_[k, c] if o.all()
             else np.linalg.pinv(model.class_covariances_[k, c][np.ix_(o, o)]))
        dist[c] = r @ P @ r
    w = np.exp(-(dist - dist[mask].min()))
    return k, w / w.sum()


def test_marginalise_equals_per_row_pinv_oracle(catalogue):
    df, model = catalogue
    det, report = _classified(model, df, "marginalise")
    feats = derive_features(df, PRESET)
    X = model.transform_.transform(feats)
    labels, _ = reference_labels(df, PRESET)
    observed = np.isfinite(X)
    incomplete = np.flatnonzero(~observed.all(axis=1) & observed.any(axis=1) & (labels == -1))
    assert len(incomplete) > 100 and report["classified_incomplete"] == len(incomplete)
    rows = det.loc[list(zip(df["name"].astype(str).to_numpy()[incomplete], df["obsid"].to_numpy()[incomplete]))]
    got = rows[CLASSES].to_numpy()
    np.testing.assert_array_equal(rows["n_features_used"].to_numpy(), observed[incomplete].sum(axis=1))
    for j, i in enumerate(incomplete):
        k, p = oracle_row(model, X[i], observed[i])
        assert rows["cluster"].iloc[j] == k
        np.testing.assert_allclose(got[j], p, rtol=0, atol=1e-10)
    # complete rows against the same oracle (the stored pseudo-inverses)
    complete = np.flatnonzero(observed.all(axis=1) & (labels == -1))[:200]
    rows = det.loc[list(zip(df["name"].astype(str).to_numpy()[complete], df["obsid"].to_numpy()[complete]))]
    for j, i in enumerate(complete):
        k, p = oracle_row(model, X[i], observed[i])
        assert rows["cluster"].iloc[j] == k
        np.testing.assert_allclose(rows[CLASSES].to_numpy()[j], p, rtol=0, atol=1e-10)


def test_complete_rows_identical_in_every_mode(catalogue):
    df, model = catalogue
    drop, rep_drop = _classified(model, df, "drop")
    assert rep_drop["classified_incomplete"] == 0 and "n_features_used" not in drop.columns
    for mode in ("median", "marginalise"):
        det, _ = _classified(model, df, mode)
        same = det.loc[drop.index]
        np.testing.assert_array_equal(same[CLASSES].to_numpy(), drop[CLASSES].to_numpy())
        np.testing.assert_array_equal(same["cluster"].to_numpy(), drop["cluster"].to_numpy())
        assert (same["n_features_used"] == 12).all()
    # a table with nothing missing: the three modes give the same tables, row for row
    complete = df[np.isfinite(derive_features(df, PRESET).to_numpy()).all(axis=1)].reset_index(drop=True)
    tables = [model.set_params(missing=m).classify_frame(complete)[0] for m in ("drop", "median", "marginalise")]
    for t in tables[1:]:
        pd.testing.assert_frame_equal(t.drop(columns="n_features_used"), tables[0])
    # predict_proba too
    probas = [model.set_params(missing=m).predict_proba(complete) for m in ("drop", "median", "marginalise")]
    np.testing.assert_array_equal(probas[0], probas[1])
    np.testing.assert_array_equal(probas[0], probas[2])
    model.set_params(missing="drop")


def test_median_fills_with_training_medians(catalogue):
    df, model = catalogue
    feats = derive_features(df, PRESET)
    complete = feats[feats.notna().all(axis=1)]
    np.testing.assert_allclose(model.feature_medians_, complete.median().to_numpy(), rtol=0, atol=0)
    det, report = _classified(model, df, "median")
    labels, _ = reference_labels(df, PRESET)
    has_any = feats.notna().any(axis=1).to_numpy()
    incomplete = np.flatnonzero(~feats.notna().all(axis=1).to_numpy() & has_any & (labels == -1))
    assert report["classified_incomplete"] == len(incomplete) > 0
    filled = feats.fillna(complete.median())
    X = model.transform_.transform(filled)
    rows = det.loc[list(zip(df["name"].astype(str).to_numpy()[incomplete], df["obsid"].to_numpy()[incomplete]))]
    # the table keeps the raw features as measured (NaN where missing) and counts the observed ones
    assert rows[list(feats.columns)].isna().any(axis=1).all()
    np.testing.assert_array_equal(rows["n_features_used"], feats.notna().sum(axis=1).to_numpy()[incomplete])
    for j, i in enumerate(incomplete[:300]):
        k, p = oracle_row(model, X[i], np.ones(X.shape[1], bool))
        assert rows["cluster"].iloc[j] == k
        np.testing.assert_allclose(rows[CLASSES].to_numpy()[j], p, rtol=0, atol=1e-10)


def test_example_votable_classified_with_median_and_marginalise(catalogue, example_votable):
    """The paper's example VOTable (powlaw_gamma and bb_kt empty): 1 detection classified on the
    10 features it has; drop classifies none. Without those columns at all: the same, and drop refuses."""
    from xsift.data.io import read_catalog
    _, model = catalogue
    row = read_catalog(example_votable)
    assert model.set_params(missing="drop").classify(row).report["classify"]["classified"] == 0
    probs = {}
    for mode in ("median", "marginalise"):
        result = model.set_params(missing=mode).classify(row)
        det, report = result.detections, result.report["classify"]
        assert report["classified"] == 1 and len(det) == 1 and report["missing"] == mode
        assert det["n_features_used"].tolist() == [10]
        assert set(report["schema"]["all_null_features"]) == {"powlaw_gamma", "bb_kt"}
        if not det["no_usable_class"].iloc[0]:
            assert det[CLASSES].to_numpy().sum() == pytest.approx(1.0, abs=1e-12)
        probs[mode] = det[CLASSES].to_numpy()
        # the columns absent from the table: classified alike, the report names what was found and missing
        lacking = row.drop(columns=["powlaw_gamma", "bb_kt"])
        det2, report2 = model.classify_frame(lacking)
        assert report2["classified"] == 1 and det2["n_features_used"].tolist() == [10]
        assert report2["features_missing"] == ["powlaw_gamma", "bb_kt"]
        assert set(report2["features_found"]) == set(raw_feature_columns(PRESET)) - {"powlaw_gamma", "bb_kt"}
        np.testing.assert_array_equal(det2[CLASSES].to_numpy(), probs[mode])
    with pytest.raises(SchemaError, match="powlaw_gamma"):
        model.set_params(missing="drop").classify(row.drop(columns=["powlaw_gamma", "bb_kt"]))


def test_share_classified_all_unlabelled_with_an_observed_feature(catalogue):
    df, model = catalogue
    feats = derive_features(df, PRESET)
    X = model.transform_.transform(feats)
    labels, _ = reference_labels(df, PRESET)
    unlabelled = labels == -1
    any_observed = np.isfinite(X).any(axis=1)
    _, rep_m = _classified(model, df, "marginalise")
    _, rep_d = _classified(model, df, "drop")
    assert rep_m["classified"] == int((unlabelled & any_observed).sum())
    assert rep_d["classified"] == int((unlabelled & np.isfinite(X).all(axis=1)).sum()) < rep_m["classified"]
    model.set_params(missing="drop")


def test_mode_saved_with_the_model_and_old_models_load_as_drop(catalogue, tmp_path):
    from xsift.methods.persistence import read_model, save_model
    df, model = catalogue
    model.set_params(missing="marginalise")
    h = model.save(tmp_path / "m")
    loaded = ClusterThenLabel.load(tmp_path / "m")
    assert loaded.missing == "marginalise" and loaded.model_hash == h
    np.testing.assert_array_equal(loaded.feature_medians_, model.feature_medians_)
    pd.testing.assert_frame_equal(loaded.classify_frame(df)[0], model.classify_frame(df)[0])
    # the hash covers the mode
    assert loaded.set_params(missing="median").model_hash != h
    assert json.loads((tmp_path / "m" / "model.json").read_text())["meta"]["missing"] == "marginalise"
    # a model written before the modes existed: no "missing" in its meta, no medians
    arrays, meta, info = read_model(tmp_path / "m")
    meta.pop("missing")
    arrays.pop("feature_medians")
    save_model(tmp_path / "old", kind="cluster_then_label", arrays=arrays, meta=meta, info=info)
    old = ClusterThenLabel.load(tmp_path / "old")
    assert old.missing == "drop" and old.feature_medians_ is None
    pd.testing.assert_frame_equal(old.classify_frame(df)[0],
                                  model.set_params(missing="drop").classify_frame(df)[0])
    with pytest.raises(XsiftError, match="without training medians"):
        old.set_params(missing="median").classify_frame(df)
    with pytest.raises(XsiftError, match="missing 'zero'"):
        ClusterThenLabel(missing="zero").fit(df)
    model.set_params(missing="drop")


def test_cli_classify_and_validate_with_missing(catalogue, example_votable, tmp_path, capsys):
    """`xsift classify --missing` overrides the saved mode (the manifest says which); `xsift fit --missing`
    saves it; `xsift validate --missing marginalise` scores held-out detections with missing features."""
    from xsift.cli import main
    df, model = catalogue
    cat = tmp_path / "sim.parquet"
    df.to_parquet(cat)
    assert main(["fit", str(cat), "--out", str(tmp_path / "m"), "--k", "4", "--seed", "1",
                 "--missing", "median"]) == 0
    assert ClusterThenLabel.load(tmp_path / "m").missing == "median"
    capsys.readouterr()
    assert main(["classify", str(example_votable), "--model", str(tmp_path / "m"), "--out", str(tmp_path / "r"),
                 "--no-figures", "--missing", "marginalise", "--quiet"]) == 0
    said = capsys.readouterr().out
    assert "1 detections classified" in said and "1 of them with missing features (--missing marginalise)" in said
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["config"]["missing"] == "marginalise" and manifest["classify"]["classified_incomplete"] == 1
    # without --missing: the model's own mode
    assert main(["classify", str(example_votable), "--model", str(tmp_path / "m"), "--out", str(tmp_path / "r2"),
                 "--no-figures", "--quiet"]) == 0
    assert json.loads((tmp_path / "r2" / "manifest.json").read_text())["classify"]["missing"] == "median"
    # validate: with marginalise, labelled detections missing a feature are held out and scored too
    for mode in ("drop", "marginalise"):
        assert main(["validate", str(cat), "--out", str(tmp_path / f"v_{mode}"), "--k", "4", "--seed", "1",
                     "--missing", mode, "--no-figures", "--quiet"]) == 0
    counts = {m: json.loads((tmp_path / f"v_{m}" / "manifest.json").read_text())["counts"]
              for m in ("drop", "marginalise")}
    feats = derive_features(df, PRESET)
    labels, _ = reference_labels(df, PRESET)
    assert counts["drop"]["labelled_complete"] == int(((labels >= 0) & feats.notna().all(axis=1)).sum())
    assert counts["marginalise"]["labelled_complete"] == int(((labels >= 0) & feats.notna().any(axis=1)).sum())
    assert counts["marginalise"]["test_scored"] > counts["drop"]["test_scored"]


def test_shards_fit_and_classify_with_missing(tmp_path):
    """fit-shards saves --missing; classify-shards --missing marginalise writes what the in-memory
    classification of each shard gives in that mode (the run's model hash covers the mode)."""
    from distributed import Client
    from xsift import distributed as D
    from xsift.data.io import read_catalog
    from xsift.simulate import write_simulated_catalog
    write_simulated_catalog(tmp_path / "cat", 3000, n_shards=2, seed=4)
    with D.local_cluster(1) as cluster, Client(cluster) as client:
        model, report = D.fit_shards(client, tmp_path / "cat", tmp_path / "m", fit_sample=3000, n_components=4,
                                     seed=2, missing="median", log=lambda m: None)
        assert ClusterThenLabel.load(tmp_path / "m").missing == "median"
        summary = D.classify_shards(client, tmp_path / "cat", tmp_path / "m", tmp_path / "run",
                                    missing="marginalise", log=lambda m: None)
    loaded = ClusterThenLabel.load(tmp_path / "m").set_params(missing="marginalise")
    assert summary["model_hash"] == loaded.model_hash != report["model_hash"]
    for shard in sorted((tmp_path / "cat").glob("*.parquet")):
        expected, rep = loaded.classify_frame(read_catalog(shard), source=str(shard))
        assert rep["classified_incomplete"] > 0
        got = read_catalog(tmp_path / "run" / D.OUTPUT_DIR / shard.name)
        # another process (the worker) may round the last bit differently, as in tests/distributed
        np.testing.assert_allclose(got[CLASSES].to_numpy(), expected[CLASSES].to_numpy(), rtol=0, atol=1e-12)
        np.testing.assert_array_equal(got["predicted_class"].to_numpy(), expected["predicted_class"].to_numpy())
        np.testing.assert_array_equal(got["n_features_used"].to_numpy(), expected["n_features_used"].to_numpy())
