"""Fixtures shared by every test tier: real Mosquitto brokers on free loopback ports; and the day-ahead lab
run (`dayahead_lab`) that the lab tests of tests/sim and tests/edge read.

Each broker is started from a config generated into the test's temp dir and stopped by its PID at
teardown; no test assumes port 1883 is free or that any service is already running.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from peergrid_ledger.keys import read_keyfile
from peergrid_ledger.tied import tied_popen
from peergrid_sim.broker import MosquittoBroker
from peergrid_sim.certs import LabPki, make_lab_pki

TLS_CLIENTS = ["mgmc-1", "mgmc-2", "dso"]
LAB_SCENARIO = Path(__file__).resolve().parents[1] / "firmware-sim" / "scenarios" / "ieee33.yaml"


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


LAB_MGS = [f"mg{i}" for i in range(1, 7)]
# the day-ahead lab's lead to its first interval (--lead-s): the MGMCs start only once the DSO is ready, with
# MGMC_START_S + DAYAHEAD_STAGE_S (30.5 s) left before t0, and the DSO is ready 7.5-12.5 s after the start at
# load 5-11 (L6), so the day-ahead default is 55 s; 10 s more for the second kill's restart, which follows the
# first: the stage (its session closes 12.5 s before t0) takes in two daemons' start-ups after the MGMCs' own
# (done 26.8 s after the start at load 8-17, 38.2 s at load 7-9 with the DSO slower to start: 14 s to spare)
DAYAHEAD_LAB_LEAD_S = 65.0


@dataclass(frozen=True)
class DayaheadLab:
    """The finished day-ahead lab run: its workdir and report dir, the testbed's output, the coordinator and
    the member whose daemons were killed and restarted (wall time of each kill), and the CPU seconds the
    testbed and its processes used."""

    workdir: Path
    report: Path
    output: str
    coordinator: str
    member: str
    killed: dict[str, float]
    cpu_s: float


def _lab_wait(
    what: str, condition: Callable[[], bool], bed: subprocess.Popen[str], timeout: float = 120
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if bed.poll() is not None:
            raise AssertionError(f"the testbed ended while waiting for {what}")
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _kill_and_restart(workdir: Path, mg: str) -> float:
    """SIGKILL `mg`'s daemon, then ask the testbed to start it again 3 s later; the wall time of the kill."""
    killed = time.time()
    os.kill(json.loads((workdir / "pids.json").read_text())[f"mgmc-{mg}"], signal.SIGKILL)
    time.sleep(3.0)
    (workdir / "control").mkdir(exist_ok=True)
    (workdir / "control" / f"restart-mgmc-{mg}").touch()
    return killed


def _polled(log: Path) -> int:
    """How many times the daemon logging to `log` finished its first poll cycle (once per start)."""
    return log.read_text().count("first poll cycle done") if log.exists() else 0


@pytest.fixture(scope="session")
def dayahead_lab(tmp_path_factory: pytest.TempPathFactory) -> DayaheadLab:
    """`peergrid-testbed --dayahead --intervals 2 --report` over real processes (broker, devices, six MGMC
    daemons each on its own replica, the DSO; the session runs the genset phases), with the coordinator's
    daemon SIGKILLed 2 s after its first poll cycle and restarted 3 s later through the testbed's control
    file, and once it polled again a member's daemon killed and restarted the same way (review8 F3). One
    run for the lab tests of the day-ahead option: the restart test (tests/edge) and the end-to-end test
    (tests/sim), which were three runs of this lab (two restart cases and one without), 70 s each, mostly
    the lead; the faults act on the running lab, its settings are the same. Both tests are in the "system"
    xdist_group: one worker builds it once. A failed run fails both, with the lab's output."""
    workdir = tmp_path_factory.mktemp("dayahead-lab") / "bed"
    report = workdir.parent / "report"
    argv = [
        str(Path(sys.executable).parent / "peergrid-testbed"), "--scenario", str(LAB_SCENARIO), "--intervals",
        "2", "--workdir", str(workdir), "--http-port", "0", "--report", str(report), "--dayahead",
        "--lead-s", str(DAYAHEAD_LAB_LEAD_S),
    ]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    bed = tied_popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        keys = workdir / "keys"
        _lab_wait("the anonym keys", lambda: all((keys / f"anonym-{mg}.key").exists() for mg in LAB_MGS), bed)
        time.sleep(0.2)
        anonym = {mg: read_keyfile(keys / f"anonym-{mg}.key").public for mg in LAB_MGS}
        coordinator = min(LAB_MGS, key=lambda mg: anonym[mg])
        member = next(mg for mg in LAB_MGS if mg != coordinator)
        log = workdir / "logs" / f"mgmc-{coordinator}.log"
        _lab_wait("the coordinator's first poll cycle", lambda: _polled(log) >= 1, bed)
        time.sleep(2.0)
        killed = {coordinator: _kill_and_restart(workdir, coordinator)}
        # the member goes down only once the coordinator's daemon is up again, not while it is down
        _lab_wait("the restarted coordinator's first poll cycle", lambda: _polled(log) >= 2, bed)
        killed[member] = _kill_and_restart(workdir, member)
        output, _ = bed.communicate(timeout=300)
    finally:
        if bed.poll() is None:
            bed.kill()
            bed.communicate()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert bed.returncode == 0, output[-3000:]
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return DayaheadLab(workdir, report, output, coordinator, member, killed, cpu)


# The longest tests outside an xdist_group, longest first (seconds each in a full run, ci9c, and ci11b for the
# clean and DSO-first modules: 2 workers), by module or node id prefix. `make test` runs `-n 2 --dist
# loadgroup`: the scheduler hands out whole xdist_groups first (largest first: "system", about 560 s since
# session 12 shared its lab runs, 700 s before, starts at once on one worker; see the hook for why the groups
# needed help) and then the other tests one by one in collection order, so a 50-s test collected near the end
# started in the last minute and the run ended when it did. Moved to the front here they run while the other
# worker is in the "system" group, and the run ends on sub-second tests.
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
    "tests/edge/test_edge_clean_restart.py",  # 15, 4 x 14.5
    "tests/edge/test_edge_forward_rounds.py",  # 15, 12, 9, 9
    "tests/edge/test_edge_clean_dayahead.py",  # 14.5, 14.4, 14.3, 14.3, 10, 9, 7
    "tests/edge/test_edge_clean_forward.py",  # 14
    "tests/edge/test_edge_clean_config.py",  # 14
    "tests/sim/test_closedloop_dso_first.py",  # 13, 11, 4, 4 (collected near the end)
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
