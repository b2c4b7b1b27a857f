"""Faults of a real run (slow: separate processes): a worker process killed mid-run, and a whole
classify-shards command killed mid-run then resumed. Every detection must end up in the outputs exactly
once, equal to the in-memory classification (the oracle)."""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest

from distributed_oracles import (REPO, assert_exactly_once, console_script, in_memory_detection_level,
                                 many_shards, subprocess_env)
from xsift import distributed as D

pytestmark = pytest.mark.slow


def test_worker_death_loses_and_duplicates_nothing(client, catalog, whole, model_dir, tmp_path):
    """SIGKILL one worker process of the LocalCluster mid-run: its tasks are rerun elsewhere and
    every detection ends up in the outputs exactly once (the nanny starts a new worker process)."""
    cat = many_shards(tmp_path, whole, 16)
    _, expected = in_memory_detection_level(model_dir, whole)
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
    assert_exactly_once(run, expected)


def test_kill_and_resume_a_real_run(client, catalog, whole, model_dir, tmp_path):
    cat = many_shards(tmp_path, whole, 16)
    _, expected = in_memory_detection_level(model_dir, whole)
    run = tmp_path / "run"
    cmd = [console_script("xsift"), "classify-shards", str(cat), "--model", str(model_dir),
           "--out", str(run), "--workers", "1", "--no-vote"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=subprocess_env(), start_new_session=True,
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
    assert_exactly_once(run, expected)
    assert summary["rows_in"] == len(whole)
