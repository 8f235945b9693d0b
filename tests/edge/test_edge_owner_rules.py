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
import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from peergrid_controller.chain_venue import chain_rules
from peergrid_controller.curve import ResponseCurve
from peergrid_controller.model import ContractRules
from peergrid_controller.moves import BargainingConfig, Participant, role_at_mid
from peergrid_controller.moves import make_bid as controller_make_bid
from peergrid_edge import chain_bargaining
from peergrid_edge.chain_bargaining import MarketTerms, market_terms, unsold
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


def agent_on(ledger: EdgeLedger, node: Keypair, anonym: Keypair, sent: list[dict[str, Any]]) -> MarketAgent:
    """A MarketAgent with only what bargaining uses; its transactions go through its own `_submit` (signed,
    waited for in a final block), each body also noted in `sent`."""
    agent = object.__new__(MarketAgent)
    agent.s = SimpleNamespace(phase_timeout_s=5.0)  # type: ignore[assignment]
    agent.d = SimpleNamespace(ledger=ledger, keypair=node, stopping=asyncio.Event())  # type: ignore[assignment]
    agent.anonym, agent.name = anonym, anonym.public.hex()
    agent.cfg = BargainingConfig(max_rounds=30)
    agent.phase = ""
    real = agent._submit

    async def submit(role: str, key: Keypair, kind: str, body: dict[str, Any]) -> bool:
        sent.append({"kind": kind, **body})
        return await real(role, key, kind, body)

    agent._submit = submit  # type: ignore[method-assign]
    return agent


@dataclass
class Played:
    """One interval of `capped_market` on a real replica: x's bids as it submitted them (round 0's join
    included), what each buyer was allocated (Wh, from the closing's trades), each agent's role, and the
    `spare` and `fills_capped` every call of `make_bid` by x was given."""

    moves: list[dict[str, Any]]
    allocated: dict[str, int]
    roles: dict[str, str]
    given: list[tuple[dict[str, float] | None, bool]]
    keys: dict[str, str]  # name -> anonym key (hex)


def play(
    tmp_path: Path,
    params: Params,
    monkeypatch: pytest.MonkeyPatch,
    market: dict[str, tuple[ResponseCurve, ContractRules, bool]],
) -> Played:
    """Every MG of `market` bargains interval T on one real replica, each through its own agent."""
    authority = Keypair.generate()
    anonyms = {name: Keypair.generate() for name in market}
    genesis = market_genesis(authority, anonyms, {n: r for n, (_, r, _) in market.items()}, params)
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "mgmc-genesis.json"
    path.write_text(json.dumps(genesis.to_json()))
    spec = ChainSpec(name="mgmc", genesis=path, data_dir=tmp_path / "mgmc.db", block_period_ms=50,
                     round_timeout_ms=500, wal_fsync=False)  # fmt: skip
    ledger = EdgeLedger(authority, MqttLink("test", "127.0.0.1", 9), "feeder", [spec])  # never started: alone
    sent: dict[str, list[dict[str, Any]]] = {name: [] for name in market}
    roles: dict[str, str] = {}
    given: list[tuple[dict[str, float] | None, bool]] = []
    real_make_bid = controller_make_bid  # not the edge's name, which an earlier play() may have patched

    def make_bid(*args: Any, **kwargs: Any) -> Any:
        call = inspect.signature(real_make_bid).bind(*args, **kwargs)
        call.apply_defaults()
        if call.arguments["buyer"].name == anonyms["x"].public.hex():
            spare = call.arguments["spare"]
            given.append((None if spare is None else dict(spare), call.arguments["fills_capped"]))
        return real_make_bid(*args, **kwargs)

    monkeypatch.setattr(chain_bargaining, "make_bid", make_bid)

    async def day() -> None:
        ledger.start()
        try:
            plays = []
            for name, (curve, rules, clean) in market.items():
                agent = agent_on(ledger, authority, anonyms[name], sent[name])
                me = Participant(agent.name, curve, rules, clean)
                roles[name] = role_at_mid(me, FEED_IN, RETAIL)
                plays.append(chain_bargaining.bargain(agent, T, me, roles[name], FEED_IN, RETAIL, 0.0))
            await asyncio.wait_for(asyncio.gather(*plays), 120)
        finally:
            ledger.close()

    asyncio.run(day())
    names = {k.public: name for name, k in anonyms.items()}
    allocated: dict[str, int] = {}
    for _, trade in query.trades(ledger.state("mgmc"), T):
        buyer = names[trade["buyer"]]
        allocated[buyer] = allocated.get(buyer, 0) + trade["quantity"]
    moves = [b for b in sent["x"] if b["kind"] in ("bid", "move") and "demands" in b]
    return Played(moves, allocated, roles, given, {n: k.public.hex() for n, k in anonyms.items()})


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
        for params, capped in ((Params(), False), (Params(cap_on_fills=1), True)):
            keys = {**plain, "r": Keypair.generate()}
            rules = {"p": ContractRules(), "q": ContractRules(), "r": ranked}
            chain = LocalChain(market_genesis(authority, keys, rules, params), authority)
            members = {k.public for k in keys.values()}
            expected = MarketTerms(name != "maximum only", capped)
            assert market_terms(chain.state, chain.genesis, T, members) == expected, name
            # without that member nobody's rules rank offers apart
            others = {keys["p"].public, keys["q"].public}
            assert market_terms(chain.state, chain.genesis, T, others) == MarketTerms(False, capped)


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
