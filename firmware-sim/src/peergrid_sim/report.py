"""The testbed's run report: report.json and a self-contained report.html (inline SVG, no network).

Promises: `collect_live(bed)` (while the processes run) saves firmware-sim's device faults and the replicas'
status; `write_report(bed, dir)` (after they stopped: it opens every LevelDB store) gathers the MGMCs' and the
DSO's interval records and the ledger stores and writes the figures — prices per bargaining round, trades
(sellers and buyers by anonym; `anonyms` names each lab anonym's MG from the lab's keys, `anonyms_unread` says
which key file it could not read and why, and so does its log: `report_anonyms`), each MG's cost under
P2P and under the conventional market, welfare against the centralised optimum over the same intervals (and
`share_of_gain`, the bench's share of the achievable gain), voltage profiles before and after
reconfiguration, switch operations, ledger heights, block times, round changes (`report_ledger`), device faults
(each fault injected during the run with the intervals it lasted, each device an MGMC left out of its plan, and
what was on at the end: `report_faults`),
each interval's pacing against its slot on the accelerated clock, the lab's start (when the DSO node was ready
relative to t0 and when its enrolments and tariffs became final, as its health showed them while the lab waited
before t0: `start_section`) and the end-of-run quiesce — plus `checks`: every replica of each chain ends on the
identical head (same height, same hash), every store passes `peergrid-ledger verify`, every settled trade's
settlement has an inclusion proof that verifies (those three from `report_ledger`), the executed topology was
always secure, no MG paid more under P2P than it would have conventionally plus the risk allowance its owner
accepted (`report_bound`, its `rationality` section beside: per MG the intervals a DSO limit bound it, the
forward trades it held there and the sentence that names its cause), and the DSO node was ready
before any MGMC started (a check not run is None, and `not_checked` says why: the quiesce of a lab stopped
before its halt, `stop_note`); and the day-ahead make-whole as the MGMC chain settled it (`report_uplift`).
Each trade names the day-ahead session it was traded forward in (`forward`, None: bargained intraday), and each
re-bargaining iteration how the MGMCs answered (the DSO record's `answer`).
Never changes a store (opens them read-only in effect: only reads). The page is drawn by `report_html` from
report.json's document alone.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

from peergrid_sim.report_anonyms import read_anonyms
from peergrid_sim.report_bound import owner_bound
from peergrid_sim.report_faults import device_faults
from peergrid_sim.report_html import html, share_of_gain
from peergrid_sim.report_ledger import ledger_figures, stores, verify_stores
from peergrid_sim.report_uplift import uplift_section
from peergrid_sim.report_why import acted_on, check_why

log = logging.getLogger("peergrid_sim.report")


def json_lines(path: Path) -> list[dict[str, Any]]:
    """The records of a file that nodes append JSON objects to, one a line, in order (none while it is not
    there). The lab's one reader of them, live (`closedloop_run`'s progress and end, `closedloop`'s settling
    wait) and after the run (this report). A line that is not one whole JSON object is skipped wherever it
    is: the last may still be being written (it is read whole next time), and one in the middle is a record
    its writer was killed in the middle of (the restart tests SIGKILL MGMCs) with the restarted writer's
    records after it. Stopping at a bad line, as the live readers did, would hide all of those for good and
    leave the lab's end waiting out its bounds; nothing the writers meant to be read is lost by skipping."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict):
            out.append(doc)
    return out


def collect_live(bed: Any) -> None:
    """Every device's and relay's active faults (GET /devices/...) and every fault injected during the run
    (GET /faults, cleared or not), from firmware-sim's control API, as {"active": [...], "log": [...]}."""
    workdir = Path(bed.workdir)
    faults: Any = []
    log: Any = []
    try:
        endpoints = json.loads((workdir / "endpoints.json").read_text(encoding="utf-8"))
        control = next(e for e in endpoints if e.get("kind") == "control")
        base = f"http://{control['host']}:{control['port']}/devices/"
        for ep in endpoints:
            if ep.get("kind") == "control":
                continue
            path = f"{ep['mg']}/{ep['device']}" if ep.get("mg") else str(ep["device"])
            with urllib.request.urlopen(base + path, timeout=3) as response:
                doc = json.loads(response.read())
            found = doc.get("faults")
            if (doc.get("readings") or {}).get("fb_active"):  # its own watchdog put it in its safe state
                found = {**(found or {}), "in_fallback": True}
            if found:
                faults.append({"device": path, "faults": found})
        with urllib.request.urlopen(
            f"http://{control['host']}:{control['port']}/faults", timeout=3
        ) as response:
            log = json.loads(response.read()).get("log", [])
    except Exception as exc:  # the report says what it could not read
        faults = {"error": f"{type(exc).__name__}: {exc}"[:200]}
    saved = faults if isinstance(faults, dict) else {"active": faults, "log": log}
    (workdir / "records" / "device-faults.json").write_text(json.dumps(saved), encoding="utf-8")
    # each replica's consensus counters (round timeouts, stale and dropped messages) as it ends
    stats: dict[str, dict[str, Any]] = {}
    for status_file in sorted((workdir / "nodes").glob("*/ledger-status.json")):
        try:
            chains = json.loads(status_file.read_text(encoding="utf-8"))["chains"]
        except (OSError, ValueError, KeyError):
            continue
        for chain, status in chains.items():
            stats.setdefault(chain, {})[status_file.parent.name] = status.get("stats", {})
    (workdir / "records" / "consensus-stats.json").write_text(json.dumps(stats), encoding="utf-8")


def central_welfare(scenario_path: Path, first: int, count: int) -> float | None:
    """The centralised optimum over the same intervals (one LP/MILP over all MGs), from the model's start state."""
    from peergrid_controller import baselines
    from peergrid_controller.model import Tariff
    from peergrid_controller.scenario import load_scenario

    scenario = load_scenario(scenario_path)
    end = first + count

    def cut(mg: Any) -> Any:
        t = mg.tariff
        return replace(
            mg,
            tariff=Tariff(t.retail[first:end], t.feed_in[first:end], t.max_import_kw, t.max_export_kw),
            pv=tuple(replace(p, available_kw=p.available_kw[first:end]) for p in mg.pv),
            loads=tuple(
                replace(ld, critical_kw=ld.critical_kw[first:end], sheddable_kw=ld.sheddable_kw[first:end])
                for ld in mg.loads
            ),
        )

    window = replace(scenario, microgrids=tuple(cut(mg) for mg in scenario.microgrids))
    try:
        return -baselines.central(window, 60.0).total()
    except Exception:
        return None


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def rebargaining(dso: list[dict[str, Any]], edges: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Each interval the DSO had re-bargained (design step 6): its contracts per iteration, the injections and
    who was missing after each, the verdict, and per MG what each re-bargaining gave (rounds, trades, met)."""
    out = []
    for r in dso:
        if not r.get("rebargain"):
            continue
        per_mg = {
            mg: [
                {k: (len(v) if k in ("rounds", "trades") else v) for k, v in e.items() if k != "curve_reason"}
                for e in rec.get("rebargains", [])
            ]
            for mg, recs in edges.items()
            for rec in recs
            # an interval record, not a settlement line after it (a buyer's settle, and since E4 a seller's)
            if rec.get("interval") == r["interval"] and "settlement" not in rec
        }
        out.append({"interval": r["interval"], "contracts": r.get("adjustments", []), "iterations": r["rebargain"],
                    "secure": r.get("secure"), "unmet": r.get("unmet"), "mgs": per_mg})  # fmt: skip
    return out


def start_section(records: Path) -> dict[str, Any]:
    """The lab's start relative to t0 (`dso_ready.StartTimes`, s; negative: before t0): when the testbed, the
    DSO server's process and the MGMCs started, when the DSO node was ready and how long before t0 that was,
    whether every MGMC was started only after it, and `final`: when the DSO's health first showed every MG
    enrolled and the first interval priced for all (`dso_ready.Postings.relative`; a lab from before it
    waited for them has none); `{"error": ...}` for a lab that wrote none (one from before the DSO was
    started first)."""
    from peergrid_sim.dso_ready import START_FILE

    doc = _json(records / START_FILE)
    if not isinstance(doc, dict) or not isinstance(doc.get("dso_ready"), (int, float)):
        return {"error": f"no start times in {START_FILE}"}
    started = doc.get("mgmcs_started")
    return doc | {"dso_ready_before_mgmcs": isinstance(started, (int, float)) and doc["dso_ready"] <= started}


def stop_note(quiesce: Any, stopped: str | None) -> str | None:
    """Why `checks.quiesced` was not checked (None), or None where it was: a lab stopped before its coordinated
    halt (Ctrl-C, a signal, --duration) never ran it, and its `False` read as a failed check (U3). `stopped`: the
    testbed's stop reason, a signal's name, if it passes one."""
    if isinstance(quiesce, dict):
        return None
    by = {
        "SIGINT": "by the user (Ctrl-C)",
        "SIGTERM": "by SIGTERM",
        "SIGHUP": "by SIGHUP",
        "--duration": "at the end of its --duration",
    }
    how = by.get(stopped or "", f"by {stopped}") if stopped else "(by the user, a signal or --duration)"
    return (
        f"not checked: the lab was stopped {how} before its coordinated halt, so its replicas were not halted"
    )


def write_report(bed: Any, out_dir: Path, stopped: str | None = None) -> Path:
    """`stopped`: what stopped the lab before its end, if the caller knows (a signal's name: `stop_note`)."""
    workdir = Path(bed.workdir)
    records = workdir / "records"
    dso = json_lines(records / "dso.jsonl")
    edges = {p.stem.removeprefix("mgmc-"): json_lines(p) for p in sorted(records.glob("mgmc-*.jsonl"))}
    # the intervals the MGMCs recorded, not the run's plan: a lab stopped early (Ctrl-C, --duration) traded fewer,
    # and the centralised optimum and the prices must cover the same intervals as the costs summed below. Up to
    # the last one every MGMC that recorded any has recorded: one stopped mid-interval has that interval from
    # some MGMCs only, and the optimum over all MGs there beside the costs of some read as P2P beating it
    first = bed.loop.first_interval
    lasts = [
        max(traded) for recs in edges.values() if (traded := [r["interval"] for r in recs if "trades" in r])
    ]
    count = max(0, min(lasts) - first + 1) if lasts else 0
    intervals = list(range(first, first + count))
    paths = stores(workdir)
    ledger, proofs = ledger_figures(paths)
    anonyms = read_anonyms(workdir / "keys", [mg.name for mg in bed.scenario.microgrids])
    for line in anonyms.unread:  # that MG is shown by anonym: the page says why, and so does the log
        log.warning(
            "report: %s in %s: its MG's sellers and buyers are shown by anonym", line, workdir / "keys"
        )
    verified = verify_stores(paths)
    trades: dict[str, dict[str, Any]] = {}
    rounds_by_interval: dict[int, list[dict[str, Any]]] = {}
    cost_p2p: dict[str, float] = {}
    cost_conv: dict[str, float] = {}
    physical = conv_window = 0.0
    for mg, recs in edges.items():
        for r in recs:
            if "trades" not in r:
                continue
            for tr in r["trades"]:  # a forward trade names its day-ahead session (None: bargained intraday)
                trades[tr["id"]] = {**tr, "interval": r["interval"], "forward": r.get("forward")}
            rounds_by_interval.setdefault(r["interval"], r.get("rounds", []))
            if r["interval"] >= first + count:  # its costs: beyond the window, some MGMCs' only
                continue
            to_go = r.get("cost_to_go") or {}
            cost_p2p[mg] = cost_p2p.get(mg, 0.0) + r["cost_p2p"] + to_go.get("p2p", 0.0)
            cost_conv[mg] = cost_conv.get(mg, 0.0) + r["cost_conventional"] + to_go.get("conventional", 0.0)
            physical += r["cost_p2p"] + r["p2p_money"]
            conv_window += r["cost_conventional"]
    central = central_welfare(Path(bed.scenario_path), first, count) if count else None
    # welfare over the run's intervals only (what the three markets cost within them); the centralised optimum
    # there starts from the model's initial state and must leave the batteries as it found them
    p2p_welfare, conv_welfare = -physical, -conv_window
    saved_faults = _json(records / "device-faults.json")  # None: not collected (a lab stopped early)
    switch_ops = [
        {"interval": r["interval"], **op}
        for r in dso
        if r.get("plan")
        for op in r["plan"].get("operations", [])
    ]
    # from the first MGMC starting the interval (scheduling, bargaining) to the DSO's switching being done
    starts: dict[int, float] = {}
    for recs in edges.values():
        for r in recs:
            if "times" in r:
                starts[r["interval"]] = min(
                    starts.get(r["interval"], r["times"]["start"]), r["times"]["start"]
                )
    latency = [
        r["times"]["switched"] - starts[r["interval"]]
        for r in dso
        if "times" in r and r["interval"] in starts
    ]
    from peergrid_sim.closedloop import pacing, slot_of
    from peergrid_sim.delivery import delivery

    timing = bed.loop.timing
    paced = [
        pacing(timing, r["interval"], [e["times"]["start"] for recs in edges.values() for e in recs
                                       if e.get("interval") == r["interval"] and "times" in e],
               r.get("times", {}).get("switched"))
        for r in dso if timing is not None
    ]  # fmt: skip
    quiesce = _json(records / "quiesce.json")
    unquiesced = stop_note(quiesce, stopped)  # why the quiesce was not checked, or None
    start = start_section(records)
    consensus = _json(records / "consensus-stats.json") or {}
    for role, figures in ledger.items():  # round timeouts each replica counted (the chain id names its role)
        per_node: dict[str, Any] = next((v for c, v in consensus.items() if c.startswith(role + "-")), {})
        figures["round_timeouts"] = {node: st.get("round_timeouts", 0) for node, st in per_node.items()}
    within_bound, rationality = owner_bound(edges, cost_p2p, cost_conv, set(intervals))
    acted = acted_on(dso)
    checks = {
        # a failed interval is not done, nor one the DSO missed (over before it came to it: D8's interval_missed)
        "intervals_done": len(acted),
        "replicas_agree": bool(ledger) and all(c["identical_heads"] for c in ledger.values()),
        # None: not checked, a lab stopped before its coordinated halt (`stop_note` says so, not a failure)
        "quiesced": None if unquiesced else bool(quiesce and quiesce.get("ok")),
        "head_spread": {c: v["head_spread"] for c, v in ledger.items()},
        "stores_verify": all(v == "ok" for v in verified.values()),
        "settled_trades_proven": proofs["settled"] > 0 and proofs["verified"] == proofs["settled"],
        "topology_secure": all(not r.get("after", {}).get("violations", ["?"]) for r in acted),
        # within its conventional day plus the risk allowance its owner accepted (`report_bound`)
        "p2p_not_dearer": within_bound,
        "dso_ready_before_mgmcs": start.get("dso_ready_before_mgmcs"),
    }
    report = {
        "scenario": str(bed.scenario_path),
        "intervals": intervals,
        "interval_s": bed.loop.interval_s,
        "checks": checks,
        "not_checked": {"quiesced": unquiesced} if unquiesced else {},
        "stores_verify": verified,
        "proofs": proofs,
        "ledger": ledger,
        "prices_per_round": {str(t): rounds_by_interval.get(t, []) for t in intervals},
        # each MG's anonym (hex) as the lab's keys name it: prices and trades name sellers by anonym
        "anonyms": {key.hex(): mg for key, mg in sorted(anonyms.names.items())},
        "anonyms_unread": anonyms.unread,  # each key file of an MG's anonym not read, and why
        "trades": sorted(trades.values(), key=lambda tr: (tr["interval"], tr["seller"], tr["buyer"])),
        "mg_cost_p2p": cost_p2p,
        "mg_cost_conventional": cost_conv,
        "rationality": rationality,  # per MG: allowance, bound, within, guard mode, dso_cost, DSO limits, cause
        "uplift": uplift_section(workdir),  # the day-ahead make-whole on the MGMC chain (`report_uplift`)
        "welfare": {
            "p2p": p2p_welfare,
            "conventional": conv_welfare,
            "central": central,
            "p2p_over_central": (p2p_welfare / central) if central else None,
            # what the bench reports: the share of the achievable gain (the ratio of two costs above is not)
            "share_of_gain": share_of_gain(p2p_welfare, conv_welfare, central),
        },
        "voltages": [
            {
                "interval": r["interval"],
                "before": r["before"],
                "after": r["after"],
                "reconfiguration": r.get("reconfiguration"),
            }
            for r in dso
            if "before" in r
        ],
        "switch_operations": switch_ops,
        "latency_to_switching_done_s": latency,
        "pacing": paced,
        "overruns": sum(1 for p in paced if p["overrun_s"]),
        "quiesce": quiesce,
        "start": start,
        # per device: faults injected during the run (from/to interval), the intervals an MGMC left it out,
        # and what was still on at the end (`report_faults`)
        "device_faults": device_faults(saved_faults, edges, timing),
        "device_faults_unread": saved_faults.get("error") if isinstance(saved_faults, dict) else None,
        "rebargaining": rebargaining(dso, edges),
        # per MG and interval: agreed, stated delivered, short statements, the dispatch's lateness in its slot
        "delivery": delivery(edges, None if timing is None else lambda t: slot_of(timing, t)),
        "dso": dso,
    }
    report["check_why"] = check_why(report)  # each check's counts, and what failed (`report_why`)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    (out_dir / "report.html").write_text(html(report), encoding="utf-8")
    return out_dir / "report.html"
