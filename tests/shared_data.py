"""Where the real data lives, for every test area (a module of its own, so that test files can import
it whichever conftest.py pytest imported first under the name ``conftest``)."""
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
