"""H6 (session 18): REST's switching plans set the DSO's open set under the relays' lock, with the relays they
moved, as the console's own operations do.

Before, `POST /api/dso/plans` (a service that executes at once) and `POST /api/dso/plans/{id}/approve` set
`dso.open_set` after the lock was released, so the relay watch's read (`RelayWatch.read`: the relays and the
open set, under the same lock) could run between the two and find the relays the plan had just moved off
the open set from before it. Here a watch read is made the moment the lock is free after a relay moved -
the first moment such a read can run - and must see a consistent pair: no relay off the open set.
"""

from __future__ import annotations

import threading
from typing import Any

from peergrid_dso.services.switching_watch import RelayWatch, WatchFinding

TARGET = [7, 9, 14, 32, 37]  # case33bw's optimum from its open set: two pairs, four relays moved


class WatchedLock:
    """The relays' lock (reentrant, as the closed loop's), which makes the relay watch read once after a relay
    was commanded, at the first moment the lock is free again."""

    def __init__(self) -> None:
        self.inner = threading.RLock()
        self.depth = 0
        self.moved = False  # a relay was commanded since the last watch read
        self.read: Any = None  # () -> WatchFinding | None
        self.seen: list[WatchFinding | None] = []

    def __enter__(self) -> bool:
        self.inner.acquire()
        self.depth += 1
        return True

    def __exit__(self, *exc: object) -> None:
        self.depth -= 1
        free = self.depth == 0
        self.inner.release()
        if free and self.moved and self.read is not None:
            self.moved = False
            self.seen.append(self.read())  # takes the lock itself, as the node's watch does


class CountedRelays:
    """The server's in-memory relays; each command tells the lock a relay moved."""

    def __init__(self, inner: Any, lock: WatchedLock) -> None:
        self.inner, self.lock = inner, lock

    def branches(self) -> tuple[int, ...]:
        return tuple(self.inner.branches())

    def status(self, branch: int) -> Any:
        return self.inner.status(branch)

    def command(self, branch: int, close: bool) -> None:
        self.inner.command(branch, close)
        self.lock.moved = True


async def _never(kind: str, body: dict[str, Any]) -> Any:
    raise AssertionError("the watch's read records nothing")


def watched(client: Any) -> tuple[Any, WatchedLock]:
    """The lab server with the relays' lock watched: the console's operations (and so REST's) hold it."""
    dso, console = client.app.state.dso, client.app.state.console
    lock = WatchedLock()
    console.ops.lock = lock
    executor = dso.switching.executor
    executor.driver = CountedRelays(executor.driver, lock)
    watch = RelayWatch(executor.driver, lock, _never)
    lock.read = lambda: watch.read(dso)
    return dso, lock


def test_a_rest_approval_sets_the_open_set_before_the_relays_lock_is_free(
    operator_session: tuple[Any, dict[str, str]],
) -> None:
    client, csrf = operator_session
    dso, lock = watched(client)
    made = client.post("/api/dso/plans", json={"target_open": TARGET}, headers=csrf)
    assert made.status_code == 201 and made.json()["status"] == "pending", made.text
    assert lock.seen == []  # nothing moved yet: the service waits for approval
    done = client.post(f"/api/dso/plans/{made.json()['plan']}/approve", headers=csrf)
    assert done.status_code == 200 and done.json()["ok"], done.text
    assert tuple(sorted(dso.open_set)) == tuple(TARGET)
    assert len(lock.seen) == 1 and lock.seen[0] is not None
    assert not lock.seen[0].standing, lock.seen[0].alarm()  # before: four relays off the old open set
    assert lock.seen[0].held_open == tuple(TARGET)


def test_a_rest_plan_executed_at_once_sets_the_open_set_before_the_relays_lock_is_free(
    operator_session: tuple[Any, dict[str, str]],
) -> None:
    client, csrf = operator_session
    dso, lock = watched(client)
    dso.switching.auto = True  # the closed loop's service: a plan runs when submitted
    made = client.post("/api/dso/plans", json={"target_open": TARGET}, headers=csrf)
    assert made.status_code == 201 and made.json()["status"] == "done", made.text
    assert tuple(sorted(dso.open_set)) == tuple(TARGET)
    assert len(lock.seen) == 1 and lock.seen[0] is not None
    assert not lock.seen[0].standing, lock.seen[0].alarm()
    assert lock.seen[0].held_open == tuple(TARGET)


def test_a_rest_approval_judges_a_moved_network_under_the_lock_and_withdraws(
    operator_session: tuple[Any, dict[str, str]],
) -> None:
    client, csrf = operator_session
    dso, lock = watched(client)
    made = client.post("/api/dso/plans", json={"target_open": TARGET}, headers=csrf).json()
    dso.open_set = (7, 9, 14, 32, 37)  # another writer changed the open set meanwhile
    r = client.post(f"/api/dso/plans/{made['plan']}/approve", headers=csrf)
    assert r.status_code == 409 and "withdrawn" in r.json()["detail"]
    assert made["plan"] not in dso.switching.pending and lock.seen == [] and lock.depth == 0
    assert client.post(f"/api/dso/plans/{made['plan']}/approve", headers=csrf).status_code == 404
