"""Following the closed loop inside `peergrid-testbed`: one summary line per finished interval, the progress
bar, and whether the run is over.

Promises: `poll(loop, bed)` reads the records the nodes append (`<workdir>/records`: the DSO's `dso.jsonl`, each
MGMC's `mgmc-<mg>.jsonl`) and returns one line per interval the DSO finished and every MGMC recorded (or had
five intervals to); `finished` is true once the DSO did every interval, each MGMC recorded the last one (or had
a grace to) and every replica ends on the same head (`quiesce.quiesced`, which also writes the halt file).
An interval the DSO node recorded missed (`interval_missed`: over while it was down) reads as missed and
why, as the console's line does, never as an insecure one. `loop` is the `closedloop_run.ClosedLoop` being followed (its `shown` count is advanced here). Never edits
files the nodes write; reads them only.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from peergrid_sim.closedloop import pacing, pacing_text, quiesced
from peergrid_sim.report import json_lines


def rebargained(rec: dict[str, Any]) -> str:
    """' | rebargained xN (mg5 mg4)' when the DSO's contracts had the interval re-bargained (design step 6); the
    iterations the MGMCs answered by re-planning instead (the interval not reopened: the DSO record's `answer`)
    say so and what they kept, ' | re-planned x1, forward trades kept (mg4 mg5 mg6)' (U3: a forward-traded
    interval read 'rebargained x1' though the contract refuses to reopen one). A round from before `answer`
    counts as re-bargained unless it says it was not reopened."""
    rounds = rec.get("rebargain") or []
    if not rounds:
        return ""
    addressed = list(dict.fromkeys(a["mg"] for a in rec.get("adjustments", []) if "mg" in a))
    answers: dict[str, int] = {}
    for r in rounds:
        replanned = "reopened" in r and r["reopened"] is None
        said = r.get("answer") or ("re-planned, trades kept" if replanned else "re-bargained")
        answers[said] = answers.get(said, 0) + 1
    parts = []
    for said, n in answers.items():
        verb, _, kept = said.partition(", ")
        parts.append(f"{'rebargained' if verb == 're-bargained' else verb} x{n}{', ' + kept if kept else ''}")
    return f" | {'; '.join(parts)} ({' '.join(addressed)})"


def poll(loop: Any, bed: Any, force: bool = False) -> list[str]:
    records = loop.records_dir(bed)
    dso = json_lines(records / "dso.jsonl")
    lines = []
    edges = [json_lines(p) for p in records.glob("mgmc-*.jsonl")]
    while loop.shown < len(dso):
        rec = dso[loop.shown]
        t = rec.get("interval")
        waited = time.time() - rec.get("times", {}).get("end", 0) > 5 * loop.interval_s
        expected = len(loop.chains.mgs) if loop.chains is not None else 1
        recorded = len(edges) >= expected and all(any(d.get("interval") == t for d in e) for e in edges)
        if not (waited or force or recorded):
            break  # the MGMCs are still dispatching and settling it
        loop.shown += 1
        lines.append(summary(loop, rec, records))
    return lines


def summary(loop: Any, rec: dict[str, Any], records: Path) -> str:
    t = int(rec["interval"])
    if "error" in rec:
        return f"interval {t}: DSO failed ({rec['error']})"
    # D8: over before the DSO node came back, nothing checked and no `times` (R45: a KeyError ended the lab)
    if "missed" in rec:
        return f"interval {t}: missed, {rec['missed']}: not checked, no contract, no switching"
    trades: dict[str, dict[str, Any]] = {}
    rounds = 0
    for path in records.glob("mgmc-*.jsonl"):
        for doc in json_lines(path):
            if doc.get("interval") == t and "trades" in doc:
                rounds = max(rounds, len(doc.get("rounds", [])))
                for tr in doc["trades"]:
                    trades[tr["id"]] = tr
    kwh = sum(tr["quantity_kwh"] for tr in trades.values())
    price = (sum(tr["quantity_kwh"] * tr["price"] for tr in trades.values()) / kwh) if kwh else 0.0
    hours = t * loop.interval_min / 60
    ops = len((rec.get("plan") or {}).get("operations", []))
    before, after = rec.get("before", {}), rec.get("after", {})
    starts = [d["times"]["start"] for p in records.glob("mgmc-*.jsonl") for d in json_lines(p)
              if d.get("interval") == t and "times" in d]  # fmt: skip
    pace = pacing_text(pacing(loop.timing, t, starts, rec["times"].get("switched"))) if loop.timing else ""
    return (
        f"interval {t:3d} {int(hours):02d}:{int(hours * 60) % 60:02d} | {len(trades):2d} trades {kwh:7.1f} kWh"
        f" @ {price:.3f} | rounds {rounds} | vmin {before.get('vmin_pu', 0):.3f}->{after.get('vmin_pu', 0):.3f}"
        f" | open {after.get('open')} | switch ops {ops}{rebargained(rec)}"
        f" | {'secure' if rec.get('secure') else 'INSECURE'}"
        f" | dso height {rec.get('height')} | {pace}"
    )


def finished(loop: Any, bed: Any) -> bool:
    """The DSO has done every interval and each MGMC recorded the last one (or had a while to)."""
    records = loop.records_dir(bed)
    dso = json_lines(records / "dso.jsonl")
    if len(dso) < loop.intervals:
        return False
    last = loop.first_interval + loop.intervals - 1
    edges = [json_lines(p) for p in records.glob("mgmc-*.jsonl")]
    grace = time.time() - dso[-1].get("times", {}).get("end", 0) > 6 * loop.interval_s + 20
    done = grace or all(any(d.get("interval") == last for d in e) for e in edges)
    return done and quiesced(loop, bed)  # and every replica ends on the same head


def progress_bar(loop: Any, width: int = 30) -> str:
    done = min(loop.shown, loop.intervals)
    filled = int(width * done / max(1, loop.intervals))
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{loop.intervals} intervals"


def day_traded(loop: Any) -> str | None:
    """None until every interval of the run is shown; then the line a testbed left running (no `--intervals`)
    prints once: the trading is over, and what stays up until Ctrl-C (before, it went silent at the last
    interval, every MGMC's devices falling back to their safe state, and a user could not tell it from a hang)."""
    if loop.shown < loop.intervals:
        return None
    last = loop.first_interval + loop.intervals - 1
    return (
        f"the day is traded (interval {last} was its last); the broker, devices, MGMCs, DSO server and console "
        "stay up, the MGMCs' devices in their safe state, until Ctrl-C"
    )
