"""The trading agent's pure parts: reading positions off the chain, meeting an adjustment, its config rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from peergrid_edge.config import EdgeSettings
from peergrid_edge.trader import MarketAgent, bids_on_chain, offers_on_chain
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.genesis import Account, Genesis, Params
from peergrid_ledger.keys import Keypair


def test_positions_read_off_the_chain_carry_their_round() -> None:
    authority, seller, buyer = Keypair.generate(), Keypair.generate(), Keypair.generate()
    genesis = Genesis(
        chain="mgmc-test", time=0, authorities=(authority.public,),
        accounts=(Account(seller.public, ("anonym",)), Account(buyer.public, ("anonym",))),
        contracts=("market",), params=Params(credit_limit=10**12),
    )  # fmt: skip
    chain = LocalChain(genesis, sealer=authority)
    assert chain.sign_and_submit(
        seller, "offer", {"interval": 7, "round": 1, "price": 200, "quantity": 5000, "clean": True}
    ).ok
    assert chain.sign_and_submit(buyer, "bid", {"interval": 7, "round": 0, "demands": []}).ok
    assert chain.sign_and_submit(
        buyer, "move", {"interval": 7, "round": 1, "demands": [{"seller": seller.public, "quantity": 3000}]}
    ).ok
    chain.seal()
    assert offers_on_chain(chain.state, 7) == {seller.public: (200, 5000, True, 1)}
    assert bids_on_chain(chain.state, 7) == {buyer.public: (((seller.public, 3000),), 1)}
    assert offers_on_chain(chain.state, 8) == {}


def test_an_adjustment_is_met_by_curtailing_or_shedding() -> None:
    agent = object.__new__(MarketAgent)
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Plan:
        pv_used_kw: tuple[float, ...]
        shed_kw: tuple[float, ...]

    plan = Plan((100.0, 90.0), (0.0, 0.0))
    assert agent._within_limits(plan, 50.0, 50.0) is plan
    assert agent._within_limits(plan, 50.0, 30.0).pv_used_kw == (80.0, 90.0)  # export 20 kW less
    assert agent._within_limits(plan, -50.0, -20.0).shed_kw == (30.0, 0.0)  # import 30 kW less


def test_market_needs_both_replicas(tmp_path: Path) -> None:
    market = {"scenario": "s.yaml", "anonym_key_file": "a.key", "t0": 0.0, "interval_s": 5.0}
    with pytest.raises(ValidationError, match=r"market needs ledger\.replicas"):
        EdgeSettings(node_id="n", mg="mg1", market=market)  # type: ignore[arg-type]
    replicas = {"mgmc": {"genesis": "m.json"}, "dso": {"genesis": "d.json"}}
    ok = EdgeSettings(node_id="n", mg="mg1", market=market, ledger={"replicas": replicas})  # type: ignore[arg-type]
    assert ok.market is not None and ok.market.interval_s == 5.0
