"""One command at a time writes into a run directory: while a process holds its lock (what a running
``classify-shards`` or ``vote-shards`` does, and the library's classify_shards and vote_shards), a second
command or library call into it from another process refuses at once, naming the directory, and writes
nothing; within one process the lock is re-entrant."""
import contextlib
import subprocess
import sys

import pytest

from reliability_checks import refused
from xsift.cli import main
from xsift.data.io import write_table
from xsift.distributed.rundir import LOCK_FILE, lock_run_dir
from xsift.errors import XsiftError


@contextlib.contextmanager
def held_elsewhere(run):
    """Hold the lock of ``run`` from another process (as a running command does) while the block runs."""
    code = ("import sys\nfrom xsift.distributed.rundir import lock_run_dir\n"
            "with lock_run_dir(sys.argv[1], command='the test'):\n"
            "    print('locked', flush=True)\n    sys.stdin.read()\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(run)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)


@pytest.fixture
def shards(tmp_path, catalogue):
    out = tmp_path / "shards"
    out.mkdir()
    df = catalogue()
    write_table(df.iloc[:1000].reset_index(drop=True), out / "part-0.parquet")
    write_table(df.iloc[1000:].reset_index(drop=True), out / "part-1.parquet")
    return out


@pytest.mark.parametrize("command", ["classify-shards", "vote-shards"])
def test_a_second_command_into_a_locked_run_directory_refuses(tmp_path, capsys, shards, fitted_model, command):
    model, _ = fitted_model
    run = tmp_path / "run"
    argv = (["classify-shards", str(shards), "--model", str(model), "--out", str(run), "--workers", "1"]
            if command == "classify-shards" else ["vote-shards", str(run), "--workers", "1"])
    with held_elsewhere(run):
        code = main(argv)
        refused(code, capsys.readouterr().err, str(run), "another xsift command")
        assert sorted(p.name for p in run.iterdir()) == [LOCK_FILE]


@pytest.mark.parametrize("function", ["classify_shards", "vote_shards"])
def test_the_library_functions_take_the_lock(tmp_path, shards, fitted_model, function):
    """classify_shards and vote_shards called from Python refuse a run directory another process is
    writing into, before touching the cluster (no client needed to see it) or the directory."""
    from xsift import distributed as D
    model, _ = fitted_model
    run = tmp_path / "run"
    with held_elsewhere(run):
        with pytest.raises(XsiftError, match=f"{run}: another xsift command .* for {function}"):
            if function == "classify_shards":
                D.classify_shards(None, shards, model, run, log=lambda m: None)
            else:
                D.vote_shards(None, run, classes=["AGN"], aggregation={}, log=lambda m: None)
        assert sorted(p.name for p in run.iterdir()) == [LOCK_FILE]


def test_the_lock_is_held_for_the_block_and_released_after(tmp_path):
    run = tmp_path / "run"
    with lock_run_dir(run):
        with lock_run_dir(run):      # re-entrant within a process (a command calling the library)
            assert (run / LOCK_FILE).exists()
        code = ("import sys\nfrom xsift.distributed.rundir import lock_run_dir\n"
                "with lock_run_dir(sys.argv[1]):\n    pass\n")
        other = subprocess.run([sys.executable, "-c", code, str(run)], capture_output=True, text=True)
        assert other.returncode != 0 and "another xsift command" in other.stderr
    with lock_run_dir(run):          # released: taken again
        pass
    with held_elsewhere(run):        # and by another process after that
        with pytest.raises(XsiftError, match="another xsift command"):
            with lock_run_dir(run):
                pass


@pytest.mark.slow      # the default suite stays under 5 minutes on 2 cores; CI runs it
def test_two_real_runs_into_one_directory(tmp_path, capsys, shards, fitted_model):
    """The second of two ``classify-shards`` into one directory refuses while the first runs; the first
    completes and its vote tables hold every source it classified."""
    import json
    import subprocess
    import sys
    import time

    import pandas as pd

    model, _ = fitted_model
    run = tmp_path / "run"
    argv = ["classify-shards", str(shards), "--model", str(model), "--out", str(run), "--workers", "1"]
    first = subprocess.Popen([sys.executable, "-m", "xsift.cli", *argv], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not ((run / LOCK_FILE).exists() and (run / LOCK_FILE).read_text()):   # written once locked
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.01)
    code = main(argv)
    refused(code, capsys.readouterr().err, str(run), "another xsift command")
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0 and "Traceback" not in err, err
    detections = pd.read_parquet(run / "detection_level")
    classified = detections.loc[detections["predicted_class"].notna(), "name"]
    voted = pd.concat([pd.read_parquet(run / "uniquely_classified"), pd.read_parquet(run / "ambiguous")])
    assert len(classified) > 0
    assert sorted(voted["name"]) == sorted(classified.unique())
    assert json.loads((run / "vote.json").read_text())["sources"] == classified.nunique()


def test_a_refused_command_leaves_no_empty_run_directory(tmp_path, capsys, fitted_model):
    model, _ = fitted_model
    code = main(["classify-shards", str(tmp_path / "no-such-dir"), "--model", str(model), "--out",
                 str(tmp_path / "run"), "--workers", "1"])
    refused(code, capsys.readouterr().err, "no-such-dir")
    assert not (tmp_path / "run").exists()
