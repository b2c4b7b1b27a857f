"""A disk that fills up while a command writes: one line naming --out (exit 2), and the output directory
kept whole or not at all (xsift.report.outputs.all_or_nothing): a fresh directory is removed, a previous
run's files are put back unchanged, never some tables without their manifest.

The fault is simulated three ways: a writer raising ENOSPC in-process (fast); and, in the slow test, a
real file-size limit (RLIMIT_FSIZE set in the child with SIGXFSZ ignored, so the write fails with
EFBIG), which needs neither root nor a small file system (a 2 MiB tmpfs, ``mount -t tmpfs -o size=2m``,
gives ENOSPC the same way where one can be mounted)."""
import errno
import hashlib
import os
import resource
import signal
import subprocess
import sys

import pytest

from reliability_checks import refused
from xsift.cli import main
from xsift.data.io import write_table
from xsift.report.outputs import all_or_nothing


def _digests(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_all_or_nothing_restores_the_previous_files_and_removes_new_ones(tmp_path):
    out = tmp_path / "run"
    (out / "sub").mkdir(parents=True)
    (out / "a.csv").write_text("old a\n")
    (out / "manifest.json").write_text("{}\n")
    before = _digests(out)
    with pytest.raises(OSError):
        with all_or_nothing(out):
            (out / "a.tmp").write_text("x")
            os.replace(out / "a.tmp", out / "a.csv")          # an atomic replacement
            (out / "new").mkdir()
            (out / "new" / "b.csv").write_text("new b\n")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert _digests(out) == before and sorted(p.name for p in out.iterdir()) == ["a.csv", "manifest.json", "sub"]
    with all_or_nothing(out):                                  # success keeps the new files, no backup left
        (out / "c.csv").write_text("c\n")
    assert sorted(p.name for p in out.iterdir()) == ["a.csv", "c.csv", "manifest.json", "sub"]
    with pytest.raises(KeyboardInterrupt):
        with all_or_nothing(tmp_path / "fresh"):
            (tmp_path / "fresh").mkdir()
            (tmp_path / "fresh" / "t.csv").write_text("t\n")
            raise KeyboardInterrupt
    assert not (tmp_path / "fresh").exists()


def test_a_full_disk_during_classify_is_one_line_and_no_half_run(tmp_path, capsys, catalogue, fitted_model,
                                                                 monkeypatch):
    model, cat = fitted_model
    import xsift.data.io as io
    real, calls = io.write_table, []

    def fills_up(df, path, *a, **k):          # the second table finds the disk full
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(df, path, *a, **k)
    monkeypatch.setattr(io, "write_table", fills_up)
    out = tmp_path / "run"
    code = main(["classify", str(cat), "--model", str(model), "--out", str(out), "--no-figures", "--quiet"])
    refused(code, capsys.readouterr().err, str(out), "No space left on device")
    assert len(calls) == 2 and not out.exists()


@pytest.mark.slow
def test_a_real_file_size_limit_keeps_the_previous_run(tmp_path, catalogue, fitted_model):
    model, _ = fitted_model
    small, large = tmp_path / "small.parquet", tmp_path / "large.parquet"
    df = catalogue()
    write_table(df.iloc[:600], small)
    write_table(df, large)
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "xsift.cli", "classify", "--model", str(model), "--out", str(out),
            "--no-figures", "--quiet", "--format", "csv"]
    assert subprocess.run(argv[:4] + [str(small)] + argv[4:], capture_output=True).returncode == 0
    before = _digests(out)
    limit = max(p.stat().st_size for p in out.iterdir()) + 1024     # the larger catalogue's tables exceed it

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)                # the write fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    p = subprocess.run(argv[:4] + [str(large)] + argv[4:], capture_output=True, text=True, preexec_fn=limited)
    refused(p.returncode, p.stderr, str(out), "File too large")
    assert _digests(out) == before
    # a fresh directory under the same limit is not left behind
    fresh = tmp_path / "fresh"
    p = subprocess.run(argv[:4] + [str(large)] + argv[4:6] + ["--out", str(fresh)] + argv[8:], capture_output=True,
                       text=True, preexec_fn=limited)
    refused(p.returncode, p.stderr, str(fresh), "File too large")
    assert not fresh.exists()
