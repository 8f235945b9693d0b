"""How much energy the DSO vouches for on a disputed trade, from the MGMC chain and the parties' sealed readings.

Promises: `resolve(state, trade, clock, nodes, sealed[, chain])` is pure and deterministic (exact rational arithmetic,
floored to whole Wh only at the end) and returns `Vouched` (the Wh to settle with and how it was found) or
`Unresolved` (why the DSO does not settle now); never a guess. The energy it vouches for is
    min(seller's PCC export share, buyer's PCC import share), never above the agreed quantity,
where a party's share of a trade is its PCC meter's energy over the trade's interval (export counter for the
seller, import counter for the buyer), less what its trades of the interval that are not disputed take on the
parties' word (its latest closing's trades; superseded ones never settle), shared over its disputed trades by
what its counterparties' meters prove of each (`dispute_shares`, `metering.disputed_shares`; what a
counterparty proves is its own energy pro rata to its agreed quantities, `metering.pro_rata`). So a seller
that delivered nothing takes no part of its buyer's import from a seller that did, and a buyer that took
nothing no part of its seller's export to a buyer that did (review11 F2: pro rata to the agreed quantities, an
honest seller whose buyer's other seller failed was paid for half of what three meters agreed it delivered,
and a buyer could arrange that with a colluding seller).
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

How a party is metered (its sealed readings checked whole against the chain's `der_commitment`, its PCC
counter read at the window's boundaries, commitments sealed late not counted) is `sealed_readings`'; a party's
share of a trade by its counterparties' meters is `dispute_shares`'; both are pure, as is this module. Trades
are made under anonyms; `nodes` maps each anonym to its MGMC's node key (the DSO enrolled both). A party the
DSO cannot map to a node key (not an anonym it enrolled: e.g. an MGMC trading under its node key, review14 K1)
has no meter the DSO can read: it is an unmetered side under the deadline rules below (a seller at 0, a buyer
"seller metered only"), never left unresolved for ever, whatever the contract lets trade. It reads the
two parties' readings and those of the counterparties of their disputed trades in the interval (`read_nodes`). Unresolved when: the
trade is not disputed (or unknown, settled, superseded), a
counterparty of either cannot be metered yet or a trade of either that is not disputed is not settled yet
(until the deadline), a commitment that covers the window exists on the chain but its leaves are not at the
DSO or do not match its root and count, a leaf does not decode, an MG has more than one meter, no readings
bracket a boundary within `max_gap_ms`, or a counter runs backwards (a reset or replaced meter: nothing the
DSO can vouch for) or a meter reading is malformed. No I/O, no clock.

Time (`ChainTime`, from the DSO's replica; without it only the metering rule above applies, as an MGMC checks
its own statement: an unmetered counterparty is not waited for, its party's share is pro rata at once): a
commitment counts only when sealed at most `seal_within_ms` after its commitment interval ended
(`sealed_readings`: readings made up long after the fact cannot decide a dispute). And a dispute has a deadline: `wait_ms` (the chain's `settle_wait_ms` unless
the DSO sets its own) after the second statement landed (when the trade became disputed). Until then a side
that cannot be metered leaves the trade `Unresolved` (saying until when), unless the only such sides are
meterless and the metered side waits for no counterparty (nothing more can arrive: it settles at once by the
rules below); once the chain's time passed it, a
side that still cannot be metered (withheld, missing, sealed late, two meters, a counter reset, ...) loses the
"smaller of the two" rule:
    seller metered only:  min(seller's share, seller's statement)
    seller not metered:   0 (a seller the DSO could have metered: not named `meterless`)
    buyer metered only:   min(buyer's share, buyer's statement, seller's statement)   (a meterless seller)
    neither metered:      min(seller's statement, buyer's statement)                 (a meterless seller)
i.e. the metered side's own word as far as its meter confirms it, never more than the seller asked (its share
taking the unmetered side at what is least in its favour, above). `meterless` (the DSO's config,
`loop_settings.MgEntry.meterless`: an MG without a PCC meter, its edge's `meter_poll_s` 0) names the MGs
that have no readings to give; they are never metered, readings or not (`dispute_shares.METERLESS`), so one
cannot pick when its readings count. Why a seller that could have been metered settles at 0 (review12 F1):
paid the buyer's share instead, a seller that delivered less than that gained by withholding (below). A
seller whose meter broke or reset is settled at 0 too: keeping its meter readable is its part of the trade.
Why a buyer keeps "seller metered only": withholding, it is settled on the seller's share and statement
instead of the smaller of the two shares, so it pays for at least as much energy; what it saves in
compensation (per Wh it did not take, the price less the seller's feed-in) never exceeds the price it pays
for that Wh instead, so it gains nothing unless the seller stated against its own interest (asked less than
its meter shows). Neither metered with a meterless seller settles on the lower statement, not 0: with 0 a
buyer facing a seller without a PCC meter would gain by withholding (0 instead of its own statement); with
the lower statement withholding never takes a buyer below its own word. The readings are the parties' own: without meter-signed
or DSO-taken readings an MGMC can still seal false readings in time; the bound stops only readings made after
the fact. An MG whose PCC meter is enrolled as signing (`signing`, `sealed_readings.SigningMeters`) is metered
from its meter-signed readings only (an unsigned one left out, the gap rule deciding): a forged or replayed
meter reading leaves it unmetered, with the reason, and the rules above for an unmetered side apply.

Shortfalls (`Vouched.shorts`, only on a trade whose parties the DSO priced with `market.tariff`, i.e.
`market_state.cover_prices` is not None; None otherwise, and the DSO's settle stays `{trade, delivered}`): the
contract needs the DSO to name each side's own shortfall, the larger exactly agreed − delivered, and charges
the side short more the compensation for the excess (`market_state.compensation`). From what the DSO metered:
    a metered side:    agreed − min(its share, agreed)
    an unmetered side: agreed − delivered (the whole gap)
    a meterless side:  its own stated `short` (at most the gap) where the larger is still the gap, else the gap
Both metered, delivered = min of the shares, so the larger is agreed − delivered. Under a deadline rule the
delivered figure is at most the metered side's share, so its shortfall is at most the gap and the unmetered
side owns the rest of it; a seller not metered is settled at 0 and owns the whole quantity, so it pays for
every Wh its buyer's meter shows taken (R12's case: 500 agreed, seller exported 300, buyer imported 400:
metered the seller nets 50,000 after 10,000 compensation; withholding it was paid for 400 with none, 80,000;
now 0 delivered, 500 against the buyer's 100, it pays 40,000). A meterless side has no meter to prove its
shortfall, so the DSO takes its word, as its edge states it on a confirmed dispatch (a statement without
`short` says 0, as the contract reads it): a metered party its meter proves short then pays it the
compensation (review12 F4: named the whole gap, it received none). Where its word would leave part of the
gap owned by nobody (the metered side's shortfall below the gap: a seller stating less than its meter shows,
so delivered is below its share), it is named the whole gap, as an unmetered side. Two meterless sides: both
words, when one of them owns the gap; else both the gap. Still open: a seller that copies the buyer's public
statement (buyer states 400, seller 400) gets R12's 80,000 without a dispute, so without the DSO (review12 F1
part 1): closing it needs statements committed on the chain before they are revealed (the contract's part).
A trade that stands on one statement (or, on a sealed chain, on one commitment whose counterparty never
committed: `takeup.lone_since`) comes here too (review13 F4: its party's repeated statement settles it
alone after the contract's wait, naming the silent party's shortfall, and an honest edge is silent on purpose
when its meter cannot prove the interval, `pcc_readings.Unprovable`): the DSO meters it like a dispute from
`takeup.LONE_FROM` (half) of the contract's wait on, and its deadline rules apply from `LONE_RULE` (three quarters),
so its settle lands before the lapse can, with a quarter of the wait left for the chain and retries; until
`LONE_FROM` the other party may still join it (an agreement is not pre-empted: the edge states right after the
interval, well within half the wait). A lone statement is no agreement: the trade shares its party's energy
with the disputed ones (`dispute_shares`); the silent side's missing statement bounds nothing (its quantity
in the rules above), its `short` is never taken as a meterless side's word. Which trades the DSO takes up,
from which chain time, and from when its deadline rules apply is `peergrid_ledger.takeup`'s (`with_dso`,
`TakeUp.rules_from`: the one rule, by which the edges post their readings too).
Two sealed commitments and no reveal by the reveal deadline (review14 K3b: `takeup.unrevealed_since`) come here too:
the contract settles such a trade only on a party's late reveal and repeat, so it could stay open for ever,
and a seller whose salt is lost was never paid while its buyer kept its reveal back. The DSO meters it like a
dispute that became one at the reveal deadline: its deadline rules apply `wait_ms` after it, both sides silent
(each bounded only by the quantity), so a seller metered is paid its share, one that could have been metered
and was not 0, as above.
An agreed trade that waits for the DSO (genesis `seller_vouched`, state `vouching`; review13 F2: the buyer's
meter cannot show that a P2P seller delivered, so a seller stating the agreed quantity agreed with every honest
buyer) is metered on the seller's side for what was delivered (`disputes_vouch.resolve_vouch`): `min(held,
share)` delivered, the metered gap the seller's shortfall (review14 K5: no statement tolerance on the meter's own word, which would
pay the seller up to it compensation-free); on a priced trade with a gap the buyer's the larger of its word
and its own metered gap (`disputes_vouch.buyer_shortfall`, D2: on its word alone a buyer understating its
shortfall had an honest seller compensate it, so keeping a reveal back, metered as a dispute, netted more: 60,000 against
50,000 where both meters showed 300 of 400 and the buyer said "short 0"), waited for until `VOUCH_RULE`,
then the whole gap (a meterless buyer: its word); where neither owns the whole gap (an agreement that left
part of it unowned within an absolute tolerance) the seller is named it (K7: else the contract refuses the
DSO's settle for good); an unmetered seller is settled at 0 from `takeup.VOUCH_RULE` of the window (D7), a
meterless one at the agreement. Either share by the counterparties' meters (the seller's export over its
disputed trades, this vouch's buyer among them; a priced vouch's buyer's import over its disputed purchases)
waits for the readings it reads until `VOUCH_RULE`, then takes the silent ones least in their favour, as a
dispute does (D4: it took them so at once, so the figure was the order readings arrived in: s sold 400 to b,
vouched, and 200 to c, disputed, s exported 400, b and c imported 200: 200 with b's readings, 266 without).
A seller alone in its disputed trades reads no buyer's meter for its share (its meter's whatever they show).
A withheld seller's hold (its `vouch` carries `release`, `market_vouch`: a seller that committed and never
revealed, held at the quantity) is metered as a dispute in which the seller said nothing (its quantity bounds
it; review15 M4): both meters, the buyer's readings waited for until `VOUCH_RULE` of the window (its edge
posts them, `pcc_readings`), then the deadline rules above (a buyer that never posts: "seller metered only",
owning the whole gap). Why not the vouch: the seller's meter alone paid it for what its buyer never took, so
keeping a reveal back netted more than revealing (K3; 80,000 against 75,000 where the buyer took 300 of 400
and said so). A withheld seller the config names meterless is paid its `release` at once (0 delivered, the
whole quantity its shortfall, the buyer's own kept: the contract's penalty without seller_vouched,
`market_sealed.withheld`). Why not the agreement's meterless rule: the hold's figures are the quantity, so one
that delivered nothing netted +80,000 instead of -40,000; nor the dispute's "buyer metered only": one that
delivered 300 of 400 would keep back its honest "300, short 100" (an agreement with its buyer's "300, short
0", compensating the buyer) to be named only the gap the buyer's meter shows too. Beside its party's other
trades such a hold is one of the disputed ones (`metering.metered_as_dispute`), as is a lone or unrevealed
trade the DSO took up: shared by the meters, never taken at a buyer's word, which bounds none of them
(review16 M1: a crashed seller's export went to one of its buyers by trade id, never to one stating 0); so
is a withheld buyer's hold (its seller's lone word held at the quantity, no `release`), beside its buyer's
other purchases and its seller's other sales (D3: at its seller's word, which bounds nothing it settles at,
one seller's word moved the buyer's import between its holds, and withholding netted the buyer more); and so
is an agreement's vouch, beside its seller's other vouches and its buyer's other purchases (V4): taken at its
agreement, the vouch the DSO settled first got what the others' agreements left of a short export, in
trade-id order (s sold 400 + 400 and exported 500: 100 then 400, whichever buyer's meter showed the energy);
now shared by the buyers' meters, 250/250 or 400/100 as they show, in either order (tests/dso/
test_disputes_vouch_siblings.py). A vouch waits for its sibling vouches' buyers' readings (above), never for
their settles, so two vouches never wait for each other.
A revealed statement whose counterparty committed and kept its reveal back, which nobody repeated by the
reveal deadline (`takeup` "withheld", D4: before, it stayed open for ever and a sibling took it at that
statement), is settled as the stater's repeat would: with seller_vouched as the hold the repeat makes
(`disputes_vouch.as_held`, the rules above), without it at the contract's penalty (`penalty`: a silent seller
0 delivered and the quantity short, a silent buyer all of it), so its figure is the same whoever moves first;
and a sibling of its party's counts it at what the meters give it from the moment the DSO takes it up,
settled at the penalty or not, by the DSO or the stater's repeat (`dispute_shares.at_penalty`; `read_nodes`
reads the withholder's meter after a repeat too), as a dispute of it would: the penalty is that trade's own
money (review22 F2: D5's 2191dc0 took it at the penalty in both orders, so a withheld buyer's 400 used up its
seller's metered 400 and the co-buyer that disputed settled at 0 below its own meter's 200, +20,000 instead
of -40,000, paid by the honest seller; before D5 that was one of two arrival orders). Its seller may so be
paid for more Wh than it exported, the excess the withholder's penalty, as beside an agreed sibling.
Only disputed (or lone-statement, unrevealed, withheld, or vouching) trades come here; a party's trades of one interval that its counterparties agreed settle at
the edge's pro-rata statement (without seller_vouched: with it every agreement is a vouch, shared as
above). What those take comes off the party's energy before its disputed trades share it (review12 F2: agreed pro rata beside disputed by the meters, a seller that exported 500 Wh settled 583):
settled, what each settled at; not settled yet, the most its statements can still settle it at (the lower of
two, a lone one, or its quantity before any word), so one that agrees after the DSO settled still fits in the
meter. Such a trade is waited for until the dispute's deadline like an unmetered counterparty (the DSO node
looks again when a `settle` of the interval lands), so in the common case (every statement in by then) the
order in which trades settle changes no share; the disputed trades share jointly, the DSO's earlier settles
among them, and none beyond what those left (`metering.disputed_shares`).
Neither metered names both the whole gap (a meterless side's word aside): equal shortfalls, no compensation
either way; the DSO can prove neither side at fault. A metered or withholding party's stated `short` is not
used: the DSO names what its metering shows, or the worst case for a side it could have metered.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from peergrid_dso.dispute_decision import Decision as Decision
from peergrid_dso.dispute_decision import Unresolved as Unresolved
from peergrid_dso.dispute_decision import Vouched as Vouched
from peergrid_dso.dispute_decision import to_json as to_json
from peergrid_dso.dispute_shares import SIDES, Metered, Meters, repeated_at_penalty
from peergrid_dso.disputes_vouch import as_held, penalty, resolve_vouch
from peergrid_dso.sealed_pass import Sealed
from peergrid_dso.sealed_readings import ChainTime, MeterClock, SigningMeters
from peergrid_ledger import query
from peergrid_ledger.contracts.market_state import cover_prices
from peergrid_ledger.metering import meters_read
from peergrid_ledger.state import StateReader
from peergrid_ledger.takeup import with_dso


def resolve(
    state: StateReader,
    trade: bytes,
    clock: MeterClock,
    nodes: Mapping[bytes, bytes],
    sealed: Sealed,
    chain: ChainTime | None = None,
    meterless: Collection[bytes] = frozenset(),
    signing: SigningMeters | None = None,
) -> Decision:
    """The Wh the DSO settles `trade` with, or why it does not (module docstring); `meterless`: the anonyms of
    MGs without a PCC meter (the DSO's config, `loop_settings.MgEntry.meterless`); `signing`: the PCC meters
    enrolled as signing, whose MGs are metered from meter-signed readings only (`sealed_readings`)."""
    where, agreed = query.settlement(state, trade), query.trade(state, trade)
    if where is None or agreed is None:
        return Unresolved(trade, "no such trade on the MGMC chain")
    up = with_dso(agreed, None if chain is None else chain.now_ms)  # the one rule (peergrid_ledger.takeup)
    if up is None:
        return Unresolved(trade, f"the trade is {where['state']}, not disputed")
    if up.kind == "withheld":  # nobody repeated: metered as the hold the stater's repeat makes (D4)
        assert chain is not None  # takeup: only at a known time
        if chain.now_ms < up.meters_from_ms:
            start = up.meters_from_ms
            why = f"a statement beside a commitment kept back: its party may repeat it; from chain time {start} ms"
            return Unresolved(trade, f"{why} the DSO meters it", start)
        if not chain.seller_vouched:  # the stater's repeat pays the withholder's worst case: so does the DSO
            return penalty(state, trade, agreed)
        agreed = as_held(agreed)
    held = up.kind in ("vouching", "withheld")
    withheld_seller = held and "release" in agreed["vouch"]  # market_vouch: its worst case
    if held and not (withheld_seller and agreed["seller"] not in meterless):
        return resolve_vouch(state, trade, agreed, up, clock, nodes, sealed, chain, meterless, signing)
    # a withheld seller that has a meter is metered as a dispute in which it said nothing (review15 M4)
    if up.kind == "lone" and chain is None:
        return Unresolved(trade, "one statement: the DSO settles it only by the chain's time")
    if chain is not None and chain.now_ms < up.meters_from_ms:  # a lone word: the other party may still join
        start = up.meters_from_ms
        why = f"one statement: its counterparty may still state; from chain time {start} ms the DSO meters it"
        return Unresolved(trade, why, start)
    quantity = int(agreed["quantity"])
    meters = Meters(state, clock, int(agreed["interval"]), nodes, sealed, chain, meterless, signing)
    sides: dict[str, Metered] = {}
    unmetered: dict[str, str] = {}
    waiting: list[str] = []  # the metered sides' counterparties that are not (yet) metered
    lapsed = chain is not None and chain.now_ms >= up.rules_from(chain.wait_ms)
    for side in SIDES:
        energy = meters.energy(agreed[side], side)
        if isinstance(energy, str):
            unmetered[side] = energy
            continue
        sides[side], lacking, unsettled = meters.share(trade, side, energy, lapsed)
        waiting.extend(
            f"the {side}'s counterparty {cp.hex()[:16]}…: {why}" for cp, why in lacking + unsettled
        )
    seller, buyer = sides.get("seller"), sides.get("buyer")
    priced = cover_prices(state, agreed) is not None
    if seller is not None and buyer is not None:
        # a share by the counterparties' meters needs them all: wait for them until the deadline (without the
        # chain's time there is none: the party's share is pro rata at once, as `meter_shares` gives it)
        if waiting and chain is not None and not lapsed:
            why = f"a share by the counterparties' meters waits for {'; '.join(waiting)}"
            until = up.rules_from(chain.wait_ms)
            return Unresolved(trade, f"{why}; from chain time {until} ms the DSO shares without them", until)
        delivered = min(seller.share_wh, buyer.share_wh, quantity)
        shorts = _shorts(quantity, delivered, sides, priced)
        return Vouched(trade, delivered, quantity, seller, buyer, shorts=shorts, readings=meters.of(agreed))
    side = next(s for s in SIDES if s in unmetered)
    why = f"the {side}'s metering: {unmetered[side]}"
    statements = where["statements"]
    if chain is None:
        return Unresolved(trade, why)
    until = up.rules_from(chain.wait_ms)
    # a meterless side has no readings to wait for: only the others' (and the metered side's counterparties')
    awaited = waiting or any(agreed[s] not in meterless for s in unmetered)
    if chain.now_ms < until and awaited:
        return Unresolved(trade, f"{why}; from chain time {until} ms the DSO settles without it", until)
    # a silent side (a lone statement) said nothing that bounds it: its quantity
    stated = {s: int(statements[s]["delivered"]) if s in statements else quantity for s in SIDES}
    if seller is not None:
        delivered, rule = min(seller.share_wh, stated["seller"]), "seller metered only"
    elif agreed["seller"] not in meterless:  # it could have been metered and was not: none proven delivered
        delivered, rule = 0, "seller not metered"
    elif buyer is not None:
        delivered, rule = min(buyer.share_wh, stated["buyer"], stated["seller"]), "buyer metered only"
    else:
        delivered, rule = min(stated["seller"], stated["buyer"]), "neither metered"
    delivered = min(delivered, quantity)
    own = {s: int(statements[s].get("short", 0)) for s in SIDES if agreed[s] in meterless and s in statements}
    shorts = _shorts(quantity, delivered, sides, priced, own)
    return Vouched(trade, delivered, quantity, seller, buyer, rule, unmetered, shorts, meters.of(agreed))


def read_nodes(state: StateReader, trade: bytes, nodes: Mapping[bytes, bytes]) -> set[bytes]:
    """The node keys whose sealed readings resolving `trade` reads (`metering.meters_read`, the rule the edge
    posts by): its two parties' and the counterparties of their other disputed trades in its interval - not
    those of trades that agreed, which settle on the parties' word (empty for an unknown or superseded
    trade; anonyms not enrolled left out); and those of its parties' withheld statements the stater's repeat
    settled at the penalty (`dispute_shares.repeated_at_penalty`, review22 F2: shared by the meters like the
    one the DSO settles, so the repeat moves no sibling's figure)."""
    agreed = query.trade(state, trade)
    if agreed is None:
        return set()
    trades = query.trades(state, int(agreed["interval"]))
    read = meters_read(trades, trade)
    if read:
        for tid, other in trades:
            if tid != trade and repeated_at_penalty(other):
                read |= {
                    other[o] for s, o in (("seller", "buyer"), ("buyer", "seller")) if other[s] == agreed[s]
                }
    return {nodes[a] for a in read if a in nodes}


def _shorts(
    quantity: int,
    delivered: int,
    sides: Mapping[str, Metered],
    priced: bool,
    own: Mapping[str, int] | None = None,
) -> tuple[int, int] | None:
    """(seller's, buyer's) shortfall the DSO names on a priced trade (module docstring), None unpriced: a
    metered side's from its own share, an unmetered side's the whole gap, a meterless side's its own stated
    shortfall (`own`: side -> Wh) where the larger is still the gap (else the whole gap); the larger is the gap."""
    if not priced:
        return None
    gap = quantity - delivered
    named = {
        side: gap if side not in sides else min(gap, quantity - min(sides[side].share_wh, quantity))
        for side in SIDES
    }
    word = {side: min(short, gap) for side, short in (own or {}).items() if side not in sides}
    if word and max({**named, **word}.values()) == gap:  # the contract's pair rule holds on their word
        named.update(word)
    return named["seller"], named["buyer"]
