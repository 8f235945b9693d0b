"""The DSO's decision on a trade that waits for its word (`disputes.resolve`): the Wh it settles with and how it
was found (`Vouched`), or why it does not settle now (`Unresolved`), and either as plain JSON (`to_json`, for the
node's record and the API). Pure data; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from peergrid_dso.dispute_shares import Metered
from peergrid_dso.sealed_readings import ReadingsCount


@dataclass(frozen=True)
class Vouched:
    """The Wh the DSO settles with: both sides metered (`rule` "both metered": the smaller share), or after
    the dispute's deadline the rule for the side(s) that could not be metered (`unmetered`: side -> why);
    `readings`: each party's meter readings the DSO verified (signed, unsigned, refused and why)."""

    trade: bytes
    delivered: int
    agreed: int
    seller: Metered | None
    buyer: Metered | None
    rule: str = "both metered"
    unmetered: Mapping[str, str] = field(default_factory=dict)
    shorts: tuple[int, int] | None = None  # (seller's, buyer's) Wh on a priced trade (module docstring)
    # side -> the PCC meter readings the DSO verified of that party (None: none, e.g. meterless, or not at the DSO)
    readings: Mapping[str, ReadingsCount | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Unresolved:
    trade: bytes
    why: str
    until_ms: int | None = None  # chain time from which the deadline's rule settles it (None: no deadline)


Decision = Vouched | Unresolved


def to_json(decision: Decision) -> dict[str, Any]:
    """A decision as plain JSON values (for the node's record and the API)."""
    if isinstance(decision, Unresolved):
        doc: dict[str, Any] = {"trade": decision.trade.hex(), "resolved": False, "why": decision.why}
        if decision.until_ms is not None:
            doc["until_ms"] = decision.until_ms
        return doc

    def side(m: Metered | None) -> dict[str, Any] | None:
        if m is None:
            return None
        return {"node": m.node.hex(), "energy_wh": float(m.energy_wh), "agreed_total": m.agreed_total,
                "share_wh": m.share_wh, "shared_by": m.shared_by, "taken_wh": m.taken_wh}  # fmt: skip

    return {"trade": decision.trade.hex(), "resolved": True, "delivered": decision.delivered,
            "agreed": decision.agreed, "seller": side(decision.seller), "buyer": side(decision.buyer),
            "rule": decision.rule, "unmetered": dict(decision.unmetered),
            "readings": {s: None if r is None else r.to_json() for s, r in decision.readings.items()},
            **({} if decision.shorts is None else
               {"seller_short": decision.shorts[0], "buyer_short": decision.shorts[1]})}  # fmt: skip
