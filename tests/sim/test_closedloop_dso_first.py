"""The lab starts its DSO node first and its MGMCs only once that node is ready, in time for t0 (L6).

Before, the MGMCs started right after the DSO's process, never waiting for it, and under load the DSO node came
up after t0: the first interval ran without its enrolments, tariffs and network check. t0 cannot move (the
MGMC genesis' settlement clock and the devices' clock are fixed on it before the DSO can start), so the lab
waits for the DSO node's readiness (it listens, `/api/health` says its loop runs, its ledger node writes its
status file) and then starts the MGMCs only if they still have `need_s` before t0; else it fails at once with
one line saying what was late and by how much, and runs no interval. Then, until t0 at most, it waits for the
DSO's health to show every MG enrolled and the first interval priced (D10: both final only once the MGMCs
run), else it fails at t0 with one line saying what lacked; start.json's `final` (the report's start section)
says when each became final. A stand-in DSO (a tiny HTTP server, slow to start and slower to say it is ready,
its postings final some time after the MGMCs start) shows the waits and the failures without the real stack;
the real lab whose DSO is delayed past what its lead allows is test_closedloop_late_dso_lab.py; the stand-in's
fixed-t0 path is a settle-by-both lab directory from before the lab's clock key.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from peergrid_ledger.tied import tied_popen
from peergrid_sim.closedloop import LabChains, SettleByBoth
from peergrid_sim.closedloop_run import ClosedLoop
from peergrid_sim.dso_ready import (
    MGMC_START_LOADED_S,
    MGMC_START_S,
    START_FILE,
    Postings,
    StartTimes,
    delayed,
    health,
    is_ready,
    late,
    moved_t0,
    unposted,
)
from peergrid_sim.processes import TestbedError as LabError
from peergrid_sim.processes import dso_listener
from peergrid_sim.report import start_section
from peergrid_sim.scenario import load_scenario
from peergrid_sim.testbed import build_parser

SCENARIO = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"
MGMCS = [f"mgmc-mg{i}" for i in range(1, 7)]


# argv: STATUS_FILE DEGRADED_S EXIT_S MGMCS_FILE ENROL_S ENROLLED PRICE_S THROUGH FD. Serves on the listening
# socket inherited as FD (the lab binds it: `processes.dso_listener`), answers /api/health with a loop that is
# not running for DEGRADED_S, then running, and only then writes the status file (as the ledger node's ticker does); EXIT_S > 0: exits that long after it started,
# never ready if DEGRADED_S is longer. Its postings become final only once the MGMCs run (MGMCS_FILE exists,
# written by the bed's first spawn): the MGs ENROLLED (comma-separated) ENROL_S after that, tariffs through
# THROUGH PRICE_S after it (a negative delay: never)
STAND_IN_DSO = """
import http.server, json, pathlib, socket, sys, threading, time, os
status_file, degraded_s, exit_s = pathlib.Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
mgmcs_file, enrol_s, enrolled = pathlib.Path(sys.argv[4]), float(sys.argv[5]), sys.argv[6].split(",")
price_s, through = float(sys.argv[7]), int(sys.argv[8])
began = time.monotonic()
mgmcs = []
def after(delay):
    return delay >= 0 and bool(mgmcs) and time.monotonic() - mgmcs[0] >= delay
class Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        running = time.monotonic() - began >= degraded_s
        loop = {"running": running, "interval": None, "enrolled": enrolled if after(enrol_s) else [],
                "pricing": True, "tariffs_through": through if after(price_s) else None}
        doc = {"status": "ok" if running else "degraded", "node": "dso", "loop": loop}
        body = json.dumps(doc).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer, bind_and_activate=False)
server.socket.close()
server.socket = socket.socket(fileno=int(sys.argv[9]))
threading.Thread(target=server.serve_forever, daemon=True).start()
while True:
    if time.monotonic() - began >= degraded_s and not status_file.exists():
        status_file.write_text(json.dumps({"chains": {}}))
    if not mgmcs and mgmcs_file.exists():
        mgmcs.append(time.monotonic())
    if exit_s > 0 and time.monotonic() - began >= exit_s:
        os._exit(3)
    time.sleep(0.02)
"""
ALL = ",".join(f"mg{i}" for i in range(1, 7))


class Bed:
    """What `ClosedLoop.start` uses of the testbed: `start_dso` runs the stand-in on a socket bound here
    (through `delayed`, as the testbed does), `spawn` records each MGMC and whether the DSO node was ready
    when it was started."""

    def __init__(
        self, workdir: Path, degraded_s: float = 0.0, exit_s: float = 0.0,
        postings: tuple[float, str, float, int] = (0.3, ALL, 0.5, 36),
    ) -> None:  # fmt: skip
        self.workdir, self.scenario_path, self.scenario = workdir, SCENARIO, load_scenario(SCENARIO)
        self.broker = SimpleNamespace(host="127.0.0.1", port=1883)
        self.http_port = 0
        self.started = time.time()
        self.restartable: set[str] = set()
        self.stand_in = (degraded_s, exit_s)
        self.postings = postings  # ENROL_S ENROLLED PRICE_S THROUGH (the stand-in's argv)
        self.mgmcs_file = workdir / "mgmcs-started"
        self.spawned: list[tuple[str, bool]] = []  # name, whether the DSO node was ready then
        self.processes: list[subprocess.Popen[bytes]] = []
        (workdir / "config").mkdir()  # as the testbed's start makes it

    def start_dso(self, loop: dict[str, Any], delay_s: float = 0.0) -> Any:
        self.status_file = Path(loop["status_file"])
        with dso_listener(self.http_port) as listener:
            self.http_port, fd = int(listener.getsockname()[1]), listener.fileno()
            argv = [sys.executable, "-c", STAND_IN_DSO, str(self.status_file), *map(str, self.stand_in),
                    str(self.mgmcs_file), *map(str, self.postings), str(fd)]  # fmt: skip
            process = tied_popen(delayed(argv, delay_s), pass_fds=(fd,))
        self.processes.append(process)
        return SimpleNamespace(process=process, log=self.workdir / "dso.log")

    def spawn(self, name: str, argv: list[str], pass_fds: tuple[int, ...] = ()) -> Any:
        ready = bool(self.http_port) and is_ready(health(self.http_port)) and self.status_file.exists()
        self.spawned.append((name, ready))
        if not self.mgmcs_file.exists():  # the stand-in's postings count from here (wall s)
            self.first_spawn = time.time()
        self.mgmcs_file.touch()
        return SimpleNamespace(process=None, log=self.workdir / f"{name}.log")

    def stop(self) -> None:
        for process in self.processes:
            process.kill()
            process.wait(10)


def _start(tmp_path: Path, loop: ClosedLoop, bed: Bed) -> None:
    """A settle-by-both lab directory from before the lab's clock key (`lab_clock.clock_key`): its genesis holds
    t0 fixed, so a late node fails the lab (the stand-in has no broker to post a clock on)."""
    chains = LabChains.create(
        tmp_path / "keys", "ieee33", SCENARIO, SettleByBoth.for_lab(6.0, 36, loop.fix_t0())
    )
    doc = json.loads(chains.mgmc_genesis.read_text())
    doc["accounts"] = [a for a in doc["accounts"] if a["label"] != "lab-clock"]
    chains.mgmc_genesis.write_text(json.dumps(doc))
    try:
        loop.start(bed, [], tmp_path / "endpoints.json")
    finally:
        bed.stop()


def _start_times(tmp_path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((tmp_path / "records" / START_FILE).read_text())
    return doc


def test_the_mgmcs_start_only_once_the_dso_node_is_ready(tmp_path: Path) -> None:
    # its process starts 1 s late (--dso-start-delay-s), listens at once, says its loop runs 1.5 s later
    bed = Bed(tmp_path, degraded_s=1.5)
    loop = ClosedLoop(intervals=1, lead=60.0, dso_start_delay_s=1.0)
    _start(tmp_path, loop, bed)
    assert bed.spawned == [(name, True) for name in MGMCS]  # all six, each after the DSO node was ready
    urls = {
        yaml.safe_load((tmp_path / "config" / f"{n}.yaml").read_text())["market"]["dso_api_url"]
        for n in MGMCS
    }
    assert urls == {f"http://127.0.0.1:{bed.http_port}"}  # the DSO's own port: bound before its start
    start = _start_times(tmp_path)
    assert start["dso_start_up_s"] >= 2.5  # the delay and the degraded health were waited out
    assert start["dso_started"] <= start["dso_ready"] <= start["mgmcs_started"] < 0  # all before t0
    assert start["dso_ready_before_t0_s"] == -start["dso_ready"] >= MGMC_START_S
    section = start_section(tmp_path / "records")  # what the report says of it
    assert section["dso_ready_before_mgmcs"] is True and section["dso_ready"] == start["dso_ready"]
    # and start() returned only once its health showed every MG enrolled and interval 36 priced for all,
    # which the stand-in says 0.3 and 0.5 s after the first MGMC started: before t0 (after the first, not
    # `mgmcs_started`, the last: six spawns, each with a health poll, took over 0.1 s under load)
    final = section["final"]
    assert final["in_time"] is True and (final["enrolled"], final["mgs"], final["missing"]) == (6, 6, [])
    assert (final["pricing"], final["priced_from"], final["tariffs_through"]) == (True, 36, 36)
    first = bed.first_spawn - start["t0"]  # as start.json's times: s from t0 (rounded to the ms there)
    assert first + 0.3 - 1e-3 <= final["enrolled_s"] < 0 and first + 0.5 - 1e-3 <= final["priced_s"] < 0


def test_a_dso_node_ready_too_late_for_t0_fails_the_lab_at_once_and_starts_no_mgmc(tmp_path: Path) -> None:
    bed = Bed(tmp_path, degraded_s=0.5)
    loop = ClosedLoop(intervals=1, lead=3.0)  # less than the MGMCs' own start: never in time
    with pytest.raises(LabError) as failed:
        _start(tmp_path, loop, bed)
    line = str(failed.value)
    assert "\n" not in line and line.startswith("the DSO node was ready ")
    assert (
        f"the MGMCs need {MGMC_START_S:.1f} s before t0: late by " in line and "no interval was run" in line
    )
    assert bed.spawned == []
    start = _start_times(tmp_path)
    assert start["mgmcs_started"] is None and start["dso_ready_before_t0_s"] < MGMC_START_S
    short = MGMC_START_S - start["dso_ready_before_t0_s"]
    assert f"late by {short:.1f} s" in line  # by how much, as measured
    assert start_section(tmp_path / "records")["dso_ready_before_mgmcs"] is False


# the long lead leaves the lab 8 s between fixing t0 and stopping the devices' clock 16 s (the need) before it:
# with 18 s and a DSO ready at 4 the 2 s left were not enough once under load (ci19a: firmware-sim's start and
# the stop request came after that point, so the clock stood where it was: the short-lead case's branch)
@pytest.mark.parametrize(("lead", "degraded_s"), [(24.0, 10.0), (3.0, 0.5)])
def test_a_dso_node_ready_late_moves_t0_and_the_devices_day_with_it(
    tmp_path: Path, run_sim: Any, lead: float, degraded_s: float
) -> None:
    # a lab whose chains hold no interval clock (no --settle-by-both): its DSO says its loop runs `degraded_s`
    # after its start, which leaves the MGMCs less than their need before the lead's t0: the lab moves t0 by
    # what they lacked, and firmware-sim's clock (a real one, in this process), stopped where their need
    # begins, reads that stop again as long before the new t0, so the devices' first interval is the new t0;
    # with a lead shorter than the need the clock was past that stop already and stands where it was instead
    bed = Bed(tmp_path, degraded_s=degraded_s)
    loop = ClosedLoop(intervals=1, lead=lead)
    LabChains.create(tmp_path / "keys", "ieee33", SCENARIO)  # the testbed's without --settle-by-both
    before_t0 = loop.fix_t0()
    sim = run_sim(load_scenario(loop.sim_scenario(bed)), speed=bed.speed)  # devices anchored on that t0
    try:
        loop.start(bed, sim.endpoints, tmp_path / "endpoints.json")
    finally:
        bed.stop()
    start = _start_times(tmp_path)
    assert loop.t0_moves and loop.need_s == MGMC_START_LOADED_S
    assert start["moved_s"] > 0 and loop.t0 == pytest.approx(before_t0 + start["moved_s"], abs=1e-3)
    assert start["dso_ready_before_t0_s"] == pytest.approx(MGMC_START_LOADED_S, abs=1e-3)  # just the need
    assert bed.spawned == [(name, True) for name in MGMCS] and start["final"]["in_time"] is True
    for node in MGMCS:  # what the MGMCs were given is the moved t0
        assert yaml.safe_load((tmp_path / "config" / f"{node}.yaml").read_text())["market"]["t0"] == loop.t0
    assert loop.first_sim is not None and loop.devices_stop_s is not None
    short = lead < MGMC_START_LOADED_S  # the devices' clock was past the stop when told to stop there
    assert loop.devices_stop_s < lead if short else loop.devices_stop_s == pytest.approx(MGMC_START_LOADED_S)
    before = time.time()
    now_sim = sim.call(lambda: (sim.app.sim.tick(), sim.app.sim.t)[1])  # the clock's reading then
    after = time.time()
    if short:  # standing where it was when told to stop, until that stop's time before the moved t0
        stop = sim.call(lambda: sim.app.sim.clock.stop)
        assert now_sim == stop == pytest.approx(loop.first_sim - loop.devices_stop_s * bed.speed, abs=1e-3)
        return
    # bracketed by the request's own wall times, not a tolerance (a loaded machine cannot fail it)
    assert loop.first_sim + (before - loop.t0) * bed.speed - 1e-3 <= now_sim
    assert now_sim <= loop.first_sim + (after - loop.t0) * bed.speed + 1e-3


def test_a_dso_that_listens_but_never_runs_its_node_is_a_clear_error(tmp_path: Path) -> None:
    bed = Bed(tmp_path, degraded_s=3600.0, exit_s=1.5)  # degraded until it dies
    with pytest.raises(LabError, match=r"never showed its node running in /api/health \(it exited with 3\)"):
        _start(tmp_path, ClosedLoop(intervals=1, lead=60.0), bed)
    assert bed.spawned == [] and not (tmp_path / "records" / START_FILE).exists()


def test_postings_not_final_by_t0_fail_the_lab_at_t0_with_one_line(tmp_path: Path) -> None:
    # mg6 is never enrolled and nothing is priced: the lab waits until t0, not longer, and says what lacked
    bed = Bed(tmp_path, postings=(0.2, "mg1,mg2,mg3,mg4,mg5", -1.0, 36))
    loop = ClosedLoop(intervals=1, lead=11.0)  # the stand-in is ready in well under the 3 s this leaves
    with pytest.raises(LabError) as failed:
        _start(tmp_path, loop, bed)
    raised = time.time()
    assert loop.t0 is not None and loop.t0 <= raised < loop.t0 + 3.0  # bounded by t0
    line = str(failed.value)
    assert "\n" not in line and line.startswith(
        "the DSO node's postings were not final by t0: 5 of 6 MGs enrolled (not mg6); cover prices none, "
        "interval 36 not priced for every MG; the MGMCs started "
    ), line
    assert line.endswith("s before it; no interval was run (a longer --lead-s gives them more time)")
    assert bed.spawned == [(name, True) for name in MGMCS]  # they were started (the testbed stops them)
    final = _start_times(tmp_path)["final"]
    assert final["in_time"] is False and final["missing"] == ["mg6"] and final["enrolled"] == 5
    assert final["enrolled_s"] is None and final["priced_s"] is None and final["tariffs_through"] is None


def test_a_dso_that_exits_while_the_mgmcs_start_is_a_clear_error(tmp_path: Path) -> None:
    bed = Bed(tmp_path, exit_s=3.0, postings=(-1.0, ALL, -1.0, 36))  # ready at once, dies 3 s in
    with pytest.raises(LabError, match=r"^the DSO server exited with 3 while the MGMCs started; see "):
        _start(tmp_path, ClosedLoop(intervals=1, lead=60.0), bed)
    assert bed.spawned == [(name, True) for name in MGMCS]


def test_what_the_dsos_health_says_of_its_postings_is_followed_and_told() -> None:
    t0, mgs = 1000.0, ("mg1", "mg2", "mg3")
    found = Postings(mgs, 36)
    assert not found.done and found.missing == ["mg1", "mg2", "mg3"]
    for doc in (None, {"status": "ok"}, {"loop": {"running": True}}, {"loop": {"enrolled": "mg1"}}):
        assert found.seen(doc, 990.0) == found  # an answer without the fields changes nothing

    def health(enrolled: list[str], through: Any) -> dict[str, Any]:
        return {"status": "ok", "loop": {"running": True, "enrolled": enrolled, "tariffs_through": through}}

    found = found.seen(health(["mg1", "mg3"], 35), 991.0)  # priced through 35 only: not the first, 36
    assert (found.missing, found.all_enrolled, found.priced, found.tariffs_through) == (
        ["mg2"],
        None,
        None,
        35,
    )
    found = found.seen(health(["mg1", "mg2", "mg3"], True), 992.0)  # (a bool is no interval)
    assert found.all_enrolled == 992.0 and found.tariffs_through is None and not found.done
    found = found.seen(health(["mg1", "mg2", "mg3"], 37), 993.5)
    assert found.done and (found.all_enrolled, found.priced) == (992.0, 993.5)  # the first time each showed
    assert found.seen(health(["mg1", "mg2", "mg3"], 38), 995.0).priced == 993.5
    times = StartTimes(t0, 975.0, 977.0, 985.0, 8.0, mgmcs_started=985.5, postings=found)
    assert unposted(times) is None
    assert times.relative()["final"] == {
        "enrolled": 3, "mgs": 3, "missing": [], "enrolled_s": -8.0, "pricing": True, "priced_from": 36,
        "tariffs_through": 37, "priced_s": -6.5, "in_time": True,
    }  # fmt: skip
    short = replace(times, postings=Postings(mgs, 36, ("mg1",), 35, None, None))
    assert unposted(short) == (
        "the DSO node's postings were not final by t0: 1 of 3 MGs enrolled (not mg2, mg3); cover prices "
        "through 35, interval 36 not priced for every MG; the MGMCs started 14.5 s before it; no interval "
        "was run (a longer --lead-s gives them more time)"
    )
    unpriced = Postings(mgs, None, mgs, None, 990.0, None)  # a DSO that prices nothing: enrolment alone
    assert unpriced.done and unposted(replace(times, postings=unpriced)) is None
    # the testbed's line under its DSO-ready line
    assert (
        found.banner(t0) == "  every MG enrolled 8.0 s and interval 36 priced 6.5 s before the first interval"
    )
    assert unpriced.banner(t0) == "  every MG enrolled 10.0 s before the first interval"
    assert short.postings is not None
    assert short.postings.banner(t0) == "  MGs not enrolled by the first interval: mg2, mg3"
    assert replace(times, postings=unpriced).relative()["final"]["pricing"] is False
    assert (
        unposted(replace(times, postings=None)) is None
        and "final" not in replace(times, postings=None).relative()
    )


def test_the_late_line_says_what_was_late_and_by_how_much() -> None:
    t0 = 1000.0
    on_time = StartTimes(t0, started=975.0, dso_started=977.0, dso_ready=990.0, need_s=5.0)
    assert late(on_time, 25.0) is None and late(StartTimes(t0, 975.0, 977.0, 995.0, 5.0), 25.0) is None
    before = late(StartTimes(t0, 985.0, 986.0, 997.5, 5.0), 15.0)
    assert before == (
        "the DSO node was ready only 2.5 s before t0 (12.5 s after the lab's start, its own start-up 11.5 s); "
        "the MGMCs need 5.0 s before t0: late by 2.5 s; no interval was run (a --lead-s of at least 18 s "
        "would have held)"
    )
    after = late(StartTimes(t0, 985.0, 986.0, 1004.0, 5.0), 15.0)
    assert after is not None and after.startswith("the DSO node was ready 4.0 s after t0 (19.0 s after")
    assert "late by 9.0 s" in after and "at least 24 s" in after
    doc = StartTimes(t0, 985.0, 986.0, 997.5, 5.0, mgmcs_started=997.75).relative()
    assert doc == {"started": -15.0, "dso_started": -14.0, "dso_ready": -2.5, "mgmcs_started": -2.25, "t0": t0,
                   "need_s": 5.0, "moved_s": 0.0, "dso_start_up_s": 11.5, "dso_ready_before_t0_s": 2.5}  # fmt: skip
    # where t0 may move, a late node moves it by just what the MGMCs lacked; on time, it stays
    assert (
        moved_t0(t0, 997.5, 5.0) == 1002.5
        and moved_t0(t0, 990.0, 5.0) == t0
        and moved_t0(t0, 995.0, 5.0) == t0
    )


def test_the_report_says_when_a_lab_wrote_no_start_times(tmp_path: Path) -> None:
    assert start_section(tmp_path) == {"error": f"no start times in {START_FILE}"}
    (tmp_path / START_FILE).write_text("{not json")
    assert "error" in start_section(tmp_path)


def test_a_delayed_start_is_the_same_program_later(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "import sys; print(sys.argv[1:])", "a b", "c"]
    assert delayed(argv, 0.0) == argv
    began = time.monotonic()
    done = subprocess.run(delayed(argv, 0.3), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "['a b', 'c']", done.stderr
    assert time.monotonic() - began >= 0.3


def test_the_dso_start_delay_option_takes_seconds_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert build_parser().parse_args([]).dso_start_delay_s == 0.0
    assert build_parser().parse_args(["--dso-start-delay-s", "2.5"]).dso_start_delay_s == 2.5
    for bad in ("-1", "nan", "inf", "soon"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["--dso-start-delay-s", bad])
        assert "--dso-start-delay-s: not a number of seconds >= 0" in capsys.readouterr().err
    with pytest.raises(ValueError, match="start delay"):
        ClosedLoop(1, dso_start_delay_s=-1.0)
