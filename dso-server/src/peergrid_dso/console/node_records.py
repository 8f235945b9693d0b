"""The DSO node's own records on the DSO chain, as lines of the Operations view's audit trail (U3-7).

Promises: `NodeRecords.scan()` reads the DSO chain's blocks it has not read yet (once each; at a server's start
from the last `SCAN_BACK` blocks: a month's idle chain holds a million, and the view shows the last 50 lines;
older ones are in the ledger explorer) and returns the audit entries they make, in the console's own shape (`user`, `action`, `txids`,
`record`, `height`, `at`: the chain reference each line carries) with `user` the node (`NODE`): the closed
loop's reconfiguration, each `switching_plan` the interval planner made (`interval-<t>`) or the start's
adoption (`... at start`), one line (`record`, `height`: its switching_plan's) naming its plan's, steps' and
result's txids, done or 'not done' with the switches that failed (changed in place when its result comes:
`changes` counts lines made and changed; a plan waits for its result among the last `RESULTS_AWAITED` plans,
an older one stays 'no result recorded yet'); and each
`operator_action` the node signed under its own name (the relay watch's read-back records, the chain
adapter's nonce fillers). An operator's plans and actions are not the node's: the console records those
itself (`operator_audit.OperatorAudit.seal`). Reads only; not thread-safe (the caller holds one lock around `scan`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from peergrid_dso.console.chains import ReadableChain
from peergrid_dso.console.operator_audit import outcome
from peergrid_dso.node_name import NODE_NAME

NODE = NODE_NAME  # the name the node signs its own operator_action records with
INTERVAL_PLAN = re.compile(r"interval-(\d+)")  # services.interval's plan ids
START_ADOPTION = " at start"  # dso_node's adoption_id(..., "at start")
SCAN_BACK = 10_000  # blocks read back from the head at the first scan: 5.6 h of an idle chain (2-s heartbeat)
# plans whose line waits for its result: a result comes within its interval, and one that never does (the node
# stopped mid-plan) is given up once this many newer wait, its line left 'no result recorded yet': a day and
# more of 15-minute intervals; without a bound a pilot running for months held every such plan
RESULTS_AWAITED = 100


def node_plan(plan_id: str) -> bool:
    """Whether a switching plan is the node's own: the interval planner's or the start's adoption."""
    return INTERVAL_PLAN.fullmatch(plan_id) is not None or plan_id.endswith(START_ADOPTION)


class NodeRecords:
    def __init__(self, chain: ReadableChain, back: int = SCAN_BACK, awaited: int = RESULTS_AWAITED) -> None:
        self.chain, self.back, self.awaited = chain, back, awaited
        self.scanned: int | None = None  # the last height read (None: none yet)
        self.changes = 0  # lines made or changed so far (for the Operations view's version)
        self._plans: dict[
            str, tuple[dict[str, Any], str]
        ] = {}  # plan id -> its line and words, until its result
        # the lines of the blocks a scan read before one that failed (`scanned` is past them): the next scan's
        self._found: list[dict[str, Any]] = []

    def scan(self, stop: Callable[[], bool] = lambda: False) -> list[dict[str, Any]]:
        """The new lines since the last scan (a plan's line also changes in place when its result comes); once
        `stop()` says so, no further block is read (the rest at the next scan). A block that cannot be read
        raises, and the lines of the blocks read before it come with the next scan that returns (R42: they were
        lost, `scanned` being past them)."""
        found = self._found
        head = int(self.chain.height)
        if self.scanned is None:
            self.scanned = max(0, head - self.back)
        for height in range(self.scanned + 1, head + 1):
            if stop():
                break
            block = self.chain.block(height)
            at = block.header.time / 1000
            # a block's lines are kept whole or not at all: one that raises is read again at the next scan
            found.extend([line for tx in block.txs if (line := self._line(tx, height, at)) is not None])
            self.scanned = height
        self._found = []
        self.changes += len(found)
        return found

    def _line(self, tx: Any, height: int, at: float) -> dict[str, Any] | None:
        body = tx.body
        if tx.kind == "operator_action" and body.get("operator") == NODE:
            txids = [t.hex() for t in body.get("txs", [])]
            return {"user": NODE, "action": body["action"], "txids": txids, "record": tx.txid.hex(),
                    "height": height, "at": at}  # fmt: skip
        plan_id = str(body.get("plan", ""))
        if tx.kind == "switching_plan" and node_plan(plan_id):
            moves = ", ".join(f"{'close' if a['close'] else 'open'} {a['switch']}" for a in body["actions"])
            said = f"adopt relay positions ({plan_id})" if plan_id.endswith(START_ADOPTION) else (
                f"reconfigure for interval {body['interval']} ({plan_id})"
            )  # fmt: skip
            said = f"{said}: {moves or 'no switching'}"
            line = {"user": NODE, "action": f"{said}: no result recorded yet", "txids": [tx.txid.hex()],
                    "record": tx.txid.hex(), "height": height, "at": at}  # fmt: skip
            self._plans.pop(plan_id, None)  # (re-inserted: the newest)
            self._plans[plan_id] = (line, said)
            while len(self._plans) > self.awaited:  # the oldest waits no longer (dicts keep insertion order)
                del self._plans[next(iter(self._plans))]
            return line
        if tx.kind not in ("switching_step", "switching_result") or plan_id not in self._plans:
            return None
        line, said = self._plans[plan_id]
        line["txids"] = [*line["txids"], tx.txid.hex()]
        if tx.kind == "switching_result":
            failed = [r["switch"] for r in body["results"] if not r["ok"]]
            why = None if not failed else f"{', '.join(failed)} not confirmed"
            line["action"] = outcome(said, not failed, why)  # its record and height stay the plan's
            del self._plans[plan_id]
            self.changes += 1
        return None
