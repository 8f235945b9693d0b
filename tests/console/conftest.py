"""Console test fixtures: a user file with one user per role (fixed test passwords, fast argon2 costs), and one
headless Chromium for each module of browser tests (`browser`; those modules open with `helpers.browser_tests`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from console.helpers import PASSWORD, USERS, chromium, fast_hasher
from peergrid_dso.auth.users import UserStore


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    path = tmp_path / "users.json"
    store = UserStore(path, hasher=fast_hasher())
    for name, role in USERS.items():
        store.add(name, role, PASSWORD)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched
