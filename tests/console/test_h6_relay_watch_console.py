"""H6 (session 18): the closed loop's relay watch where the operator looks - the feeder view's alarm list and
the Relay positions card (`/console/api/operations` `relay_watch`: which branch reports what, and the
adoption it allows) - while its alarm stands, and gone when the watch lifts it.

Before, the watch (H5, `switching_watch.RelayWatch`) alarmed in `/api/health` (degraded), the node's log and
the DSO chain, and the console showed nothing. The lab server stands in for the live one: its in-memory
relays, its open set and a `RelayWatch` on them behind the console's lock, as the node's is (`build_console`
wires the node's own, last test).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from console.lab_client import lab_client
from console.test_console_api import login
from peergrid_dso.console.settings import ConsoleSettings
from peergrid_dso.console.state import build_console
from peergrid_dso.services.container import build_dso_services
from peergrid_dso.services.switching import RelayError
from peergrid_dso.services.switching_watch import RelayWatch


async def _chain(kind: str, body: dict[str, Any]) -> Any:  # the DSO chain takes the watch's records
    return SimpleNamespace(ok=True)


@pytest.fixture
def client(users_file: Path) -> Iterator[TestClient]:
    with lab_client(users_file) as c:
        yield c


class Field:
    """The server's in-memory relays with a hand on them: silent relays raise as a dead Modbus relay does."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.silent = inner, set[int]()

    def branches(self) -> tuple[int, ...]:
        return tuple(self.inner.branches())

    def status(self, branch: int) -> Any:
        if branch in self.silent:
            raise RelayError(f"read_discrete_inputs to 10.0.0.{branch}:502: no response")
        return self.inner.status(branch)

    def command(self, branch: int, close: bool) -> None:
        self.inner.command(branch, close)


def watching(client: TestClient) -> tuple[Field, RelayWatch, Any]:
    state, dso = client.app.state.console, client.app.state.dso  # type: ignore[attr-defined]
    executor = dso.switching.executor
    relays = executor.driver = Field(executor.driver)
    watch = RelayWatch(relays, state.ops.lock, _chain)
    state.relay_watch = lambda: watch
    return relays, watch, dso


def read(watch: RelayWatch, dso: Any) -> None:
    asyncio.run(asyncio.wait_for(watch.check(dso), 10))


def alarms(client: TestClient) -> list[str]:
    return list(client.get("/console/api/feeder").json()["alarms"])


def reports(client: TestClient) -> dict[int, str]:
    """The one-line diagram's switches whose relay reports otherwise."""
    branches = client.get("/console/api/feeder").json()["branches"]
    return {b["number"]: b["relay_reports"] for b in branches if b["relay_reports"] is not None}


def card(client: TestClient) -> Any:
    return client.get("/console/api/operations").json()["relay_watch"]


def test_a_tie_closed_by_hand_is_shown_with_its_adoption_and_lifted_by_adopting(client: TestClient) -> None:
    csrf = login(client, "olga")
    relays, watch, dso = watching(client)
    read(watch, dso)
    assert (
        watch.alarm is None and not any("relays read" in a for a in alarms(client)) and card(client) is None
    )
    before = client.get("/console/api/feeder").json()["version"]
    relays.inner.closed[33], relays.inner.closed[7] = True, False  # by hand: tie 33 closed, 7 opened (radial)
    read(watch, dso)
    assert watch.alarm is not None
    feeder = client.get("/console/api/feeder").json()
    assert feeder["alarms"][0] == watch.alarm and feeder["version"] != before  # SSE clients hear of it
    assert reports(client) == {7: "open", 33: "closed"}
    shown = card(client)
    assert shown["alarm"] == watch.alarm and shown["held_open"] == [33, 34, 35, 36, 37]
    assert shown["relays"] == [
        {"branch": 7, "reports": "open", "held": "closed"},
        {"branch": 33, "reports": "closed", "held": "open"},
    ]
    assert shown["unreadable"] == [] and shown["adoptable"] and shown["reason"] is None
    assert shown["adopt_open"] == [7, 34, 35, 36, 37]
    viewer = TestClient(client.app, base_url="http://127.0.0.1:8080")  # a viewer sees it too (not the action)
    login(viewer, "vera")
    assert viewer.get("/console/api/operations").json()["relay_watch"] == shown
    r = client.post("/console/api/relays/adopt", headers=csrf, json={"open_branches": shown["adopt_open"]})
    assert r.status_code == 200, r.text
    assert watch.alarm is None and card(client) is None  # the open set changed: the finding says nothing now
    assert not any("relays read between plans" in a for a in alarms(client)) and reports(client) == {}
    read(watch, dso)  # and the next read agrees
    assert watch.alarm is None and card(client) is None


def test_a_loop_closed_by_hand_and_a_silent_relay_are_shown_not_adoptable_and_lifted_when_put_right(
    client: TestClient,
) -> None:
    login(client, "vera")  # a viewer: the card and the alarm are for everyone who looks
    relays, watch, dso = watching(client)
    relays.inner.closed[33] = True  # a loop: no adoption can take it
    relays.silent.add(12)
    read(watch, dso)
    shown = card(client)
    assert shown["relays"] == [{"branch": 33, "reports": "closed", "held": "open"}]
    assert shown["unreadable"] == [
        {"branch": 12, "why": "read_discrete_inputs to 10.0.0.12:502: no response"}
    ]
    assert not shown["adoptable"] and shown["adopt_open"] is None
    assert "branch 12 unreachable" in shown["reason"]
    assert alarms(client)[0] == watch.alarm and "branch 12 unreachable" in watch.alarm  # type: ignore[operator]
    assert reports(client) == {12: "unreadable", 33: "closed"}
    relays.silent.clear()
    read(watch, dso)
    shown = card(client)
    assert shown["unreadable"] == [] and not shown["adoptable"] and "not radial" in shown["reason"]
    relays.inner.closed[33] = False  # the field put right: the next read lifts it everywhere
    read(watch, dso)
    assert watch.alarm is None and card(client) is None and reports(client) == {}
    assert not any("relays read between plans" in a for a in alarms(client))


def test_build_console_shows_the_nodes_own_watch(users_file: Path) -> None:
    dso = build_dso_services({"mg1": 5})
    watch = RelayWatch(dso.switching.executor.driver, threading.RLock(), _chain)
    node = SimpleNamespace(loop=SimpleNamespace(watch=None))
    # as `EmbeddedLoop`: `running` too, which the console's reader of the node's records follows (without it
    # that thread raised AttributeError, a warning in the run); not running, so it reads nothing here
    loop = SimpleNamespace(
        lock=threading.RLock(), listeners=[], node=node, replica=lambda role: None, running=False
    )
    state = build_console(ConsoleSettings(users_file=users_file, lab_market=False), dso, loop)
    dso.switching.executor.driver.closed[33] = True
    read(watch, dso)
    assert watch.alarm is not None and not any("relays read" in a for a in state.grid.snapshot()["alarms"])
    node.loop.watch = watch  # read where the node keeps it at each view, not once at build
    assert state.grid.snapshot()["alarms"][0] == watch.alarm
    shown = state.relay_watch_view()
    assert shown is not None and shown["relays"] == [{"branch": 33, "reports": "closed", "held": "open"}]
