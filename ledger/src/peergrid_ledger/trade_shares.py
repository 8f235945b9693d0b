"""How an MG's metered energy over one side of an interval is shared among its trades there, and whose PCC
readings settling a disputed trade reads: the one rule by which an MGMC states a trade (edge `pcc_readings`)
and the DSO settles a disputed one (dso-server `disputes`, `dispute_shares`), so that both give a trade the
same Wh of the same energy. The energy itself is `metering`'s, which re-exports these names (split from it).

Promises: `trade_share(energy, quantity, total)` is one trade's part of that energy, pro rata to the agreed
quantities of the MG's trades on that side of the interval, floored, capped at its own (`pro_rata`, exact);
`meter_shares(energy, trades)` the shares of all of them by what the counterparties' meters prove where
every counterparty is metered (else `trade_share`'s); `statements_take(quantity, settled, stated)` what a
trade that is not disputed takes of its party's energy on the parties' word (what it settled at, or the most
its statements can still settle it at) and `disputed_shares(energy, taken, trades, settled)` the party's
disputed trades' (`metered_as_dispute`: any vouch - an agreement waiting for the DSO's word or a withheld
party's hold - is one, and a lone or unrevealed trade once the DSO takes it up) `meter_shares` of what those
left, so that a party's agreed and disputed trades of one interval never settle more than its meter shows
(review12 F2), whatever order they settle in. `meters_read(trades, trade)` is whose PCC readings settling a
disputed trade uses: the one rule by which the DSO asks for readings (dso-server `disputes.read_nodes`) and an
MGMC posts them (edge `pcc_readings.readings_needed`). Exact rational arithmetic throughout, deterministic,
pure: no clock, no I/O, no reading of a leaf.
Raises `ValueError` for arguments no caller should pass: a trade larger than its side's total, a negative
quantity, proof or settlement, disputed trades and settlements that do not pair up.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

from peergrid_ledger.takeup import lone_since, reveals_due, takes_up, waits_for_dso, withheld_due

# the kinds of trade the DSO meters like a dispute once it takes them up (`takeup.waits_for_dso`)
UNSPOKEN = ("lone", "unrevealed", "withheld")


def pro_rata(energy_wh: Fraction, quantity: int, total: int) -> Fraction:
    """One trade's part of the MG's metered energy pro rata to the agreed quantities of its trades on that side,
    exact, capped at the trade's own quantity (never negative)."""
    if quantity < 0 or total < quantity:
        raise ValueError(f"a trade of {quantity} Wh among trades of {total} Wh")
    if total == 0:
        return Fraction(0)
    return max(Fraction(0), min(Fraction(quantity), energy_wh * quantity / total))


def trade_share(energy_wh: Fraction, quantity: int, total: int) -> int:
    """One trade's part of the MG's metered energy: pro rata to the agreed quantities, floored, capped at its own.
    Why pro rata: the PCC meter sees the MG's whole exchange with the feeder and cannot say which counterparty a
    shortfall hurt; it is how the market shares an over-asked offer, and more energy never gives less. The
    rule where some counterparty of the MG's trades is unmetered (`meter_shares`), and what an MGMC states."""
    return math.floor(pro_rata(energy_wh, quantity, total))


def meter_shares(energy_wh: Fraction, trades: Sequence[tuple[int, Fraction | None]]) -> list[int]:
    """Each trade's part of an MG's metered energy over its trades on one side of an interval, in the order
    given: `trades` are (agreed quantity q, what the counterparty's meter proves of that trade p, or None where
    the counterparty is unmetered). What a counterparty proves is its own meter's `pro_rata` share of the
    trade (one level: its own counterparties' meters are not looked through).

    Every counterparty metered, with w_i = min(q_i, p_i), W = Σ w, Q = Σ q, E the energy:
        E ≤ W:  share_i = E × w_i / W                            (a shortfall shared by what was proven)
        E > W:  share_i = w_i + (E − W) × (q_i − w_i) / (Q − W)  (the rest shared by what was not proven)
    floored, capped at q_i. A seller that delivered nothing then takes no part of a buyer's import from the
    seller that did (review11 F2: a buyer of 500 + 500 Wh whose one seller delivered 500 and the other 0
    imported 500; pro rata by agreed it was shared 250 on each and the DSO paid the delivering seller for 250;
    now 500 and 0). An MG that metered more than was proven (a buyer that covered a missing delivery from the
    grid, a seller whose undelivered energy went to the grid) has it on the unproven trades, so the shortfall
    stays the counterparty's (the same buyer importing 1000: 500 and 500). Some counterparty unmetered:
    `trade_share`'s pro rata to the agreed quantities, today's rule (nothing better is known); W = 0 is that
    rule too.
    Why not "what the others do not account for" (min(q_i, E − Σ_{j≠i} w_j)): the PCC meter also carries the
    MG's exchange with the DSO, so that rest need not be this trade's. It charges a shortfall to every trade
    at once when the counterparties prove more than arrived (two sellers each proving 500, 500 imported: 0
    and 0, though 500 arrived), and its shares add up to more than the meter showed when the rest is claimed
    by several unproven trades (600 + 600 Wh proven 200 + 200, 1000 imported: 600 and 600). It agrees with
    the rule above where E ≥ W and one trade alone is not proven in full. These shares never exceed a trade's quantity, never add up to
    more than E, do not depend on the order of the trades (each is a function of its own trade and sums over
    all), are monotone in E and in the trade's own proof, and are today's pro rata whenever every trade is
    proven in full (w = q). Order-independence also means that a share must not depend on which readings
    reached the DSO first: the DSO waits for an unmetered counterparty until the dispute's deadline, and then
    gives it the proof least in its favour rather than None (dso-server `disputes`)."""
    quantities = [quantity for quantity, _ in trades]
    total = sum(quantities)
    for quantity, proof in trades:
        if quantity < 0 or (proof is not None and proof < 0):
            raise ValueError(f"a trade of {quantity} Wh proven {proof} Wh")
    proven_by = [proof for _, proof in trades]
    if any(proof is None for proof in proven_by):
        return [trade_share(energy_wh, quantity, total) for quantity in quantities]
    weights = [min(Fraction(q), Fraction(p)) for q, p in trades if p is not None]
    proven = sum(weights, Fraction(0))
    energy = max(Fraction(0), energy_wh)
    if energy <= proven:
        parts = [energy * w / proven if proven else Fraction(0) for w in weights]
    else:
        rest, unproven = energy - proven, total - proven
        parts = [
            w + (rest * (q - w) / unproven if unproven else 0)
            for q, w in zip(quantities, weights, strict=True)
        ]
    return [min(q, math.floor(part)) for q, part in zip(quantities, parts, strict=True)]


def statements_take(quantity: int, settled: int | None, stated: Sequence[int]) -> int:
    """What a party's trade that is not disputed takes of the party's metered energy: settled, what it
    settled at (whatever the basis: the DSO's settle of it counts like the parties' word); not yet settled,
    the most its statements can still settle it at: the least one given (two that agree settle at the lower,
    a lone one at itself, and a second statement can only agree at or below the first or dispute it), its
    quantity before any. Never negative, never above its quantity. Why the most and not a guess: the DSO
    settles a disputed trade once, and a trade that agrees after must still fit in the meter."""
    if quantity < 0 or any(s < 0 for s in stated) or (settled is not None and settled < 0):
        raise ValueError(f"a trade of {quantity} Wh settled at {settled}, stated {list(stated)}")
    if settled is not None:
        return min(quantity, settled)
    return min([quantity, *stated])


def disputed_shares(
    energy_wh: Fraction,
    taken_wh: int,
    trades: Sequence[tuple[int, Fraction | None]],
    settled: Sequence[int | None],
) -> list[int]:
    """Each of a party's disputed trades' share of its metered energy over one side of an interval, where its
    trades that are not disputed take `taken_wh` (`statements_take`, summed) on the parties' own word
    (review12 F2: settled pro rata by statements beside disputed trades shared by the meters, a seller that
    exported 500 Wh was settled for 583). The disputed trades share only the rest, max(0, E - taken): their
    `meter_shares` (`trades`: (agreed quantity, proof), as there), all of them at once - those the DSO
    settled already (`settled`: the Wh each settled at, None where not yet) with the others - so the order
    in which the DSO settles them changes no share; and an unsettled one's share is capped at what the
    settled ones left of the rest (rest - Σ settled), so the party's total never exceeds its meter even
    where a share settled earlier was found on other proofs or a larger rest. A settled trade's entry is what
    it settled at. Pure and deterministic: the party's settled total (taken plus these) is at most
    max(E, taken) whatever the order of the settles."""
    if len(trades) != len(settled):
        raise ValueError(f"{len(trades)} disputed trades but {len(settled)} settlements")
    if taken_wh < 0 or any(s is not None and s < 0 for s in settled):
        raise ValueError(f"trades that take {taken_wh} Wh, disputed ones settled at {list(settled)}")
    rest = max(Fraction(0), energy_wh - taken_wh)
    left = math.floor(max(Fraction(0), rest - sum(s for s in settled if s is not None)))
    joint = meter_shares(rest, trades)
    return [min(share, left) if done is None else done for share, done in zip(joint, settled, strict=True)]


def metered_as_dispute(trade: Mapping[str, Any], now_ms: int | None = None) -> bool:
    """The trade is one of its parties' disputed trades: for good, settled or not, two statements that
    disagreed (`disputed`) or any trade on the DSO's vouch (`vouch`, genesis seller_vouched, `market_vouch`):
    an agreement waiting for the DSO's word, or a withheld party's hold (basis "withheld": a party that
    committed and never revealed, its counterparty's lone word held at the quantity). An agreement's vouch
    (V4): the DSO settles it from its seller's meter, which its buyer's agreement does not bound either, so
    taken at `statements_take` (its agreement, or what it settled at) beside a sibling vouch of the same
    seller, the vouch the DSO settled first got what the others' agreements left of a short export (s sold
    400 + 400, exported 500: 100 then 400 in trade-id order, whichever buyer's meter showed the energy;
    tests/dso/test_disputes_vouch_siblings.py); shared by `disputed_shares`, the seller's vouches take its
    export by their buyers' meters in any order, and `meters_read` names those buyers. A withheld
    seller's (with `release`) the DSO meters as a dispute in which the seller said nothing (dso-server
    `disputes`, review15 M4), a withheld buyer's from the seller's meter and, priced, the buyer's own
    shortfall from its import shared over its purchases (D3); at the chain's time `now_ms` (None:
    unknown, not these) one the DSO has taken up on one party's word, on two commitments nobody revealed, or
    on a statement whose counterparty kept its reveal back and nobody repeated (`takeup.takes_up`: from
    `LONE_FROM` of the wait, from the reveal deadline), which it meters the same way,
    and for good once the DSO settled it (basis "dso"; a vouch it settled is one already).
    Why (review16 M1): what such a trade settles at is the meters', not bounded by a buyer's word, so taken at
    `statements_take` beside a sibling of the same crashed seller (held, or silent: never committed) it gave
    the seller's export wholly to whichever the DSO resolved first, and a buyer stating 0 always to the
    other; shared by `disputed_shares`, each takes its part by the meters whatever the order (the DSO's
    earlier settles among them, which is why it stays one once settled). Alike a withheld buyer's hold (D3):
    at its seller's word, which bounds nothing the hold settles at, one seller's word moved the buyer's
    import between its holds by the DSO's order, and the buyer netted more withholding than revealing
    (tests/dso/test_dispute_withheld_buyer.py: -40,000 against -60,000 where both meters were read).
    And a withheld statement the stater's repeat settled at the contract's penalty (basis "withheld" without
    a `vouch`: a chain without seller_vouched): for its parties' other trades it counts at what the meters
    give it, like one the DSO took up (dso-server `dispute_shares.at_penalty`, review22 F2: taken at the
    penalty, a withheld buyer's 400 Wh used up its seller's metered 400 and a co-buyer that disputed
    settled at 0 below its own meter), so whose readings its siblings read must name its counterparty."""
    if "disputed" in trade or "vouch" in trade:
        return True  # a vouch of either basis, settled or not (V4: an agreement's too)
    if (trade.get("settlement") or {}).get("basis") in ("withheld", "dso"):
        return True  # the stater's repeat at a withholder's penalty (review22 F2), or the DSO's settle
    return now_ms is not None and waits_for_dso(trade, now_ms) in UNSPOKEN and takes_up(trade, now_ms)


def meters_read(
    trades: Sequence[tuple[bytes, Mapping[str, Any]]], trade: bytes, *, may_dispute: bool = False
) -> set[bytes]:
    """The anonyms whose PCC readings settling the disputed `trade` uses, among `trades` (its interval's latest
    closing, `query.trades`; empty when `trade` is not among them): its two parties' (their own energy), and
    the counterparty of each of their other disputed trades on the same side (`metered_as_dispute`: any
    vouch too, an agreement's or a withheld party's hold, and one on one party's word or on two unrevealed commitments at any time:
    the DSO takes it up later) - the buyer of a disputed sale of its seller, the seller of a disputed
    purchase of its buyer - whose meter proves what that trade took
    (`meter_shares`). A party's trades that are not disputed take what they settle at on the parties' word
    (`statements_take`), so their counterparties' meters are never read (D8: asked for all the same, such an
    MG posted readings nobody used, and the DSO kept them). `may_dispute`: also count the sibling trades that
    may still become disputed (not settled, not superseded), for an MGMC asking whether any trade could
    still read it; a dispute is marked on the trade for good, settled or not."""
    found = dict(trades)
    if trade not in found:
        return set()
    agreed = found[trade]
    read = {agreed["seller"], agreed["buyer"]}
    for tid, other in trades:
        disputed = (
            metered_as_dispute(other)
            or _may_be_taken_up(other)
            or (may_dispute and other.get("settlement") is None and "superseded" not in other)
        )
        if tid == trade or not disputed:
            continue
        if other["seller"] == agreed["seller"]:
            read.add(other["buyer"])
        if other["buyer"] == agreed["buyer"]:
            read.add(other["seller"])
    return read


def _may_be_taken_up(trade: Mapping[str, Any]) -> bool:
    """A trade on one party's word, on two commitments nobody revealed yet, or on one revealed statement beside
    a commitment kept back, whatever the time: the DSO takes it up from `LONE_FROM` of the wait or the reveal
    deadline (`metered_as_dispute` at that time), so a sibling's dispute reads its
    counterparty's meter from the start (a reading kept early, never one short)."""
    return lone_since(trade) is not None or reveals_due(trade) is not None or withheld_due(trade) is not None
