"""Resumable classification of the shards and the vote across them (xsift.distributed.classify, .vote).

Oracles: xsift.methods.cluster_then_label.classify_detections and xsift.methods.voting.master_classes on
the whole catalogue in memory; NaiveBayesKDE.classify_frame on the whole catalogue for a naive-Bayes model."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from distributed_oracles import (N_SHARDS, assert_exactly_once, compile_counter, concat_outputs,
                                 in_memory_detection_level, sorted_rows)
from xsift import distributed as D
from xsift.errors import XsiftError


def test_worker_compiles_classify_kernels_once(client, whole, model_dir):
    from xsift import ClusterThenLabel
    model = ClusterThenLabel.load(model_dir)
    frames = [whole.iloc[:300], whole.iloc[300:2100], whole.iloc[2100:2150]]

    def count_compiles(model, frames, counter):
        box = counter()
        counts = []
        for f in frames:
            model.classify_frame(f)
            counts.append(box[0])
        return counts

    counts = client.submit(count_compiles, model, frames, compile_counter, pure=False).result()
    assert counts[1] == counts[0] and counts[2] == counts[0], f"recompiled per partition: {counts}"


def test_classify_and_vote_equal_in_memory(client, catalog, whole, model_dir, tmp_path):
    from xsift.methods.voting import master_classes
    model, expected = in_memory_detection_level(model_dir, whole)
    run = tmp_path / "run"
    summary = D.classify_shards(client, catalog, model_dir, run, log=lambda m: None)
    assert summary["shards"] == N_SHARDS and summary["shards_skipped"] == 0
    assert summary["rows_in"] == len(whole)
    assert_exactly_once(run, expected)
    # one output per input shard, named after it
    assert sorted(p.name for p in (run / D.OUTPUT_DIR).glob("*.parquet")) == \
        sorted(p.name for p in D.shard_files(catalog))
    # each output shard says what made it: model hash, method, its input shard (Parquet key 'xsift')
    import json
    import pyarrow.parquet as pq
    from xsift.methods.persistence import load_model
    digest = load_model(model_dir).model_hash
    for shard in D.shard_files(catalog):
        meta = json.loads(pq.read_schema(run / D.OUTPUT_DIR / shard.name).metadata[b"xsift"])
        assert meta["model_hash"] == digest and meta["inputs"] == [str(shard)]
        assert meta["command"] == "xsift classify-shards" and meta["method"] == "cluster_then_label"
    aggregation = model.vote_aggregation
    classes = list(model.classes_)
    vote = D.vote_shards(client, run, classes=classes, aggregation=aggregation, n_partitions=3,
                         log=lambda m: None)
    uniq, amb, summ = master_classes(expected, classes, aggregation)
    for sub, table in ((D.UNIQUE_DIR, uniq), (D.AMBIGUOUS_DIR, amb)):
        got = concat_outputs(run, sub)
        pd.testing.assert_frame_equal(sorted_rows(got, ["name"]), sorted_rows(table, ["name"]), check_dtype=False,
                                      check_exact=False, rtol=1e-12, atol=1e-12)
    assert vote["uniquely_classified"] == summ["uniquely_classified"]
    assert vote["ambiguous"] == summ["ambiguous"]
    np.testing.assert_allclose(vote["cohen_kappa_hard_soft"], summ["cohen_kappa_hard_soft"], rtol=1e-12)

    # a rerun skips every shard and leaves the outputs untouched
    mtimes = {p.name: p.stat().st_mtime_ns for p in (run / D.OUTPUT_DIR).glob("*.parquet")}
    again = D.classify_shards(client, catalog, model_dir, run, log=lambda m: None)
    assert again["shards_skipped"] == N_SHARDS and again["shards_classified_now"] == 0
    assert mtimes == {p.name: p.stat().st_mtime_ns for p in (run / D.OUTPUT_DIR).glob("*.parquet")}


def test_other_model_refuses_unless_forced(client, catalog, whole, model_dir, tmp_path, preset):
    run = tmp_path / "run"
    D.classify_shards(client, catalog, model_dir, run, log=lambda m: None)
    other = tmp_path / "other-model"
    D.fit_shards(client, catalog, other, preset=preset, fit_sample=3000, seed=4, log=lambda m: None)
    with pytest.raises(XsiftError, match="--force"):
        D.classify_shards(client, catalog, other, run, log=lambda m: None)
    redo = D.classify_shards(client, catalog, other, run, force=True, log=lambda m: None)
    assert redo["shards_classified_now"] == N_SHARDS
    _, expected = in_memory_detection_level(other, whole)
    assert_exactly_once(run, expected)
    hashes = {r["model_hash"] for r in D.ledger_records(run).values()}
    assert hashes == {json.loads((run / D.RUN_RECORD).read_text())["model_hash"]}


def test_corrupt_shard_names_its_path(client, catalog, model_dir, tmp_path):
    import shutil
    bad_cat = tmp_path / "cat"
    shutil.copytree(catalog, bad_cat)
    bad = bad_cat / "part-00003.parquet"
    bad.write_bytes(b"PAR1 this is not a parquet file")
    run = tmp_path / "run"
    with pytest.raises(XsiftError) as info:
        D.classify_shards(client, bad_cat, model_dir, run, log=lambda m: None)
    assert str(bad) in str(info.value)
    # every other shard finished, with complete, readable outputs and a ledger record
    ledger = D.ledger_records(run)
    assert set(ledger) == {p.stem for p in D.shard_files(bad_cat)} - {"part-00003"}
    for rec in ledger.values():
        assert len(pd.read_parquet(run / D.OUTPUT_DIR / rec["output"])) == rec["rows_classified"]
    assert not (run / D.OUTPUT_DIR / "part-00003.parquet").exists()
    # the user drops the bad shard: the rerun classifies nothing again and completes
    bad.unlink()
    again = D.classify_shards(client, bad_cat, model_dir, run, log=lambda m: None)
    assert again["shards"] == N_SHARDS - 1 and again["shards_classified_now"] == 0


def test_naive_bayes_model_classifies_shards_as_in_memory(client, catalog, whole, tmp_path, capsys):
    """`xsift classify-shards --model NB_MODEL`: the naive-Bayes classify step over the shards gives,
    row for row, what `NaiveBayesKDE.classify_frame` gives on the whole catalogue in memory."""
    from xsift.cli import main
    from xsift.data.io import write_table
    from xsift.methods.naive_bayes import NaiveBayesKDE
    train = write_table(whole, tmp_path / "train.parquet")
    assert main(["nb", "fit", str(train), "--out", str(tmp_path / "nb"), "--config", "nb_csc"]) == 0
    run = tmp_path / "run"
    summary = D.classify_shards(client, catalog, tmp_path / "nb", run, log=lambda m: None)
    assert summary["rows_in"] == summary["rows_classified"] == len(whole)
    expected, _ = NaiveBayesKDE.load(tmp_path / "nb").classify_frame(whole)
    got = concat_outputs(run, D.OUTPUT_DIR)
    key = ["name", "predicted_class"]
    got = got.sort_values(key + ["outlier_measure"], kind="stable").reset_index(drop=True)
    expected = expected.sort_values(key + ["outlier_measure"], kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, rtol=1e-12)
    # rerun: nothing to do; and a vote is refused with the reason
    again = D.classify_shards(client, catalog, tmp_path / "nb", run, log=lambda m: None)
    assert again["shards_classified_now"] == 0
    assert main(["vote-shards", str(run), "--scheduler", client.scheduler.address]) == 2
    assert "naive-Bayes" in capsys.readouterr().err


def test_observation_intervals_keep_their_detections_apart(client, whole, model_dir, tmp_path):
    """A CSC ObsID can hold several observation intervals (``obi``), each its own detection: the shards
    are read with the preset's interval column, so two detections sharing (name, obsid) are classified
    as two rows, keyed and equal to the in-memory classification of the same table."""
    from xsift import ClusterThenLabel
    from xsift.data.io import write_table
    rng = np.random.default_rng(11)
    table = whole.copy()
    table["obi"] = 0
    # 40 detections get a second interval in the same ObsID: the same source, other measured values
    second = table.iloc[rng.choice(len(table), 40, replace=False)].copy()
    second["obi"] = 1
    for col in ("hard_hs", "hard_hm", "hard_ms"):
        second[col] = np.clip(second[col] + rng.normal(0, 0.2, len(second)), -1, 1)
    table = pd.concat([table, second], ignore_index=True).sample(frac=1.0, random_state=3).reset_index(drop=True)
    cat = tmp_path / "cat"
    for i, idx in enumerate(np.array_split(np.arange(len(table)), 3)):
        write_table(table.iloc[idx].reset_index(drop=True), cat / f"part-{i:05d}.parquet")
    expected = ClusterThenLabel.load(model_dir).classify(table).detections
    assert expected.duplicated(["name", "obsid"]).sum() > 0          # the in-memory table keys by obi too
    run = tmp_path / "run"
    D.classify_shards(client, cat, model_dir, run, log=lambda m: None)
    got = concat_outputs(run, D.OUTPUT_DIR)
    key = ["name", "obsid", "obi"]
    assert "obi" in got.columns and not got.duplicated(key).any()
    pd.testing.assert_frame_equal(sorted_rows(got, key), sorted_rows(expected[got.columns], key), check_dtype=False,
                                  check_exact=False, rtol=1e-12, atol=1e-12)
