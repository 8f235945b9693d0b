"""Fixtures shared by every test tier: real Mosquitto brokers on free loopback ports.

Each broker is started from a config generated into the test's temp dir and stopped by its PID at
teardown; no test assumes port 1883 is free or that any service is already running.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from peergrid_sim.broker import MosquittoBroker
from peergrid_sim.certs import LabPki, make_lab_pki

TLS_CLIENTS = ["mgmc-1", "mgmc-2", "dso"]


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A plain (anonymous, loopback-only) broker."""
    with MosquittoBroker(tmp_path / "broker") as broker:
        yield broker


@pytest.fixture(scope="session")
def test_pki(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    """A CA, a broker certificate and client certificates for TLS_CLIENTS."""
    return make_lab_pki(tmp_path_factory.mktemp("pki"), TLS_CLIENTS)


@pytest.fixture
def mosquitto_tls(tmp_path: Path, test_pki: LabPki) -> Iterator[MosquittoBroker]:
    """A TLS broker that requires client certificates; the certificate CN is the username.

    ACL: each client may publish and subscribe only under peergrid/+/health/<its CN> and read everything
    under peergrid/#, the pattern the pilot's generated ACLs follow.
    """
    acl = ["pattern readwrite peergrid/+/health/%u", "pattern read peergrid/#"]
    with MosquittoBroker(tmp_path / "broker", tls=test_pki, acl_lines=acl) as broker:
        yield broker


# The longest tests outside an xdist_group, longest first (seconds each in the last full run, ci9c: 2 workers,
# load about 2), by module or node id prefix. `make test` runs `-n 2 --dist loadgroup`: the scheduler hands
# out whole xdist_groups first (largest first: "system", about 600 s, starts at once on one worker; see the
# hook for why the groups needed help) and then the other tests one by one in collection order, so a 50-s
# test collected near the end started in the last minute and the run ended when it did. Moved to the front
# here they run while the other worker is in the "system" group, and the run ends on sub-second tests.
# loadgroup, loadscope and load keep this order (`--loadscope-reorder` sorts only by group size, stably);
# worksteal splits the list into contiguous halves and would not. A new test over ~10 s belongs in this list.
RUN_FIRST = (
    "tests/edge/test_rebargain_live.py",  # 49 + 15
    "tests/consensus/test_replicas_over_mosquitto.py",  # 38
    "tests/edge/test_edge_owner_rules.py",  # 33
    "tests/edge/test_edge_dayahead_rules.py",  # 29, 15, 13, 8, 8, 7
    "tests/ledger/test_ledger_crash.py",  # 23
    "tests/console/test_live_revocation.py",  # 20
    "tests/edge/test_crash.py",  # 17
    "tests/edge/test_edge_forward_rounds.py",  # 15, 12, 9, 9
    "tests/edge/test_settlement.py",  # 12
    "tests/edge/test_edge_dayahead_deadline.py",  # 12, 7
    "tests/edge/test_islanded.py",  # 11, 7
    "tests/edge/test_polling.py",  # 9
    "tests/edge/test_edge_forward_skew.py",  # 8 x 8.6
)


def _xdist_group(item: pytest.Item) -> str | None:
    """The group loadgroup schedules `item` in, named as pytest-xdist names it (its xdist_group marks)."""
    names = {
        str(m.args[0] if m.args else m.kwargs.get("name", "default"))
        for m in item.iter_markers("xdist_group")
    }
    return "_".join(sorted(names)) if names else None


@pytest.hookimpl(trylast=True)  # after pytest-xdist's own hook, whose group suffix this checks for
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Known-long tests first (RUN_FIRST's order), every other test after them in collection order; and on a
    loadgroup worker, each xdist_group's tests tied to one worker again.

    pytest-xdist 3.8 tells its loadgroup scheduler a test's group by appending "@<group>" to the test's
    `_nodeid`; pytest 9.2 reads node ids from a structured `_id` instead, so the suffix never arrives and
    every grouped test was scheduled alone (pytest-xdist issue #1386, fix open as PR #1388): the "system"
    tests ran on both workers at once and last (they are collected last), and the ansible-converge and
    console-browser module fixtures (40 s and 10 s) were built once on each worker. Where the suffix is
    missing it is set here the way that fix does; where xdist set it, nothing changes."""

    def rank(item: pytest.Item) -> int:
        return next(
            (i for i, prefix in enumerate(RUN_FIRST) if item.nodeid.startswith(prefix)), len(RUN_FIRST)
        )

    items.sort(key=rank)  # stable: within a module and among the rest, the collected order stays
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        group, nodeid = _xdist_group(item), item.nodeid
        if group is None or nodeid.rfind("@") > nodeid.rfind("]"):  # ungrouped, or xdist's suffix arrived
            continue
        from _pytest.nodeid import NodeId  # pytest >= 9.2, the only versions that lose the suffix

        item._id = NodeId.parse(f"{nodeid}@{group}")  # type: ignore[attr-defined]
