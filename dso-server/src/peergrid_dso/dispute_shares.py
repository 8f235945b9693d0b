"""A party's share of one trade by what its counterparties' meters prove, and which counterparties are unmetered.

Promises: `Meters` reads each party of one market interval once per resolve (`sealed_readings.read_party`: its
sealed leaves checked against the chain and its meter's signatures verified once, giving both its PCC energy on
either side, or why not, and the tally of its readings a decision records) and gives a party's share of a disputed
trade: what its trades that are not disputed (`metering.metered_as_dispute`: any vouch - an agreement's, V4, or a
withheld seller's or buyer's hold - is disputed, and a lone or unrevealed trade the DSO took up by the chain's
time) take on the parties' word comes off its energy first (`metering.statements_take`: what each settled at,
or the most its statements can still settle it at), and its disputed trades share the rest
(`metering.disputed_shares`: `meter_shares` over all of them, the DSO's earlier settles among them, and a
withheld statement at the contract's penalty by the meters, settled or not, whoever settled it: `at_penalty`,
review22 F2, as is a vouch, review24 F2; what a counterparty proves is its own energy pro rata to its agreed quantities,
`metering.pro_rata`), so its agreed
and disputed trades together never settle more than its meter shows (review12 F2: 583 Wh for an export of
500). With the share come the counterparties to wait for until the dispute's deadline: those of its disputed
trades it could not meter, and those whose trade with it is not settled yet (after the deadline it counts at
the most it can still settle at). Past the deadline an unmetered counterparty is taken at what is least in
its favour (a seller delivered nothing of the party's import, a buyer took all it bought of the party's
export: `LEAST`); before it, or without the chain's time, the party's share is pro rata to the agreed
quantities. An MG the DSO's config names meterless (no PCC meter: `loop_settings.MgEntry.meterless`) is never
metered, readings or not (`METERLESS`), so it cannot choose when its readings count. Why: `disputes`' docstring. No I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from peergrid_dso.sealed_pass import Sealed
from peergrid_dso.sealed_readings import (
    ChainTime,
    MeterClock,
    PartyReadings,
    ReadingsCount,
    SigningMeters,
    read_party,
)
from peergrid_ledger import query
from peergrid_ledger.counter_roll import posted_w
from peergrid_ledger.metering import (
    Unmetered,
    disputed_shares,
    metered_as_dispute,
    pro_rata,
    statements_take,
)
from peergrid_ledger.state import StateReader
from peergrid_ledger.takeup import waits_for_dso

SIDES = ("seller", "buyer")
METERLESS = "no PCC meter (meterless in the DSO's config)"  # why a meterless MG is not metered
# why a party the DSO cannot map to a node key is not metered (review14 K1: e.g. an MGMC trading under its node key)
NOT_ENROLLED = "not an anonym the DSO enrolled: no node key to read its PCC meter by"
LEAST = "counterparties' meters, the unmetered ones least in their favour"  # `Metered.shared_by` past the deadline


@dataclass(frozen=True)
class Metered:
    """One party's side: its PCC meter's energy over the window, its disputed trades' agreed total, this
    trade's share, what its other trades take on the parties' word (`taken_wh`), and what it was shared by:
    "counterparties' meters"; past the deadline with one unmetered, `LEAST`; without the chain's time and one
    unmetered, "agreed quantities"."""

    node: bytes
    energy_wh: Fraction
    agreed_total: int
    share_wh: int
    shared_by: str = "counterparties' meters"
    taken_wh: int = 0  # what its trades that are not disputed take on the parties' word (`statements_take`)


class Meters:
    """Each party's PCC energy of one interval on one side, metered once per `resolve` (str: why not), and a
    party's share of a trade from it (`metering.meter_shares`)."""

    def __init__(
        self,
        state: StateReader,
        clock: MeterClock,
        interval: int,
        nodes: Mapping[bytes, bytes],
        sealed: Sealed,
        chain: ChainTime | None,
        meterless: Collection[bytes] = frozenset(),  # anonyms of MGs without a PCC meter (the DSO's config)
        signing: SigningMeters | None = None,  # PCC meters enrolled as signing (`sealed_readings`)
    ) -> None:
        self.state, self.clock, self.interval, self.nodes, self.sealed, self.chain = (
            state, clock, interval, nodes, sealed, chain,
        )  # fmt: skip
        self.signing = signing
        self.meterless = frozenset(meterless)
        # the interval's latest closing (superseded trades never settle): a disputed trade is one of them
        self.trades = query.trades(state, interval)
        self.found: dict[tuple[bytes, str], Fraction | str] = {}
        self.read: dict[bytes, PartyReadings | str] = {}  # anonym -> its readings, or why none were read

    def readings(self, anonym: bytes) -> PartyReadings | str:
        """The party's sealed readings, read once (`sealed_readings.read_party`), or why not: not enrolled,
        meterless (never read, so it cannot pick when its readings count), or its leaves not the sealed ones."""
        if anonym not in self.read:
            node = self.nodes.get(anonym)
            try:
                if node is None:
                    raise Unmetered(NOT_ENROLLED)
                if anonym in self.meterless:
                    raise Unmetered(METERLESS)
                found: PartyReadings | str = read_party(
                    self.state, node, self.clock, self.interval, self.sealed, self.chain, self.signing
                )
            except Unmetered as exc:
                found = str(exc)
            self.read[anonym] = found
        return self.read[anonym]

    def energy(self, anonym: bytes, side: str) -> Fraction | str:
        if (anonym, side) not in self.found:
            read = self.readings(anonym)
            try:
                if isinstance(read, str):
                    raise Unmetered(read)
                # a roll-over and a forward step bounded by the party's posted connection, as its MGMC states
                # (R38-2, L3: a step beyond it leaves the party unmetered)
                most_w = posted_w(self.state, anonym, self.interval, self.clock.interval_ms)
                energy: Fraction | str = read.energy(self.clock, self.interval, side, most_w=most_w)
            except Unmetered as exc:
                energy = str(exc)
            self.found[(anonym, side)] = energy
        return self.found[(anonym, side)]

    def of(self, agreed: Mapping[str, Any]) -> dict[str, ReadingsCount | None]:
        """Side -> the tally of the meter readings read of the trade's party on that side (`PartyReadings.tally`,
        from the same reading its energy came from; None: none verified: meterless, not enrolled, or its
        readings not at the DSO or not the sealed ones). Recorded only for a decision the DSO settles by."""
        found: dict[str, ReadingsCount | None] = {}
        for side in SIDES:
            read = self.readings(agreed[side])
            found[side] = None if isinstance(read, str) else read.tally
        return found

    def total(self, anonym: bytes, side: str) -> int:
        return sum(int(t["quantity"]) for _, t in self.trades if t[side] == anonym)

    def share(
        self, trade: bytes, side: str, energy: Fraction, lapsed: bool
    ) -> tuple[Metered, list[tuple[bytes, str]], list[tuple[bytes, str]]]:
        """The `side` party's share of `trade`: what its trades that are not disputed take on the parties' word
        (`metering.statements_take`) comes off its energy first, and its disputed trades share the rest
        (`metering.disputed_shares`) by what its counterparties' meters prove of each (each counterparty's
        own pro-rata share, `metering.pro_rata`); with the counterparties to wait for, with why: first those
        whose readings the share reads and does not have (a disputed trade's counterparty that is not
        metered, where the party has more than one disputed trade: alone, its share is its meter's whatever
        the counterparty proves), then those whose trade with the party is not settled yet (what it takes is
        then the most its statements can still settle it at, not what it will settle at). A
        counterparty that is not metered: past the dispute's deadline (`lapsed`) it is taken at what is
        least favourable to it (a seller delivered nothing, a buyer took all it bought: module docstring),
        else the party's share is pro rata to the agreed quantities (`meter_shares` without its proof). A
        meterless one is not waited for (no readings will come): it is taken at the least at once and not
        returned."""
        other = SIDES[1 - SIDES.index(side)]
        party = next(t[side] for tid, t in self.trades if tid == trade)
        mine = [(tid, t) for tid, t in self.trades if t[side] == party]
        # the trade the DSO settles shares like a disputed one, disputed or on one statement (review13 F4); a
        # withheld party's hold is a disputed one (D3: a buyer's too), and a lone or unrevealed one the DSO took
        # up: never taken at a buyer's word, which does not bound them (review16 M1)
        now = None if self.chain is None else self.chain.now_ms
        vouched = self.chain is not None and self.chain.seller_vouched
        shared = {
            tid
            for tid, t in mine
            if tid == trade or metered_as_dispute(t, now) or at_penalty(t, now, vouched)
        }
        disputed = [(tid, t) for tid, t in mine if tid in shared]
        taken = 0
        unsettled: list[tuple[bytes, str]] = []  # counterparties whose trade with the party may still settle
        for tid, t in mine:
            if tid in shared:
                continue
            stated = [int(s["delivered"]) for s in t.get("statements", {}).values()]
            take = statements_take(int(t["quantity"]), _settled(t), stated)
            taken += take
            if t["settlement"] is None:
                unsettled.append((t[other], f"its trade {tid.hex()[:16]}… with the {side} is not settled yet "
                                            f"(it may take up to {take} Wh of the {side}'s energy)"))  # fmt: skip
        proofs: list[tuple[int, Fraction | None]] = []
        lacking: list[tuple[bytes, str]] = []
        for _, t in disputed:
            counterparty, quantity = t[other], int(t["quantity"])
            found = self.energy(counterparty, other)
            if isinstance(found, str):
                never = counterparty in self.meterless  # nothing to wait for: as past the deadline at once
                if not never:
                    lacking.append((counterparty, found))
                least = Fraction(0) if other == "seller" else Fraction(quantity)
                proofs.append((quantity, least if lapsed or never else None))
            else:
                proofs.append((quantity, pro_rata(found, quantity, self.total(counterparty, other))))
        standing = [_settled(t) if tid == trade else _standing(t, now, vouched) for tid, t in disputed]
        shares = disputed_shares(energy, taken, proofs, standing)
        at = next(i for i, (tid, _) in enumerate(disputed) if tid == trade)
        never = any(t[other] in self.meterless for _, t in disputed)
        by = (
            "counterparties' meters"
            if not (lacking or never)
            else LEAST
            if lapsed or not lacking
            else "agreed quantities"
        )
        quantities = sum(q for q, _ in proofs)
        metered = Metered(self.nodes[party], energy, quantities, shares[at], by, taken)
        return metered, lacking if len(disputed) > 1 else [], unsettled


def _settled(trade: Mapping[str, Any]) -> int | None:
    """The Wh a trade settled at, None while it is not settled."""
    return None if trade["settlement"] is None else int(trade["settlement"]["delivered"])


def _standing(trade: Mapping[str, Any], now: int | None, seller_vouched: bool) -> int | None:
    """What a party's disputed sibling stands at in its share: what it settled at, None while the meters still
    decide it; and None too for a withheld statement at the contract's penalty (`at_penalty`), settled or
    not: the meters decide what it took of the party's energy, the penalty is that trade's own money; and
    None for a vouch, settled or not (review24 F2): its settled figure is its seller's share, by the seller's
    meter, so on its buyer's side it would stand at the other party's figure and a buyer with vouches from two
    sellers got a shortfall on the later one that depended on which the DSO settled first (396 or 364 Wh).
    At the meters' joint figure every vouch counts alike for both its parties, in any order."""
    if "vouch" in trade:
        return None
    return None if at_penalty(trade, now, seller_vouched) else _settled(trade)


def at_penalty(trade: Mapping[str, Any], now: int | None, seller_vouched: bool) -> bool:
    """The trade is a revealed statement whose counterparty committed and kept its reveal back, at the
    contract's penalty (`market_sealed.withheld`: a silent buyer took all, a silent seller delivered nothing):
    taken up by the DSO on a chain without seller_vouched (`takeup` "withheld" at `now`), settled by the DSO so
    (basis "dso": one statement, the other party's seal), or by the stater's repeat (`repeated_at_penalty`).
    For its parties' other trades it counts at what the meters give it (`Meters.share`, `_standing`), as
    seller_vouched's hold does, in either order and whoever moved first. Why (review22 F2): taken at the
    penalty (2191dc0), a withheld buyer's 400 Wh used up its seller's metered 400 though its own meter showed
    200, so the co-buyer c that disputed settled at 0 below its own statement of 150 and its meter's 200 and
    the honest seller paid it compensation (c +20,000 where it nets -40,000 when b reveals; b + c 20,000 up
    on the seller), exactly when b withheld; and a withheld seller's 0 gave its whole export to its other
    buyers (the repeat path). The penalty is money, not energy: its seller may be paid for more Wh than it
    exported, by the withholder, as beside an agreed sibling."""
    if "vouch" in trade or "disputed" in trade or "superseded" in trade:
        return False  # with seller_vouched a withheld statement is a hold (`vouch`), metered as a dispute
    if repeated_at_penalty(trade):
        return True
    if seller_vouched:
        return False  # the DSO settled it as the hold (`disputes_vouch.as_held`): the meters' figure
    if trade["settlement"] is None:
        return now is not None and waits_for_dso(trade, now) == "withheld"
    statements, seals = trade.get("statements") or {}, trade.get("seals") or {}
    if trade["settlement"].get("basis") != "dso" or len(statements) != 1:
        return False
    [stater] = statements
    return SIDES[1 - SIDES.index(stater)] in seals


def repeated_at_penalty(trade: Mapping[str, Any]) -> bool:
    """Settled by the stater's repeat at the withholder's penalty (basis "withheld" without a `vouch`: on a
    chain without seller_vouched, `market_closing`), which the chain's own rule does not count as disputed
    (`metering.metered_as_dispute`): `disputes.read_nodes` reads its counterparty's meter for its siblings."""
    settlement = trade.get("settlement") or {}
    return settlement.get("basis") == "withheld" and "vouch" not in trade
