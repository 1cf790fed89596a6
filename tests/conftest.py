"""Shared fixtures. Tests that need ../shared/data skip cleanly without it."""

from __future__ import annotations

from pathlib import Path

import pytest

from costmodel.profiles import loudva_data_dir


@pytest.fixture(scope="session")
def loudva_dir() -> Path:
    """The LoudVA measurement folder (../shared/data/loudva); skips the test when absent."""
    path = loudva_data_dir()
    if path is None:
        pytest.skip("../shared/data/loudva is not present")
    return path


@pytest.fixture(scope="session")
def ibis_dir(loudva_dir: Path) -> Path:
    """The Ibis co-location measurements (../shared/data/ibis); skips when absent."""
    path = loudva_dir.parent / "ibis"
    if not path.exists():
        pytest.skip("../shared/data/ibis is not present")
    return path
