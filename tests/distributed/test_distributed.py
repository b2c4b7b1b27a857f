"""Scale-out on Dask (xsift.distributed): equality with the in-memory results, cross-shard voting,
resumable runs (kill-and-resume of a real subprocess), worker death, a corrupt shard, and a
scheduler + worker started as separate processes on loopback.

Oracles: xsift.kernels.gmm.fit_gmm in memory (full-data EM), xsift.methods.cluster_then_label.classify_detections and
xsift.methods.voting.master_classes on the whole catalogue in memory, and the simulator's rows themselves.
Catalogues are small (a few thousand detections in several shards) to keep the suite fast.
"""
from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest

from xsift import distributed as D
from xsift.errors import XsiftError
from xsift.data.features import FeatureTransform, complete_rows, derive_features, load_preset

REPO = pathlib.Path(__file__).resolve().parents[2]
N_DETECTIONS = 6000
N_SHARDS = 8
SEED = 11


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(D.WORKER_ENV)
    return env


@pytest.fixture(scope="module")
def client():
    from distributed import Client
    cluster = D.local_cluster(2)
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    from xsift.simulate import write_simulated_catalog
    out = tmp_path_factory.mktemp("catalog")
    write_simulated_catalog(out, N_DETECTIONS, n_shards=N_SHARDS, seed=SEED)
    return out


@pytest.fixture(scope="module")
def whole(catalog):
    """The whole catalogue in memory, shard by shard in order (the oracle's input)."""
    from xsift.data.io import read_catalog
    return read_catalog(catalog)


@pytest.fixture(scope="module")
def preset():
    return load_preset("csc")


@pytest.fixture(scope="module")
def model_dir(client, catalog, tmp_path_factory, preset):
    out = tmp_path_factory.mktemp("model")
    D.fit_shards(client, catalog, out, preset=preset, fit_sample=4000, seed=3, log=lambda m: None)
    return out


def _sorted(df: pd.DataFrame, keys) -> pd.DataFrame:
    return df.sort_values(list(keys), kind="stable").reset_index(drop=True)


def _concat_outputs(run: pathlib.Path, sub: str) -> pd.DataFrame:
    files = sorted((run / sub).glob("*.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def _in_memory_detection_level(model_dir, whole):
    from xsift.methods.cluster_then_label import ClusterLabelModel, classify_detections
    model = ClusterLabelModel.load(model_dir)
    return model, classify_detections(model, whole)


def _assert_exactly_once(run: pathlib.Path, expected: pd.DataFrame) -> None:
    got = _concat_outputs(run, D.OUTPUT_DIR)
    assert not got.duplicated(["name", "obsid"]).any(), "a detection appears twice in the outputs"
    pd.testing.assert_frame_equal(_sorted(got, ["name", "obsid"]), _sorted(expected, ["name", "obsid"]),
                                  check_dtype=False, check_exact=False, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ the catalogue itself

def test_sources_straddle_shards(catalog):
    """The fixture really splits some sources across shards (else the voting test proves nothing)."""
    names = [set(pd.read_parquet(f, columns=["name"])["name"]) for f in D.shard_files(catalog)]
    split = set()
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            split |= names[i] & names[j]
    assert len(split) >= 2


def test_read_sharded_and_row_counts(catalog, whole):
    ddf = D.read_sharded(catalog, columns=["name", "obsid"])
    assert len(ddf) == len(whole) == sum(D.shard_row_counts(D.shard_files(catalog)))


def test_sample_is_seeded_and_uniform(client, catalog, whole):
    a = D.sample_catalog(client, catalog, 1500, seed=5, columns=["name", "obsid", "hard_hm"])
    b = D.sample_catalog(client, catalog, 1500, seed=5, columns=["name", "obsid", "hard_hm"])
    pd.testing.assert_frame_equal(a, b)
    # oracle: the same global row indices taken from the whole catalogue in memory
    rows = np.sort(np.random.default_rng(5).choice(len(whole), size=1500, replace=False))
    expected = whole[["name", "obsid", "hard_hm"]].iloc[rows].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, expected, check_dtype=False)
    everything = D.sample_catalog(client, catalog, 10 * len(whole), seed=5, columns=["obsid"])
    assert len(everything) == len(whole)


# ------------------------------------------------------------------ full-data EM

def test_full_data_em_equals_in_memory_fit(client, catalog, whole, preset):
    from xsift.kernels.gmm import fit_gmm
    feats = derive_features(whole, preset)
    transform = FeatureTransform.from_preset(preset).fit(feats)
    X = transform.transform(feats)
    X = X[complete_rows(X)]
    start = fit_gmm(X, 5, seed=1, max_iter=2)
    for persist, iters in ((True, 6), (False, 3)):   # data kept on the workers / re-read each iteration
        expected = fit_gmm(X, 5, seed=1, init=start, max_iter=iters, tol=0.0)
        got = D.distributed_em(client, catalog, preset, transform, start, max_iter=iters, tol=0.0,
                               persist=persist, chunk_rows=512)
        assert got.n_iter == iters
        np.testing.assert_allclose(got.weights, expected.weights, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(got.means, expected.means, rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(got.covariances, expected.covariances, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(got.lower_bound, expected.lower_bound, rtol=1e-11)
    # run to convergence: the same number of iterations and the same answer
    conv = fit_gmm(X, 5, seed=1, init=start, max_iter=200, tol=1e-3)
    got = D.distributed_em(client, catalog, preset, transform, start, max_iter=200, tol=1e-3, chunk_rows=512)
    assert got.converged and conv.converged and got.n_iter == conv.n_iter
    np.testing.assert_allclose(got.means, conv.means, rtol=1e-8, atol=1e-10)


def _compile_counter():
    """Worker-side: a list whose first item counts XLA backend compilations from now on."""
    import jax.monitoring
    box = [0]
    jax.monitoring.register_event_duration_secs_listener(
        lambda name, secs, **kw: box.__setitem__(0, box[0] + (name == "/jax/core/compile/backend_compile_duration")))
    return box


def test_worker_compiles_em_kernel_once(client, whole, model_dir):
    """Partitions of different sizes reuse the worker's compiled EM statistics kernel (fixed,
    padded chunk shapes): after the first partition nothing new is compiled."""
    from xsift.methods.cluster_then_label import ClusterLabelModel
    model = ClusterLabelModel.load(model_dir)
    X = model.transform.transform(derive_features(whole, model.preset))
    X = X[complete_rows(X)]
    parts = [X[:300], X[300:2100], X[2100:2150]]

    def count_compiles(gmm, parts, counter):
        from xsift.distributed import pad_chunks, partition_statistics
        box = counter()
        counts = []
        for x in parts:
            partition_statistics(gmm, pad_chunks(x, 512))
            counts.append(box[0])
        return counts

    counts = client.submit(count_compiles, model.gmm, parts, _compile_counter, pure=False).result()
    assert counts[1] == counts[0] and counts[2] == counts[0], f"recompiled per partition: {counts}"


def test_worker_compiles_classify_kernels_once(client, whole, model_dir):
    from xsift.methods.cluster_then_label import ClusterLabelModel
    model = ClusterLabelModel.load(model_dir)
    frames = [whole.iloc[:300], whole.iloc[300:2100], whole.iloc[2100:2150]]

    def count_compiles(model, frames, counter):
        from xsift.methods.cluster_then_label import classify_catalog
        box = counter()
        counts = []
        for f in frames:
            classify_catalog(model, f)
            counts.append(box[0])
        return counts

    counts = client.submit(count_compiles, model, frames, _compile_counter, pure=False).result()
    assert counts[1] == counts[0] and counts[2] == counts[0], f"recompiled per partition: {counts}"


# ------------------------------------------------------------------ classification and voting

def test_classify_and_vote_equal_in_memory(client, catalog, whole, model_dir, tmp_path):
    from xsift.methods.voting import master_classes
    model, expected = _in_memory_detection_level(model_dir, whole)
    run = tmp_path / "run"
    summary = D.classify_shards(client, catalog, model_dir, run, log=lambda m: None)
    assert summary["shards"] == N_SHARDS and summary["shards_skipped"] == 0
    assert summary["rows_in"] == len(whole)
    _assert_exactly_once(run, expected)
    # one output per input shard, named after it
    assert sorted(p.name for p in (run / D.OUTPUT_DIR).glob("*.parquet")) == \
        sorted(p.name for p in D.shard_files(catalog))
    aggregation = model.preset["classes"]["aggregation"]
    vote = D.vote_shards(client, run, classes=model.classes, aggregation=aggregation, n_partitions=3,
                         log=lambda m: None)
    uniq, amb, summ = master_classes(expected, model.classes, aggregation)
    for sub, table in ((D.UNIQUE_DIR, uniq), (D.AMBIGUOUS_DIR, amb)):
        got = _concat_outputs(run, sub)
        pd.testing.assert_frame_equal(_sorted(got, ["name"]), _sorted(table, ["name"]), check_dtype=False,
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
    _, expected = _in_memory_detection_level(other, whole)
    _assert_exactly_once(run, expected)
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


# ------------------------------------------------------------------ faults

def _many_shards(tmp_path, whole, n_shards):
    """The same catalogue re-cut into more, smaller shards (sources still straddle boundaries)."""
    from xsift.data.io import write_table
    out = tmp_path / f"cat{n_shards}"
    for i, idx in enumerate(np.array_split(np.arange(len(whole)), n_shards)):
        write_table(whole.iloc[idx].reset_index(drop=True), out / f"part-{i:05d}.parquet")
    return out


def test_worker_death_loses_and_duplicates_nothing(client, catalog, whole, model_dir, tmp_path):
    """SIGKILL one worker process of the LocalCluster mid-run: its tasks are rerun elsewhere and
    every detection ends up in the outputs exactly once (the nanny starts a new worker process)."""
    cat = _many_shards(tmp_path, whole, 16)
    _, expected = _in_memory_detection_level(model_dir, whole)
    run = tmp_path / "run"
    pids = client.run(os.getpid)
    outcome = {}

    def classify():
        try:
            outcome["summary"] = D.classify_shards(client, cat, model_dir, run, log=lambda m: None)
        except BaseException as exc:  # reported below
            outcome["error"] = exc

    thread = threading.Thread(target=classify)
    thread.start()
    deadline = time.monotonic() + 120
    while not list((run / D.LEDGER_DIR).glob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.005)
    done_at_kill = len(list((run / D.LEDGER_DIR).glob("*.json")))
    victim = sorted(pids.values())[0]
    os.kill(victim, signal.SIGKILL)
    thread.join(timeout=180)
    assert not thread.is_alive()
    assert "error" not in outcome, outcome.get("error")
    assert 0 < done_at_kill < 16, "the worker must die mid-run"
    assert outcome["summary"]["rows_in"] == len(whole)
    client.wait_for_workers(2, timeout=60)
    assert victim not in client.run(os.getpid).values()  # the nanny replaced the killed process
    _assert_exactly_once(run, expected)


def test_kill_and_resume_a_real_run(client, catalog, whole, model_dir, tmp_path):
    cat = _many_shards(tmp_path, whole, 16)
    _, expected = _in_memory_detection_level(model_dir, whole)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "xsift.cli", "classify-shards", str(cat), "--model", str(model_dir),
           "--out", str(run), "--workers", "1", "--no-vote"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list((run / D.LEDGER_DIR).glob("*.json"))) >= 2:
                break
            time.sleep(0.005)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()!r}"
        os.killpg(proc.pid, signal.SIGKILL)   # the whole process tree, like a crash of the machine
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.stderr.close()
    time.sleep(0.2)
    done = set(D.ledger_records(run))
    assert 2 <= len(done) < 16, "the kill must land mid-run"
    before = {s: (run / D.OUTPUT_DIR / f"{s}.parquet").stat().st_mtime_ns for s in done}
    summary = D.classify_shards(client, cat, model_dir, run, log=lambda m: None)
    assert summary["shards_skipped"] == len(done)
    assert summary["shards_classified_now"] == 16 - len(done)
    assert before == {s: (run / D.OUTPUT_DIR / f"{s}.parquet").stat().st_mtime_ns for s in done}
    _assert_exactly_once(run, expected)
    assert summary["rows_in"] == len(whole)


# ------------------------------------------------------------------ a scheduler and a worker as separate processes

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def external_scheduler(tmp_path):
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask_cli = str(pathlib.Path(sys.executable).parent / "dask")
    procs = []
    try:
        procs.append(subprocess.Popen([dask_cli, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                       "--no-dashboard"], cwd=tmp_path, env=_env(),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True))
        procs.append(subprocess.Popen([dask_cli, "worker", address, "--host", "127.0.0.1", "--nthreads", "1",
                                       "--nworkers", "1", "--no-dashboard", "--local-directory",
                                       str(tmp_path / "worker")], cwd=tmp_path, env=_env(),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True))
        from distributed import Client
        with Client(address, timeout="60s") as c:
            c.wait_for_workers(1, timeout=60)
        yield address
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=5)


def test_cli_against_separate_scheduler_and_worker(external_scheduler, catalog, whole, preset, tmp_path):
    """The user's path on a real cluster: fit-shards --full-em then classify-shards (+ vote) against
    a `dask scheduler` and a `dask worker` started as separate processes on loopback."""
    from xsift.cli import main
    from xsift.methods.cluster_then_label import ClusterLabelModel, classify_detections, fit_model
    from xsift.methods.voting import master_classes
    from xsift.kernels.gmm import fit_gmm
    model_dir, run = tmp_path / "model", tmp_path / "run"
    assert main(["fit-shards", str(catalog), "--out", str(model_dir), "--fit-sample", str(10 * len(whole)),
                 "--full-em", "--max-iter", "3", "--tol", "0", "--seed", "2",
                 "--scheduler", external_scheduler]) == 0
    model = ClusterLabelModel.load(model_dir)
    # oracle: the sample is the whole catalogue; in-memory EM from the sample fit's mixture, 3 iterations
    start, _ = fit_model(whole, preset, n_components=6, seed=2)
    X = start.transform.transform(derive_features(whole, preset))
    X = X[complete_rows(X)]
    expected = fit_gmm(X, 6, seed=2, init=start.gmm, max_iter=3, tol=0.0)
    np.testing.assert_allclose(model.gmm.means, expected.means, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(model.gmm.covariances, expected.covariances, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(model.gmm.weights, expected.weights, rtol=1e-9, atol=1e-12)

    assert main(["classify-shards", str(catalog), "--model", str(model_dir), "--out", str(run),
                 "--scheduler", external_scheduler, "--vote-partitions", "2"]) == 0
    expected_det = classify_detections(model, whole)
    _assert_exactly_once(run, expected_det)
    uniq, amb, _ = master_classes(expected_det, model.classes, model.preset["classes"]["aggregation"])
    assert sorted(_concat_outputs(run, D.UNIQUE_DIR)["name"]) == sorted(uniq["name"])
    assert sorted(_concat_outputs(run, D.AMBIGUOUS_DIR)["name"]) == sorted(amb["name"])
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["scheduler"] == external_scheduler
    assert manifest["classification"]["rows_in"] == len(whole)


# ------------------------------------------------------------------ naive Bayes on the same machinery

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
    got = _concat_outputs(run, D.OUTPUT_DIR)
    key = ["name", "predicted_class"]
    got = got.sort_values(key + ["outlier_measure"], kind="stable").reset_index(drop=True)
    expected = expected.sort_values(key + ["outlier_measure"], kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, rtol=1e-12)
    # rerun: nothing to do; and a vote is refused with the reason
    again = D.classify_shards(client, catalog, tmp_path / "nb", run, log=lambda m: None)
    assert again["shards_classified_now"] == 0
    assert main(["vote-shards", str(run), "--scheduler", client.scheduler.address]) == 2
    assert "naive-Bayes" in capsys.readouterr().err
