"""Shared test fixtures: where the real data lives."""
import pathlib

import pytest

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared"
DATA = SHARED / "data"


def shared_file(*parts: str) -> pathlib.Path:
    """A file of ../shared/data, or a skip saying why (only when ../shared is absent)."""
    path = DATA.joinpath(*parts)
    if not SHARED.exists():
        pytest.skip(f"real-data test: {SHARED} is absent (clone the project beside shared/ to run it)")
    assert path.exists(), f"{path} should exist in ../shared/data"
    return path


@pytest.fixture(scope="session")
def umlcaxs_unique():
    from xsift.data.io import read_catalog
    return read_catalog(shared_file("umlcaxs", "uniquely_classified.csv"))


@pytest.fixture(scope="session")
def umlcaxs_ambiguous():
    from xsift.data.io import read_catalog
    return read_catalog(shared_file("umlcaxs", "ambiguous_classification.csv"))


@pytest.fixture(scope="session")
def example_votable():
    return shared_file("umlcaxs", "your_xray_example.vot")
