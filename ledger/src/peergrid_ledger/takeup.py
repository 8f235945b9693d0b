"""When the DSO takes up a trade from the meters: the one rule, read off the chain's trade record.

Promises: pure functions of one trade record as the chain keeps it (`query.trade`, and each entry of
`query.trades`: {seller, buyer, quantity, statements?, seals?, deadline?, settlement, disputed?, vouch?,
superseded?}) and, where a rule depends on it, the chain's time `now_ms` (its head block's; None: unknown);
no clock, no I/O. The DSO node (dso-server `disputes`, `dispute_node`) and the edge (`pcc_readings`) both
call them on that one record, so the DSO meters the trades whose readings the MGMCs post, no other.
- `waits_for_dso(trade, now_ms)`: why the trade waits for the DSO's word at `now_ms`, or None: it is
  settled, superseded, agreed on the parties' word, or still the parties' (a reveal may still come);
  `with_dso` the same with its times (`TakeUp`). The kinds, in the order the chain reads the record
  (`market_state.settlement`'s states):
  - "disputed": two statements that disagree; since the later one.
  - "vouching": an agreement waiting for the DSO's word (genesis seller_vouched, review13 F2; also a
    withheld party's lone word, basis "withheld"); since the later statement. The DSO reads both parties'
    meters: the seller's for what was delivered, the buyer's for its own shortfall on a priced trade (D2), so
    both edges post their readings for it.
  - "lone": the trade stands on one party's word (review13 F4; `lone_since`).
  - "unrevealed": both parties committed sealed statements and neither revealed by the reveal deadline
    (review14 K3b; `unrevealed_since`); only once `now_ms` reached it, so never at an unknown time.
  - "withheld": both committed, one revealed and the other did not by the reveal deadline, and the stater
    has not repeated its statement (`withheld_since`, D4); only once `now_ms` reached the deadline.
- `TakeUp.meters_from_ms`: from when the DSO meters it (`takes_up`): a lone word from `LONE_FROM` of the
  contract's wait (until then the other party may still join it: an agreement is not pre-empted), every
  other kind at once. `TakeUp.rules_from(wait_ms)`: from when an unmetered side loses the "smaller of the
  two" rule (dso-server `disputes`' deadline rules): a dispute and an unrevealed trade `wait_ms` after
  `since_ms` (the chain's `settle_wait_ms` unless the DSO sets its own), a lone word at `LONE_RULE` of the
  contract's wait (before the stater's repeat can lapse it alone), a vouching agreement at `VOUCH_RULE` of
  its window (a quarter of it before the parties' repeat pays the held figures), for either side's meter.
- `reveals_due(trade)`: the reveal deadline of a trade both parties committed to and neither revealed yet,
  whatever the time: when to look again (the DSO node watches it until then); `withheld_due(trade)` the
  same for a trade one of them revealed on.
`with_dso` raises `ValueError` for a record the chain never writes (a dispute without its statements, a word
without the contract's deadline): a corrupt record is no trade to guess a time for.
Why a lone word is the DSO's and an unrevealed trade only from its deadline: one statement whose silent
party never committed, or on a sealed chain one commitment and no statement, settles alone on its party's
repeat after the contract's wait (taking the silent party's shortfall at its word), so the DSO must come
within that wait; an honest edge is silent on purpose when its meter cannot prove the interval (edge
`pcc_readings.Unprovable`). A silent party that committed and keeps its reveal back is taken at its worst by
the contract (`market_sealed.withheld`), which no metering improves on for the party that revealed: not lone.
Two commitments and no reveal are the parties' until the reveal deadline; after it the contract settles
such a trade only on a late reveal and repeat, which it refuses (`market_sealed.check_reveal`), so without
the DSO it stays open for ever (a seller whose salt is gone is never paid when its buyer keeps its reveal
back): the DSO meters it like a dispute that became one at the reveal deadline.
A revealed statement whose counterparty committed and kept its reveal back settles on the stater's repeat
(the withholder at its worst, or with seller_vouched held for the DSO's meter: `market_vouch`); a stater that
never repeats (down after its reveal) left it "stated" for ever, nobody paid, and a sibling took it at that
statement for good (D3, run by D4: s sold 400 to b, b withheld, and 200 to c, disputed; s's meter 400,
b's and c's 200, priced: c's trade settled 0 delivered, s paid c 20,000 compensation for energy c took from s, b paid
nothing). The DSO takes it up at the reveal deadline, as it does two commitments nobody revealed, and settles
it as the stater's repeat would (dso-server `disputes`: with seller_vouched the hold's metering, else the
contract's penalty), so its figure is the same whoever moves first; from then it is one of its parties'
disputed trades (`metering.metered_as_dispute`), which a sibling waits for until its own deadline. Why at
the deadline: a sibling's dispute, whose deadline runs from its second reveal, must find it taken up.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

# a trade on one party's word (review13 F4): the DSO meters it from LONE_FROM of the contract's wait (its lapse,
# when the stater's repeated statement settles it alone) and applies the deadline rules from LONE_RULE
LONE_FROM = Fraction(1, 2)
LONE_RULE = Fraction(3, 4)
# an agreement waiting for the DSO's word (seller_vouched): an unmetered seller is waited for until this part of
# its window, then settled at 0 (D7), a quarter of the window before the parties' repeat pays the held figures;
# so is an unmetered buyer, then named the whole gap its shortfall (D2)
VOUCH_RULE = Fraction(3, 4)

Kind = Literal["disputed", "vouching", "lone", "unrevealed", "withheld"]


@dataclass(frozen=True)
class TakeUp:
    """A trade that waits for the DSO's word (module docstring): why (`kind`), since when (chain ms), from when
    the DSO meters it, and `ends_ms`, the end its deadline rules are a part of: the contract's deadline (a
    lone word) or the vouch's `until` (vouching); None where they run the DSO's wait from `since_ms`."""

    kind: Kind
    since_ms: int
    meters_from_ms: int
    ends_ms: int | None = None

    def rules_from(self, wait_ms: int) -> int:
        """The chain ms from which the DSO settles without a side it cannot meter (module docstring)."""
        if wait_ms < 0:
            raise ValueError("wait_ms must not be negative")
        if self.kind == "lone" and self.ends_ms is not None:
            return part(self.since_ms, self.ends_ms, LONE_RULE)
        if self.kind == "vouching" and self.ends_ms is not None:
            return part(self.since_ms, self.ends_ms, VOUCH_RULE)
        return self.since_ms + wait_ms


def part(start: int, end: int, fraction: Fraction) -> int:
    """The chain ms `fraction` of the way from `start` (the lone word, or the agreement) to `end` (the
    contract's deadline, or the vouch's `until`)."""
    return start + math.floor(max(0, end - start) * fraction)


def waits_for_dso(trade: Mapping[str, Any], now_ms: int | None) -> Kind | None:
    """Why the trade waits for the DSO's word at chain time `now_ms` (None: unknown), or None: the rule alone,
    without its times (all an MGMC needs to tell whether it posts its readings; module docstring)."""
    if trade.get("settlement") is not None or "superseded" in trade:
        return None
    if "disputed" in trade:
        return "disputed"
    if "vouch" in trade:
        return "vouching"
    if _one_word(trade) is not None:
        return "lone"
    if unrevealed_since(trade, now_ms) is not None:
        return "unrevealed"
    if withheld_since(trade, now_ms) is not None:
        return "withheld"
    return None


def with_dso(trade: Mapping[str, Any], now_ms: int | None) -> TakeUp | None:
    """The trade waits for the DSO's word at chain time `now_ms` (`waits_for_dso`), with its times: since
    when, from when the DSO meters it and the end its rules are a part of (`TakeUp`); None otherwise. Raises
    `ValueError` for a record the chain never writes (a dispute or agreement without its statements, a word
    without the contract's deadline): the chain's own record is corrupt, not a trade to guess about."""
    kind = waits_for_dso(trade, now_ms)
    if kind == "disputed" or kind == "vouching":
        since = _latest(trade.get("statements") or {})
        return TakeUp(kind, since, since, int(trade["vouch"]["until"]) if kind == "vouching" else None)
    if kind == "lone":
        word, deadline = lone_since(trade), _deadline(trade)
        assert word is not None  # waits_for_dso found the one word
        return TakeUp(kind, word, part(word, deadline, LONE_FROM), deadline)
    if kind == "unrevealed" or kind == "withheld":
        due = _deadline(trade)
        return TakeUp(kind, due, due)
    return None


def takes_up(trade: Mapping[str, Any], now_ms: int) -> bool:
    """The DSO meters the trade at chain time `now_ms`: it waits for the DSO and its metering has begun."""
    found = with_dso(trade, now_ms)
    return found is not None and now_ms >= found.meters_from_ms


def lone_since(trade: Mapping[str, Any]) -> int | None:
    """The chain ms at which the one party's word on the trade landed, None when it does not stand on one: one
    statement (not settled, superseded, disputed or vouching) whose silent party never committed a sealed
    one, or on a sealed chain one party's commitment and no statement (after the commit deadline the
    committer's reveal and its repeat lapse at once, so the DSO must come within the commit window); i.e.
    exactly one party said anything (a statement or a commitment)."""
    word = _one_word(trade)
    return None if word is None else int(word["time"])


def _one_word(trade: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The only party's word when exactly one party said anything (its statement where it has one, else its
    commitment), on a trade still the parties'; None otherwise."""
    if not _parties(trade):
        return None
    statements, seals = trade.get("statements") or {}, trade.get("seals") or {}
    spoke = set(statements) | set(seals)
    if len(spoke) != 1:
        return None
    [party] = spoke
    word: Mapping[str, Any] = statements[party] if party in statements else seals[party]
    return word


def reveals_due(trade: Mapping[str, Any]) -> int | None:
    """The reveal deadline (chain ms) of a trade both of whose parties committed and neither revealed yet (the
    second commitment set it: `market_sealed.commit`), None otherwise."""
    statements, seals = trade.get("statements") or {}, trade.get("seals") or {}
    if not _parties(trade) or statements or len(seals) != 2 or trade.get("deadline") is None:
        return None
    return int(trade["deadline"])


def unrevealed_since(trade: Mapping[str, Any], now_ms: int | None) -> int | None:
    """The reveal deadline of a trade both of whose parties committed and neither revealed by it, once the
    chain's time `now_ms` reached it; None otherwise (and at an unknown time)."""
    due = reveals_due(trade)
    return due if due is not None and now_ms is not None and now_ms >= due else None


def withheld_due(trade: Mapping[str, Any]) -> int | None:
    """The reveal deadline (chain ms) of a trade both of whose parties committed, one revealed (its statement)
    and the other did not yet, still the parties'; None otherwise. After it the silent party can no longer
    reveal (`market_closing._state`): only the stater's repeat or the DSO settles the trade."""
    statements, seals = trade.get("statements") or {}, trade.get("seals") or {}
    if not _parties(trade) or len(statements) != 1 or len(seals) != 2 or trade.get("deadline") is None:
        return None
    return int(trade["deadline"])


def withheld_since(trade: Mapping[str, Any], now_ms: int | None) -> int | None:
    """`withheld_due` once the chain's time `now_ms` reached it; None otherwise (and at an unknown time)."""
    due = withheld_due(trade)
    return due if due is not None and now_ms is not None and now_ms >= due else None


def _parties(trade: Mapping[str, Any]) -> bool:
    """Still the parties' to state: not settled, superseded, disputed or waiting for the DSO's vouch."""
    return trade.get("settlement") is None and not {"superseded", "disputed", "vouch"} & set(trade)


def _latest(statements: Mapping[str, Any]) -> int:
    """The later statement's chain ms (a dispute's second, an agreement's)."""
    if not statements:
        raise ValueError("a disputed or vouching trade without statements is no record the chain writes")
    return max(int(s["time"]) for s in statements.values())


def _deadline(trade: Mapping[str, Any]) -> int:
    """The contract's deadline, which the first word (or commitment) on a trade sets."""
    if trade.get("deadline") is None:
        raise ValueError("a word on a trade without the contract's deadline is no record the chain writes")
    return int(trade["deadline"])
