"""The closed-loop testbed at 6 and 30 MGs: per-interval latency from interval start to switching done.

Runs `peergrid-testbed --intervals N --report DIR` (real processes: broker, firmware-sim, one edge daemon with
replicas of both chains per MG, the DSO node and server) on ieee33 (6 MGs, IEEE 33-bus) and on case136ma-30mg
(30 MGs, MATPOWER case136ma), and reads the report: latency from the first MGMC starting an interval
(schedule, bargaining on the MGMC chain) to the DSO's switching being done, its split into bargaining and
DSO work, blocks, and the checks. The baseline measured in the same run is the 6-MG figure: the 30-MG one is
reported as a ratio to it. Everything shares this machine's two cores. `BENCH_TESTBED_SIZES=6` (or `30`) runs
one size only (the 30-MG run takes ~10 minutes of both cores); `BENCH_TESTBED_KEEP=DIR` keeps each run's
report, records and replica status files there for a closer look.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
SCENARIOS = Path(__file__).resolve().parents[1] / "firmware-sim" / "scenarios"


def _run(scenario: str, intervals: int, interval_s: float, block_ms: int, workdir: Path) -> dict[str, object]:
    report = workdir / "report"
    started = time.monotonic()
    done = subprocess.run(
        [
            str(BIN / "peergrid-testbed"), "--scenario", str(SCENARIOS / scenario), "--intervals", str(intervals),
            "--interval-s", str(interval_s), "--block-period-ms", str(block_ms), "--workdir", str(workdir / "bed"),
            "--http-port", "0", "--report", str(report),
        ],
        capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    wall = time.monotonic() - started
    keep = os.environ.get("BENCH_TESTBED_KEEP")
    if keep:
        dest = Path(keep) / workdir.name
        for src, name in ((report, "report"), (workdir / "bed" / "records", "records")):
            if src.is_dir():
                shutil.copytree(src, dest / name, dirs_exist_ok=True)
        dest.mkdir(parents=True, exist_ok=True)
        for status in (workdir / "bed" / "nodes").glob("*/ledger-status.json"):
            shutil.copy(status, dest / f"status-{status.parent.name}.json")
    if done.returncode != 0 or not (report / "report.json").exists():
        return {"error": (done.stdout + done.stderr)[-600:], "wall_s": wall}
    doc = json.loads((report / "report.json").read_text())
    edges = {}
    for path in (workdir / "bed" / "records").glob("mgmc-*.jsonl"):
        for line in path.read_text().splitlines():
            r = json.loads(line)
            if "times" in r:
                edges.setdefault(r["interval"], []).append(r["times"]["bargained"] - r["times"]["start"])
    latency = doc["latency_to_switching_done_s"][1:]  # the first interval includes enrolment and warm-up
    dso_work = [r["times"]["switched"] - r["times"]["injections"] for r in doc["dso"] if "times" in r][1:]
    # injections the DSO had not received when it stopped waiting (it counts them as zero): the price of a
    # bounded DSO wait when bargaining runs longer than an interval
    missing = sum(len(r.get("missing", [])) for r in doc["dso"][1:])
    return {
        "latency": latency,
        "bargain": [max(v) for _, v in sorted(edges.items())][1:],
        "dso_work": dso_work,
        "checks": doc["checks"],
        "blocks": {c: v["lowest_head"] for c, v in doc["ledger"].items()},
        "block_p50": {c: v["block_time_ms"]["p50"] for c, v in doc["ledger"].items()},
        "block_max": {c: v["block_time_ms"]["max"] for c, v in doc["ledger"].items()},
        "overruns": f"{doc.get('overruns')}/{len(doc.get('pacing', []))}",
        "missing": f"{missing}/{len(doc['dso'][1:]) * len(edges_of(workdir))}",
        "quiesce_s": (doc.get("quiesce") or {}).get("waited_s"),
        "quiesce": {
            k: (doc.get("quiesce") or {}).get(k) for k in ("ok", "waited_s", "pending_at_halt", "pending")
        },
        "wall_s": wall,
    }


def edges_of(workdir: Path) -> list[Path]:
    return sorted((workdir / "bed" / "records").glob("mgmc-*.jsonl"))


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def _row(name: str, r: dict[str, object]) -> str:
    if "error" in r:
        return f"| {name} | failed: {str(r['error'])[-200:]!r} | | | | | | | |"
    lat = r["latency"]
    assert isinstance(lat, list) and lat
    p50, p95 = statistics.median(lat), _p95(lat)
    bargain = statistics.median(r["bargain"]) if r["bargain"] else float("nan")  # type: ignore[arg-type]
    dso = statistics.median(r["dso_work"]) if r["dso_work"] else float("nan")  # type: ignore[arg-type]
    checks = r["checks"]
    assert isinstance(checks, dict)
    failed = [k for k, v in checks.items() if v is False]
    gaps = ", ".join(f"{c} {r['block_p50'][c]}/{r['block_max'][c]}" for c in r["block_p50"])  # type: ignore[index]
    return (
        f"| {name} | {p50:.2f} s | {p95:.2f} s | {bargain:.2f} s | {dso:.2f} s | {gaps} | {r['overruns']} | "
        f"{r['missing']} | "
        f"{'all pass' if not failed else 'failed: ' + ', '.join(failed)} |"
    )


def run(quick: bool = False) -> str:
    n6, n30 = (6, 3) if quick else (12, 4)
    sizes = os.environ.get("BENCH_TESTBED_SIZES", "6,30").split(",")
    skipped: dict[str, object] = {"error": "not run (BENCH_TESTBED_SIZES)", "wall_s": 0.0}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-testbed-") as tmp:
        six = _run("ieee33.yaml", n6, 5.0, 150, Path(tmp) / "six") if "6" in sizes else skipped
        thirty = (
            _run("case136ma-30mg.yaml", n30, 20.0, 500, Path(tmp) / "thirty") if "30" in sizes else skipped
        )
    lines = [
        "## Closed-loop testbed (6 and 30 MGs, real processes)",
        "",
        "Latency per interval from the first MGMC starting it (scheduling, bargaining on the MGMC chain with each "
        "phase final) to the DSO's switching done (injections on the DSO chain, AC check, reconfiguration, "
        "relays with read-back), first interval excluded (enrolment, warm-up). All processes share 2 cores. "
        "Bargaining: first MGMC start to the last MGMC's agreed trades; DSO work: injections gathered to switching "
        "done; overran slot: intervals whose switching finished after their slot on the accelerated clock ended; "
        "injections missed: MG-intervals the DSO went ahead without (after the first injection it waits one "
        "interval per 10 MGs, at least one).",
        "",
        "| run | p50 latency | p95 latency | p50 bargaining | p50 DSO work | block gap p50/max (ms) | "
        "overran slot | injections missed | checks |",
        "|---|---:|---:|---:|---:|---|---|---|---|",
        _row(f"6 MGs, ieee33, {n6} intervals, 150 ms blocks", six),
        _row(f"30 MGs, case136ma, {n30} intervals, 500 ms blocks", thirty),
    ]
    if "error" not in six and "error" not in thirty:
        ratio = statistics.median(thirty["latency"]) / statistics.median(six["latency"])  # type: ignore[arg-type]
        lines += ["", f"30 MGs ÷ 6 MGs (p50 latency): {ratio:.2f}."]
    lines += ["", f"Wall time: 6 MGs {six['wall_s']:.0f} s, 30 MGs {thirty['wall_s']:.0f} s."]
    after = os.getloadavg()
    lines += [f"Load average (1/5/15 min) before: {'/'.join(f'{x:.1f}' for x in load_before)}, after: "
              f"{'/'.join(f'{x:.1f}' for x in after)}."]  # fmt: skip
    for name, r in (("6 MGs", six), ("30 MGs", thirty)):
        if "quiesce" in r:
            lines.append(f"{name}: quiesce {r['quiesce']}.")
    return "\n".join(lines) + "\n"
