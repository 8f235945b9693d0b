"""Fixtures shared by every test tier: real Mosquitto brokers on free loopback ports; a command run as root
(`as_root`: the DSO's and the edge's data files given to their folder's owner); the day-ahead lab run
(`dayahead_lab`) that the lab tests of tests/sim and tests/edge read; and the testbed run a `testbed`-marked test
reads (`lab_run`).

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
from helpers_proc import alive
from hypothesis import HealthCheck, settings

from peergrid_ledger.keys import read_keyfile
from peergrid_ledger.tied import tied_popen
from peergrid_sim.broker import MosquittoBroker
from peergrid_sim.certs import LabPki, make_lab_pki

# The suite runs three workers on two cores beside its labs, so a property test's wall-clock deadline or its
# "too slow" health check would judge the machine's load, not the code (timing thresholds do not belong in unit
# tests). Registered on top of the profile loaded now: where CI is set that is Hypothesis' own "ci" (the same
# two, derandomized; a Hypothesis older than that profile still gets these two), else its default, random.
settings.register_profile("suite", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("suite")

TLS_CLIENTS = ["mgmc-1", "mgmc-2", "dso"]
LAB_SCENARIO = Path(__file__).resolve().parents[1] / "firmware-sim" / "scenarios" / "ieee33.yaml"


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A plain (anonymous, loopback-only) broker."""
    with MosquittoBroker(tmp_path / "broker") as broker:
        yield broker


@pytest.fixture
def as_root(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Run as root, with each file given to the folder's owner named by its inode (nothing is chown'd)."""
    given: list[int] = []
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(os, "fchown", lambda fd, uid, gid: given.append(os.fstat(fd).st_ino))
    return given


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
# load 5-11 (L6), so the day-ahead default is 55 s. The stage (its session closes 12.5 s before t0) takes in
# two daemons' kill-and-restarts, one after the other, after the MGMCs' own start-ups. 65 s held them at load
# 8-17, but not at the start of the suite (ci28a, 2026-12-08 00:28 UTC, load 14 with the Ansible converge's
# set-up and Chromium beside it): the MGMCs polled 8-12 s after their start, the stage began 36.5 s before
# t0, each restarted daemon was back 11.5 and 12.7 s after its restart was asked, and the deadline came at
# iteration 3. 25 s more holds those two restarts again.
DAYAHEAD_LAB_LEAD_S = 90.0


@dataclass(frozen=True)
class DayaheadLab:
    """The finished day-ahead lab run: its workdir and report dir, the testbed's output, the coordinator and
    the member whose daemons were killed and restarted (wall time of each kill), and the CPU seconds the
    testbed and its processes used (children of pytest that ended meanwhile: the testbed alone, as no other
    lab runs beside it on its worker)."""

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
    xdist_group: one worker builds it once, with no other lab beside it. A failed run fails both, with the
    lab's output."""
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


# The `testbed` tests: each reads one `peergrid-testbed` run, a fixed argv checked only once done (fixture
# `lab_run`), run when the test runs. Until session 28 the "system" group's lab lane ran them in a background
# thread beside the group's other labs (two labs at once: a lab mostly waits on its accelerated clock, 0.55 of
# a core for the 2-interval re-bargaining lab). On the CI's two cores with three workers no core is idle, and
# two labs' start-ups beside the Ansible converge's set-up and Chromium starved both: ci28a (2026-12-08, load
# 14) failed the settle-by-both lab (its DSO node 28.5 s to be ready, no enrolment final by t0) beside the
# lane's fee lab, and the fault lab beside the lane's 24-interval lab; the project's CI on 7439d63 failed five
# such labs. One lab at a time, the group is longer (about 500 s of its own labs + 556 s of the lane's in
# ci28a) but not the suite's critical path (1,898 s in ci28a).
#
# The lead to the first interval (--lead-s; the testbed's default is 25 s) of these runs: a DSO node's start-up
# is the part of a lab that is late under load (21-30 s beside another lab at load 11-15; alone at load 9-13,
# 16.6 s). Since T5 a late node moves t0 later (closedloop_run.ClosedLoop.move_t0) instead of failing the lab
# (since T6 in a settle-by-both lab too: its clock key posts the moved t0), so the lead need not cover a slow
# start: 20 s as the fault lab's (T9; 40 before, which idled ~11 s with the node ready 27 s before t0 at load
# 8-13). The run's timeout still counts from 40 s: a late node moves t0 as late with either lead (27-30 s
# start-ups + the MGMCs' 16 s). The day-ahead lab keeps its own lead.
LAB_LEAD_S = 20.0
LAB_TIMEOUT_FROM_S = 40.0


@dataclass(frozen=True)
class LabRun:
    """A finished `peergrid-testbed` run of a `testbed` test: its workdir and report dir, its exit status, its
    output, and its wall time (s)."""

    workdir: Path
    report: Path
    returncode: int
    stdout: str
    stderr: str
    wall_s: float


def testbed_argv(
    workdir: Path,
    report: Path | None,
    intervals: int,
    interval_s: float,
    extra: list[str],
    lead_s: float = LAB_LEAD_S,
    block_period_ms: int = 150,
) -> list[str]:
    """`peergrid-testbed` for a `testbed` test: ieee33, --block-period-ms 150, the DSO on any free port, the
    labs' lead, a report (unless the mark sets others: `_lab_argv`)."""
    return [
        str(Path(sys.executable).parent / "peergrid-testbed"), "--scenario", str(LAB_SCENARIO), "--intervals",
        str(intervals), "--interval-s", str(interval_s), "--block-period-ms", str(block_period_ms),
        "--workdir", str(workdir), "--http-port", "0", *(["--report", str(report)] if report else []),
        "--lead-s", str(lead_s), *extra,
    ]  # fmt: skip


def _lab_timeout(item: pytest.Item) -> float:
    """The bound on the testbed run `item`'s `testbed` mark asks for (s): its `timeout_s`, else as at the 40-s
    lead, 35 s for the start and the end, 12 s an interval."""
    mark = item.get_closest_marker("testbed")
    assert mark is not None
    kw = mark.kwargs
    return float(kw.get("timeout_s", LAB_TIMEOUT_FROM_S + 35 + 12 * int(kw["intervals"])))


def _lab_argv(item: pytest.Item, tmp: pytest.TempPathFactory) -> tuple[list[str], Path, Path]:
    """The run `item`'s `testbed` mark asks for (intervals, interval_s, extra; and where a lab is not the usual
    kind: lead_s, block_period_ms, report=False), in a fresh temp dir: argv, workdir, report dir."""
    mark = item.get_closest_marker("testbed")
    assert mark is not None
    kw = mark.kwargs
    base = tmp.mktemp(item.name[:30])
    workdir, report = base / "bed", base / "report"
    argv = testbed_argv(
        workdir, report if kw.get("report", True) else None, int(kw["intervals"]),
        float(kw.get("interval_s", 5.0)), list(kw.get("extra", [])), float(kw.get("lead_s", LAB_LEAD_S)),
        int(kw.get("block_period_ms", 150)),
    )  # fmt: skip
    return argv, workdir, report


@pytest.fixture
def lab_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> LabRun:
    """The finished testbed run of this `testbed` test, run now: its exit status 0 and no process it started
    left running."""
    argv, workdir, report = _lab_argv(request.node, tmp_path_factory)
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=_lab_timeout(request.node))
    run = LabRun(workdir, report, done.returncode, done.stdout, done.stderr, time.monotonic() - started)
    assert run.returncode == 0, f"{run.stdout[-3000:]}{run.stderr[-3000:]}"
    assert not (run.workdir / "pids.json").exists(), "the stopped testbed left pids.json"
    pids = json.loads((run.workdir / "logs" / "stopped-pids.json").read_text())  # what its stop ended
    assert not [name for name, pid in pids.items() if alive(pid)], "the testbed left processes running"
    return run


# The longest tests outside an xdist_group, longest first (seconds each in a full run, ci9c, and ci11b for the
# clean and DSO-first modules: 2 workers), by module or node id prefix. `make test` runs `-n 3 --dist
# loadgroup`: the scheduler hands out whole xdist_groups first (largest first: "system", 700 s before session 12
# shared its lab runs, about 490 s in ci12b, 630 s in ci28a with its lab lane, one lab at a time since; it starts
# at once on one worker; see the hook for why the groups needed help) and then the other tests one by one in
# collection order, so a 50-s test collected near the end
# started in the last minute and the run ended when it did. Moved to the front here they run while the others
# are in the "system" group, and the run ends on sub-second tests.
# loadgroup, loadscope and load keep this order (`--loadscope-reorder` sorts only by group size, stably);
# worksteal splits the list into contiguous halves and would not. A new test over ~10 s belongs in this list.
RUN_FIRST = (
    "tests/edge/test_rebargain_live.py",  # 43 + 13
    "tests/edge/test_edge_clean_restart.py",  # one xdist_group since T10: 31 s for the 4 late-run days, + 17
    "tests/edge/test_edge_fee.py",  # 20.5, 6.5 (T10's figures at load 9-10)
    "tests/edge/test_edge_owner_rules.py",  # 17.8
    "tests/dso/test_r27_relay_adopt.py",  # 11 tests against Modbus relays, ~45 in all
    "tests/edge/test_edge_clean_dayahead.py",  # 16.4, 15.0, 14.4, 12.8, 10.5
    "tests/ledger/test_ledger_crash.py",  # 23
    "tests/edge/test_edge_dayahead_rules.py",  # 13.8, 9.6, 7.4
    "tests/edge/test_crash.py",  # 17
    "tests/consensus/test_replicas_over_mosquitto.py",  # 16
    "tests/edge/test_edge_forward_rounds.py",  # 9.8, 9.4, 8.4, 8.3
    "tests/edge/test_edge_clean_forward.py",  # 14
    "tests/edge/test_edge_clean_config.py",  # 14
    "tests/sim/test_closedloop_dso_first.py",  # 13, 11, 4, 4 (collected near the end)
    "tests/edge/test_settlement.py",  # 12
    "tests/edge/test_edge_dayahead_deadline.py",  # 12, 7
    "tests/edge/test_islanded.py",  # 11, 7
    "tests/edge/test_polling.py",  # 9
    "tests/edge/test_edge_forward_skew.py",  # 6 x 7-8
    "tests/console/test_live_revocation.py",  # 4-5 since f4f069f (20 before)
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
    """Known-long tests first (RUN_FIRST's order), every other test after them in collection order; a
    `testbed` test bounded by its run's timeout and a minute for its checks (pytest-timeout's 300 s is less
    than a 24-interval lab's); and on a loadgroup worker, each xdist_group's tests tied to one worker again.

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
    for item in items:
        if item.get_closest_marker("testbed") is not None:
            item.add_marker(pytest.mark.timeout(_lab_timeout(item) + 60))
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        group, nodeid = _xdist_group(item), item.nodeid
        if group is None or nodeid.rfind("@") > nodeid.rfind("]"):  # ungrouped, or xdist's suffix arrived
            continue
        from _pytest.nodeid import NodeId  # pytest >= 9.2, the only versions that lose the suffix

        item._id = NodeId.parse(f"{nodeid}@{group}")  # type: ignore[attr-defined]
