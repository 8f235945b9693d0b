"""How much energy the DSO vouches for on a disputed trade, from the MGMC chain and the parties' sealed readings.

Promises: `resolve(state, trade, clock, nodes, sealed[, chain])` is pure and deterministic (exact rational arithmetic,
floored to whole Wh only at the end) and returns `Vouched` (the Wh to settle with and how it was found) or
`Unresolved` (why the DSO does not settle now); never a guess. The energy it vouches for is
    min(seller's PCC export share, buyer's PCC import share), never above the agreed quantity,
where a party's share of a trade is its PCC meter's energy over the trade's interval (export counter for the
seller, import counter for the buyer) shared over all that party's trades of the interval (its latest
closing's trades; superseded ones never settle) by what its counterparties' meters prove of each
(`metering.meter_shares`; what a counterparty proves is its own energy pro rata to its agreed quantities,
`metering.pro_rata`). So a seller that delivered nothing takes no part of its buyer's import from a seller
that did, and a buyer that took nothing no part of its seller's export to a buyer that did (review11 F2: pro
rata to the agreed quantities, an honest seller whose buyer's other seller failed was paid for half of what
three meters agreed it delivered, and a buyer could arrange that with a colluding seller).
Why by the counterparties' meters: a PCC meter measures a
microgrid's whole exchange with the feeder, not one trade; alone it cannot say which counterparty a shortfall
hurt, but the counterparties' meters can. Where one of them cannot be metered (its readings not at the DSO,
...), the DSO waits for it until the dispute's deadline (below), so that the share does not depend on which
readings came first; then it takes that counterparty at what is least in its favour: an unmetered seller
delivered nothing of the party's import, an unmetered buyer took all it bought of the party's export
(`Metered.shared_by` says so). Why not pro rata to the agreed quantities there: a colluding seller would then
only have to withhold its readings for R11's buyer to pay its honest seller for half again; this way an MG
never gains by withholding (its own trade's share is monotone in its proof), nor does its counterparty by
its withholding, and what the DSO vouches still never exceeds either party's meter. A share is
monotone in its own party's and its counterparty's metered energy (more never settles less); a third MG's
meter showing more of its own trade with the party can lower it (that energy is then its, not this trade's).
Why the smaller: the seller's meter bounds what left the seller, the buyer's what reached the buyer; the DSO
vouches only for energy both meters confirm (the same rule the chain applies to two statements that agree).

What the chain holds and what it does not: a `der_commitment` (`der/<node><interval>`) is the RFC 6962 root of
one commitment interval's reading leaves and their count, signed by the MGMC's node key; the leaves themselves
(edge `commitments.reading_leaf`: {at_ms, device, milli{quantity: value × 1000}, nature}) stay on the MGMC. So
the DSO needs each party's leaves (`sealed`, keyed by (node key, commitment interval)), and accepts them only
when they are the whole committed set: their root and count equal the chain's, so a party can neither forge a
reading nor leave one out. Trades are made under anonyms; `nodes` maps each anonym to its MGMC's node key (the
DSO enrolled both). Commitment intervals are buckets of wall-clock time (`floor(ms / commit_ms)`), market
intervals slots of `MeterClock` (`t0_ms + (t - first_interval) × interval_ms`): the clock maps one to the other.

A PCC meter (nature `meter`; one per MG) reports cumulative counters: `energy_wh` (TotWhExp, export) and
`import_wh` (TotWhImp). The counter at the interval's start and end is read at a reading made exactly then or
linearly interpolated between the two readings around it, which must be at most `max_gap_ms` apart (a longer
outage is no measurement): `peergrid_ledger.metering`, the same reading of the same leaves the edge states
from (the edge states its pro-rata share: it cannot see its counterparties' meters, so where one fell short
its statement may differ and the trade comes here). It reads the two parties' readings and those of their
counterparties in the interval (`read_nodes`). Unresolved when: the trade is not disputed (or unknown,
settled, superseded), a party's anonym is not enrolled with a node key, a counterparty of either cannot be
metered yet (until the deadline), a commitment that covers the window exists on the chain but
its leaves are not at the DSO or do not match its root and count, a leaf does not decode, an MG has more than
one meter, no readings bracket a boundary within `max_gap_ms`, or a counter runs backwards (a reset or
replaced meter: nothing the DSO can vouch for) or a meter reading is malformed. No I/O, no clock.

Time (`ChainTime`, from the DSO's replica; without it only the metering rule above applies, as an MGMC checks
its own statement: an unmetered counterparty is not waited for, its party's share is pro rata at once): a commitment counts only when the block that carried it is stamped at most
`seal_within_ms` after its commitment interval ended (the chain's `settle_wait_ms` unless the DSO sets its own);
one sealed later is treated as never made, so readings made up long after the fact (review10 F1: once a
dispute is known and the bound has passed) cannot decide it. Within the bound they still can: a dispute is
known soon after the interval's end, before the bound of its last commitment intervals has run out. The block time comes from the replica's transaction index (the record's `txid`), so the ledger's
state records stay as they are. And a dispute has a deadline: `wait_ms` (the chain's `settle_wait_ms` unless
the DSO sets its own) after the second statement landed (when the trade became disputed). Until then a side
that cannot be metered leaves the trade `Unresolved` (saying until when); once the chain's time passed it, a
side that still cannot be metered (withheld, missing, sealed late, two meters, a counter reset, ...) loses the
"smaller of the two" rule:
    seller metered only:  min(seller's share, seller's statement)
    buyer metered only:   min(buyer's share, buyer's statement, seller's statement)
    neither metered:      min(seller's statement, buyer's statement)
i.e. the metered side's own word as far as its meter confirms it, never more than the seller asked (its share
taking the unmetered side at what is least in its favour, above). Why this
cannot be gamed by withholding: the side that withholds gets its counterparty's own statement (capped by the
counterparty's meter), so it ends no better than if it had been metered unless the counterparty stated against
its own interest (a seller asking less than its meter shows, a buyer admitting more than its meter shows).
Neither metered settles on the lower statement, not 0: with 0 a buyer facing an unmeterable seller (no PCC
meter, a broken one) would gain by withholding (0 instead of its own statement); with the lower statement
withholding never takes a buyer below its own word. The readings are the parties' own: without meter-signed
or DSO-taken readings an MGMC can still seal false readings in time; the bound stops only readings made after
the fact.

Shortfalls (`Vouched.shorts`, only on a trade whose parties the DSO priced with `market.tariff`, i.e.
`market_state.cover_prices` is not None; None otherwise, and the DSO's settle stays `{trade, delivered}`): the
contract needs the DSO to name each side's own shortfall, the larger exactly agreed − delivered, and charges
the side short more the compensation for the excess (`market_state.compensation`). From what the DSO metered:
    a metered side:    agreed − min(its share, agreed)
    an unmetered side: agreed − delivered (the whole gap)
Both metered, delivered = min of the shares, so the larger is agreed − delivered. Under a deadline rule the
delivered figure is at most the metered side's share, so its shortfall is at most the gap and the unmetered
side owns the rest of it. Why the whole gap: the side that could not be metered (withheld, missing, sealed
late, ...) gains nothing by it - with its readings its shortfall would be at most the gap, so it never owes
less compensation, nor receives more, than had it been metered. Neither metered names both the whole gap:
equal shortfalls, no compensation either way; the DSO can prove neither side at fault. The parties' own
stated `short`s are not used: the DSO names what its metering shows, or the worst case for a side it cannot meter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Protocol

from peergrid_ledger import merkle, query
from peergrid_ledger.contracts.market_state import cover_prices
from peergrid_ledger.metering import (
    COUNTER,
    commitment_intervals,
    counting_leaves,
    meter_shares,
    metered,
    pro_rata,
)
from peergrid_ledger.metering import Unmetered as Unmetered  # why a party's metering is unreadable, here too
from peergrid_ledger.state import StateReader


@dataclass(frozen=True)
class MeterClock:
    """Where market interval t lies on the wall clock (ms), and the commitments' bucket length."""

    t0_ms: int  # the wall time interval `first_interval` starts
    interval_ms: int
    first_interval: int
    commit_ms: int  # the MGMCs' `commit_interval_s` in ms
    max_gap_ms: int  # the longest gap between two readings that still measures a boundary

    def __post_init__(self) -> None:
        if min(self.interval_ms, self.commit_ms, self.max_gap_ms) <= 0:
            raise ValueError("interval_ms, commit_ms and max_gap_ms must be positive")

    def window(self, interval: int) -> tuple[int, int]:
        start = self.t0_ms + (interval - self.first_interval) * self.interval_ms
        return start, start + self.interval_ms

    def commitments(self, interval: int) -> range:
        """The commitment intervals whose readings may bracket the window's boundaries."""
        return commitment_intervals(self.window(interval), self.commit_ms, self.max_gap_ms)


class Blocks(Protocol):
    """Where the replica's transactions landed: a `BlockStore` or a `LocalChain`."""

    def locate_tx(self, txid: bytes) -> tuple[int, int] | None: ...

    def header(self, height: int) -> Any: ...  # a block.Header: its `time` (ms)


@dataclass(frozen=True)
class ChainTime:
    """What the DSO reads of the chain's time for a dispute (module docstring): where each commitment landed,
    the chain's time now (its head block's), and the two bounds in ms."""

    blocks: Blocks
    now_ms: int
    seal_within_ms: int  # a commitment counts when sealed at most this long after its interval ended
    wait_ms: int  # after the second statement, how long a side may stay unmetered before it loses the min

    def __post_init__(self) -> None:
        if self.seal_within_ms < 0 or self.wait_ms < 0:
            raise ValueError("seal_within_ms and wait_ms must not be negative")


@dataclass(frozen=True)
class Metered:
    """One party's side: its PCC meter's energy over the window, its trades' agreed total, this trade's share,
    and what it was shared by: "counterparties' meters"; past the deadline with one unmetered, `LEAST`;
    without the chain's time and one unmetered, "agreed quantities"."""

    node: bytes
    energy_wh: Fraction
    agreed_total: int
    share_wh: int
    shared_by: str = "counterparties' meters"


@dataclass(frozen=True)
class Vouched:
    """The Wh the DSO settles with: both sides metered (`rule` "both metered": the smaller share), or after
    the dispute's deadline the rule for the side(s) that could not be metered (`unmetered`: side -> why)."""

    trade: bytes
    delivered: int
    agreed: int
    seller: Metered | None
    buyer: Metered | None
    rule: str = "both metered"
    unmetered: Mapping[str, str] = field(default_factory=dict)
    shorts: tuple[int, int] | None = None  # (seller's, buyer's) Wh on a priced trade (module docstring)


@dataclass(frozen=True)
class Unresolved:
    trade: bytes
    why: str
    until_ms: int | None = None  # chain time from which the deadline's rule settles it (None: no deadline)


Decision = Vouched | Unresolved
SIDES = ("seller", "buyer")
LEAST = "counterparties' meters, the unmetered ones least in their favour"  # `Metered.shared_by` past the deadline


def resolve(
    state: StateReader,
    trade: bytes,
    clock: MeterClock,
    nodes: Mapping[bytes, bytes],
    sealed: Mapping[tuple[bytes, int], Sequence[bytes]],
    chain: ChainTime | None = None,
) -> Decision:
    """The Wh the DSO settles `trade` with, or why it does not (module docstring)."""
    where = query.settlement(state, trade)
    if where is None:
        return Unresolved(trade, "no such trade on the MGMC chain")
    if where["state"] != "disputed":
        return Unresolved(trade, f"the trade is {where['state']}, not disputed")
    agreed = query.trade(state, trade)
    assert agreed is not None  # settlement() found it
    for side in SIDES:
        if agreed[side] not in nodes:  # the DSO's own configuration, not the party's doing: no deadline rule
            return Unresolved(trade, f"the {side} {agreed[side].hex()[:16]}… is not enrolled with a node key")
    quantity = int(agreed["quantity"])
    meters = _Meters(state, clock, int(agreed["interval"]), nodes, sealed, chain)
    sides: dict[str, Metered] = {}
    unmetered: dict[str, str] = {}
    waiting: list[str] = []  # the metered sides' counterparties that are not (yet) metered
    lapsed = chain is not None and chain.now_ms >= _deadline(where, chain)
    for side in SIDES:
        energy = meters.energy(agreed[side], side)
        if isinstance(energy, str):
            unmetered[side] = energy
            continue
        sides[side], lacking = meters.share(trade, side, energy, lapsed)
        waiting.extend(f"the {side}'s counterparty {cp.hex()[:16]}…: {why}" for cp, why in lacking)
    seller, buyer = sides.get("seller"), sides.get("buyer")
    priced = cover_prices(state, agreed) is not None
    if seller is not None and buyer is not None:
        # a share by the counterparties' meters needs them all: wait for them until the deadline (without the
        # chain's time there is none: the party's share is pro rata at once, as `meter_shares` gives it)
        if waiting and chain is not None and not lapsed:
            why = f"a share by the counterparties' meters waits for {'; '.join(waiting)}"
            until = _deadline(where, chain)
            return Unresolved(trade, f"{why}; from chain time {until} ms the DSO shares without them", until)
        delivered = min(seller.share_wh, buyer.share_wh, quantity)
        return Vouched(
            trade, delivered, quantity, seller, buyer, shorts=_shorts(quantity, delivered, sides, priced)
        )
    side = next(s for s in SIDES if s in unmetered)
    why = f"the {side}'s metering: {unmetered[side]}"
    statements = where["statements"]
    if chain is None:
        return Unresolved(trade, why)
    until = _deadline(where, chain)
    if chain.now_ms < until:
        return Unresolved(trade, f"{why}; from chain time {until} ms the DSO settles without it", until)
    stated = {s: int(statements[s]["delivered"]) for s in SIDES}
    if seller is not None:
        delivered, rule = min(seller.share_wh, stated["seller"]), "seller metered only"
    elif buyer is not None:
        delivered, rule = min(buyer.share_wh, stated["buyer"], stated["seller"]), "buyer metered only"
    else:
        delivered, rule = min(stated["seller"], stated["buyer"]), "neither metered"
    delivered = min(delivered, quantity)
    shorts = _shorts(quantity, delivered, sides, priced)
    return Vouched(trade, delivered, quantity, seller, buyer, rule, unmetered, shorts)


def _deadline(where: Mapping[str, Any], chain: ChainTime) -> int:
    """The dispute's deadline (chain ms): `wait_ms` after the later of the two statements."""
    return max(int(where["statements"][s]["time"]) for s in SIDES) + chain.wait_ms


class _Meters:
    """Each party's PCC energy of one interval on one side, metered once per `resolve` (str: why not), and a
    party's share of a trade from it (`metering.meter_shares`)."""

    def __init__(
        self,
        state: StateReader,
        clock: MeterClock,
        interval: int,
        nodes: Mapping[bytes, bytes],
        sealed: Mapping[tuple[bytes, int], Sequence[bytes]],
        chain: ChainTime | None,
    ) -> None:
        self.state, self.clock, self.interval, self.nodes, self.sealed, self.chain = (
            state, clock, interval, nodes, sealed, chain,
        )  # fmt: skip
        # the interval's latest closing (superseded trades never settle): a disputed trade is one of them
        self.trades = query.trades(state, interval)
        self.found: dict[tuple[bytes, str], Fraction | str] = {}

    def energy(self, anonym: bytes, side: str) -> Fraction | str:
        if (anonym, side) not in self.found:
            node = self.nodes.get(anonym)
            try:
                if node is None:
                    raise Unmetered("not enrolled with a node key")
                energy: Fraction | str = pcc_energy(
                    self.state, node, self.clock, self.interval, self.sealed, side, self.chain
                )
            except Unmetered as exc:
                energy = str(exc)
            self.found[(anonym, side)] = energy
        return self.found[(anonym, side)]

    def total(self, anonym: bytes, side: str) -> int:
        return sum(int(t["quantity"]) for _, t in self.trades if t[side] == anonym)

    def share(
        self, trade: bytes, side: str, energy: Fraction, lapsed: bool
    ) -> tuple[Metered, list[tuple[bytes, str]]]:
        """The `side` party's share of `trade`, by what its counterparties' meters prove of each of its trades
        (each counterparty's own pro-rata share, `metering.pro_rata`); and the counterparties that are not
        metered, with why. One that is not: past the dispute's deadline (`lapsed`) it is taken at what is least
        favourable to it (a seller delivered nothing, a buyer took all it bought: module docstring), else the
        party's share is pro rata to the agreed quantities (`meter_shares` without its proof)."""
        other = SIDES[1 - SIDES.index(side)]
        party = next(t[side] for tid, t in self.trades if tid == trade)
        mine = [(tid, t) for tid, t in self.trades if t[side] == party]
        proofs: list[tuple[int, Fraction | None]] = []
        lacking: list[tuple[bytes, str]] = []
        for _, t in mine:
            counterparty, quantity = t[other], int(t["quantity"])
            found = self.energy(counterparty, other)
            if isinstance(found, str):
                lacking.append((counterparty, found))
                least = Fraction(0) if other == "seller" else Fraction(quantity)
                proofs.append((quantity, least if lapsed else None))
            else:
                proofs.append((quantity, pro_rata(found, quantity, self.total(counterparty, other))))
        shares = meter_shares(energy, proofs)
        at = next(i for i, (tid, _) in enumerate(mine) if tid == trade)
        by = "counterparties' meters" if not lacking else LEAST if lapsed else "agreed quantities"
        return Metered(self.nodes[party], energy, sum(q for q, _ in proofs), shares[at], by), lacking


def read_nodes(state: StateReader, trade: bytes, nodes: Mapping[bytes, bytes]) -> set[bytes]:
    """The node keys whose sealed readings resolving `trade` reads: its two parties' and those of every
    counterparty of their trades in its interval (empty for an unknown trade; anonyms not enrolled left out)."""
    agreed = query.trade(state, trade)
    if agreed is None:
        return set()
    anonyms = {agreed["seller"], agreed["buyer"]}
    for _, t in query.trades(state, int(agreed["interval"])):
        if t["seller"] == agreed["seller"] or t["buyer"] == agreed["buyer"]:
            anonyms |= {t["seller"], t["buyer"]}
    return {nodes[a] for a in anonyms if a in nodes}


def _shorts(
    quantity: int, delivered: int, sides: Mapping[str, Metered], priced: bool
) -> tuple[int, int] | None:
    """(seller's, buyer's) shortfall the DSO names on a priced trade (module docstring), None unpriced: a
    metered side's from its own share, an unmetered side's the whole gap; the larger is the gap."""
    if not priced:
        return None
    gap = quantity - delivered
    seller, buyer = (
        gap if side not in sides else min(gap, quantity - min(sides[side].share_wh, quantity))
        for side in SIDES
    )
    return seller, buyer


def verified_leaves(
    state: StateReader, node: bytes, commitment: int, sealed: Mapping[tuple[bytes, int], Sequence[bytes]]
) -> Sequence[bytes]:
    """The committed leaves of one commitment interval, checked whole against the chain's root and count
    (empty when the MGMC committed nothing then)."""
    record = query.der_commitment(state, node, commitment)
    if record is None:
        return ()
    leaves = sealed.get((node, commitment))
    if leaves is None:
        raise Unmetered(f"commitment interval {commitment}'s readings are not at the DSO")
    if len(leaves) != int(record["readings"]) or merkle.root(list(leaves)) != record["root"]:
        raise Unmetered(f"the readings given for commitment interval {commitment} are not the sealed ones")
    return leaves


def sealed_late(
    state: StateReader, node: bytes, commitment: int, commit_ms: int, chain: ChainTime
) -> str | None:
    """Why a `der_commitment` on the chain does not count (sealed too long after its interval ended, or its
    block is not in the replica), or None when it counts or there is none."""
    record = query.der_commitment(state, node, commitment)
    if record is None:
        return None
    found = chain.blocks.locate_tx(record["txid"])
    if found is None:
        return f"commitment interval {commitment}'s block is not in the DSO's replica: it does not count"
    at, ended = int(chain.blocks.header(found[0]).time), (commitment + 1) * commit_ms
    if at > ended + chain.seal_within_ms:
        return (
            f"commitment interval {commitment} was sealed at {at} ms, {at - ended} ms after it ended (more "
            f"than {chain.seal_within_ms}): it does not count"
        )
    return None


def pcc_energy(
    state: StateReader,
    node: bytes,
    clock: MeterClock,
    interval: int,
    sealed: Mapping[tuple[bytes, int], Sequence[bytes]],
    side: str,
    chain: ChainTime | None = None,
) -> Fraction:
    """Wh the PCC meter's counter of `side` (seller: export, buyer: import) advanced over the market interval's
    window (exact), read from the sealed readings of every commitment interval that may bracket its boundaries
    (`peergrid_ledger.metering`; a counter at SunSpec's "not accumulated" read as 0 where that never favours
    the side, `counting_leaves`, as the MGMC states it); with `chain`, a commitment sealed late counts as never
    made (`sealed_late`)."""
    leaves: list[bytes] = []
    late: list[str] = []
    for c in clock.commitments(interval):
        why = None if chain is None else sealed_late(state, node, c, clock.commit_ms, chain)
        if why is not None:
            late.append(why)
            continue
        leaves.extend(verified_leaves(state, node, c, sealed))
    try:
        return metered(counting_leaves(leaves, side), clock.window(interval), COUNTER[side], clock.max_gap_ms)
    except Unmetered as exc:
        if late:
            raise Unmetered(f"{exc} ({'; '.join(late)})") from None
        raise


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
                "share_wh": m.share_wh, "shared_by": m.shared_by}  # fmt: skip

    return {"trade": decision.trade.hex(), "resolved": True, "delivered": decision.delivered,
            "agreed": decision.agreed, "seller": side(decision.seller), "buyer": side(decision.buyer),
            "rule": decision.rule, "unmetered": dict(decision.unmetered),
            **({} if decision.shorts is None else
               {"seller_short": decision.shorts[0], "buyer_short": decision.shorts[1]})}  # fmt: skip
