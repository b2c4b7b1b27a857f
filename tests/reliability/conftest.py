"""Fixtures of the reliability tests: a small simulated catalogue (built afresh, no personal data) and
a fitted model, and the check every refusal must pass (exit 2, one stderr line naming what is wrong,
no traceback)."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def catalogue():
    """2000 simulated CSC detections (a fresh copy per use: tests edit it)."""
    from xsift.simulate import simulate_catalog
    frame = simulate_catalog(2000, seed=3)
    return lambda: frame.copy()


@pytest.fixture(scope="session")
def fitted_model(tmp_path_factory, catalogue):
    """(model directory, catalogue path) of a cluster-then-label model fitted by ``xsift fit --k 3``."""
    from xsift.cli import main
    from xsift.data.io import write_table
    root = tmp_path_factory.mktemp("fitted")
    write_table(catalogue(), root / "cat.parquet")
    assert main(["fit", str(root / "cat.parquet"), "--out", str(root / "model"), "--k", "3"]) == 0
    return root / "model", root / "cat.parquet"


def refused(code: int, err: str, *names: str) -> str:
    """The one line of ``err`` after asserting exit status 2, no traceback and that it names ``names``."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]
