"""Owners' rules in the bargaining: the intervals of the bench's owner-rules day that were unstable now converge
and are stable, no move breaks a rule, and the buyer's moves behind it (moves.make_bid) and the payoff the
stability check uses (stability.payoff) each do what they promise on a hand-built case.

The seeded intervals are frozen participants (tests/controller/data/owner_rules_intervals.json): the curves and
rules simulate() handed to bargain() on the bench's "20 + owner rules" day, seed 1. Running that day takes a
minute, so the test replays only the intervals that were reported unstable.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid_controller.bargaining import BargainingConfig, MemoryVenue, Participant, bargain
from peergrid_controller.curve import ResponseCurve
from peergrid_controller.market import Accepted, Bid, Offer, Trade, acceptable, check_bid, clear
from peergrid_controller.model import ContractRules
from peergrid_controller.moves import make_bid
from peergrid_controller.stability import check, payoff

FIXTURE = Path(__file__).parent / "data" / "owner_rules_intervals.json"


def _number(x: float | None) -> float:
    return math.inf if x is None else float(x)


def _participants(record: dict[str, Any]) -> list[Participant]:
    out = []
    for p in record["participants"]:
        r = p["rules"]
        rules = ContractRules(
            floor_price=r["floor_price"],
            cap_price=_number(r["cap_price"]),
            max_quantity_kwh=_number(r["max_quantity_kwh"]),
            clean_only=r["clean_only"],
            clean_premium=r["clean_premium"],
        )
        curve = ResponseCurve(tuple(p["prices"]), tuple(p["quantities"]), _number(p["upper"]))
        out.append(Participant(p["name"], curve, rules, p["clean"]))
    return out


INTERVALS = json.loads(FIXTURE.read_text())["intervals"]


@pytest.mark.parametrize("record", INTERVALS, ids=[f"{r['rationality']}-{r['interval']}" for r in INTERVALS])
def test_the_owner_rules_intervals_that_were_unstable_converge_and_are_stable(record: dict[str, Any]) -> None:
    people = _participants(record)
    cfg = BargainingConfig()
    venue = MemoryVenue({p.name: p.rules for p in people})
    outcome = bargain(people, record["interval"], record["feed_in"], record["retail"], venue, cfg)
    volume = sum(t.quantity_kwh for t in outcome.trades)
    stability = check(people, outcome, cfg.price_tolerance * max(volume, 1.0), cfg.price_band)
    assert outcome.converged and len(outcome.rounds) <= cfg.max_rounds
    assert stability.stable, stability.taker_gain
    assert volume > 0
    # every move was legal and every trade within the owners' rules
    assert all(not r.rejected for r in outcome.rounds)
    by_name = {p.name: p for p in people}
    offers = {o.seller: o for o in outcome.rounds[-1].offers}
    for t in outcome.trades:
        seller, buyer = by_name[t.seller].rules, by_name[t.buyer].rules
        assert t.price >= seller.floor_price - 1e-9
        assert acceptable(offers[t.seller], buyer)
    for name, p in by_name.items():
        bought = sum(t.quantity_kwh for t in outcome.trades if t.buyer == name)
        sold = sum(t.quantity_kwh for t in outcome.trades if t.seller == name)
        assert bought <= p.rules.max_quantity_kwh + 1e-9
        assert sold <= (offers[name].quantity_kwh if name in offers else 0.0) + 1e-9


# ---------------------------------------------------------------------------------------------- the pieces


def _flat(quantity: float, value: float) -> ResponseCurve:
    """Buys `-quantity` kWh (quantity < 0) at any price below `value`, nothing above it."""
    return ResponseCurve((0.05, value), (quantity, 0.0), 0.30)


def test_the_payoff_counts_the_owners_clean_premium_on_clean_energy_bought() -> None:
    buyer = Participant("b", _flat(-5.0, 0.09), ContractRules(clean_premium=0.02), False)
    trades = [Trade(0, "s", "b", 5.0, 0.10)]
    # its own energy is worth 0.09/kWh to it; clean energy 0.02 more, so 0.10 is a gain of 0.01/kWh
    assert payoff(buyer, trades, clean={"s"}) == pytest.approx(5 * (0.09 + 0.02 - 0.10))
    assert payoff(buyer, trades) == pytest.approx(5 * (0.09 - 0.10))  # not clean: no premium


def test_a_buyer_paying_its_clean_premium_is_stable() -> None:
    # the seller's floor (0.10) is above what the buyer's own curve pays (0.09), but within it plus the
    # premium the owner preset for clean energy: make_bid buys, and the check no longer calls that a loss
    seller = Participant("s", ResponseCurve((0.05,), (10.0,), 0.30), ContractRules(floor_price=0.10), True)
    buyer = Participant("b", _flat(-5.0, 0.09), ContractRules(clean_premium=0.02), False)
    venue = MemoryVenue({"s": seller.rules, "b": buyer.rules})
    outcome = bargain([seller, buyer], 0, 0.05, 0.25, venue)
    ((trade),) = outcome.trades
    assert trade.quantity_kwh == pytest.approx(5.0)
    assert 0.10 <= trade.price <= 0.11 + 1e-9
    assert check([seller, buyer], outcome, 0.005).stable


def test_a_price_level_never_reaches_a_price_the_buyer_wants_nothing_at() -> None:
    # a is within the band of b, but the buyer wants energy only below 0.1005: priced at b's 0.101, the
    # level was refused whole, a's cheaper energy with it (still so without `spare`: rule-free markets)
    buyer = Participant("x", _flat(-4.0, 0.1005), ContractRules(cap_price=0.2), False)
    offers = [Offer("a", 0, 0.100, 10.0, False), Offer("b", 0, 0.101, 10.0, False)]
    assert make_bid(buyer, offers, 0, band=0.003, spare={}).requests == (("a", 4.0),)
    assert make_bid(buyer, offers, 0, band=0.003).requests == ()


def test_rule_free_buyers_are_sent_no_extra_requests() -> None:
    buyer = Participant("x", _flat(-10.0, 0.20), ContractRules(), False)
    offers = [Offer("a", 0, 0.10, 10.0, False), Offer("b", 0, 0.10, 10.0, False)]
    bid = make_bid(buyer, offers, 0, band=0.002, fill={"a": 0.5, "b": 1.0})
    assert dict(bid.requests) == {"a": 5.0, "b": 5.0}


def test_a_short_buyer_asks_the_level_sellers_that_served_in_full_for_what_the_rationed_withhold() -> None:
    buyer = Participant("x", _flat(-10.0, 0.20), ContractRules(), False)
    offers = [Offer("a", 0, 0.10, 10.0, False), Offer("b", 0, 0.10, 10.0, False)]
    # a served half of what it was asked, b all of it and kept 6 kWh unsold
    bid = make_bid(buyer, offers, 0, band=0.002, fill={"a": 0.5, "b": 1.0}, spare={"b": 6.0})
    asks = dict(bid.requests)
    assert asks["a"] == pytest.approx(5.0)  # its share, no more: piling onto a rationed seller helps no one
    assert asks["b"] == pytest.approx(7.5)  # share 5, plus the 2.5 a will withhold
    assert 0.5 * asks["a"] + asks["b"] == pytest.approx(10.0)


def test_no_extra_request_where_nothing_was_left_unsold() -> None:
    buyer = Participant("x", _flat(-10.0, 0.20), ContractRules(), False)
    offers = [Offer("a", 0, 0.10, 10.0, False), Offer("b", 0, 0.10, 10.0, False)]
    # b served every request but was asked exactly what it offers: an extra request would only ration it
    bid = make_bid(buyer, offers, 0, band=0.002, fill={"a": 0.5, "b": 1.0}, spare={})
    assert dict(bid.requests) == {"a": 5.0, "b": 5.0}


def test_the_extra_requests_stay_within_the_owners_maximum() -> None:
    buyer = Participant("x", _flat(-10.0, 0.20), ContractRules(max_quantity_kwh=11.0), False)
    offers = [Offer("a", 0, 0.10, 10.0, False), Offer("b", 0, 0.10, 10.0, False)]
    bid = make_bid(buyer, offers, 0, band=0.002, fill={"a": 0.5, "b": 1.0}, spare={"b": 6.0})
    assert sum(q for _, q in bid.requests) <= 11.0 + 1e-9
    assert isinstance(check_bid(bid, {o.seller: o for o in offers}, buyer.rules), Accepted)


@st.composite
def markets(
    draw: st.DrawFn,
) -> tuple[Participant, list[Offer], dict[str, float], dict[str, float] | None, float]:
    n = draw(st.integers(1, 6))
    offers = [
        Offer(
            f"s{i}",
            0,
            round(draw(st.floats(0.05, 0.25)), 3),
            round(draw(st.floats(0.0, 20.0)), 3),
            draw(st.booleans()),
        )
        for i in range(n)
    ]
    fill = {o.seller: draw(st.floats(0.05, 1.0)) for o in offers if draw(st.booleans())}
    spare = None if draw(st.booleans()) else {o.seller: draw(st.floats(0.0, 5.0)) for o in offers}
    steps = sorted(draw(st.lists(st.floats(0.06, 0.29), min_size=1, max_size=3, unique=True)))
    demand = sorted((draw(st.floats(0.0, 30.0)) for _ in steps), reverse=True)
    curve = ResponseCurve(
        (0.05, *steps), (-draw(st.floats(0.0, 40.0)) - demand[0], *(-d for d in demand)), 0.3
    )
    rules = ContractRules(
        cap_price=draw(st.sampled_from([math.inf, 0.15, 0.2])),
        max_quantity_kwh=draw(st.sampled_from([math.inf, 5.0, 25.0])),
        clean_only=draw(st.booleans()),
        clean_premium=draw(st.sampled_from([0.0, 0.01, 0.03])),
    )
    band = draw(st.sampled_from([0.0, 0.002, 0.005]))
    return Participant("x", curve, rules, False), offers, fill, spare, band


@settings(max_examples=200, deadline=None)
@given(markets())
def test_a_bid_is_legal_and_its_expected_fills_never_exceed_the_demand(
    case: tuple[Participant, list[Offer], dict[str, float], dict[str, float] | None, float],
) -> None:
    buyer, offers, fill, spare, band = case
    bid = make_bid(buyer, offers, 0, band, fill, spare)
    by_seller = {o.seller: o for o in offers}
    assert isinstance(check_bid(bid, by_seller, buyer.rules), Accepted)
    if not bid.requests:
        return
    premium = buyer.rules.clean_premium

    def effective(o: Offer) -> float:
        return o.price - (premium if o.clean else 0.0)

    dearest = max(effective(by_seller[s]) for s, _ in bid.requests)
    expected = sum(q * fill.get(s, 1.0) for s, q in bid.requests)
    assert expected <= buyer.curve.demand(dearest) + 1e-6


def _regenerate() -> None:  # pragma: no cover - run by hand: python tests/controller/test_ctl_owner_rules.py
    """Rebuild the fixture from the bench's owner-rules day (about a minute per mode)."""
    from peergrid_controller import simulate as sim
    from peergrid_controller.simulate import SimulationConfig
    from peergrid_controller.synth import synthetic_scenario

    wanted = {"strict": (28, 36, 39), "off": (31,)}
    records: list[dict[str, Any]] = []
    original = sim.bargain
    seen: dict[int, tuple[list[Participant], float, float]] = {}
    for mode, intervals in wanted.items():
        seen.clear()

        def spy(people, interval, feed_in, retail, venue, config=None):  # type: ignore[no-untyped-def]
            seen[interval] = (list(people), feed_in, retail)
            return original(people, interval, feed_in, retail, venue, config)

        sim.bargain = spy  # type: ignore[assignment]
        try:
            scenario = synthetic_scenario(20, 96, seed=1, interval_hours=0.25, rules=True)
            sim.simulate(scenario, SimulationConfig(rationality=mode))  # type: ignore[arg-type]
        finally:
            sim.bargain = original
        for t in intervals:
            people, feed_in, retail = seen[t]
            records.append(
                {
                    "rationality": mode,
                    "interval": t,
                    "feed_in": feed_in,
                    "retail": retail,
                    "participants": [
                        {
                            "name": p.name,
                            "clean": p.clean,
                            "prices": list(p.curve.prices),
                            "quantities": list(p.curve.quantities),
                            "upper": None if math.isinf(p.curve.upper) else p.curve.upper,
                            "rules": {
                                "floor_price": p.rules.floor_price,
                                "cap_price": None if math.isinf(p.rules.cap_price) else p.rules.cap_price,
                                "max_quantity_kwh": None
                                if math.isinf(p.rules.max_quantity_kwh)
                                else p.rules.max_quantity_kwh,
                                "clean_only": p.rules.clean_only,
                                "clean_premium": p.rules.clean_premium,
                            },
                        }
                        for p in people
                    ],
                }
            )
    source = json.loads(FIXTURE.read_text())["source"]
    FIXTURE.write_text(json.dumps({"source": source, "intervals": records}, indent=1) + "\n")


if __name__ == "__main__":  # pragma: no cover
    _regenerate()


# ---------------------------------------------------------------------------------------------- cap_on_fills


def _capped_market() -> list[Participant]:
    """x may receive at most 10 kWh and wants 20; a and b are rationed (y asks them for everything), c has
    plenty a little dearer. Counting x's requests against its maximum, x spends it on a and b and ends short."""
    return [
        Participant("a", ResponseCurve((0.05, 0.09), (0.0, 10.0), 0.30), ContractRules(), True),
        Participant("b", ResponseCurve((0.05, 0.09), (0.0, 10.0), 0.30), ContractRules(), True),
        Participant("c", ResponseCurve((0.05, 0.115), (0.0, 30.0), 0.30), ContractRules(), True),
        Participant("x", _flat(-20.0, 0.20), ContractRules(max_quantity_kwh=10.0), False),
        Participant("y", _flat(-30.0, 0.20), ContractRules(), False),
    ]


def _run_capped(cap_on_fills: bool) -> tuple[Any, Any]:
    people = _capped_market()
    venue = MemoryVenue({p.name: p.rules for p in people}, cap_on_fills=cap_on_fills)
    outcome = bargain(people, 0, 0.05, 0.25, venue)
    volume = sum(t.quantity_kwh for t in outcome.trades)
    return outcome, check(people, outcome, 0.001 * max(volume, 1.0), 0.002, cap_on_fills)


def test_a_quantity_capped_buyer_ends_short_when_its_requests_count_against_its_maximum() -> None:
    # the limit docs/market.md describes, reproduced: x could gain by asking c instead (not fixed without
    # the chain's cap_on_fills)
    outcome, stability = _run_capped(cap_on_fills=False)
    got = sum(t.quantity_kwh for t in outcome.trades if t.buyer == "x")
    assert got < 7.0
    assert not stability.stable and stability.taker_gain["x"] > 0.2


def test_with_cap_on_fills_the_capped_buyer_is_filled_up_to_its_maximum_and_stable() -> None:
    outcome, stability = _run_capped(cap_on_fills=True)
    assert outcome.converged and stability.stable
    x_bid = next(b for b in outcome.rounds[-1].bids if b.buyer == "x")
    assert sum(q for _, q in x_bid.requests) > 10.0  # asks past its maximum...
    got = sum(t.quantity_kwh for t in outcome.trades if t.buyer == "x")
    assert 9.99 <= got <= 10.0  # ...and receives up to it, never more


Positions = tuple[list[Offer], list[Bid], dict[str, float], dict[str, float]]


@st.composite
def capped_positions(draw: st.DrawFn) -> Positions:
    """Offers (price ties and clean or not), bids on them, each buyer's cap and clean premium."""
    sellers = [f"s{i}" for i in range(draw(st.integers(1, 4)))]
    prices = draw(
        st.lists(st.sampled_from([60, 80, 100, 120, 150]), min_size=len(sellers), max_size=len(sellers))
    )
    offers = [
        Offer(s, 1, p / 1000, draw(st.integers(1, 20_000)) / 1000, draw(st.booleans()))
        for s, p in zip(sellers, prices, strict=True)
    ]
    bids, caps, premiums = [], {}, {}
    for j in range(draw(st.integers(1, 4))):
        name = f"b{j}"
        asks = {
            o.seller: min(draw(st.integers(1, 20_000)) / 1000, o.quantity_kwh)
            for o in offers
            if draw(st.booleans())
        }
        bids.append(Bid(name, 1, tuple(sorted(asks.items()))))
        caps[name] = draw(st.sampled_from([math.inf, 3.0, 8.5, 15.0]))
        premiums[name] = draw(st.sampled_from([0.0, 0.02, 0.04]))
    return offers, bids, caps, premiums


@settings(max_examples=60, deadline=None)
@given(capped_positions())
def test_the_local_clearing_with_caps_is_the_contracts_allocation_with_cap_on_fills(case: Positions) -> None:
    # price ties (a name here, a key there) and clean premiums (each buyer's own order) included: review4 F2
    from peergrid_controller.chain_venue import chain_rules, key_for
    from peergrid_ledger.chain import LocalChain
    from peergrid_ledger.genesis import Account, Genesis, Params

    offers, bids, caps, premiums = case
    names = [o.seller for o in offers] + [b.buyer for b in bids]
    keys = {n: key_for("caps", n) for n in names}
    back = {k.public: n for n, k in keys.items()}
    rules = {
        n: ContractRules(max_quantity_kwh=caps.get(n, math.inf), clean_premium=premiums.get(n, 0.0))
        for n in names
    }
    accounts = tuple(Account(keys[n].public, ("anonym",), n, rules=chain_rules(rules[n])) for n in names)
    authority = key_for("caps", "authority")
    genesis = Genesis("caps", 0, (authority.public,), accounts, ("market",), Params(cap_on_fills=1))
    chain = LocalChain(genesis, authority)
    for o in offers:
        body = {
            "interval": 1,
            "round": 0,
            "price": round(o.price * 1000),
            "quantity": round(o.quantity_kwh * 1000),
        }
        assert chain.sign_and_submit(keys[o.seller], "offer", {**body, "clean": o.clean}).ok
    for b in bids:
        demands = sorted(
            ({"seller": keys[s].public, "quantity": round(q * 1000)} for s, q in b.requests),
            key=lambda d: d["seller"],
        )
        assert chain.sign_and_submit(keys[b.buyer], "bid", {"interval": 1, "round": 0, "demands": demands}).ok
    result = chain.sign_and_submit(keys[offers[0].seller], "trade", {"interval": 1})
    assert result.ok, result
    on_chain = sorted(
        (back[e["seller"]], back[e["buyer"]], e["quantity"]) for kind, e in result.events if kind == "trade"
    )
    cleared = clear(offers, bids, caps, premiums)
    local = sorted((t.seller, t.buyer, round(t.quantity_kwh * 1000)) for t in cleared)
    assert local == on_chain
    # each buyer keeps its rationed grants up to its cap (less a Wh per price level), never above it nor
    # above what it asked of a seller; what a cut freed goes to others (sellers never above their offer)
    rationed = {(t.seller, t.buyer): round(t.quantity_kwh * 1000) for t in clear(offers, bids)}
    asked = {(s, b.buyer): round(q * 1000) for b in bids for s, q in b.requests}
    for b in bids:
        whole = sum(q for (_, buyer), q in rationed.items() if buyer == b.buyer)
        cap = math.inf if math.isinf(caps[b.buyer]) else round(caps[b.buyer] * 1000)
        got = sum(q for _, buyer, q in local if buyer == b.buyer)
        assert min(whole, cap) - len(offers) <= got <= cap
    for seller, buyer, q in local:
        assert q <= asked[seller, buyer]
    for o in offers:
        assert sum(q for seller, _, q in local if seller == o.seller) <= round(o.quantity_kwh * 1000)
    for b in bids:  # nobody receives above its cap
        assert sum(q for _, buyer, q in local if buyer == b.buyer) <= (
            math.inf if math.isinf(caps[b.buyer]) else round(caps[b.buyer] * 1000)
        )


def _premium_market() -> tuple[MemoryVenue, list[Offer], Participant]:
    """review4 F2: B (max 10 kWh, clean premium 0.05) ranks clean C (0.20: 0.15 to it) before dirty N (0.17);
    X asks C for all it offers, so C is rationed by half."""
    b = Participant("B", _flat(-20.0, 0.30), ContractRules(max_quantity_kwh=10.0, clean_premium=0.05), False)
    venue = MemoryVenue(
        {"B": b.rules, "X": ContractRules(), "C": ContractRules(), "N": ContractRules()}, True
    )
    offers = [Offer("C", 0, 0.20, 10.0, True), Offer("N", 0, 0.17, 10.0, False)]
    for o in offers:
        assert isinstance(venue.post_offer(o), Accepted)
    assert isinstance(venue.post_bid(Bid("X", 0, (("C", 10.0),))), Accepted)
    return venue, offers, b


def test_a_premium_buyer_on_cap_on_fills_receives_the_fill_its_bid_counts_on() -> None:
    venue, offers, b = _premium_market()
    bid = make_bid(b, offers, 0, fill={"C": 0.5, "N": 1.0}, fills_capped=True)
    assert bid.requests == (("C", 10.0), ("N", 5.0))  # 5 expected from C, the other 5 from N
    assert isinstance(venue.post_bid(bid), Accepted)
    got = {t.seller: t.quantity_kwh for t in venue.close_round() if t.buyer == "B"}
    assert got == {"C": 5.0, "N": 5.0}  # served by price alone (N first) it got 8.333


def test_on_cap_on_fills_a_buyer_keeps_its_grants_in_its_own_effective_price_order() -> None:
    venue, _, _ = _premium_market()
    assert isinstance(venue.post_bid(Bid("B", 0, (("C", 10.0), ("N", 10.0)))), Accepted)
    got = {t.seller: t.quantity_kwh for t in venue.close_round() if t.buyer == "B"}
    assert got == {"C": 5.0, "N": 5.0}  # C is cheaper to B with its premium: the cut falls on N


def test_on_cap_on_fills_offers_at_one_effective_price_share_the_cut_whatever_their_names() -> None:
    def grants(first: str, second: str) -> dict[float, float]:
        offers = [Offer(first, 0, 0.10, 6.0, False), Offer(second, 0, 0.10, 2.0, False)]
        bid = Bid("b", 0, tuple(sorted(((first, 6.0), (second, 2.0)))))
        by_offer = {o.seller: o.quantity_kwh for o in offers}
        return {by_offer[t.seller]: t.quantity_kwh for t in clear(offers, [bid], {"b": 4.0})}

    assert grants("a", "z") == grants("z", "a") == {6.0: 3.0, 2.0: 1.0}


def test_the_in_memory_check_refuses_a_bid_naming_more_sellers_than_the_contract_takes() -> None:
    from peergrid_controller.market import MAX_REQUESTS, Rejected, check_offer
    from peergrid_ledger.contracts.market import DEMANDS, MAX_DEMANDS

    assert MAX_REQUESTS == MAX_DEMANDS == DEMANDS.max_len  # one constant on both venues
    offers = {f"s{i:03d}": Offer(f"s{i:03d}", 0, 0.10, 1.0, True) for i in range(MAX_REQUESTS + 1)}
    assert all(isinstance(check_offer(o, ContractRules()), Accepted) for o in offers.values())
    requests = tuple((s, 1.0) for s in sorted(offers))
    verdict = check_bid(Bid("b", 0, requests), offers, ContractRules())
    assert isinstance(verdict, Rejected) and "more than the 64" in verdict.reason
    assert isinstance(check_bid(Bid("b", 0, requests[:MAX_REQUESTS]), offers, ContractRules()), Accepted)
    # a zero request reaches neither venue's clearing, so it is not counted
    padded = (*requests[:MAX_REQUESTS], (requests[-1][0], 0.0))
    assert isinstance(check_bid(Bid("b", 0, padded), offers, ContractRules()), Accepted)


def _one_round(offer: Offer, asked: float, sold: float) -> Any:
    from peergrid_controller.bargaining import Outcome, Round

    trades = (Trade(0, offer.seller, "b", sold, offer.price),)
    return Outcome(
        0, (Round(1, (offer,), (Bid("b", 0, ((offer.seller, asked),)),), trades, ()),), True, trades
    )


def test_the_stability_check_tries_a_seller_selling_more_to_the_buyers_it_rationed() -> None:
    # review4 L6: s offered 5 of the 10 kWh its curve supplies at 0.20 and was asked 10: selling the other 5
    # gains 5 × (0.20 - 0.10); the check used to try only selling less and called it stable
    s = Participant("s", ResponseCurve((0.05, 0.10), (0.0, 10.0), 0.30), ContractRules(), True)
    b = Participant("b", ResponseCurve((0.05, 0.25), (-10.0, 0.0), 0.30), ContractRules(), False)
    outcome = _one_round(Offer("s", 0, 0.20, 5.0, True), asked=10.0, sold=5.0)
    found = check([s, b], outcome, tolerance=0.01)
    assert not found.stable and found.taker_gain["s"] == pytest.approx(0.5, abs=0.01)
    # within its owner's maximum (7 kWh: 2 more) and the buyer's (6 kWh: 1 more)
    capped_s = Participant("s", s.curve, ContractRules(max_quantity_kwh=7.0), True)
    assert check([capped_s, b], outcome, 0.01).taker_gain["s"] == pytest.approx(0.2, abs=0.01)
    capped_b = Participant("b", b.curve, ContractRules(max_quantity_kwh=6.0), False)
    assert check([s, capped_b], outcome, 0.01).taker_gain["s"] == pytest.approx(0.1, abs=0.01)


def test_a_rationed_seller_offering_its_whole_supply_gains_nothing_by_selling_more() -> None:
    # its curve supplies 5 kWh at 0.20 (the next 5 cost 0.25 each): more would sell below its cost
    s = Participant("s", ResponseCurve((0.05, 0.20, 0.25), (0.0, 5.0, 10.0), 0.30), ContractRules(), True)
    b = Participant("b", ResponseCurve((0.05, 0.25), (-10.0, 0.0), 0.30), ContractRules(), False)
    outcome = _one_round(Offer("s", 0, 0.20, 5.0, True), asked=10.0, sold=5.0)
    found = check([s, b], outcome, tolerance=0.01)
    assert found.stable and found.taker_gain["s"] <= 1e-9


@st.composite
def rationed_markets(draw: st.DrawFn) -> tuple[list[Offer], dict[str, float], Participant]:
    """Offers (clean or not, price ties possible), the share each serves of what it is asked, and a buyer
    with a maximum and a clean premium."""
    offers, fill = [], {}
    for i in range(draw(st.integers(1, 5))):
        price = draw(st.sampled_from([0.10, 0.12, 0.14, 0.16]))
        offers.append(Offer(f"s{i}", 0, price, draw(st.integers(1, 12)) * 1.0, draw(st.booleans())))
        fill[f"s{i}"] = draw(st.sampled_from([1.0, 0.8, 0.5, 0.25]))
    rules = ContractRules(
        max_quantity_kwh=draw(st.sampled_from([3.0, 6.0, 10.0, 20.0])),
        clean_premium=draw(st.sampled_from([0.0, 0.02, 0.05])),
    )
    return offers, fill, Participant("b", _flat(-draw(st.integers(1, 40)) * 1.0, 0.30), rules, False)


@settings(max_examples=80, deadline=None)
@given(rationed_markets())
def test_on_cap_on_fills_a_buyer_is_granted_what_its_bid_expects_when_the_fills_are_as_it_counted(
    case: tuple[list[Offer], dict[str, float], Participant],
) -> None:
    # review4 F2: make_bid(fills_capped) counts on `fill` at each seller in its own effective-price order;
    # other buyers then ask each seller just enough that it serves exactly that share. The closing must grant
    # the buyer what it expected (to the Wh its pro rata rounds down), never more than its maximum
    offers, fill, buyer = case
    bid = make_bid(buyer, offers, 0, fill=fill, fills_capped=True)
    asked = dict(bid.requests)
    others: list[Bid] = []
    for o in offers:
        extra = o.quantity_kwh / fill[o.seller] - asked.get(o.seller, 0.0)  # others' asks: fill exact
        k = 0
        while extra > 1e-9:  # each other buyer asks at most what is offered, as the contract allows
            q = min(extra, o.quantity_kwh)
            others.append(Bid(f"x{o.seller}{k}", 0, ((o.seller, q),)))
            extra, k = extra - q, k + 1
    caps = {x.buyer: math.inf for x in others} | {"b": buyer.rules.max_quantity_kwh}
    premiums = {"b": buyer.rules.clean_premium}
    got = sum(t.quantity_kwh for t in clear(offers, [bid, *others], caps, premiums) if t.buyer == "b")
    expected = sum(q * fill[s] for s, q in bid.requests)
    assert got <= buyer.rules.max_quantity_kwh + 1e-9
    assert expected - 0.001 * (len(offers) + 1) <= got <= expected + 1e-9


def test_on_cap_on_fills_what_a_cut_frees_at_a_rationed_seller_goes_to_its_other_buyers() -> None:
    # B (max 2 kWh) asks C for all 10 it offers, as X does: rationed 5 each, B keeps 2; the 3 it cannot take
    # go to X instead of staying unsold (a capped buyer cannot crowd the others out by asking more)
    offers = [Offer("C", 0, 0.10, 10.0, False)]
    bids = [Bid("B", 0, (("C", 10.0),)), Bid("X", 0, (("C", 10.0),))]
    got = {t.buyer: t.quantity_kwh for t in clear(offers, bids, {"B": 2.0, "X": math.inf})}
    assert got == {"B": 2.0, "X": 8.0}
    # X's own room bounds what it is handed on (7 kWh: 2 more than its rationed 5)
    got = {t.buyer: t.quantity_kwh for t in clear(offers, bids, {"B": 2.0, "X": 7.0})}
    assert got == {"B": 2.0, "X": 7.0}
