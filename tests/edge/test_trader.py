"""The trading agent's pure parts: reading positions off the chain, the opening price, meeting an adjustment,
its config rules."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from edge_helpers import pv_battery_schedule
from pydantic import ValidationError

from peergrid_edge.chain_bargaining import bids_on_chain, offers_on_chain, opening_price, previous_price
from peergrid_edge.config import EdgeSettings
from peergrid_edge.trader import MarketAgent
from peergrid_ledger import query
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
    _, sched = pv_battery_schedule(4)
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


class _NoReopenLedger:
    """A ledger on which the DSO's reopening never becomes final here (this replica lags, or it was refused)."""

    def __init__(self) -> None:
        self.waited: list[float] = []

    async def wait_for(self, role: str, predicate: object, timeout_s: float) -> bool:
        self.waited.append(timeout_s)
        return False


def test_no_reopening_in_time_falls_back_to_a_re_plan_and_still_answers_the_iteration() -> None:
    import asyncio
    from types import SimpleNamespace

    from peergrid_controller.moves import Participant
    from peergrid_edge.dso_answers import DsoAnswers, Market, answer_iteration

    mg, sched = pv_battery_schedule(4)
    plan = sched.dispatch(10.0)
    submitted: list[tuple[str, str, dict[str, object]]] = []

    async def submit(role: str, key: object, kind: str, body: dict[str, object]) -> bool:
        submitted.append((role, kind, body))
        return True

    async def open_contract(t: int, iteration: int) -> tuple[dict[str, object], bytes]:
        return {"min_injection_w": None, "max_injection_w": 15000, "iteration": iteration}, bytes(32)

    agent = object.__new__(MarketAgent)
    agent.mg, agent.dt = mg, 1.0
    agent.s = SimpleNamespace(phase_timeout_s=0.5)  # type: ignore[assignment]
    ledger = _NoReopenLedger()
    agent.d = SimpleNamespace(keypair=Keypair.generate(), ledger=ledger)  # type: ignore[assignment]
    agent.anonym = Keypair.generate()
    agent._submit = submit  # type: ignore[method-assign]
    agent._open_contract = open_contract  # type: ignore[method-assign]
    curve = sched.response_curve(0.05, 0.25)
    market = Market(Participant("me", curve, mg.rules, clean=True), 0.05, 0.25, 0.0)
    answers = DsoAnswers(plan, plan.p2p_net_export[0] + plan.dso_net_export[0], 10.0)
    asyncio.run(
        answer_iteration(agent, 0, 1, True, sched, market, answers, reopen=1)
    )  # addressed; the DSO's reopening never shows up here
    asyncio.run(
        answer_iteration(agent, 0, 2, False, sched, market, answers, reopen=None)
    )  # not addressed, no reopening: answers the same
    # an MGMC never reopens an interval itself (only the DSO may): it only answers
    assert [(role, kind) for role, kind, _ in submitted] == [
        ("dso", "equivalent_injection"), ("dso", "equivalent_injection"),
    ]  # fmt: skip
    assert [body["revision"] for _, kind, body in submitted if kind == "equivalent_injection"] == [1, 2]
    assert ledger.waited == [1.5]  # a bounded wait: a missing reopening never stalls the MGMC
    assert [e["reopened"] for e in answers.rebargains] == [False, False]
    # the limit is still met by re-planning with the agreed trade kept (and kept in the second iteration)
    assert answers.adjustments and all(a.met for a in answers.adjustments)
    assert answers.injection_kw <= 15.0 + 1e-6 and answers.plan.p2p_net_export[0] == pytest.approx(10.0)


# ------------------------------------------------------------- the opening: the previous interval's price (C6)

SCENARIO = Path(__file__).resolve().parents[2] / "controller" / "scenarios" / "two-mg.yaml"


def traded_chain(t: int) -> tuple[LocalChain, Keypair]:
    """A chain on which interval t closed with two trades: 6 kWh at 0.120 and 2 kWh at 0.160 per kWh (seller
    prices), bought by one buyer; interval t + 1 is open with no trades."""
    authority, cheap, dear, buyer = (Keypair.generate() for _ in range(4))
    genesis = Genesis(
        chain="mgmc-test", time=0, authorities=(authority.public,),
        accounts=tuple(Account(k.public, ("anonym",), balance=10**9) for k in (cheap, dear, buyer)),
        contracts=("market",), params=Params(credit_limit=10**12),
    )  # fmt: skip
    chain = LocalChain(genesis, sealer=authority)
    for seller, price in ((cheap, 120), (dear, 160)):
        body = {"interval": t, "round": 1, "price": price, "quantity": 10_000, "clean": True}
        assert chain.sign_and_submit(seller, "offer", body).ok
    assert chain.sign_and_submit(buyer, "bid", {"interval": t, "round": 0, "demands": []}).ok
    demands = [{"seller": cheap.public, "quantity": 6_000}, {"seller": dear.public, "quantity": 2_000}]
    assert chain.sign_and_submit(buyer, "move", {"interval": t, "round": 1, "demands": demands}).ok
    assert chain.sign_and_submit(cheap, "trade", {"interval": t}).ok
    chain.seal()
    return chain, buyer


def test_the_opening_is_the_previous_intervals_agreed_price_weighted_by_quantity_within_the_bounds() -> None:
    chain, _ = traded_chain(7)
    assert sorted((tr["price"], tr["quantity"]) for _, tr in query.trades(chain.state, 7)) == [
        (120, 6_000), (160, 2_000),
    ]  # fmt: skip
    # (0.120 * 6 + 0.160 * 2) / 8 = 0.130 per kWh
    assert previous_price(chain.state, 8) == pytest.approx(0.130)
    assert opening_price(chain.state, 8, 0.05, 0.25) == pytest.approx(0.130)
    # held within the interval's bounds [feed-in, retail + premium]
    assert opening_price(chain.state, 8, 0.14, 0.25) == pytest.approx(0.140)
    assert opening_price(chain.state, 8, 0.05, 0.1) == pytest.approx(0.100)
    # no previous trades (the interval itself is open, none before it, the day's first): the mid opening
    for t in (7, 9, 0):
        assert previous_price(chain.state, t) is None and opening_price(chain.state, t, 0.05, 0.25) is None


class _Stop(Exception):
    """Ends `run_interval` once it has called `bargain` (the rest needs the whole daemon)."""


def test_the_trader_opens_its_sellers_at_the_previous_intervals_price_and_mid_bounds_without_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The old trader passed no opening (its sellers always opened mid-bounds); it now passes the previous
    interval's agreed price, and keeps the role it takes at the mid price."""
    import asyncio
    from types import SimpleNamespace

    from peergrid_controller.builder import MgState
    from peergrid_controller.scenario import load_scenario
    from peergrid_edge import agent_interval

    chain, _ = traded_chain(7)
    calls: list[tuple[int, str, float | None]] = []

    async def bargain(agent: object, t: int, me: object, role: str, *args: object) -> list[object]:
        calls.append((t, role, args[2] if len(args) > 2 else None))
        raise _Stop

    monkeypatch.setattr(agent_interval, "bargain", bargain)
    agent = object.__new__(MarketAgent)
    agent.scenario = load_scenario(SCENARIO)
    agent.mg = next(m for m in agent.scenario.microgrids if m.name == "seller")
    agent.dt = agent.scenario.interval_hours
    agent.anonym = Keypair.generate()  # its forward trades are read under it (none here)
    agent.name = agent.anonym.public.hex()
    agent.state = agent.conv_state = MgState.initial(agent.mg)
    agent.d = SimpleNamespace(ledger=SimpleNamespace(state=lambda role: chain.state))  # type: ignore[assignment]
    agent.settler = SimpleNamespace(by_both=False)  # type: ignore[assignment]  # statements not from meters
    for t in (8, 9):
        with pytest.raises(_Stop):
            asyncio.run(agent.run_interval(t))
    # 7.5 kWh of PV surplus at any price above its 0.08 floor: a seller at the mid price (0.15)
    assert calls == [(8, "seller", pytest.approx(0.130)), (9, "seller", None)]


# 6 s at 150-ms blocks, no genesis there (so the first bargaining alone is counted), 75 % of the interval: 15
@pytest.mark.parametrize("interval_s,block_ms,expected", [(900.0, 200, 50), (6.0, 150, 15)])
def test_the_agent_bargains_with_the_rounds_its_config_gives(
    tmp_path: Path, interval_s: float, block_ms: int, expected: int
) -> None:
    import asyncio
    from types import SimpleNamespace

    from peergrid_ledger.keys import write_keyfile

    write_keyfile(tmp_path / "anonym.key", Keypair.generate())
    scenario = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"
    market = {"scenario": str(scenario), "anonym_key_file": str(tmp_path / "anonym.key"), "t0": 0.0,
              "interval_s": interval_s}  # fmt: skip
    replicas = {"mgmc": {"genesis": "m.json", "block_period_ms": block_ms}, "dso": {"genesis": "d.json"}}
    settings = EdgeSettings(node_id="n", mg="mg1", market=market, ledger={"replicas": replicas})  # type: ignore[arg-type]
    assert settings.market is not None
    daemon = SimpleNamespace(settings=settings, stopping=asyncio.Event(), _sleep=asyncio.sleep)
    agent = MarketAgent(daemon, settings.market)  # type: ignore[arg-type]
    assert agent.cfg.max_rounds == expected
