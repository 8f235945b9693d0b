"""Why each of the lab report's checks passed or failed, one sentence each, from the figures the report holds.

Promises: `check_why(report)` gives {check: sentence} for every check in `report["checks"]` but
`p2p_not_dearer` (its cause is `rationality`'s, `report_bound`) and `head_spread` (a figure, not a verdict);
each sentence names the counts behind the verdict and, on a failure, what failed (the first five). Pure: reads
the report's own sections (`intervals`, `dso`, `quiesce`, `ledger`, `stores_verify`, `proofs`, `start`), never
a file. A section missing (a report from before it) gives "no figures in the report", never an error.
`acted_on(records)` keeps the DSO records of intervals it acted on (not failed, not missed), the rule the
report's own `intervals_done` and `topology_secure` count by too.
"""

from __future__ import annotations

from collections import Counter
from typing import Any


def acted_on(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The DSO's interval records of intervals it acted on: neither failed (`error`) nor missed (over before it
    came to them, D8's `missed`). The one rule `intervals_done` and `topology_secure` count by (`report`)."""
    return [r for r in records if "error" not in r and "missed" not in r]


def check_why(report: dict[str, Any]) -> dict[str, str]:
    checks = report.get("checks", {})
    said = {
        "intervals_done": _intervals(report),
        "replicas_agree": _replicas(report),
        "quiesced": _quiesced(report),
        "stores_verify": _stores(report),
        "settled_trades_proven": _proofs(report),
        "topology_secure": _topology(report),
        "dso_ready_before_mgmcs": _ready(report),
    }
    return {k: said[k] for k in checks if k in said}


def _first(items: list[Any]) -> str:
    more = f" and {len(items) - 5} more" if len(items) > 5 else ""
    return ", ".join(str(i) for i in items[:5]) + more


def _intervals(report: dict[str, Any]) -> str:
    asked = list(report.get("intervals", []))
    records = [r for r in report.get("dso", []) if isinstance(r, dict)]
    failed = [r.get("interval") for r in records if "error" in r]
    missed = [r.get("interval") for r in records if "missed" in r and "error" not in r]
    counted = Counter(int(r["interval"]) for r in records if isinstance(r.get("interval"), int))
    twice = sorted(t for t, n in counted.items() if n > 1)
    words = f"{len(records) - len(failed) - len(missed)} DSO interval records for the {len(asked)} intervals asked"
    if failed:
        words += f"; the DSO failed intervals {_first(failed)}"
    if missed:  # over before the DSO came to them (down, or behind): recorded, not acted on (D8)
        whys = sorted({str(r["missed"]) for r in records if "missed" in r and "error" not in r})
        words += f"; the DSO missed intervals {_first(missed)} ({'; '.join(whys)})"
    if twice:  # a DSO node that ran an interval twice
        words += f"; intervals {_first(twice)} recorded more than once (the DSO node ran them again)"
    missing = sorted(set(asked) - {r.get("interval") for r in records})
    if missing:
        words += f"; no DSO record of intervals {_first(missing)}"
    return words


def _replicas(report: dict[str, Any]) -> str:
    ledger = report.get("ledger") or {}
    if not ledger:
        return "no figures in the report"
    parts = []
    for chain, fig in ledger.items():
        hashes = fig.get("head_hashes", {})
        if fig.get("identical_heads"):
            parts.append(f"{chain}: {len(hashes)} replicas on one head at height {fig.get('lowest_head')}")
        else:
            common = Counter(hashes.values()).most_common(1)
            odd = [n for n, h in hashes.items() if not common or h != common[0][0]]
            parts.append(
                f"{chain}: heads differ (spread {fig.get('head_spread')}); off the most common: {_first(odd)}"
            )
    return "; ".join(parts)


def _quiesced(report: dict[str, Any]) -> str:
    q = report.get("quiesce") or {}
    if not q:
        return (report.get("not_checked") or {}).get("quiesced") or "no figures in the report"
    halt = ", ".join(f"{c} {h}" for c, h in (q.get("halt") or {}).items())
    words = f"halted at {halt or '?'} in {q.get('halt_s')} s, {q.get('pending_at_halt')} transactions pending at the halt"
    return words if q.get("ok") else f"not every replica reached its halt height: {words}"


def _stores(report: dict[str, Any]) -> str:
    verified = report.get("stores_verify") or {}
    bad = [f"{store} ({word})" for store, word in verified.items() if word != "ok"]
    words = f"{len(verified) - len(bad)} of {len(verified)} stores pass `peergrid-ledger verify`"
    return f"{words}; failing: {_first(bad)}" if bad else words


def _proofs(report: dict[str, Any]) -> str:
    p = report.get("proofs") or {}
    if not p.get("settled"):
        return "no settled trade to prove (the check needs at least one)"
    words = f"{p.get('verified')} of {p.get('settled')} settles' inclusion proofs verify"
    failed = p.get("failed") or []
    return f"{words}; failing: {_first(failed)}" if failed else words


def _topology(report: dict[str, Any]) -> str:
    records = acted_on([r for r in report.get("dso", []) if isinstance(r, dict)])
    unanalysed = [r.get("interval") for r in records if "violations" not in r.get("after", {})]
    broken = [r.get("interval") for r in records if r.get("after", {}).get("violations")]
    words = f"{len(records) - len(unanalysed) - len(broken)} of {len(records)} intervals without a violation after the DSO's part"
    if broken:
        words += f"; violations in intervals {_first(broken)}"
    if unanalysed:
        words += f"; no power flow after the DSO's part in intervals {_first(unanalysed)}"
    return words


def _ready(report: dict[str, Any]) -> str:
    s = report.get("start") or {}
    if "dso_ready_before_t0_s" not in s:
        return "no figures in the report"
    return (
        f"the DSO node ready {s.get('dso_ready_before_t0_s')} s before the first interval (its start-up "
        f"{s.get('dso_start_up_s')} s), the MGMCs started {round(s['mgmcs_started'] - s['dso_ready'], 3)} s after it"
        if isinstance(s.get("mgmcs_started"), (int, float)) and isinstance(s.get("dso_ready"), (int, float))
        else f"the DSO node ready {s.get('dso_ready_before_t0_s')} s before the first interval"
    )
