"""The DSO's word on an agreed trade that waits for it (genesis `seller_vouched`, `takeup` "vouching": an
agreement, or a withheld party's hold), and on a revealed statement whose counterparty kept its reveal back
and nobody repeated (`takeup` "withheld", D4): settled as the hold the stater's repeat makes (`as_held`), or
without seller_vouched at the penalty that repeat pays (`penalty`). The rules and why: `disputes`' module
docstring (the vouch's paragraphs). A share by the counterparties' meters waits for the readings it reads
until `takeup.VOUCH_RULE` of the window, then takes the silent ones least in their favour (D4: before, the
vouch took a counterparty whose readings were not at the DSO yet at once, so its figure was the order in
which readings arrived). Pure; no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from peergrid_dso.dispute_decision import Decision, Unresolved, Vouched
from peergrid_dso.dispute_shares import SIDES, Metered, Meters
from peergrid_dso.sealed_pass import Sealed
from peergrid_dso.sealed_readings import ChainTime, MeterClock, SigningMeters
from peergrid_ledger.contracts.market_sealed import withheld
from peergrid_ledger.contracts.market_state import cover_prices
from peergrid_ledger.state import StateReader
from peergrid_ledger.takeup import TakeUp


def resolve_vouch(
    state: StateReader,
    trade: bytes,
    agreed: Mapping[str, Any],
    up: TakeUp,
    clock: MeterClock,
    nodes: Mapping[bytes, bytes],
    sealed: Sealed,
    chain: ChainTime | None,
    meterless: Collection[bytes],
    signing: SigningMeters | None = None,
) -> Decision:
    """The DSO's word on an agreed trade that waits for it (genesis `seller_vouched`, review13 F2): the seller's
    side metered as for a dispute (its export shared over its disputed trades by their buyers' meters, this
    one's among them, waited for until VOUCH_RULE of the window, then a silent one taken as having taken all
    it bought: D4); `min(held, share)` delivered, the seller's shortfall its metered gap and
    the buyer's by its meter too (`buyer_shortfall`, D2), the seller's the whole gap where neither owns it
    (module docstring). A seller that cannot be metered is waited for until VOUCH_RULE of the window, then
    settled at 0 (D7: "seller not metered"); a meterless seller at the parties' agreement at once, a withheld
    one (`release`) at its `release`."""
    vouch = agreed["vouch"]
    if chain is None:
        return Unresolved(trade, "an agreement waiting for the DSO is settled only by the chain's time")
    quantity, held = int(agreed["quantity"]), int(vouch["delivered"])
    priced = cover_prices(state, agreed) is not None
    figures = (int(vouch["seller_short"]), int(vouch["buyer_short"])) if priced else None
    meters = Meters(state, clock, int(agreed["interval"]), nodes, sealed, chain, meterless, signing)
    energy = meters.energy(agreed["seller"], "seller")
    if isinstance(energy, str):
        if agreed["seller"] in meterless and "release" in vouch:  # withheld: it gave no word to take
            terms = vouch["release"]  # its worst case, the contract's penalty (module docstring)
            shorts = (int(terms["seller_short"]), int(terms["buyer_short"])) if priced else None
            return Vouched(trade, int(terms["delivered"]), quantity, None, None, "seller meterless, withheld",
                           {"seller": energy}, shorts, meters.of(agreed))  # fmt: skip
        if agreed["seller"] in meterless:  # nothing to meter: the parties' word
            return Vouched(trade, held, quantity, None, None, "seller meterless", {"seller": energy}, figures,
                           meters.of(agreed))  # fmt: skip
        until = up.rules_from(chain.wait_ms)  # VOUCH_RULE of the vouch's window
        why = f"the seller's metering: {energy}"
        if chain.now_ms < until:
            return Unresolved(trade, f"{why}; from chain time {until} ms the DSO settles without it", until)
        shorts, buyer, unmetered = None, None, {"seller": energy}
        if priced:  # past VOUCH_RULE: the buyer's shortfall never waits (`buyer_shortfall`)
            found = buyer_shortfall(meters, trade, agreed, quantity, int(vouch["buyer_short"]), True)
            assert isinstance(found, tuple)  # lapsed: it never waits
            shorts, buyer = (quantity, found[0]), found[1]
            unmetered.update(found[2])
        return Vouched(trade, 0, quantity, None, buyer, "seller not metered", unmetered, shorts,
                       meters.of(agreed))  # fmt: skip
    until = up.rules_from(chain.wait_ms)  # VOUCH_RULE of the vouch's window
    lapsed = chain.now_ms >= until
    # the seller's share by its disputed trades' counterparties' meters, this one's buyer among them: waited for
    # as a dispute waits for them (D4: else the figure was the order in which readings reached the DSO)
    seller, lacking, _ = meters.share(trade, "seller", energy, lapsed)
    if lacking and not lapsed:
        return Unresolved(trade, f"{_waits('seller', lacking)}; from chain time {until} ms the DSO shares "
                                 "without them", until)  # fmt: skip
    delivered = min(held, seller.share_wh)  # the seller's meter decides, the agreement caps it
    rule = (
        "seller metered, agreement covered" if delivered == held else "seller metered short of the agreement"
    )
    shorts, buyer, unmetered = None, None, {}
    if priced:
        gap = quantity - delivered
        found = buyer_shortfall(meters, trade, agreed, gap, int(vouch["buyer_short"]), lapsed)
        if isinstance(found, list):
            return Unresolved(trade, f"{_waits('buyer', found)}; from chain time {until} ms the DSO shares "
                                     "without them", until)  # fmt: skip
        if isinstance(found, str):
            why = f"the buyer's metering (its own shortfall of the {gap} Wh gap): {found}"
            return Unresolved(
                trade, f"{why}; from chain time {until} ms the DSO names it the whole gap", until
            )
        buyer_short, buyer, unmetered = found
        own = quantity - min(seller.share_wh, quantity)
        # the gap neither the seller's meter nor the buyer's word or meter owns is the seller's (review14 K7):
        # the contract refuses a settle whose larger shortfall is not the gap, and the seller's word made it
        shorts = (gap if max(own, buyer_short) < gap else own, buyer_short)
    return Vouched(trade, delivered, quantity, seller, buyer, rule, unmetered, shorts, meters.of(agreed))


def buyer_shortfall(
    meters: Meters, trade: bytes, agreed: Mapping[str, Any], gap: int, word: int, lapsed: bool
) -> tuple[int, Metered | None, dict[str, str]] | str | list[tuple[bytes, str]]:
    """The buyer's own shortfall the DSO names on a priced vouch (module docstring, D2): none without a gap;
    the larger of its word and its metered gap (its import shared like a dispute's, its other sellers that
    cannot be metered taken as delivering nothing of it: `lapsed` as for the seller's side), at most the gap;
    a meterless buyer's word; a buyer that could be metered and is not, the whole gap once `lapsed`
    (VOUCH_RULE of the window), else why the DSO waits for it (str), or for its other sellers' readings
    (their list, until `lapsed`). With the buyer's Metered side and `unmetered` entry for the decision."""
    if gap <= 0:
        return 0, None, {}
    energy = meters.energy(agreed["buyer"], "buyer")
    if isinstance(energy, str):
        if agreed["buyer"] in meters.meterless:  # nothing to meter: its word, as today
            return min(word, gap), None, {}
        return (gap, None, {"buyer": energy}) if lapsed else energy
    buyer, lacking, _ = meters.share(trade, "buyer", energy, lapsed)
    if lacking and not lapsed:
        return lacking
    quantity = int(agreed["quantity"])
    return min(gap, max(word, quantity - min(buyer.share_wh, quantity))), buyer, {}


def as_held(agreed: Mapping[str, Any]) -> dict[str, Any]:
    """A trade on one revealed statement whose counterparty committed and kept its reveal back (`takeup`
    "withheld") with the `vouch` the stater's repeat would hold it at (`market_closing._lapse`,
    `market_sealed.withheld`): a withheld buyer's at the quantity with no shortfalls, a withheld seller's at
    the quantity with the buyer's own kept and its worst case as `release`."""
    [(stater, said)] = agreed["statements"].items()
    silent, own, quantity = SIDES[1 - SIDES.index(stater)], int(said.get("short", 0)), int(agreed["quantity"])
    terms = withheld(dict(agreed), silent, own)
    assert terms is not None  # takeup: the silent party committed
    delivered, (seller_short, buyer_short) = terms
    vouch: dict[str, Any] = {"basis": "withheld"}
    if silent == "buyer":
        vouch.update(delivered=delivered, seller_short=seller_short, buyer_short=buyer_short)
    else:
        vouch.update(delivered=quantity, seller_short=0, buyer_short=own)
        vouch["release"] = {"delivered": delivered, "seller_short": seller_short, "buyer_short": buyer_short}
    return {**agreed, "vouch": vouch}


def penalty(state: StateReader, trade: bytes, agreed: Mapping[str, Any]) -> Vouched:
    """A withheld statement on a chain without seller_vouched: what the stater's repeat pays
    (`market_sealed.withheld`: a silent seller delivered nothing and owns the quantity, a silent buyer took
    it all), metered by nobody."""
    [(stater, said)] = agreed["statements"].items()
    silent = SIDES[1 - SIDES.index(stater)]
    terms = withheld(dict(agreed), silent, int(said.get("short", 0)))
    assert terms is not None  # takeup: the silent party committed
    shorts = terms[1] if cover_prices(state, agreed) is not None else None
    quantity = int(agreed["quantity"])
    return Vouched(trade, terms[0], quantity, None, None, f"{silent} withheld", {silent: "kept its reveal back"},
                   shorts)  # fmt: skip


def _waits(side: str, lacking: Sequence[tuple[bytes, str]]) -> str:
    """Why a vouch waits for the readings its `side`'s share reads (the counterparties', with why)."""
    named = "; ".join(f"{cp.hex()[:16]}…: {why}" for cp, why in lacking)
    return f"the {side}'s share by its counterparties' meters waits for {named}"
