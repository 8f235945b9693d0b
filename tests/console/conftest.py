"""Console test fixtures: a user file with one user per role, and a real DSO server on a free loopback port.

The server is the DSO engineer's `create_app` run by uvicorn on a thread, connected to the real Mosquitto
from the shared `mosquitto` fixture; it is stopped at teardown. Passwords are fixed test values.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from console.helpers import PASSWORD, USERS, fast_hasher
from peergrid_dso.auth.users import UserStore
from peergrid_sim.broker import free_port, wait_for_port

__all__ = ["PASSWORD"]


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    path = tmp_path / "users.json"
    store = UserStore(path, hasher=fast_hasher())
    for name, role in USERS.items():
        store.add(name, role, PASSWORD)
    return path


@dataclass
class RunningServer:
    url: str
    app: object


@pytest.fixture
def dso_server(users_file: Path, mosquitto: object) -> Iterator[RunningServer]:
    import uvicorn

    from peergrid_dso.app import create_app
    from peergrid_dso.config import DsoSettings

    port = free_port()
    settings = DsoSettings.model_validate(
        {
            "broker": {"host": mosquitto.host, "port": mosquitto.port},  # type: ignore[attr-defined]
            "http": {"host": "127.0.0.1", "port": port},
            "console": {"users_file": str(users_file), "refresh_s": 0.3, "market_intervals": 8},
        }
    )
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="dso-console-test", daemon=True)
    thread.start()
    assert wait_for_port("127.0.0.1", port, 20), "the DSO server did not start"
    deadline = time.monotonic() + 20
    while not getattr(app.state, "console", None) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield RunningServer(f"http://127.0.0.1:{port}", app)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
