"""A manual switching that was not done says so in the audit trail, on the DSO chain's `operator_action` and in
the operate answer the console's toast reads (U3, session 23).

In the lab four failed or refused "close branch N" (a pre-step voltage check, a relay reporting the operation
failed, an unreachable relay, a relay reporting another position) were recorded and listed exactly as the done
ones, and the toast said "switching failed and was rolled back" also where no relay had been commanded.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from console.lab_client import lab_client
from console.test_console_api import login


@pytest.fixture
def client(users_file: Path) -> Iterator[TestClient]:
    with lab_client(users_file) as c:
        yield c


class JammedRelay:
    """The server's in-memory relays, but a command to `branch` raises, as a relay driver's error would."""

    def __init__(self, inner: Any, branch: int) -> None:
        self.inner, self.branch = inner, branch

    def status(self, branch: int) -> Any:
        return self.inner.status(branch)

    def command(self, branch: int, close: bool) -> None:
        if branch == self.branch:
            raise RuntimeError("relay jammed")
        self.inner.command(branch, close)


def operate(client: TestClient, csrf: dict[str, str], branch: int, close: bool) -> dict[str, Any]:
    preview = client.post(
        f"/console/api/switches/{branch}/preview", headers=csrf, json={"close": close}
    ).json()
    body = {"close": close, "confirm": preview["confirm"]}
    r = client.post(f"/console/api/switches/{branch}/operate", headers=csrf, json=body)
    assert r.status_code == 200, r.text
    done: dict[str, Any] = r.json()
    return done


def recorded_action(client: TestClient, done: dict[str, Any]) -> str:
    entry = done["chain"][0]
    txs = client.get(f"/console/api/ledger/dso/blocks/{entry['height']}").json()["transactions"]
    (record,) = [t for t in txs if t["kind"] == "operator_action"]
    action: str = record["body"]["action"]
    return action


def test_a_failed_switching_is_recorded_and_listed_as_not_done(client: TestClient) -> None:
    csrf = login(client, "olga")
    executor = client.app.state.dso.switching.executor  # type: ignore[attr-defined]
    executor.driver = JammedRelay(executor.driver, 34)

    done = operate(client, csrf, 33, True)  # close tie 33: done, words as before
    assert done["ok"] and done["alarm"] is None
    assert recorded_action(client, done) == "close branch 33"

    failed = operate(client, csrf, 34, True)
    assert failed["ok"] is False and "relay jammed" in failed["alarm"]
    words = recorded_action(client, failed)
    assert words.startswith("close branch 34: not done (") and "relay jammed" in words
    audit = client.get("/console/api/operations").json()["audit"]
    assert [a["action"].split(":")[0] for a in audit[:2]] == ["close branch 34", "close branch 33"]
    assert (
        audit[0]["action"].startswith("close branch 34: not done (")
        and audit[1]["action"] == "close branch 33"
    )
