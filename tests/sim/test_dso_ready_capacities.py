"""The lab waits for the DSO's connection capacities as it waits for its enrolments and cover prices (L10).

Since 9a0809e the DSO node posts each lab MG's connection capacity (`market.capacity`) and the day-ahead lab's
make-whole is bounded by it; one that lands after an MG's first position stands only from the interval after
it, and the MG's claim there is cut to 0 - silently. The DSO's `/api/health` lists in its loop section
`capacities` ({mg: the interval its configured figure stands from, or null}); `wait_postings` follows it,
with `capacity_from` (the loop's first interval, where the DSO config names a capacity), until every listed
capacity stands from that interval, and `unposted` fails the lab at t0 naming the MGs whose capacity did not
(none final, or only from a later interval). start.json's `final` says when they stood.

Scripted health answers (`Postings.seen`); a stand-in DSO process (a tiny HTTP server answering scripted
loop sections once the MGMCs started) through `wait_postings` and through `ClosedLoop.start` itself; and the
day-ahead lab of tests/conftest.py (no run of its own): its start.json shows every capacity standing from the
first interval before t0.
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
from test_closedloop_dso_first import ALL, MGMCS, Bed, _start

from peergrid_ledger.tied import tied_popen
from peergrid_sim.closedloop_run import ClosedLoop
from peergrid_sim.dso_ready import START_FILE, Postings, StartTimes, unposted, wait_postings
from peergrid_sim.processes import TestbedError as LabError

pytestmark = pytest.mark.skipif(not Path("/proc/self/net/tcp").exists(), reason="needs Linux /proc")

MGS = ("mg1", "mg2", "mg3")
T0 = 1000.0


def health(capacities: Any, enrolled: tuple[str, ...] = MGS, through: int | None = 37) -> dict[str, Any]:
    loop: dict[str, Any] = {"running": True, "enrolled": list(enrolled), "tariffs_through": through}
    if capacities is not ...:  # (...: a DSO whose health lists none)
        loop["capacities"] = capacities
    return {"status": "ok", "loop": loop}


def test_the_capacities_in_the_dsos_health_are_followed_until_each_stands_from_the_first_interval() -> None:
    found = Postings(MGS, 36, capacity_from=36)
    found = found.seen(health({"mg1": None, "mg2": 36, "mg3": None}), 990.0)
    assert found.all_enrolled == 990.0 and found.priced == 990.0  # those are final ...
    assert not found.done and found.unbounded == [("mg1", None), ("mg3", None)]  # ... the capacities not
    found = found.seen(health({"mg1": 36, "mg2": 36, "mg3": None}), 991.0)
    assert not found.bounded and found.unbounded == [("mg3", None)] and found.bounded_at is None
    for said in ([36, 36, 36], "all", 7):  # not a mapping: says nothing of them
        assert found.seen(health(said), 991.5).capacities == found.capacities
    found = found.seen(health({"mg1": 36, "mg2": 36, "mg3": 35}), 992.0)  # from before the first: it stands
    assert found.done and found.bounded_at == 992.0
    assert found.seen(health({"mg1": 36, "mg2": 36, "mg3": 35}), 995.0).bounded_at == 992.0  # the first time
    times = StartTimes(T0, 975.0, 977.0, 985.0, 8.0, mgmcs_started=985.5, postings=found)
    assert unposted(times) is None
    assert times.relative()["final"] == {
        "enrolled": 3, "mgs": 3, "missing": [], "enrolled_s": -10.0, "pricing": True, "priced_from": 36,
        "tariffs_through": 37, "priced_s": -10.0, "in_time": True, "capacity_from": 36,
        "capacities": {"mg1": 36, "mg2": 36, "mg3": 35}, "unbounded": [], "capacities_s": -8.0,
    }  # fmt: skip
    assert found.banner(T0) == (
        "  every MG enrolled 10.0 s, interval 36 priced 10.0 s and every connection capacity standing from it "
        "8.0 s before the first interval"
    )
    unpriced = Postings(MGS, None, capacity_from=36).seen(health({"mg1": 36, "mg2": 36, "mg3": 36}), 993.0)
    assert unpriced.banner(T0) == (
        "  every MG enrolled 7.0 s and every connection capacity standing from it 7.0 s before the first interval"
    )


def test_a_capacity_standing_only_from_a_later_interval_or_none_fails_the_lab_naming_the_mgs() -> None:
    # mg2 accepted a position in interval 39 before its capacity landed: it stands only from 40
    found = Postings(MGS, 36, capacity_from=36).seen(health({"mg1": 36, "mg2": 40, "mg3": None}), 990.0)
    assert found.all_enrolled is not None and found.priced is not None and not found.done
    times = StartTimes(T0, 975.0, 977.0, 985.0, 8.0, mgmcs_started=985.5, postings=found)
    assert unposted(times) == (
        "the DSO node's postings were not final by t0: connection capacities not standing from interval 36: "
        "mg2 (only from 40), mg3 (none final); the MGMCs started 14.5 s before it; no interval was run (a longer "
        "--lead-s gives them more time)"
    )
    final = times.relative()["final"]
    assert (
        final["in_time"] is False and final["unbounded"] == ["mg2", "mg3"] and final["capacities_s"] is None
    )
    assert final["capacities"] == {"mg1": 36, "mg2": 40, "mg3": None}
    # with the enrolments lacking too, each is named in the one line
    both = replace(found, enrolled=("mg1",), all_enrolled=None)
    line = unposted(replace(times, postings=both))
    assert line is not None and "\n" not in line
    assert (
        "1 of 3 MGs enrolled (not mg2, mg3); connection capacities not standing from interval 36: mg2" in line
    )


def test_a_dso_that_lists_no_capacities_and_a_lab_that_checks_none_wait_for_none() -> None:
    # the health lists none: the DSO posts none (no MG names one, or a chain without the uplift contract)
    silent = Postings(MGS, 36, capacity_from=36).seen(health(...), 990.0)
    assert silent.done and silent.capacities is None and silent.bounded_at is None
    assert unposted(StartTimes(T0, 975.0, 977.0, 985.0, 8.0, postings=silent)) is None
    assert StartTimes(T0, 975.0, 977.0, 985.0, 8.0, postings=silent).relative()["final"]["capacities"] is None
    # a lab whose DSO config names no capacity does not look at them, nor writes their keys
    unchecked = Postings(MGS, 36).seen(health({"mg1": None}), 990.0)
    assert unchecked.done and unchecked.unbounded == []
    final = StartTimes(T0, 975.0, 977.0, 985.0, 8.0, postings=unchecked).relative()["final"]
    assert "capacity_from" not in final and "capacities" not in final
    assert (
        unchecked.banner(T0)
        == "  every MG enrolled 10.0 s and interval 36 priced 10.0 s before the first interval"
    )
    # a bool is no interval; an answer without the loop's fields changes nothing
    flagged = Postings(MGS, 36, capacity_from=36).seen(health({"mg1": True, "mg2": 36, "mg3": 36}), 990.0)
    assert flagged.unbounded == [("mg1", None)]
    assert flagged.seen({"status": "ok", "loop": {"running": True}}, 991.0) == flagged


# argv: MGMCS_FILE SCRIPT. Listens on any free loopback port and prints it; answers /api/health with a running
# loop whose postings follow SCRIPT (JSON: [[s after the MGMCs started, loop fields], ...], the last one due
# applies; nothing final before the first) once MGMCS_FILE exists
SCRIPTED_DSO = """
import http.server, json, pathlib, sys, threading, time
mgmcs_file, script = pathlib.Path(sys.argv[1]), json.loads(sys.argv[2])
started = []
class Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        loop = {"running": True, "interval": None, "enrolled": [], "pricing": True, "tariffs_through": None}
        if not started and mgmcs_file.exists():
            started.append(time.monotonic())
        for after, fields in script:
            if started and time.monotonic() - started[0] >= after:
                loop = {**loop, **fields}
        body = json.dumps({"status": "ok", "node": "dso", "loop": loop}).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
print(server.server_address[1], flush=True)
server.serve_forever()
"""
ENROLLED = {"enrolled": list(MGS), "tariffs_through": 36}


def scripted(mgmcs_file: Path, script: list[tuple[float, dict[str, Any]]]) -> tuple[Any, int]:
    """The stand-in DSO's process and the port it listens on."""
    argv = [sys.executable, "-c", SCRIPTED_DSO, str(mgmcs_file), json.dumps(script)]
    process = tied_popen(argv, stdout=subprocess.PIPE)
    assert process.stdout is not None
    return process, int(process.stdout.readline())


def test_wait_postings_returns_once_every_capacity_stands_and_at_t0_when_one_never_does(
    tmp_path: Path,
) -> None:
    script = [(0.0, ENROLLED | {"capacities": {mg: None for mg in MGS}}),
              (0.6, {"capacities": {"mg1": 36, "mg2": 36, "mg3": None}}),
              (1.2, {"capacities": {mg: 36 for mg in MGS}})]  # fmt: skip
    process, port = scripted(tmp_path / "mgmcs", script)
    try:
        (tmp_path / "mgmcs").touch()
        began = time.time()
        found = wait_postings(process, port, MGS, 36, began + 30.0, tmp_path / "dso.log", capacity_from=36)
        assert found.done and dict(found.capacities or ()) == {mg: 36 for mg in MGS}
        assert found.bounded_at is not None and began + 1.2 <= found.bounded_at < began + 30.0  # not before
        assert (
            found.all_enrolled is not None and found.all_enrolled < found.bounded_at
        )  # waited for them alone
    finally:
        process.kill()
        process.wait(10)
    late = [(0.0, ENROLLED | {"capacities": {"mg1": 36, "mg2": 40, "mg3": 36}})]  # mg2's stands from 40 only
    process, port = scripted(tmp_path / "mgmcs", late)
    try:
        began = time.time()
        found = wait_postings(process, port, MGS, 36, began + 2.0, tmp_path / "dso.log", capacity_from=36)
        assert time.time() >= began + 2.0  # waited until t0, not longer than its last answer
        assert not found.done and found.unbounded == [("mg2", 40)]
    finally:
        process.kill()
        process.wait(10)


class CapacityBed(Bed):
    """`Bed` of test_closedloop_dso_first whose stand-in DSO lists the capacities of `script` (the lab's
    start as `ClosedLoop.start` runs it; its DSO config names each lab MG's capacity since 9a0809e)."""

    def __init__(self, workdir: Path, script: list[tuple[float, dict[str, Any]]]) -> None:
        super().__init__(workdir)
        self.script = script

    def start_dso(self, loop: dict[str, Any], delay_s: float = 0.0) -> Any:
        self.dso_loop = loop  # the DSO config the lab wrote
        self.status_file = Path(loop["status_file"])
        self.status_file.write_text(json.dumps({"chains": {}}))  # its ledger node runs at once
        process, self.http_port = scripted(self.mgmcs_file, self.script)
        self.processes.append(process)
        return SimpleNamespace(process=process, log=self.workdir / "dso.log")


SIX = ALL.split(",")


def test_the_lab_waits_for_the_capacities_its_dso_config_names_and_start_json_says_when(
    tmp_path: Path,
) -> None:
    script = [(0.0, {"enrolled": SIX, "tariffs_through": 36, "capacities": {mg: None for mg in SIX}}),
              (0.8, {"capacities": {mg: 36 for mg in SIX}})]  # fmt: skip
    bed = CapacityBed(tmp_path, script)
    loop = ClosedLoop(intervals=1, lead=60.0)
    _start(tmp_path, loop, bed)
    assert {mg for mg, entry in bed.dso_loop["mgs"].items() if entry.get("capacity_kw")} == set(SIX)
    start = json.loads((tmp_path / "records" / START_FILE).read_text())
    final = start["final"]
    assert final["in_time"] is True and final["capacity_from"] == loop.first_interval == 36
    assert final["capacities"] == {mg: 36 for mg in SIX} and final["unbounded"] == []
    assert start["mgmcs_started"] + 0.8 <= final["capacities_s"] < 0  # waited for them, before t0
    assert final["enrolled_s"] < final["capacities_s"]
    assert bed.spawned == [(name, True) for name in MGMCS]


def test_a_capacity_standing_only_from_a_later_interval_fails_the_lab_at_t0(tmp_path: Path) -> None:
    script = [
        (0.0, {"enrolled": SIX, "tariffs_through": 36, "capacities": {mg: 36 for mg in SIX} | {"mg4": 41}})
    ]
    bed = CapacityBed(tmp_path, script)
    loop = ClosedLoop(intervals=1, lead=11.0)
    with pytest.raises(LabError) as failed:
        _start(tmp_path, loop, bed)
    assert loop.t0 is not None and loop.t0 <= time.time() < loop.t0 + 3.0  # bounded by t0
    line = str(failed.value)
    assert "\n" not in line and line.startswith(
        "the DSO node's postings were not final by t0: connection capacities not standing from interval 36: "
        "mg4 (only from 41); the MGMCs started "
    ), line
    final = json.loads((tmp_path / "records" / START_FILE).read_text())["final"]
    assert final["in_time"] is False and final["unbounded"] == ["mg4"] and final["capacities_s"] is None
    assert final["enrolled_s"] is not None and final["priced_s"] is not None  # those were final


@pytest.mark.xdist_group("system")
def test_the_dayahead_labs_capacities_stood_from_its_first_interval_before_t0(dayahead_lab: Any) -> None:
    # the lab of tests/conftest.py, run once for its tests: no run of its own
    start = json.loads((dayahead_lab.workdir / "records" / START_FILE).read_text())
    final = start["final"]
    assert final["in_time"] is True and final["unbounded"] == []
    mgs = [f"mg{i}" for i in range(1, 7)]
    assert final["capacities"] == {mg: final["capacity_from"] for mg in mgs}  # each from the first interval
    assert start["mgmcs_started"] < final["capacities_s"] < 0  # final after the MGMCs started, before t0
    report = json.loads((dayahead_lab.report / "report.json").read_text())
    assert report["start"]["final"]["capacities_s"] == final["capacities_s"]  # the report says it too
    print(f"\nday-ahead lab: every MG enrolled {-final['enrolled_s']:.1f} s and every capacity standing "
          f"{-final['capacities_s']:.1f} s before t0 (the MGMCs started {-start['mgmcs_started']:.1f} s before)")  # fmt: skip
