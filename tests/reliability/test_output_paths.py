"""``--out`` is checked in the CLI's main before any work: a file where a directory is expected, a
directory where a file is expected, or a directory this process cannot write in (tried with a real
file, since root passes os.access on a read-only directory) is a one-line error, and nothing is written."""
import os
import stat
import subprocess

import pytest

from reliability_checks import refused
from xsift.cli import main
from xsift.data.io import write_table


@pytest.fixture
def cat(tmp_path, catalogue):
    write_table(catalogue(), tmp_path / "cat.parquet")
    return tmp_path / "cat.parquet"


def test_out_that_is_a_file_is_refused_before_the_fit(tmp_path, capsys, cat):
    (tmp_path / "taken").write_text("a file\n")
    code = main(["fit", str(cat), "--out", str(tmp_path / "taken"), "--k", "3"])
    refused(code, capsys.readouterr().err, "--out", "taken", "is a file")
    assert (tmp_path / "taken").read_text() == "a file\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cat.parquet", "taken"]


def _writable(directory) -> bool:
    probe = directory / "probe"
    try:
        probe.write_text("x")
    except OSError:
        return False
    probe.unlink()
    return True


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory this process cannot write in: mode 0o500, and for root (whom modes do not stop)
    also the immutable attribute (chattr +i)."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    immutable = False
    if _writable(locked):
        immutable = subprocess.run(["chattr", "+i", str(locked)], capture_output=True).returncode == 0
    try:
        assert not _writable(locked), f"cannot make {locked} read-only here (mode 0o500 and chattr +i did not)"
        yield locked
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(locked)], check=True)
        locked.chmod(stat.S_IRWXU)


def test_out_in_a_read_only_directory_is_refused_before_the_work(capsys, cat, read_only_dir, monkeypatch):
    work = []
    import xsift.methods.cluster_then_label as ctl
    monkeypatch.setattr(ctl.ClusterThenLabel, "fit", lambda *a, **k: work.append(1))
    code = main(["run", str(cat), "--out", str(read_only_dir / "run"), "--k", "3"])
    refused(code, capsys.readouterr().err, "--out", str(read_only_dir), "cannot write")
    assert work == [] and list(read_only_dir.iterdir()) == []


def test_crossmatch_out_that_is_a_directory_is_refused(tmp_path, capsys, cat):
    (tmp_path / "dir.parquet").mkdir()
    code = main(["crossmatch", str(cat), "--reference", str(cat), "--out", str(tmp_path / "dir.parquet")])
    refused(code, capsys.readouterr().err, "--out", "dir.parquet", "is a directory")
    assert list((tmp_path / "dir.parquet").iterdir()) == []


def test_out_under_a_file_is_refused(tmp_path, capsys, cat):
    code = main(["simulate", "--detections", "100", "--out", str(cat / "sub")])
    refused(code, capsys.readouterr().err, "--out", "cat.parquet")
    assert os.path.isfile(cat)
