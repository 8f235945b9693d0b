"""The trading agent's pure parts: reading positions off the chain, meeting an adjustment, its config rules."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import ValidationError

from peergrid_controller.model import Battery, Load, Microgrid, PvArray, Tariff
from peergrid_controller.schedule import MgSchedule
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


def test_an_adjustment_is_met_from_the_schedule_or_reported_plainly(caplog: pytest.LogCaptureFixture) -> None:
    agent = object.__new__(MarketAgent)
    n = 4
    mg = Microgrid(
        "mg",
        Tariff(tuple(0.25 for _ in range(n)), tuple(0.05 for _ in range(n))),
        pv=(PvArray("pv", tuple(80.0 for _ in range(n))),),
        batteries=(Battery("bat", capacity_kwh=200.0, max_charge_kw=20.0, max_discharge_kw=20.0),),
        loads=(Load("load", tuple(30.0 for _ in range(n)), tuple(10.0 for _ in range(n))),),
    )
    sched = MgSchedule(mg, 1.0)
    sched.solve()
    sched.dispatch(10.0)  # it sold 10 kW to a peer
    met = agent.meet_limit(0, sched, 10.0, {"max_injection_w": 15000, "min_injection_w": None})
    assert met.met and met.injection_kw <= 15.0 + 1e-6
    assert met.plan.p2p_net_export[0] == pytest.approx(10.0)  # the agreed trade stands
    with caplog.at_level(logging.WARNING, logger="peergrid.edge.trader"):
        unmet = agent.meet_limit(0, sched, 0.0, {"max_injection_w": -100_000, "min_injection_w": -100_000})
    assert not unmet.met
    assert unmet.injection_kw == pytest.approx(-60.0, abs=0.02)  # what it can do: draw 60 kW, not 100
    assert "not met" in caplog.text and "cannot inject" in caplog.text


def test_market_needs_both_replicas(tmp_path: Path) -> None:
    market = {"scenario": "s.yaml", "anonym_key_file": "a.key", "t0": 0.0, "interval_s": 5.0}
    with pytest.raises(ValidationError, match=r"market needs ledger\.replicas"):
        EdgeSettings(node_id="n", mg="mg1", market=market)  # type: ignore[arg-type]
    replicas = {"mgmc": {"genesis": "m.json"}, "dso": {"genesis": "d.json"}}
    ok = EdgeSettings(node_id="n", mg="mg1", market=market, ledger={"replicas": replicas})  # type: ignore[arg-type]
    assert ok.market is not None and ok.market.interval_s == 5.0
