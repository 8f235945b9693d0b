"""The console's lab server as its HTTP tests drive it (imported as console.lab_client): the DSO app with the
console on a users file, no lab market or drift, in-process (no broker, no listening socket)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi.testclient import TestClient

from peergrid_dso.app import create_app
from peergrid_dso.config import DsoSettings


@contextmanager
def lab_client(users_file: Path) -> Iterator[TestClient]:
    """A started app (its lifespan run) and a client on it, as at the console's own address."""
    settings = DsoSettings.model_validate(
        {"console": {"users_file": str(users_file), "lab_market": False, "lab_drift": False}}
    )
    with TestClient(create_app(settings, listen=False), base_url="http://127.0.0.1:8080") as c:
        yield c
