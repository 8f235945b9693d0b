"""Faults during a closed-loop run, with real processes: nothing committed is lost and all replicas agree.

While `peergrid-testbed --intervals 14` trades: one of mg4's devices stops answering (firmware-sim's fault
API); mg3's Pi is cut off from the broker for two intervals (its connection runs through a pullable TCP link) -
it goes on locally (islanded) and rejoins; mg6's edge daemon is killed with SIGKILL in the middle of an
interval - each of its DERs goes to its safe state by its own watchdog (Modbus PV capped at 70 % of rating,
genset stopped, the MQTT battery at hold, the MQTT PV capped) - and restarted two intervals later (it catches
up from its LevelDB stores and the others' blocks, and trades again); the broker is restarted.
The others keep trading throughout; at the end every replica of both chains halts on the identical head,
every store verifies, every settled trade is proven, and the executed topology stayed secure.

Why mg3's cut comes first: the DSO's verdict on the interval mg3 was bargaining when its cable was pulled is
published over MQTT while it is islanded, and its agent then waits, trading nothing, until it hears a later
interval's verdict once it is back (before 1be540d it waited out `dso_timeout_s`, 80 s in the lab), before it
catches up interval by interval; every interval it misses waits for it (the DSO's injection wait and the
MGMCs' phase timeouts). Cut last, that wait ran past the DSO's last interval
and the testbed waited for mg3's last record (220 s in all); cut first, it overlaps mg6's outage. mg6 is
killed only once mg3's replica has caught up: two of six MGMC-chain authorities down halts the chain.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from peergrid_ledger.tied import tied_popen

BIN = Path(sys.executable).parent
SCENARIO = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"
pytestmark = [pytest.mark.system, pytest.mark.xdist_group("system")]
INTERVALS = 14
# The first interval at 20 s, or later where the DSO node is ready less than the MGMCs' need (16 s) before it:
# the testbed moves t0 for a lab without --settle-by-both (ed1f43f), so a DSO node slow under the suite's load
# is waited for, not a failure. A 40-s lead (2d395d7, before t0 could move) waited ~14 s for nothing with the
# node ready 10.5 s in at load 5 (T8).
LEAD_S = 20.0


def _records(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def _wait(what: str, condition, bed: subprocess.Popen[str], timeout: float = 120) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if bed.poll() is not None:
            output = bed.stdout.read() if bed.stdout else ""
            raise AssertionError(f"the testbed ended while waiting for {what}: {output[-3000:]}")
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _post(port: int, path: str, body: dict[str, object]) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def _get(port: int, path: str) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        doc: dict[str, object] = json.loads(response.read())
    return doc


def _height(workdir: Path, node: str) -> int:
    """`node`'s MGMC-chain height from the status file its daemon writes (-1: none yet, or caught mid-write)."""
    try:
        doc = json.loads((workdir / "nodes" / node / "ledger-status.json").read_text())
    except (OSError, json.JSONDecodeError):
        return -1
    chain = next((c for name, c in doc.get("chains", {}).items() if name.startswith("mgmc")), None)
    return -1 if chain is None else int(chain["height"])


def _safe(api: int, mg: str) -> list[str]:
    """The DERs of `mg` NOT (yet) in their safe state: PV capped at 70 % of rating by its fallback, genset
    stopped, battery at hold (0 W)."""
    unsafe = []
    for device in ("pv1", "gen1", "bess1", "pvroof"):
        r = _get(api, f"/devices/{mg}/{device}")["readings"]
        assert isinstance(r, dict)
        if device.startswith("pv"):
            capped = r["fb_active"] == 1 and r["limit_enabled"] == 1 and abs(r["limit_pct"] - 70) < 1
            ok = capped and r["ac_w"] <= 0.7 * r["rating_w"] + 1
        elif device == "gen1":
            ok = r["fb_active"] == 1 and r["run"] == 0
        else:
            ok = r["mode"] == 0 and abs(r["ac_w"]) < 1
        if not ok:
            unsafe.append(device)
    return unsafe


def test_kill_an_edge_a_dead_device_and_a_broker_restart(tmp_path: Path) -> None:
    workdir, out = tmp_path / "bed", tmp_path / "report"
    argv = [
        str(BIN / "peergrid-testbed"), "--scenario", str(SCENARIO), "--intervals", str(INTERVALS),
        "--interval-s", "5", "--block-period-ms", "150", "--workdir", str(workdir),
        "--http-port", "0", "--report", str(out), "--cuttable", "mg3",
        "--lead-s", str(LEAD_S),
    ]  # fmt: skip
    bed = tied_popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    records = workdir / "records"
    control = workdir / "control"
    try:
        dso_done = lambda n: len(_records(records / "dso.jsonl")) >= n  # noqa: E731
        _wait("two intervals", lambda: dso_done(2), bed, 180)
        endpoints = json.loads((workdir / "endpoints.json").read_text())
        api = next(e for e in endpoints if e["kind"] == "control")["port"]
        _post(api, "/faults", {"device": "mg4/pv1", "fault": "no_response"})
        control.mkdir(exist_ok=True)
        # mg3's Pi loses its link to the broker for two intervals: it islands, then rejoins
        cut_at = len(_records(records / "dso.jsonl"))
        status = workdir / "nodes" / "mgmc-mg3" / "ledger-status.json"
        (control / "cut-mgmc-mg3").touch()
        _wait("two intervals without mg3", lambda: dso_done(cut_at + 2), bed, 120)
        islanded = status.stat().st_mtime
        # rewritten every second by a daemon at work (its event loop's timer, late at load 10-15 beside a
        # dozen lab processes): a rewrite within 5 s shows it at work as well as one within 1.5 s
        _wait("the islanded daemon's next status", lambda: status.stat().st_mtime > islanded, bed, 5.0)
        (control / "cut-mgmc-mg3").unlink()
        # mg3's MGMC-chain replica back on the others' height before a second authority goes down
        others = _height(workdir, "mgmc-mg1")
        _wait("mg3's replica caught up", lambda: _height(workdir, "mgmc-mg3") >= others, bed, 60)
        # mid-interval: the DSO finished an interval, the MGMCs are bargaining the next one
        killed_at = len(_records(records / "dso.jsonl")) + 1
        _wait("the next interval", lambda: dso_done(killed_at), bed)
        pids = json.loads((workdir / "pids.json").read_text())
        os.kill(pids["mgmc-mg6"], signal.SIGKILL)
        killed_after = len(_records(records / "mgmc-mg6.jsonl"))
        _wait("two more intervals without mg6", lambda: dso_done(killed_at + 2), bed)
        # nobody feeds its DERs' own watchdogs any more: each goes to its safe state by itself
        _wait("mg6's DERs in their safe states", lambda: _safe(api, "mg6") == [], bed, 60)
        (control / "restart-mgmc-mg6").touch()
        _wait("mg6 trading again", lambda: len(_records(records / "mgmc-mg6.jsonl")) > killed_after, bed, 120)
        (control / "restart-broker").touch()
        _wait("the broker restart", lambda: not (control / "restart-broker").exists(), bed, 30)
        restarted_at = len(_records(records / "dso.jsonl"))
        output, _ = bed.communicate(timeout=60 + 15 * INTERVALS)
    finally:
        if bed.poll() is None:
            bed.send_signal(signal.SIGTERM)
            bed.wait(30)
    assert bed.returncode == 0, output[-3000:]
    # the loop went on over the restarted broker: the DSO closed intervals after it (review12: T1's new order
    # puts the restart last, so pin that some interval still follows it)
    assert len(_records(records / "dso.jsonl")) > restarted_at
    assert "mgmc-mg6 is down" in output and "mgmc-mg6 restarted" in output and "broker restarted" in output
    report = json.loads((out / "report.json").read_text())
    checks = report["checks"]
    assert checks["intervals_done"] == INTERVALS
    assert checks["quiesced"], report["quiesce"]
    for chain in report["ledger"].values():  # the restarted replica caught up: one head, one hash, everywhere
        assert chain["identical_heads"], chain["heads"]
        assert len(set(chain["head_hashes"].values())) == 1
    assert checks["replicas_agree"], report["ledger"]
    assert checks["stores_verify"], report["stores_verify"]
    assert checks["settled_trades_proven"], report["proofs"]
    assert checks["topology_secure"]
    # the others kept trading through every fault; mg6 missed some intervals and came back
    intervals = set(report["intervals"])
    for mg in ("mg1", "mg2", "mg4", "mg5"):
        done = {r["interval"] for r in _records(records / f"mgmc-{mg}.jsonl") if "trades" in r}
        assert done == intervals, (mg, sorted(intervals - done))
    mg6 = {r["interval"] for r in _records(records / "mgmc-mg6.jsonl") if "trades" in r}
    assert mg6 and mg6 != intervals and max(mg6) == max(intervals)
    mg3 = [r for r in _records(records / "mgmc-mg3.jsonl") if "trades" in r]
    assert any(r["interval"] >= 36 + cut_at + 2 and r["verdict"] for r in mg3), "mg3 did not rejoin"
    assert any(d["device"] for d in report["device_faults"] if "no_response" in json.dumps(d["faults"]))
