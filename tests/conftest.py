"""Shared test fixtures: the real data of ../shared/data."""
import pytest

from shared_data import DATA, SHARED, shared_file  # noqa: F401


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
