"""Who did what: every operator action's `operator_action` record on the chains, and the console's audit trail.

Promises: `OperatorAudit.seal(user, action, before)` records who did it - an `operator_action` naming `user`
and the transactions the action caused (those pending now that were not `before` it, the last `MAX_TXS`) -
and seals it with them into one final block on the DSO chain always, and on the MGMC chain too where the action
wrote there (a revocation, `EnrolmentService.mgmc_recorder`; each record names its own chain's transactions);
then the line is added to the audit trail and, with a `ConsoleDb`, kept in the DSO's data directory across
restarts. The trail in memory (`lines`, oldest first) holds the last `AUDIT_KEPT` lines, the operators' and the
node's (`add`: last, or by height for the node's records read after the fact); `added` counts every line added,
so a view's version moves when one is added to a full trail. Older lines stay on the DSO chain (and the
operators' in the `ConsoleDb`); the view shows the last 50. `outcome` is the trail's words for a switching the
operator asked for. Callers hold the one-action-at-a-time lock (`Operations.lock`) around an action and its
seal; `add` takes a lock of its own (the node's reader inserts while an operator's action appends). Split out of
`console.operations`, which still names `AUDIT_KEPT` and `outcome`.
"""

from __future__ import annotations

import bisect
import threading
import time
from typing import Any

from peergrid_dso.auth.store import ConsoleDb

# Audit lines kept in memory. The closed loop's node adds one for every interval it switches in and every change
# its relay watch records, so a pilot that runs for months grew the list (and every view's copy of its tail)
# without end; 1,000 is what the ConsoleDb gives back at a start, 20 times what the view shows.
AUDIT_KEPT = 1000
OPERATOR_MAX, ACTION_MAX, MAX_TXS = 64, 128, 256  # the ledger's operator_action limits


class OperatorAudit:
    def __init__(self, dso: Any, db: ConsoleDb | None = None) -> None:
        self.dso = dso  # peergrid_dso.services.container.DsoServices: its chains and recorders
        self.db = db  # where the audit trail outlives a restart (the DSO chain holds the same records)
        self.lines: list[dict[str, Any]] = (db.audit() if db is not None else [])[-AUDIT_KEPT:]
        self.added = 0  # lines added in this life (the view's version: `lines` stops growing when full)
        self._adding = threading.Lock()  # the node's reader inserts while an operator's action appends

    def chains(self) -> list[tuple[Any, Any]]:
        """(chain, recorder) of each chain an action may write to: the DSO chain, and in the closed loop the
        MGMC chain, where a revocation goes too (`EnrolmentService.mgmc_recorder`)."""
        pairs = [(self.dso.chain, self.dso.recorder)]
        mgmc = getattr(self.dso.enrolment, "mgmc_recorder", None)
        if mgmc is not None and hasattr(mgmc, "chain"):
            pairs.append((mgmc.chain, mgmc))
        return pairs

    def pending(self) -> set[bytes]:
        """The transactions pending on every chain an action may write to (an action's `before`)."""
        return {tx.txid for chain, _ in self.chains() for tx in chain.pending}

    def seal(self, user: str, action: str, before: set[bytes]) -> dict[str, Any]:
        """Record who did it (`operator_action`, naming the transactions the action caused: those pending now
        that were not `before` it) and seal it with them into a final block - on the DSO chain always, and
        on the MGMC chain too when the action wrote there (each record names its own chain's transactions)."""
        (dso_chain, dso_recorder), *others = self.chains()
        entry = _record(dso_chain, dso_recorder, user, action, before)
        for chain, recorder in others:
            if any(tx.txid not in before for tx in chain.pending):
                entry["mgmc_chain"] = _record(chain, recorder, user, action, before)
        entry["at"] = time.time()
        self.add(entry)
        if self.db is not None:
            self.db.add_audit(entry["at"], entry)
        return entry

    def add(self, line: dict[str, Any], *, by_height: bool = False) -> None:
        """Add a line to the audit trail: last, or (`by_height`: the node's records, read after the fact) after every
        line of its height or below; then only the last `AUDIT_KEPT` lines are kept."""
        with self._adding:
            if by_height:
                where = bisect.bisect_right(self.lines, line["height"], key=lambda e: e.get("height") or 0)
                self.lines.insert(where, line)
            else:
                self.lines.append(line)
            del self.lines[:-AUDIT_KEPT]
            self.added += 1


def _record(chain: Any, recorder: Any, user: str, action: str, before: set[bytes]) -> dict[str, Any]:
    caused = [tx.txid for tx in chain.pending if tx.txid not in before]
    record = {"operator": user[:OPERATOR_MAX], "action": action[:ACTION_MAX], "txs": caused[-MAX_TXS:]}
    recorded = recorder.submit("operator_action", record)
    height = chain.seal()[0].height
    return {
        "user": user,
        "action": action,
        "txids": [txid.hex() for txid in caused],
        "record": recorded.txid.hex(),
        "height": height,
    }


def outcome(action: str, ok: bool, alarm: str | None) -> str:
    """The audit trail's words for a switching the operator asked for: the action alone when it was done, else
    with "not done" and the executor's reason, so a refused or failed operation never reads as a done one (U3:
    four failed "close branch N" read exactly as the done ones, on the chain and in the Operations view)."""
    return action if ok else f"{action}: not done ({alarm or 'failed'})"
