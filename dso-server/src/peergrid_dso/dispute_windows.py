"""When the DSO takes up a trade that is not disputed, and from which chain time its deadline rules apply.

Promises: pure functions of the chain's settlement record (`query.settlement`: `where`) and the trade's sealed
commitments (`seals`: party -> {seal, time, txid}); no I/O, no clock (the chain's time is passed in). Why each
rule: `disputes`' docstring, which applies them.
- `lone_since`: the trade stands on one party's word (review13 F4): one statement whose silent party never
  committed, or one commitment and no statement; the DSO meters it from `LONE_FROM` of the contract's wait
  and applies its deadline rules from `LONE_RULE`, before the stater's repeat can lapse it alone.
- `unrevealed_since`: both parties committed sealed statements, neither revealed, and the reveal deadline
  passed (review14 K3b): the contract settles such a trade only on a party's late reveal and repeat, so
  without the DSO it can stay open for ever (a seller whose salt is gone is never paid when its buyer keeps
  its reveal back); the DSO meters it like a dispute that became one at the reveal deadline.
- `VOUCH_RULE`: an agreement waiting for the DSO (seller_vouched) whose seller cannot be metered is settled at
  0 from that part of its window.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

# a trade on one statement (review13 F4): the DSO meters it from LONE_FROM of the contract's wait (its lapse,
# when the stater's repeated statement settles it alone) and applies the deadline rules from LONE_RULE
LONE_FROM = Fraction(1, 2)
LONE_RULE = Fraction(3, 4)
# an agreement waiting for the DSO's word (seller_vouched): an unmetered seller is waited for until this part of
# its window, then settled at 0 (D7), a quarter of the window before the parties' repeat pays the held figures
VOUCH_RULE = Fraction(3, 4)


def is_lone(where: Mapping[str, Any], seals: Mapping[str, Any]) -> bool:
    """The trade stands on one party's word (`lone_since`)."""
    return lone_since(where, seals) is not None


def lone_since(where: Mapping[str, Any], seals: Mapping[str, Any]) -> int | None:
    """The chain ms at which the one party's word on the trade landed, None when it does not stand on one
    (`where`: `query.settlement`; `seals`: the trade's sealed commitments, party -> {time, ...}): one statement
    (not settled, disputed or vouching) whose silent party never committed a sealed one - one that committed
    and keeps its reveal back is taken at its worst by the contract (`market_sealed.withheld`), which no
    metering improves on for the party that revealed -, or on a sealed chain one party's commitment and no
    statement (the silent party never committed: after the commit deadline the committer's reveal and its
    repeat lapse at once, so the DSO must come within the commit window)."""
    if where["deadline"] is None:
        return None
    if where["state"] == "stated" and len(where["statements"]) == 1:
        [(stater, said)] = where["statements"].items()
        return None if ("buyer" if stater == "seller" else "seller") in seals else int(said["time"])
    if where["state"] == "open" and len(seals) == 1:
        [sealed] = seals.values()
        return int(sealed["time"])
    return None


def reveals_due(where: Mapping[str, Any], seals: Mapping[str, Any]) -> int | None:
    """The reveal deadline (chain ms) of a trade both of whose parties committed and neither revealed yet (the
    second commitment set it: `market_sealed.commit`), None otherwise."""
    if where["state"] != "open" or where["statements"] or len(seals) != 2 or where["deadline"] is None:
        return None
    return int(where["deadline"])


def unrevealed_since(where: Mapping[str, Any], seals: Mapping[str, Any], now_ms: int) -> int | None:
    """The reveal deadline of a trade both of whose parties committed and neither revealed by it, once the
    chain's time `now_ms` reached it (the DSO meters it from then: module docstring); None otherwise."""
    due = reveals_due(where, seals)
    return due if due is not None and now_ms >= due else None


def part(start: int, end: int, fraction: Fraction) -> int:
    """The chain ms `fraction` of the way from `start` (the lone word, or the agreement) to `end` (the
    contract's deadline, or the vouch's `until`)."""
    return start + math.floor(max(0, end - start) * fraction)
