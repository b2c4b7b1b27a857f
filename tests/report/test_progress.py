"""Progress bars: drawn at a terminal with the stage names, silent in pipes/logs, off in the library
unless asked, and ``--quiet``/``XSIFT_PROGRESS`` obeyed."""
import io
import os
import re
import select
import subprocess
import sys

import pytest

from xsift.errors import XsiftError
from xsift.report.progress import STAGES, StageProgress, progress_wanted

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
DEMO = [sys.executable, "-m", "xsift.cli", "demo", "--detections", "1000", "--k", "3", "--no-validate",
        "--no-figures"]


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "XSIFT_PROGRESS"}
    env.update({"JAX_PLATFORMS": "cpu", "COLUMNS": "120"}, **extra)
    return env


def _run_in_pty(argv, env, timeout=240) -> tuple[int, str]:
    """Run ``argv`` with stdin, stdout and stderr on a pseudo-terminal; (exit code, what it printed)."""
    import pty
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([master], [], [], timeout)
            if not ready:
                proc.kill()
                raise AssertionError(f"{argv} printed nothing for {timeout} s")
            try:
                data = os.read(master, 65536)
            except OSError:          # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    return proc.wait(timeout=60), b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.slow      # a whole demo run (~6 s): the default suite stays under 5 minutes on 2 cores
def test_demo_at_a_terminal_shows_the_stages(tmp_path):
    rc, text = _run_in_pty(DEMO + ["--out", str(tmp_path / "d")], _env())
    assert rc == 0, text
    plain = ANSI.sub("", text)
    for stage in ("simulate", "check", "features", "cluster", "distances", "vote", "write", "done"):
        assert f"xsift demo · {stage}" in plain, stage
    assert "stage 8/8" in plain
    # the command's own lines still reach the terminal
    assert "unlabelled detections classified" in plain


@pytest.mark.slow      # a whole demo run (~6 s): the default suite stays under 5 minutes on 2 cores
def test_demo_into_a_pipe_prints_no_progress(tmp_path):
    proc = subprocess.run(DEMO + ["--out", str(tmp_path / "d")], env=_env(), capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "xsift demo ·" not in proc.stderr and "stage " not in proc.stderr
    assert "\x1b[" not in proc.stderr + proc.stdout      # no terminal control sequences in a log
    assert "unlabelled detections classified" in proc.stdout


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("argv", [["demo"], ["fit", "c.csv", "--out", "m"], ["classify", "c.csv", "--model", "m",
                                  "--out", "o"], ["run", "c.csv", "--out", "o"], ["validate", "c.csv", "--out", "o"],
                                  ["nb", "fit", "c.csv"], ["nb", "tune", "c.csv"], ["nb", "classify", "c.csv"]])
def test_every_in_memory_command_takes_quiet(argv):
    from xsift.cli import build_parser
    assert build_parser().parse_args(argv + ["--quiet"]).quiet is True
    assert build_parser().parse_args(argv).quiet is False


@pytest.mark.parametrize("quiet, env, drawn", [(False, None, True), (True, None, False), (False, "0", False)])
def test_command_bar_obeys_quiet_and_env_at_a_terminal(monkeypatch, quiet, env, drawn):
    """The decorator every in-memory command runs under: a bar at a terminal unless --quiet or
    XSIFT_PROGRESS=0."""
    import argparse
    from xsift.cli.cluster_then_label import with_progress
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.delenv("XSIFT_PROGRESS", raising=False)
    if env is not None:
        monkeypatch.setenv("XSIFT_PROGRESS", env)

    @with_progress("run")
    def run(args):
        args.progress("read")
        args.progress("features")
        return 0

    args = argparse.Namespace(quiet=quiet)
    assert run(args) == 0
    assert args.progress.enabled is drawn
    text = ANSI.sub("", terminal.getvalue())
    assert ("xsift run · features" in text) is drawn
    assert (text == "") is (not drawn)


def test_progress_wanted_rules(monkeypatch):
    class Stream(io.StringIO):
        def __init__(self, tty):
            super().__init__()
            self.tty = tty

        def isatty(self):
            return self.tty

    monkeypatch.delenv("XSIFT_PROGRESS", raising=False)
    assert progress_wanted(stream=Stream(True)) is True
    assert progress_wanted(stream=Stream(False)) is False
    assert progress_wanted(quiet=True, stream=Stream(True)) is False
    monkeypatch.setenv("XSIFT_PROGRESS", "off")
    assert progress_wanted(stream=Stream(True)) is False
    monkeypatch.setenv("XSIFT_PROGRESS", "1")
    assert progress_wanted(stream=Stream(False)) is True
    assert progress_wanted(quiet=True, stream=Stream(False)) is False
    monkeypatch.setenv("XSIFT_PROGRESS", "sometimes")
    with pytest.raises(XsiftError, match="XSIFT_PROGRESS"):
        progress_wanted(stream=Stream(True))


def test_stage_bar_names_the_stage_and_never_counts_back():
    stream = io.StringIO()
    with StageProgress("xsift run", enabled=True, stream=stream) as progress:
        for stage in ("read", "check", "features", "cluster", "features", "cluster", "distances"):
            progress(stage)
        assert progress._done == STAGES.index("distances")
        progress("features")                     # classifying computes features again: no step back
        assert progress._done == STAGES.index("distances")
    text = ANSI.sub("", stream.getvalue())
    assert "xsift run · read" in text and "xsift run · distances" in text and "xsift run · done" in text
    assert "stage 5/7" in text and "stage 7/7" in text


def test_disabled_bar_writes_nothing():
    stream = io.StringIO()
    with StageProgress("xsift run", enabled=False, stream=stream) as progress:
        progress("read")
        assert progress.current == "read"
    assert stream.getvalue() == ""


def test_library_reports_stages_only_when_asked(capfd):
    from xsift import ClusterThenLabel
    from xsift.simulate import simulate_catalog
    catalog = simulate_catalog(800, seed=1)
    seen = []
    ClusterThenLabel(n_components=2).fit_classify(catalog, progress=seen.append)
    assert seen == ["check", "features", "cluster", "features", "cluster", "distances", "vote"]
    seen.clear()
    model = ClusterThenLabel(n_components=2).fit(catalog, progress=seen.append)
    assert seen == ["check", "features", "cluster"]
    seen.clear()
    model.classify(catalog, progress=seen.append)
    assert seen == ["check", "features", "cluster", "distances", "vote"]
    capfd.readouterr()
    model.classify(catalog)                     # the default: nothing on either stream
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_dask_bar_is_labelled_with_its_stage(monkeypatch):
    from distributed import Client, wait
    monkeypatch.delenv("XSIFT_PROGRESS", raising=False)
    from xsift.distributed.cluster import show_progress
    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as client:
        futures = client.map(lambda x: x * x, range(5), pure=False)
        stream = io.StringIO()
        show_progress(futures, "classify: shards", enabled=True, stream=stream)
        assert all(f.done() for f in futures)          # it returns when every future has finished
        text = ANSI.sub("", stream.getvalue())
        assert "classify: shards" in text and "5/5" in text
        more = client.map(lambda x: x + 1, range(3), pure=False)
        quiet = io.StringIO()
        show_progress(more, "vote: partitions", stream=quiet)     # not a terminal: nothing drawn
        assert quiet.getvalue() == ""
        wait(more)
