"""The end of a lab run (`quiesced`): once no transaction is pending anywhere (or a few seconds of blocks
passed) - and, on a settle_by_both chain, every trade the MGMCs recorded has its settlement recorded by one of
its parties (or the counterparty's window and a few intervals passed: the last interval is stated after its
end), and on a chain with the uplift contract every MGMC that claimed the day-ahead make-whole recorded its
payment (`unpaid_uplift`: the edge settles it after the day's settlements; bounded by `_uplift_s`) - it halts both chains a few blocks above the highest head (`control/halt.json`, which every MGMC and the
DSO node read), then says True when every replica reports that height and the same head on both chains, or
when the bounded wait is over; what it found (heads per node, transactions still pending) goes to
`records/quiesce.json`. Reads the nodes' status files and records only; starts nothing. Moved out of
`closedloop` (which re-exports it) when that grew past its size.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from peergrid_sim.report import json_lines

HALT_FILE = "halt.json"


def halt_file(records: Path) -> Path:
    """Where `quiesced` writes the coordinated stop's heights, which every MGMC and the DSO node read."""
    return records.parent / "control" / HALT_FILE


def _statuses(workdir: Path) -> dict[str, dict[str, Any]]:
    """Each node's last written ledger status: node dir name -> {chain id: {height, head, mempool, ...}}."""
    out = {}
    for path in sorted((workdir / "nodes").glob("*/ledger-status.json")):
        try:
            out[path.parent.name] = json.loads(path.read_text(encoding="utf-8"))["chains"]
        except (OSError, ValueError, KeyError):
            continue  # being replaced right now: read it next time
    return out


def unsettled_in_records(records: Path) -> list[str]:
    """Trades the MGMCs' interval records name that none of their parties recorded an ending for yet (with
    settle_by_both each MGMC records how each of its trades ended: edge settlement.py), and disputed ones the
    DSO's record (`disputes.jsonl`, dso-server dispute_node.py) does not say it settled or found settled yet:
    the MGMCs post their readings when they see the dispute, and the DSO settles from them a block or two on."""
    traded: set[str] = set()
    ended: set[str] = set()
    disputed: set[str] = set()
    for path in sorted(records.glob("mgmc-*.jsonl")):
        for doc in json_lines(path):
            traded.update(
                str(tr["id"]) for tr in doc.get("trades") or [] if isinstance(tr, dict) and "id" in tr
            )
            if isinstance(doc.get("settlement"), dict):
                trade = str(doc["settlement"].get("trade"))
                ended.add(trade)
                if str(doc["settlement"].get("reason", "")).startswith("disputed"):
                    disputed.add(trade)
    decided = {
        str(doc.get("trade"))
        for doc in json_lines(records / "disputes.jsonl")
        if doc.get("settled") or str(doc.get("outcome", "")).startswith("no longer disputed")
    }
    return sorted((traded - ended) | (disputed - decided))


def unpaid_uplift(records: Path) -> list[str]:
    """The MGMCs whose records hold the day-ahead make-whole's claim stage (`uplift_claim`, edge day_stages)
    but not yet its payment stage (`uplift`, recorded once the chain settled it or the stage gave up), by
    record file name; none when no MGMC claimed (no clear, or a chain without the uplift contract)."""
    out = []
    for path in sorted(records.glob("mgmc-*.jsonl")):
        docs = json_lines(path)
        if any("uplift_claim" in doc for doc in docs) and not any("uplift" in doc for doc in docs):
            out.append(path.stem)
    return out


def _uplift_s(loop: Any) -> float | None:
    """How long the end waits for the make-whole's payment (None: the MGMC chain has no uplift contract), from
    when every MGMC recorded the last interval: the edge's day end (an interval at least past its last one,
    `settle_day`), the stage's wait for the day's trades to settle (four phases, day_stages), the backup
    members' grace (a phase) and the settle's own final block (a phase), with an interval to spare; on a
    settle_by_both chain after the bound of the trades' own settling (`_settling_s`), which it waits for. What
    the end waits for are the records (`unpaid_uplift`); this only bounds it when one never comes."""
    chains = getattr(loop, "chains", None)
    if chains is None or not getattr(loop, "dayahead", False):
        return None
    contracts = json.loads(chains.mgmc_genesis.read_text(encoding="utf-8")).get("contracts", [])
    if "uplift" not in contracts:
        return None
    from peergrid_sim.closedloop import phase_timeout_s

    interval = float(loop.interval_s)
    return 2 * interval + 6 * phase_timeout_s(interval)


def _settling_s(loop: Any) -> float | None:
    """How long the end waits for the last statements and disputes (None: the chain does not settle by both),
    from when every MGMC recorded the last interval: that interval's statements go after its end and a meter
    poll (an interval and a poll at most); a silent counterparty has the chain's window (`settle_wait_ms`)
    from the last of them, after which the stating MGMC states again (a phase: edge trader's end of day); a
    dispute's readings reach the DSO, which settles it or tries again a phase later (`retry_s`); a phase for
    a transaction to reach a final block. What the end waits for are those events
    (`unsettled_in_records`); this only bounds it when one never comes."""
    chains = getattr(loop, "chains", None)
    if chains is None:
        return None
    params = json.loads(chains.mgmc_genesis.read_text(encoding="utf-8")).get("params", {})
    if not params.get("settle_by_both"):
        return None
    interval = float(loop.interval_s)
    window = int(params.get("settle_wait_ms", 3_600_000)) / 1000
    from peergrid_sim.closedloop import phase_timeout_s, poll_period_s

    return interval + poll_period_s(interval) + window + 3 * phase_timeout_s(interval)


def quiesced(loop: Any, bed: Any, bound_s: float | None = None) -> bool:
    """One step of the end-of-run quiesce (call it until it says True); see the module docstring."""
    workdir = Path(bed.workdir)
    halt_path, result_path = workdir / "control" / HALT_FILE, workdir / "records" / "quiesce.json"
    if result_path.exists():
        return True
    now, statuses = time.time(), _statuses(workdir)
    chains = sorted({c for doc in statuses.values() for c in doc})
    pending = sum(int(st.get("mempool", 0)) for doc in statuses.values() for st in doc.values())
    heads = {
        c: {node: (doc[c]["height"], doc[c]["head"]) for node, doc in statuses.items() if c in doc}
        for c in chains
    }
    period_s = loop.block_period_ms / 1000
    bound = bound_s if bound_s is not None else 45.0
    if not halt_path.exists():
        started = getattr(loop, "_quiesce_from", None) or now
        loop._quiesce_from = started
        settling = _settling_s(loop)
        if settling is not None and now - started < settling and unsettled_in_records(workdir / "records"):
            return False  # the last interval's trades are stated after its end: let them settle or dispute
        # the make-whole after the trades' settling, which it waits for (settle_by_both)
        paying = _uplift_s(loop)
        paying = None if paying is None else paying + (settling or 0.0)
        if paying is not None and now - started < paying and unpaid_uplift(workdir / "records"):
            return False  # the day's make-whole is settled after the day's trades: let it land
        if pending and now - started < max(3.0, 10 * period_s):
            return (
                False  # let what is in flight land first (a tx the chain refuses may never leave a mempool)
            )
        # far enough above the highest head that no replica is past it when it reads the file (0.5 s)
        margin = max(3, math.ceil(3.0 / period_s))
        halt = {c: max(h for h, _ in heads[c].values()) + margin for c in chains if heads[c]}
        halt_path.parent.mkdir(parents=True, exist_ok=True)
        # whole or not at all: every replica polls this file, and a half-written read is no stop (halt.py)
        partial = halt_path.with_name(halt_path.name + ".tmp")
        partial.write_text(json.dumps(halt), encoding="utf-8")
        partial.replace(halt_path)
        loop._quiesce_halt = (now, halt, pending)
        return False
    halted_at, halt, pending_at_halt = loop._quiesce_halt
    same = all(
        len(set(heads[c].values())) == 1 and next(iter(heads[c].values()))[0] == halt.get(c) for c in chains
    )
    if not (same or now - halted_at > bound):  # halted, nothing pending can land any more: just count it
        return False
    doc = {
        "ok": same,  # every replica of both chains on the halt height with the same head
        "waited_s": round(now - getattr(loop, "_quiesce_from", halted_at), 2),
        "halt_s": round(now - halted_at, 2),  # of which from the halt file to every replica's status on it
        "halt": halt,
        "pending_at_halt": pending_at_halt,
        "pending": pending,
        "heads": {c: {n: list(v) for n, v in heads[c].items()} for c in chains},
    }
    result_path.write_text(json.dumps(doc), encoding="utf-8")
    return True
