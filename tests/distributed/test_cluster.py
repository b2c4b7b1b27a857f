"""The command line against a real cluster (slow: separate processes): a `dask scheduler` and a
`dask worker` started as separate processes on loopback, used through --scheduler.

Oracles: the in-memory EM (fit_gmm) from the sample fit's mixture, classify_detections and
master_classes on the whole catalogue in memory."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess

import numpy as np
import pytest

from distributed_oracles import assert_exactly_once, concat_outputs, console_script, subprocess_env
from xsift import distributed as D
from xsift.data.features import complete_rows, derive_features

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def external_scheduler(tmp_path):
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask_cli = console_script("dask")
    procs = []
    try:
        procs.append(subprocess.Popen([dask_cli, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                       "--no-dashboard"], cwd=tmp_path, env=subprocess_env(),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True))
        procs.append(subprocess.Popen([dask_cli, "worker", address, "--host", "127.0.0.1", "--nthreads", "1",
                                       "--nworkers", "1", "--no-dashboard", "--local-directory",
                                       str(tmp_path / "worker")], cwd=tmp_path, env=subprocess_env(),
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
    from xsift import ClusterThenLabel
    from xsift.methods.voting import master_classes
    from xsift.kernels.gmm import fit_gmm
    model_dir, run = tmp_path / "model", tmp_path / "run"
    assert main(["fit-shards", str(catalog), "--out", str(model_dir), "--fit-sample", str(10 * len(whole)),
                 "--full-em", "--max-iter", "3", "--tol", "0", "--seed", "2",
                 "--scheduler", external_scheduler]) == 0
    model = ClusterThenLabel.load(model_dir)
    # oracle: the sample is the whole catalogue; in-memory EM from the sample fit's mixture, 3 iterations
    start = ClusterThenLabel(preset, n_components=6, seed=2).fit(whole)
    X = start.transform_.transform(derive_features(whole, preset))
    X = X[complete_rows(X)]
    expected = fit_gmm(X, 6, seed=2, init=start.gmm_, max_iter=3, tol=0.0)
    np.testing.assert_allclose(model.gmm_.means, expected.means, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(model.gmm_.covariances, expected.covariances, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(model.gmm_.weights, expected.weights, rtol=1e-9, atol=1e-12)

    assert main(["classify-shards", str(catalog), "--model", str(model_dir), "--out", str(run),
                 "--scheduler", external_scheduler, "--vote-partitions", "2"]) == 0
    expected_det = model.classify(whole).detections
    assert_exactly_once(run, expected_det)
    uniq, amb, _ = master_classes(expected_det, list(model.classes_), model.vote_aggregation)
    assert sorted(concat_outputs(run, D.UNIQUE_DIR)["name"]) == sorted(uniq["name"])
    assert sorted(concat_outputs(run, D.AMBIGUOUS_DIR)["name"]) == sorted(amb["name"])
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["scheduler"] == external_scheduler
    assert manifest["classification"]["rows_in"] == len(whole)
