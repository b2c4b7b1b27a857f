"""Fixtures of the reliability tests: a small simulated catalogue (built afresh, no personal data) and
a fitted model; the check every refusal must pass (exit 2, one stderr line naming what is wrong, no
traceback) is reliability_checks.refused."""
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
