"""The console's session probe before login is a normal visit, logged at INFO; every other unauthenticated call
still writes a WARNING (U2: every page load before login put 'refused unauthenticated: GET /console/api/session'
among dso.log's warnings). The probe's 401 stays: it is the route's contract (api.js follows the session by it)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from console.helpers import PASSWORD
from console.lab_client import lab_client


def refusal_levels(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "peergrid_dso.security"]


def test_the_session_probe_before_login_is_info_and_other_unauthenticated_calls_warn(
    users_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with lab_client(users_file) as client, caplog.at_level(logging.INFO, logger="peergrid_dso.security"):
        assert client.get("/console/api/session").status_code == 401
        assert client.get("/console/api/feeder").status_code == 401
        assert client.post("/console/api/plans").status_code == 401
        counts = client.app.state.console.security.snapshot()["counts"]  # type: ignore[attr-defined]
    assert refusal_levels(caplog) == [
        (
            "INFO",
            "refused unauthenticated: GET /console/api/session: log in first (user=- client=testclient)",
        ),
        (
            "WARNING",
            "refused unauthenticated: GET /console/api/feeder: log in first (user=- client=testclient)",
        ),
        (
            "WARNING",
            "refused unauthenticated: POST /console/api/plans: log in first (user=- client=testclient)",
        ),
    ]
    assert counts["unauthenticated"] == 3  # the probe is still counted, as every refusal


def test_a_probe_under_a_removed_user_still_warns(users_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    with lab_client(users_file) as client:
        r = client.post("/console/api/login", json={"username": "vera", "password": PASSWORD})
        assert r.status_code == 200
        client.app.state.console.users.remove("vera")  # type: ignore[attr-defined]
        with caplog.at_level(logging.INFO, logger="peergrid_dso.security"):
            assert client.get("/console/api/session").status_code == 401
    assert [level for level, _ in refusal_levels(caplog)] == ["WARNING"]
