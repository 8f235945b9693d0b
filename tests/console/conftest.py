"""Console test fixtures: a user file with one user per role (fixed test passwords, fast argon2 costs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from console.helpers import PASSWORD, USERS, fast_hasher
from peergrid_dso.auth.users import UserStore


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    path = tmp_path / "users.json"
    store = UserStore(path, hasher=fast_hasher())
    for name, role in USERS.items():
        store.add(name, role, PASSWORD)
    return path
