"""The edge's trading agent bargains by the owner-rules fixes (controller commits 05d8ade, e161da2, f16a346): a
buyer's moves use what sellers left unsold (`spare`) when owners' rules rank offers apart, and its maximum caps
its expected fills, not its requests, on a chain whose genesis sets `cap_on_fills` — read from that genesis,
never assumed.

The market test runs five real MGMC agents (`MarketAgent`'s own submission path) on one real single-authority
`EdgeLedger` (its node key is the only authority, so it finalises alone, no broker): every offer, bid and move
is a signed transaction the real contract judges, and the allocation is the contract's.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import math
import random
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from edge_helpers import BLOCK_MS

from peergrid_controller.bargaining import MemoryVenue, Outcome, Round, bargain
from peergrid_controller.chain_venue import chain_rules
from peergrid_controller.curve import ResponseCurve
from peergrid_controller.market import Bid, Offer, Trade, micro_per_wh, wh
from peergrid_controller.model import ContractRules
from peergrid_controller.moves import BargainingConfig, Participant, capped, interval_price, role, role_at_mid
from peergrid_controller.moves import make_bid as controller_make_bid
from peergrid_controller.stability import Stability, check
from peergrid_edge import chain_bargaining
from peergrid_edge.chain_bargaining import (
    MarketTerms,
    bids_on_chain,
    market_terms,
    offers_on_chain,
    unsold,
)
from peergrid_edge.link import MqttLink
from peergrid_edge.replicas import ChainSpec, EdgeLedger
from peergrid_edge.trader import MarketAgent
from peergrid_ledger import query
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.genesis import Account, Genesis, Params
from peergrid_ledger.keys import Keypair

T = 3
FEED_IN, RETAIL = 0.05, 0.25
MAX_X_WH = 10_000  # buyer x's owner lets it receive at most 10 kWh


def _flat(quantity: float, value: float) -> ResponseCurve:
    """Buys `-quantity` kWh (quantity < 0) at any price below `value`, nothing above it."""
    return ResponseCurve((0.05, value), (quantity, 0.0), 0.30)


def capped_market() -> dict[str, tuple[ResponseCurve, ContractRules, bool]]:
    """x may receive at most 10 kWh and wants 20; a and b are cheap and rationed once y crowds them, c has
    plenty a little dearer (the controller's hand-built case in tests/controller/test_ctl_owner_rules.py)."""
    return {
        "a": (ResponseCurve((0.05, 0.09), (0.0, 10.0), 0.30), ContractRules(), True),
        "b": (ResponseCurve((0.05, 0.09), (0.0, 10.0), 0.30), ContractRules(), True),
        "c": (ResponseCurve((0.05, 0.115), (0.0, 30.0), 0.30), ContractRules(), True),
        "x": (_flat(-20.0, 0.20), ContractRules(max_quantity_kwh=MAX_X_WH / 1000), False),
        "y": (_flat(-30.0, 0.20), ContractRules(), False),
    }


def market_genesis(
    authority: Keypair, anonyms: dict[str, Keypair], rules: dict[str, ContractRules], params: Params
) -> Genesis:
    return Genesis(
        chain="mgmc-owner-rules", time=0, authorities=(authority.public,),
        accounts=(Account(authority.public, ("mgmc",)),
                  *(Account(k.public, ("anonym",), name, balance=10**9, rules=chain_rules(rules[name]))
                    for name, k in anonyms.items())),
        contracts=("market",), params=params,
    )  # fmt: skip


def agent_on(
    ledger: EdgeLedger, node: Keypair, anonym: Keypair, sent: list[dict[str, Any]], max_rounds: int = 30
) -> MarketAgent:
    """A MarketAgent with only what bargaining uses; its transactions go through its own `_submit` (signed,
    waited for in a final block), each body also noted in `sent`."""
    agent = object.__new__(MarketAgent)
    agent.s = SimpleNamespace(phase_timeout_s=5.0)  # type: ignore[assignment]
    agent.d = SimpleNamespace(ledger=ledger, keypair=node, stopping=asyncio.Event())  # type: ignore[assignment]
    agent.anonym, agent.name = anonym, anonym.public.hex()
    agent.cfg = BargainingConfig(max_rounds=max_rounds)
    agent.phase = ""
    real = agent._submit

    async def submit(role: str, key: Keypair, kind: str, body: dict[str, Any]) -> bool:
        sent.append({"kind": kind, **body})
        return await real(role, key, kind, body)

    agent._submit = submit  # type: ignore[method-assign]
    return agent


@dataclass
class Played:
    """One interval of a market on a real replica: x's bids as it submitted them (round 0's join
    included), what each buyer was allocated (Wh, from the closing's trades), each agent's role, and the
    `spare` and `fills_capped` every call of `make_bid` by x was given; every MG's participant (named by its
    anonym key), every body it sent, the rounds each agent played and the interval's outcome as the
    chain holds it (final positions, the closing's trades)."""

    moves: list[dict[str, Any]]
    allocated: dict[str, int]
    roles: dict[str, str]
    given: list[tuple[dict[str, float] | None, bool]]
    keys: dict[str, str]  # name -> anonym key (hex)
    people: list[Participant]
    sent: dict[str, list[dict[str, Any]]]
    rounds: list[int]
    outcome: Outcome
    price: float  # the interval's price (`moves.interval_price`), what the simulation opens at
    opening: float | None  # where its sellers opened (None: mid-bounds)


Market = dict[str, tuple[ResponseCurve, ContractRules, bool]]
OPENINGS = ("interval", "previous", "mid")


def play(
    tmp_path: Path,
    params: Params,
    monkeypatch: pytest.MonkeyPatch,
    market: Market,
    opening: str = "mid",
    max_rounds: int = 30,
) -> Played:
    """Every MG of `market` bargains interval T on one real replica, each through its own agent (`play_day`)."""
    return play_day(tmp_path, params, monkeypatch, [market], opening, max_rounds)[0]


def play_day(
    tmp_path: Path,
    params: Params,
    monkeypatch: pytest.MonkeyPatch,
    markets: list[Market],
    opening: str = "mid",
    max_rounds: int = 30,
) -> list[Played]:
    """Intervals T, T + 1, ... one after another on one real replica, every MG of `markets[k]` (the same MGs
    and owners' rules every interval, their curves changing) bargaining interval T + k through its own agent.
    `opening`: "interval" — sellers open at the interval's price (`moves.interval_price`, what
    `bargaining.bargain` opens at) and roles follow it; "previous" — as the trader plays it (`chain_bargaining.
    opening`: the previous interval's agreed price on the chain, else the mid price); "mid" — the trader
    before it had a previous price: roles at the mid price, sellers open mid-bounds."""
    assert opening in OPENINGS
    first = markets[0]
    authority = Keypair.generate()
    anonyms = {name: Keypair.generate() for name in first}
    genesis = market_genesis(authority, anonyms, {n: r for n, (_, r, _) in first.items()}, params)
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "mgmc-genesis.json"
    path.write_text(json.dumps(genesis.to_json()))
    spec = ChainSpec(name="mgmc", genesis=path, data_dir=tmp_path / "mgmc.db", block_period_ms=BLOCK_MS,
                     round_timeout_ms=500, wal_fsync=False)  # fmt: skip
    ledger = EdgeLedger(authority, MqttLink("test", "127.0.0.1", 9), "feeder", [spec])  # never started: alone
    given: list[tuple[dict[str, float] | None, bool]] = []
    real_make_bid = controller_make_bid  # not the edge's name, which an earlier play() may have patched

    def make_bid(*args: Any, **kwargs: Any) -> Any:
        call = inspect.signature(real_make_bid).bind(*args, **kwargs)
        call.apply_defaults()
        if "x" in anonyms and call.arguments["buyer"].name == anonyms["x"].public.hex():
            spare = call.arguments["spare"]
            given.append((None if spare is None else dict(spare), call.arguments["fills_capped"]))
        return real_make_bid(*args, **kwargs)

    monkeypatch.setattr(chain_bargaining, "make_bid", make_bid)
    names = {k.public: name for name, k in anonyms.items()}
    keys = {n: k.public.hex() for n, k in anonyms.items()}
    days: list[Played] = []

    async def interval(t: int, market: Market) -> Played:
        assert set(market) == set(anonyms) and all(market[n][1] == first[n][1] for n in market)
        given.clear()
        sent: dict[str, list[dict[str, Any]]] = {name: [] for name in market}
        people = [Participant(anonyms[n].public.hex(), c, r, clean) for n, (c, r, clean) in market.items()]
        premium = max(p.rules.clean_premium for p in people)
        price = interval_price(lambda x: sum(capped(p, x) for p in people), FEED_IN, RETAIL + premium)
        state = ledger.state("mgmc")
        roles: dict[str, str] = {}
        plays = []
        for name, me in zip(market, people, strict=True):
            agent = agent_on(ledger, authority, anonyms[name], sent[name], max_rounds)
            start: float | None = None
            if opening == "interval":
                roles[name], start = role(me, price), price
            else:  # as the trader: roles at the mid price, sellers from the previous price or mid-bounds
                roles[name] = role_at_mid(me, FEED_IN, RETAIL)
                if opening == "previous":
                    start = chain_bargaining.opening_price(state, t, FEED_IN, RETAIL + premium)
            plays.append(chain_bargaining.bargain(agent, t, me, roles[name], FEED_IN, RETAIL, start))
        histories = await asyncio.wait_for(asyncio.gather(*plays), 120)
        allocated: dict[str, int] = {}
        for _, trade in query.trades(ledger.state("mgmc"), t):
            buyer = names[trade["buyer"]]
            allocated[buyer] = allocated.get(buyer, 0) + trade["quantity"]
        moves = [b for b in sent.get("x", []) if b["kind"] in ("bid", "move") and "demands" in b]
        rounds = [len(h) for h in histories]
        outcome = chain_outcome(ledger.state("mgmc"), t)
        return Played(moves, allocated, roles, list(given), keys, people, sent, rounds, outcome, price, start)

    async def day() -> None:
        ledger.start()
        try:
            for k, market in enumerate(markets):
                days.append(await interval(T + k, market))
        finally:
            ledger.close()

    asyncio.run(day())
    return days


def chain_outcome(state: Any, t: int = T) -> Outcome:
    """The interval as the chain holds it once closed: the final positions (one round) and the trades."""
    offers = [
        Offer(s.hex(), t, p / 1000, q / 1000, c) for s, (p, q, c, _) in offers_on_chain(state, t).items()
    ]
    bids = [
        Bid(b.hex(), t, tuple((s.hex(), q / 1000) for s, q in dem))
        for b, (dem, _) in bids_on_chain(state, t).items()
    ]
    trades = tuple(Trade(t, tr["seller"].hex(), tr["buyer"].hex(), tr["quantity"] / 1000, tr["price"] / 1000)
                   for _, tr in query.trades(state, t))  # fmt: skip
    return Outcome(t, (Round(0, tuple(offers), tuple(bids), trades, ()),), True, trades)


def asked(move: dict[str, Any]) -> int:
    return sum(d["quantity"] for d in move["demands"])


def y_ranks_offers_apart() -> dict[str, tuple[ResponseCurve, ContractRules, bool]]:
    """The same market with one owner's rule that ranks offers apart (y pays a clean premium)."""
    market = capped_market()
    curve, _, clean = market["y"]
    market["y"] = (curve, ContractRules(clean_premium=0.001), clean)
    return market


MARKETS = {"no ranking rules": capped_market, "a clean premium": y_ranks_offers_apart}


@pytest.mark.parametrize("name", MARKETS)
def test_on_a_cap_on_fills_chain_a_capped_buyer_asks_past_its_maximum_and_gets_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    played = play(tmp_path, Params(credit_limit=10**12, cap_on_fills=1), monkeypatch, MARKETS[name]())
    assert played.roles == {"a": "seller", "b": "seller", "c": "seller", "x": "buyer", "y": "buyer"}
    # the bid the closing judged asks rationed sellers for more than its maximum in all (only this chain
    # accepts that) ...
    final = played.moves[-1]
    assert asked(final) > MAX_X_WH
    # ... and the contract allocated it its maximum, never more: short only by the contract's rounding (a
    # rationed seller grants pro rata rounded down to the Wh, at most 1 Wh short per seller asked)
    assert MAX_X_WH - len(final["demands"]) <= played.allocated["x"] <= MAX_X_WH
    assert played.given and all(capped for _, capped in played.given)  # read from the genesis


@pytest.mark.parametrize("name", MARKETS)
def test_on_an_old_chain_a_capped_buyer_never_asks_past_its_maximum(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    played = play(tmp_path, Params(credit_limit=10**12), monkeypatch, MARKETS[name]())
    assert played.given and not any(capped for _, capped in played.given)
    assert played.moves and all(asked(m) <= MAX_X_WH for m in played.moves)
    # the limit cap_on_fills exists for: spending its maximum on rationed sellers, x ends short of it
    assert 0 < played.allocated["x"] < MAX_X_WH - len(played.moves[-1]["demands"])


def test_spare_is_passed_only_where_owners_rules_rank_offers_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = play(tmp_path / "plain", Params(credit_limit=10**12), monkeypatch, capped_market())
    assert plain.given and all(spare is None for spare, _ in plain.given)  # moves as before the fixes
    ranked = play(tmp_path / "ranked", Params(credit_limit=10**12), monkeypatch, y_ranks_offers_apart())
    spares = [spare for spare, _ in ranked.given]
    assert spares[0] == {}  # before any round nobody has left anything unsold
    assert all(spare is not None for spare in spares)
    # some round a seller left energy unsold and the next bid was told so; only sellers appear, each with
    # something left and no more than it can offer (a and b 10 kWh, c 30 kWh)
    assert any(spares[1:])
    sellers = {ranked.keys[n]: top for n, top in (("a", 10.0), ("b", 10.0), ("c", 30.0))}
    for spare in spares:
        assert spare is not None and set(spare) <= set(sellers)
        assert all(0.01 < left <= sellers[s] for s, left in spare.items())


# ---------------------------------------------------------------------------------------------- the terms


def test_the_terms_come_from_the_members_public_rules_and_the_chains_genesis() -> None:
    authority = Keypair.generate()
    plain = {"p": Keypair.generate(), "q": Keypair.generate()}
    kinds: dict[str, ContractRules] = {
        "premium": ContractRules(clean_premium=0.01),
        "clean-only": ContractRules(clean_only=True),
        "cap": ContractRules(cap_price=0.2),
        "maximum only": ContractRules(max_quantity_kwh=5.0, floor_price=0.07),  # ranks no offer apart
    }
    for name, ranked in kinds.items():
        for params, fills_capped in ((Params(), False), (Params(cap_on_fills=1), True)):
            keys = {**plain, "r": Keypair.generate()}
            rules = {"p": ContractRules(), "q": ContractRules(), "r": ranked}
            chain = LocalChain(market_genesis(authority, keys, rules, params), authority)
            members = {k.public for k in keys.values()}
            expected = MarketTerms(name != "maximum only", fills_capped)
            assert market_terms(chain.state, chain.genesis, T, members) == expected, name
            # without that member nobody's rules rank offers apart
            others = {keys["p"].public, keys["q"].public}
            assert market_terms(chain.state, chain.genesis, T, others) == MarketTerms(False, fills_capped)


def test_unsold_is_offered_minus_asked_above_the_tolerance() -> None:
    a, b, c = b"\x0a" * 32, b"\x0b" * 32, b"\x0c" * 32
    offers = {a: (100, 10_000, True, 2), b: (100, 4_000, True, 2), c: (120, 6_000, False, 2)}
    # a sold 7 of 10 kWh, b was over-asked, c left 5 Wh (below the 0.01 kWh tolerance)
    left = unsold(offers, {a: 3_000, b: 9_000, c: 5_995}, 0.01)
    assert left == {a.hex(): pytest.approx(7.0)}
    assert unsold(offers, {}, 0.01) == {
        a.hex(): pytest.approx(10.0),
        b.hex(): pytest.approx(4.0),
        c.hex(): pytest.approx(6.0),
    }


# ------------------------------------------------------------------ convergence like the simulation's (issue 7)

Moves = tuple[dict[str, tuple[int, int]], dict[str, tuple[tuple[str, int], ...]]]  # one round's offers, bids


def edge_moves(played: Played) -> list[Moves]:
    """Each round's offers (price, Wh) and bids ((seller, Wh), ...) as the agents submitted them."""
    by_round: dict[int, Moves] = {}
    for name, bodies in played.sent.items():
        for body in bodies:
            if body["kind"] not in ("offer", "move") or body["round"] < 1:
                continue  # a buyer's empty join, the closing
            offers, bids = by_round.setdefault(body["round"], ({}, {}))
            if "price" in body:
                offers[played.keys[name]] = (body["price"], body["quantity"])
            elif "demands" in body:
                bids[played.keys[name]] = tuple((d["seller"].hex(), d["quantity"]) for d in body["demands"])
    return [by_round[r] for r in sorted(by_round)]


def simulated_moves(outcome: Outcome) -> list[Moves]:
    return [
        (
            {o.seller: (micro_per_wh(o.price), wh(o.quantity_kwh)) for o in r.offers},
            {b.buyer: tuple((s, wh(q)) for s, q in b.requests) for b in r.bids},
        )
        for r in outcome.rounds
    ]


def stability_of(people: list[Participant], outcome: Outcome) -> Stability:
    """The simulation's own check, with its tolerance (a tick on the volume traded) and its band."""
    cfg = BargainingConfig()
    volume = sum(t.quantity_kwh for t in outcome.trades)
    return check(people, outcome, cfg.price_tolerance * max(volume, 1.0), cfg.price_band)


def seeded_market(seed: int) -> dict[str, tuple[ResponseCurve, ContractRules, bool]]:
    """Five MGs drawn from `seed`: two or three sellers (a floor now and then, clean or not), the rest buyers
    with two-step curves and owners' rules that rank offers apart (a clean premium, a cap, clean only) or cap
    the quantity."""
    rng = random.Random(seed)
    sellers = rng.choice((2, 3))
    market: dict[str, tuple[ResponseCurve, ContractRules, bool]] = {}
    for i in range(5):
        if i < sellers:
            cost = rng.choice((0.08, 0.09, 0.1, 0.11, 0.12))
            curve = ResponseCurve(
                (0.05, cost, cost + 0.03), (0.0, rng.uniform(5, 15), rng.uniform(16, 30)), 0.30
            )
            rules = ContractRules(floor_price=rng.choice((0.0, 0.0, cost + 0.01)))
            market[f"s{i}"] = (curve, rules, rng.random() < 0.6)
        else:
            high, low = rng.uniform(3, 12), rng.uniform(3, 12)
            value = rng.choice((0.16, 0.18, 0.2, 0.22))
            curve = ResponseCurve((0.05, value - 0.04, value), (-high - low, -high, 0.0), 0.30)
            rules = rng.choice((
                ContractRules(clean_premium=rng.choice((0.001, 0.005, 0.01))),
                ContractRules(cap_price=value - 0.02),
                ContractRules(clean_only=True),
                ContractRules(max_quantity_kwh=round(rng.uniform(4, 10), 1)),
            ))  # fmt: skip
            market[f"b{i}"] = (curve, rules, False)
    return market


def scaled(curve: ResponseCurve, factor: float) -> ResponseCurve:
    return ResponseCurve(curve.prices, tuple(round(q * factor, 3) for q in curve.quantities), curve.upper)


def day_of(market: Market, intervals: int = 12) -> list[Market]:
    """`market` through a day's daylight hours, one interval an hour: sellers' quantities follow the sun (a
    quarter at the ends, the full curve at noon), buyers' follow a load rising from 0.8 to 1.2 by evening; the
    MGs, their owners' rules and their prices stay. The interval's price moves from hour to hour as the
    balance does, so each interval opens from the previous one's agreed price, as a real day's would."""
    day = []
    for k in range(intervals):
        sun = 0.25 + 0.75 * math.sin(math.pi * (k + 0.5) / intervals)
        load = 0.8 + 0.4 * k / max(intervals - 1, 1)
        day.append({
            name: (scaled(curve, sun if curve.quantities[-1] > 0 else load), rules, clean)
            for name, (curve, rules, clean) in market.items()
        })  # fmt: skip
    return day


CASES = {
    "5-MG owner rules": y_ranks_offers_apart,
    **{f"seed {k}": partial(seeded_market, k) for k in (1, 2, 3)},
}


@pytest.mark.parametrize("case", CASES)
def test_opened_at_the_interval_price_the_edge_plays_the_simulations_rounds_and_ends_stable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    market = CASES[case]()
    played = play(
        tmp_path, Params(credit_limit=10**12, cap_on_fills=1), monkeypatch, market, opening="interval"
    )
    simulated = bargain(
        played.people,
        T,
        FEED_IN,
        RETAIL,
        MemoryVenue({p.name: p.rules for p in played.people}, cap_on_fills=True),
    )
    assert simulated.converged and all(not r.rejected for r in simulated.rounds)
    rounds = len(simulated.rounds)
    # move for move: the same offers and bids in every round the simulation played (the smoothed fills, the
    # bands and the stop are the same), then one round that repeats the last: how the chain sees that no
    # seller moves and no buyer would ask differently
    moves = edge_moves(played)
    assert moves[:rounds] == simulated_moves(simulated)
    assert len(moves) == rounds + 1 and moves[rounds] == moves[rounds - 1]
    assert set(played.rounds) == {rounds + 1} and rounds + 1 < 30  # every agent stopped there, in the cap

    # the contract agreed the simulation's trades, and no MG gains more than the tolerance by deviating alone
    def agreed(trades: tuple[Trade, ...]) -> list[tuple[str, str, int, int]]:
        return sorted((t.seller, t.buyer, micro_per_wh(t.price), wh(t.quantity_kwh)) for t in trades)

    assert agreed(played.outcome.trades) == agreed(simulated.trades) and played.outcome.trades
    stability = stability_of(played.people, played.outcome)
    assert stability.stable, stability.taker_gain


def test_as_the_trader_plays_it_from_the_mid_price_the_owner_rules_case_converges_and_is_stable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No price call on the chain, no previous interval's price (the day's first interval): sellers open in
    the middle of their bounds. Measured: 29 rounds (27 before the smoothing), past the edge's old default cap
    of 12; stable either way."""
    played = play(
        tmp_path,
        Params(credit_limit=10**12, cap_on_fills=1),
        monkeypatch,
        y_ranks_offers_apart(),
        max_rounds=40,
    )
    moves = edge_moves(played)
    assert max(played.rounds) < 40 and moves[-1] == moves[-2]  # stopped on a repeated round, not the cap
    stability = stability_of(played.people, played.outcome)
    assert stability.stable, stability.taker_gain


@pytest.mark.parametrize("opening", ["interval", "mid"], ids=["interval price", "mid price"])
def test_a_seeded_owner_rules_market_the_old_agent_cycled_on_converges_and_is_stable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, opening: str
) -> None:
    """Seed 9 (two buyers paying clean premiums, a seller with a floor): the agent that acted on last round's
    fill alone ran to the 50-round cap from either opening (measured; unstable from the interval price), as
    the buyers swung between two bid patterns. With the smoothed fill it stops on a repeated round: 27 rounds
    from the interval price (the simulation: 23; a buyer that re-posts its standing bid as the band widens
    at round 16 parts from it), 25 from the mid price."""
    played = play(tmp_path, Params(credit_limit=10**12, cap_on_fills=1), monkeypatch, seeded_market(9),
                  opening=opening, max_rounds=40)  # fmt: skip
    moves = edge_moves(played)
    assert max(played.rounds) < 40 and moves[-1] == moves[-2]  # stopped on a repeated round, not the cap
    assert played.outcome.trades
    stability = stability_of(played.people, played.outcome)
    assert stability.stable, stability.taker_gain


def test_over_a_day_sellers_opening_at_the_previous_intervals_price_need_fewer_rounds_and_trade_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 5-MG owner-rules case through 12 hours of sun and load (`day_of`), played as the trader plays it
    (`opening_price`: each interval's sellers open at the previous interval's agreed price) and as it did
    before (mid-bounds every interval). Measured rounds per interval, previous price: 9 4 5 19 7 7 6 7 22 5 4 5
    (100; the first has no previous price, 19 and 22 follow a jump of the interval's price between 0.2 and
    0.115); mid: 9 8 8 29 29 29 29 29 8 8 9 9 (204); from the interval's price (the simulation's call, not on
    the chain): 71. Every interval agrees the same volume either way and passes stability.check."""
    day = day_of(y_ranks_offers_apart())
    params = Params(credit_limit=10**12, cap_on_fills=1)
    previous = play_day(tmp_path / "previous", params, monkeypatch, day, "previous", max_rounds=50)
    mid = play_day(tmp_path / "mid", params, monkeypatch, day, "mid", max_rounds=50)
    # every interval after the first opened at the previous one's agreed price: the quantity-weighted price
    # of its trades, on the tick
    assert previous[0].opening is None
    for before, played in itertools.pairwise(previous):
        volume = sum(t.quantity_kwh for t in before.outcome.trades)
        paid = sum(t.price * t.quantity_kwh for t in before.outcome.trades)
        assert played.opening == pytest.approx(round(paid / volume, 3))
    for a, b in zip(previous, mid, strict=True):
        for played in (a, b):
            moves = edge_moves(played)
            assert max(played.rounds) < 50 and moves[-1] == moves[-2]  # stopped on a repeated round
            assert stability_of(played.people, played.outcome).stable
        volume = [sum(t.quantity_kwh for t in p.outcome.trades) for p in (a, b)]
        assert volume[0] == pytest.approx(volume[1], abs=0.01) and volume[0] > 0
    rounds = [sum(max(p.rounds) for p in day) for day in (previous, mid)]
    assert 3 * rounds[0] <= 2 * rounds[1], rounds  # measured 100 against 204
    # intervals the old default cap of 12 rounds would have cut short: 2 instead of 5
    assert sum(max(p.rounds) > 12 for p in previous) < sum(max(p.rounds) > 12 for p in mid)


def measure(seeds: tuple[int, ...] = (1, 2, 3, 9)) -> None:
    """Rounds per interval over a 12-hour day per opening, for the hand-built case and seeded markets (the
    figures in edge/README.md): `.venv/bin/python tests/edge/test_edge_owner_rules.py` (about 5 min)."""
    import tempfile

    cases = {
        "5-MG owner rules": y_ranks_offers_apart,
        **{f"seed {k}": partial(seeded_market, k) for k in seeds},
    }
    with pytest.MonkeyPatch.context() as monkeypatch:
        for case, make in cases.items():
            for opening in ("mid", "previous", "interval"):
                with tempfile.TemporaryDirectory() as directory:
                    day = play_day(Path(directory), Params(credit_limit=10**12, cap_on_fills=1), monkeypatch,
                                   day_of(make()), opening, max_rounds=50)  # fmt: skip
                rounds = [max(p.rounds) for p in day]
                unstable = sum(not stability_of(p.people, p.outcome).stable for p in day)
                volume = sum(t.quantity_kwh for p in day for t in p.outcome.trades)
                print(f"{case:17} {opening:8} rounds {sum(rounds):3} (max {max(rounds):2}) {rounds} "
                      f"unstable {unstable} volume {volume:.2f} kWh", flush=True)  # fmt: skip


if __name__ == "__main__":
    measure()
