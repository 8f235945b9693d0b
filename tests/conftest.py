"""Fixtures shared by every test tier: real Mosquitto brokers on free loopback ports; a command run as root
(`as_root`: the DSO's and the edge's data files given to their folder's owner); the day-ahead lab run
(`dayahead_lab`) that the lab tests of tests/sim and tests/edge read; and the lab lane (`lab_run`): the
testbed runs of the `lab_ahead` tests, started in the background while their xdist_group's other labs run.

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
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
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
# load 5-11 (L6), so the day-ahead default is 55 s; 10 s more for the second kill's restart, which follows the
# first: the stage (its session closes 12.5 s before t0) takes in two daemons' start-ups after the MGMCs' own
# (done 26.8 s after the start at load 8-17, 38.2 s at load 7-9 with the DSO slower to start: 14 s to spare)
DAYAHEAD_LAB_LEAD_S = 65.0


@dataclass(frozen=True)
class DayaheadLab:
    """The finished day-ahead lab run: its workdir and report dir, the testbed's output, the coordinator and
    the member whose daemons were killed and restarted (wall time of each kill), and the CPU seconds the
    testbed and its processes used (children of pytest that ended meanwhile: a lab lane's run starts only
    after this lab's lead and lasts longer than its end, so none of it counts)."""

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


def _open_at_t0(records: Path, gate: threading.Event, over: threading.Event) -> None:
    """Set `gate` at the lab's first interval: its t0 as start.json says once the MGMCs were started (a DSO
    node ready late moves it past the lead), or when `over` is set first."""
    while not over.is_set():
        try:
            doc = json.loads((records / "start.json").read_text())
        except (OSError, ValueError):
            doc = None
        if isinstance(doc, dict) and doc.get("mgmcs_started") is not None:
            over.wait(max(0.0, float(doc["t0"]) - time.time()))
            break
        over.wait(0.2)
    gate.set()


def _polled(log: Path) -> int:
    """How many times the daemon logging to `log` finished its first poll cycle (once per start)."""
    return log.read_text().count("first poll cycle done") if log.exists() else 0


@pytest.fixture(scope="session")
def dayahead_lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> DayaheadLab:
    """`peergrid-testbed --dayahead --intervals 2 --report` over real processes (broker, devices, six MGMC
    daemons each on its own replica, the DSO; the session runs the genset phases), with the coordinator's
    daemon SIGKILLed 2 s after its first poll cycle and restarted 3 s later through the testbed's control
    file, and once it polled again a member's daemon killed and restarted the same way (review8 F3). One
    run for the lab tests of the day-ahead option: the restart test (tests/edge) and the end-to-end test
    (tests/sim), which were three runs of this lab (two restart cases and one without), 70 s each, mostly
    the lead; the faults act on the running lab, its settings are the same. Both tests are in the "system"
    xdist_group: one worker builds it once. A failed run fails both, with the lab's output. The lab lane of
    its group waits until this lab's first interval (`LabLane`; its t0 from start.json, later than the lead
    when its DSO node was ready late): the session and both restarts happen before it."""
    workdir = tmp_path_factory.mktemp("dayahead-lab") / "bed"
    report = workdir.parent / "report"
    argv = [
        str(Path(sys.executable).parent / "peergrid-testbed"), "--scenario", str(LAB_SCENARIO), "--intervals",
        "2", "--workdir", str(workdir), "--http-port", "0", "--report", str(report), "--dayahead",
        "--lead-s", str(DAYAHEAD_LAB_LEAD_S),
    ]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    gate = request.config.stash.setdefault(LANE_GATE, threading.Event())
    over = threading.Event()
    opener = threading.Thread(target=_open_at_t0, args=(workdir / "records", gate, over), daemon=True)
    bed = tied_popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    opener.start()
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
        over.set()
        gate.set()  # over (or failed) before its lead was: the lane need not wait for it any more
        if bed.poll() is None:
            bed.kill()
            bed.communicate()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert bed.returncode == 0, output[-3000:]
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return DayaheadLab(workdir, report, output, coordinator, member, killed, cpu)


# The lab lane. A lab run is mostly waiting on its accelerated clock: the 2-interval re-bargaining lab used 31
# CPU seconds in 57 s (0.55 of a core, load 13), so a worker that runs one lab after another ("system", about
# 490 s in ci12b) leaves half a core idle while the other worker is busy. The testbed runs of the `lab_ahead`
# tests (a fixed argv, checked only once done) are started in one background thread on the worker that runs
# their group, one after another, while the group's other labs run in the foreground; their tests come last
# in the group and read the finished runs (`lab_run`). The group runs two labs at once at most; none beside the
# day-ahead lab's lead (its session and both restarts: the most timing-bound part of any lab), which the lane
# waits out when that lab's tests are in the group. Without xdist, or with --dist loadgroup, one process runs
# the whole group, so the lane starts at its first test; otherwise each test runs its own lab when it needs it.
LANE_GATE = pytest.StashKey[threading.Event]()
LANES = pytest.StashKey[dict[str | None, "LabLane | None"]]()


@dataclass(frozen=True)
class LabRun:
    """A finished `peergrid-testbed` run of a `lab_ahead` test: its workdir and report dir, its exit status
    (None: it did not end by itself, `why` says what happened), its output, and its wall time (s)."""

    workdir: Path
    report: Path
    returncode: int | None
    stdout: str
    stderr: str
    wall_s: float
    why: str = ""


@dataclass
class LabLane:
    """The `lab_ahead` runs of one xdist_group, by node id, run one at a time in a background thread after
    `gate` (if any) is set; `result(nodeid)` waits for one. `close()` stops the lane and its running testbed."""

    runs: dict[str, tuple[list[str], float, Path, Path]]  # node id -> argv, timeout, workdir, report dir
    gate: threading.Event | None
    results: dict[str, Future[LabRun]] = field(default_factory=dict)
    stopped: threading.Event = field(default_factory=threading.Event)
    running: subprocess.Popen[str] | None = None

    def start(self) -> LabLane:
        self.results = {nodeid: Future() for nodeid in self.runs}
        threading.Thread(target=self._work, name="lab-lane", daemon=True).start()
        return self

    def _work(self) -> None:
        if self.gate is not None:
            self.gate.wait(DAYAHEAD_LAB_LEAD_S + 60)  # bounded: a day-ahead lab never started opens no gate
        for nodeid, (argv, timeout, workdir, report) in self.runs.items():
            if self.stopped.is_set():
                self.results[nodeid].set_result(
                    LabRun(workdir, report, None, "", "", 0.0, "the session ended")
                )
                continue
            started = time.monotonic()
            out = err = why = ""
            code: int | None = None
            try:
                self.running = bed = tied_popen(
                    argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
                )
                try:
                    out, err = bed.communicate(timeout=timeout)
                    code = bed.returncode
                except subprocess.TimeoutExpired:
                    bed.kill()  # as subprocess.run's timeout did
                    out, err = bed.communicate()
                    why = f"the testbed did not end within {timeout:.0f} s"
            except Exception as exc:  # its test says so; the lane goes on with the next run
                why = f"the lane could not run it: {type(exc).__name__}: {exc}"
            self.results[nodeid].set_result(
                LabRun(workdir, report, code, out, err, time.monotonic() - started, why)
            )

    def result(self, nodeid: str) -> LabRun:
        return self.results[nodeid].result()

    def close(self) -> None:
        self.stopped.set()
        if self.gate is not None:
            self.gate.set()
        if self.running is not None and self.running.poll() is None:
            # not SIGTERM, on which it would still write its report: its children are tied to it (the
            # testbed's `tied_popen`) and die with it, as when pytest-timeout kills a foreground testbed
            self.running.kill()
            self.running.wait(30)


# The lead to the first interval (--lead-s; the testbed's default is 25 s) of the lab lane's runs, which start
# beside another lab (the settle-by-both lab takes its own 4-s lead since H4, tests/sim/conftest.py
# SETTLE_BY_BOTH_LEAD_S; the fault lab 20 s since T8, e479810). A DSO node's start-up is the part of a lab that is
# late under load, and it shares the cores with the other lab's start, intervals or report (14 `peergrid-ledger
# verify` processes): 21 s beside the day-ahead lab's end, 27-30 s for two labs started at once, at load 11-15
# (other engineers' tests); alone at load 9-13, 16.6 s. Since T5 a late node moves t0 later
# (closedloop_run.ClosedLoop.move_t0) instead of failing the lab (since T6 in a settle-by-both lab too: its clock
# key posts the moved t0), so the lead need not cover a slow start: 20 s as the fault lab's (T9; 40 before, what
# the quiet runs of record took, idled ~11 s with the node ready 27 s before t0 at load 8-13). The run's timeout
# still counts from 40 s: a late node moves t0 as late with either lead (27-30 s start-ups + the MGMCs' 16 s).
# The day-ahead lab keeps its own 65 s.
LANE_LEAD_S = 20.0
LANE_TIMEOUT_FROM_S = 40.0


def testbed_argv(
    workdir: Path,
    report: Path | None,
    intervals: int,
    interval_s: float,
    extra: list[str],
    lead_s: float = LANE_LEAD_S,
    block_period_ms: int = 150,
) -> list[str]:
    """`peergrid-testbed` for a `lab_ahead` test: ieee33, --block-period-ms 150, the DSO on any free port, the
    lane's lead, a report (unless the mark sets others: `_lane_run`)."""
    return [
        str(Path(sys.executable).parent / "peergrid-testbed"), "--scenario", str(LAB_SCENARIO), "--intervals",
        str(intervals), "--interval-s", str(interval_s), "--block-period-ms", str(block_period_ms),
        "--workdir", str(workdir), "--http-port", "0", *(["--report", str(report)] if report else []),
        "--lead-s", str(lead_s), *extra,
    ]  # fmt: skip


def _lane_run(item: pytest.Item, tmp: pytest.TempPathFactory) -> tuple[list[str], float, Path, Path]:
    """The run `item`'s `lab_ahead` mark asks for (intervals, interval_s, extra; and where a lab is not the
    lane's kind: lead_s, block_period_ms, report=False, timeout_s), in a fresh temp dir. `lane_last=True`
    (read by the ordering hook) runs it after the lane's other runs."""
    mark = item.get_closest_marker("lab_ahead")
    assert mark is not None
    kw = mark.kwargs
    intervals, interval_s = int(kw["intervals"]), float(kw.get("interval_s", 5.0))
    base = tmp.mktemp(item.name[:30])
    workdir, report = base / "bed", base / "report"
    argv = testbed_argv(
        workdir, report if kw.get("report", True) else None, intervals, interval_s, list(kw.get("extra", [])),
        float(kw.get("lead_s", LANE_LEAD_S)), int(kw.get("block_period_ms", 150)),
    )  # fmt: skip
    timeout = float(kw.get("timeout_s", LANE_TIMEOUT_FROM_S + 35 + 12 * intervals))  # as at the 40-s lead
    return argv, timeout, workdir, report


def _lane_allowed(config: pytest.Config) -> bool:
    """Whether the process that runs a group's first test runs all of it: no xdist, or --dist loadgroup."""
    return bool(getattr(config.option, "loadgroup", False)) or getattr(config.option, "dist", "no") == "no"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """At a group's first test, its lab lane starts (see LANES' comment) with every `lab_ahead` test of it."""
    lanes = item.config.stash.setdefault(LANES, {})
    group = _xdist_group(item)
    if group in lanes:
        return
    lanes[group] = None
    if not _lane_allowed(item.config) or (group is None and hasattr(item.config, "workerinput")):
        return
    members = [it for it in item.session.items if _xdist_group(it) == group]
    ahead = [it for it in members if it.get_closest_marker("lab_ahead") is not None]
    if not ahead:
        return
    tmp = item.config._tmp_path_factory  # type: ignore[attr-defined]
    gated = any("dayahead_lab" in getattr(it, "fixturenames", ()) for it in members)
    gate = item.config.stash.setdefault(LANE_GATE, threading.Event()) if gated else None
    lane = LabLane({it.nodeid: _lane_run(it, tmp) for it in ahead}, gate).start()
    lanes[group] = lane
    item.config.add_cleanup(lane.close)


@pytest.fixture
def lab_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> LabRun:
    """The finished testbed run of this `lab_ahead` test: from its group's lab lane, or run now when no lane
    runs it; its exit status 0 and no process it started left running."""
    item = request.node
    lane = request.config.stash.get(LANES, {}).get(_xdist_group(item))
    if lane is not None and item.nodeid in lane.results:
        run = lane.result(item.nodeid)
    else:
        argv, timeout, workdir, report = _lane_run(item, tmp_path_factory)
        started = time.monotonic()
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        run = LabRun(workdir, report, done.returncode, done.stdout, done.stderr, time.monotonic() - started)
    assert run.returncode == 0, f"{run.why}\n{run.stdout[-3000:]}{run.stderr[-3000:]}"
    assert not (run.workdir / "pids.json").exists(), "the stopped testbed left pids.json"
    pids = json.loads((run.workdir / "logs" / "stopped-pids.json").read_text())  # what its stop ended
    assert not [name for name, pid in pids.items() if alive(pid)], "the testbed left processes running"
    return run


# The longest tests outside an xdist_group, longest first (seconds each in a full run, ci9c, and ci11b for the
# clean and DSO-first modules: 2 workers), by module or node id prefix. `make test` runs `-n 3 --dist
# loadgroup`: the scheduler hands out whole xdist_groups first (largest first: "system", 700 s before session 12
# shared its lab runs, about 490 s in ci12b, about 350 s expected with its lab lane; it starts at once on one
# worker; see the hook for why the groups needed help) and then the other tests one by one in collection order, so a 50-s test collected near the end
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
    """Known-long tests first (RUN_FIRST's order), every other test after them in collection order, and the
    `lab_ahead` tests last (their group's lab lane runs their labs meanwhile); and on a loadgroup worker, each
    xdist_group's tests tied to one worker again.

    pytest-xdist 3.8 tells its loadgroup scheduler a test's group by appending "@<group>" to the test's
    `_nodeid`; pytest 9.2 reads node ids from a structured `_id` instead, so the suffix never arrives and
    every grouped test was scheduled alone (pytest-xdist issue #1386, fix open as PR #1388): the "system"
    tests ran on both workers at once and last (they are collected last), and the ansible-converge and
    console-browser module fixtures (40 s and 10 s) were built once on each worker. Where the suffix is
    missing it is set here the way that fix does; where xdist set it, nothing changes."""

    def rank(item: pytest.Item) -> int:
        ahead = item.get_closest_marker("lab_ahead")
        if ahead is not None:  # last: they read what the lab lane ran, which runs them in this order
            return len(RUN_FIRST) + (2 if ahead.kwargs.get("lane_last") else 1)
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
