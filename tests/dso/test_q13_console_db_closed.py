"""The console database is closed when the server stops normally (D6 noticed: the lifespan's `finally` left it
open), and only after the node's records reader stopped (that reader may still put the node's lines into the
audit trail until it does)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from peergrid_dso.app import create_app
from peergrid_dso.config import DsoSettings
from peergrid_dso.console.state import ConsoleState


def test_a_normal_stop_closes_the_console_database_after_the_records_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    open_at_reader_stop: list[bool] = []
    real_stop = ConsoleState.stop_node_records

    def watched_stop(self: ConsoleState, timeout_s: float = 10.0) -> None:
        real_stop(self, timeout_s)
        try:
            self.sessions.db.session_count()  # type: ignore[union-attr]
            open_at_reader_stop.append(True)
        except sqlite3.ProgrammingError:
            open_at_reader_stop.append(False)

    monkeypatch.setattr(ConsoleState, "stop_node_records", watched_stop)
    users = tmp_path / "data" / "console-users.json"
    console = {"users_file": str(users), "lab_market": False, "lab_drift": False}
    app = create_app(DsoSettings.model_validate({"console": console}), listen=False)
    with TestClient(app, base_url="http://127.0.0.1:8080") as client:
        assert client.get("/api/health").status_code == 200
        db = app.state.console.sessions.db
        assert db is not None and db.session_count() == 0
    assert open_at_reader_stop == [True]
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):  # before: still open
        db.session_count()
