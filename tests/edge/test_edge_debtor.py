"""A buyer that owes posts no purchase (edge `debts.py`, `chain_bargaining`): the ledger refuses a debtor's bid
with demands and its demand-raising moves (`funds.refuse_debtor`); a refused move would leave the debtor out
of the interval's later phases only after every peer waited one phase timeout for it.

Three real MGMC agents (`MarketAgent`'s own submission path) play on one real single-authority `EdgeLedger`
(its node key is the only authority, so it finalises alone, no broker) whose genesis settles by both parties'
statements, so a priced settlement can leave a member owing: b bought 100 Wh it then did not take, with no
money to pay the compensation. Every wait the agents make on the chain (each phase's barrier, the join, the
closing) is recorded: none may run out, and no transaction may be refused.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from edge_helpers import BLOCK_MS

from peergrid_controller.chain_venue import chain_rules
from peergrid_controller.curve import ResponseCurve
from peergrid_controller.model import Battery, ContractRules, Load, Microgrid, PvArray, Tariff
from peergrid_controller.moves import BargainingConfig, Participant
from peergrid_controller.schedule import MgSchedule
from peergrid_edge import chain_bargaining, debts, interval_plan
from peergrid_edge.link import MqttLink
from peergrid_edge.replicas import ChainSpec, EdgeLedger
from peergrid_edge.trader import MarketAgent
from peergrid_ledger import query
from peergrid_ledger.genesis import Account, Genesis, Params
from peergrid_ledger.keys import Keypair

FEED_IN, RETAIL = 0.05, 0.25  # per kWh, the interval's bounds
# micro-units per Wh: the setup trade's price, the DSO's cover prices
PRICE, COVER_RETAIL, COVER_FEED_IN = 250, 300, 50
OWED = 100 * (PRICE - COVER_FEED_IN)  # b bought 100 Wh and took none: the compensation it could not pay
DEBTOR_LINE = "may not buy while it does"


def sells(kwh: float) -> ResponseCurve:
    """Sells `kwh` at any price from 0.09 up (0.05 is the lowest price the curve knows)."""
    return ResponseCurve((0.05, 0.09), (0.0, kwh), 0.30)


def buys(kwh: float) -> ResponseCurve:
    """Buys `kwh` at any price below 0.20, nothing above it."""
    return ResponseCurve((0.05, 0.20), (-kwh, 0.0), 0.30)


class Market:
    """The chain, the three anonyms and the DSO; every agent's submissions and every chain wait, recorded."""

    def __init__(self, tmp_path: Path) -> None:
        self.authority, self.dso = Keypair.generate(), Keypair.generate()
        self.keys = {name: Keypair.generate() for name in "abc"}
        balances = {"a": 10**9, "b": 0, "c": 10**9}  # b holds nothing: an unpaid compensation is owed
        genesis = Genesis(
            chain="mgmc-debtor", time=0, authorities=(self.authority.public,),
            accounts=(Account(self.authority.public, ("mgmc",)), Account(self.dso.public, ("dso",), "dso"),
                      *(Account(k.public, ("anonym",), name, balance=balances[name],
                                rules=chain_rules(ContractRules()))
                        for name, k in self.keys.items())),
            contracts=("market", "payments"),
            # interval k ended long ago on this clock: every trade may be settled at once
            params=Params(credit_limit=0, settle_by_both=1, settle_wait_ms=60_000, settle_interval_ms=900_000),
        )  # fmt: skip
        path = tmp_path / "mgmc-genesis.json"
        path.write_text(json.dumps(genesis.to_json()))
        spec = ChainSpec(name="mgmc", genesis=path, data_dir=tmp_path / "mgmc.db", block_period_ms=BLOCK_MS,
                         round_timeout_ms=500, wal_fsync=False)  # fmt: skip
        self.ledger = EdgeLedger(self.authority, MqttLink("test", "127.0.0.1", 9), "feeder", [spec])
        self.sent: dict[str, list[dict[str, Any]]] = {name: [] for name in self.keys}
        self.waits: list[bool] = []  # every wait_for's outcome: False is a phase (or closing) timed out
        real_wait = self.ledger.wait_for

        async def wait_for(role: str, predicate: Any, timeout_s: float) -> bool:
            done = bool(await real_wait(role, predicate, timeout_s))
            self.waits.append(done)
            return done

        self.ledger.wait_for = wait_for  # type: ignore[method-assign]
        self.agents = {name: self.agent(name) for name in self.keys}

    def agent(self, name: str) -> MarketAgent:
        """A MarketAgent with only what bargaining uses; each body it sends is noted with whether it landed."""
        agent = object.__new__(MarketAgent)
        agent.s = SimpleNamespace(phase_timeout_s=5.0)  # type: ignore[assignment]
        agent.d = SimpleNamespace(  # type: ignore[assignment]
            ledger=self.ledger, keypair=self.authority, stopping=asyncio.Event()
        )
        agent.anonym, agent.name = self.keys[name], self.keys[name].public.hex()
        agent.cfg = BargainingConfig(max_rounds=30)
        agent.phase = ""
        real = agent._submit

        async def submit(role: str, key: Keypair, kind: str, body: dict[str, Any]) -> bool:
            landed = await real(role, key, kind, body)
            self.sent[name].append({"kind": kind, "landed": landed, **body})
            return landed

        agent._submit = submit  # type: ignore[method-assign]
        return agent

    async def send(self, key: Keypair, kind: str, body: dict[str, Any]) -> None:
        """A transaction outside the bargaining (the DSO's, the setup's): it must land."""
        raw = self.ledger.sign("mgmc", key, kind, body, self.ledger.next_nonce("mgmc", key.public))
        outcome = await self.ledger.submit("mgmc", raw, 10.0)
        assert outcome.landed, (kind, body, outcome.reason)

    async def setup_debt(self) -> None:
        """The DSO prices everyone's cover; b buys 100 Wh of a in interval 1 and takes none (the DSO's
        reading): the compensation it owes a finds no money, so b owes OWED."""
        for k in self.keys.values():
            body = {"account": k.public, "first_interval": 0, "retail": [COVER_RETAIL] * 16,
                    "feed_in": [COVER_FEED_IN] * 16}  # fmt: skip
            await self.send(self.dso, "market.tariff", body)
        a, b = self.keys["a"], self.keys["b"]
        await self.send(
            a, "offer", {"interval": 1, "round": 0, "price": PRICE, "quantity": 100, "clean": True}
        )
        await self.send(
            b, "bid", {"interval": 1, "round": 0, "demands": [{"seller": a.public, "quantity": 100}]}
        )
        await self.send(b, "trade", {"interval": 1})
        ((tid, _),) = query.trades(self.state, 1)
        await self.send(
            self.dso, "settle", {"trade": tid, "delivered": 0, "seller_short": 0, "buyer_short": 100}
        )
        assert self.owed("b") == OWED

    @property
    def state(self) -> Any:
        return self.ledger.state("mgmc")

    def owed(self, name: str) -> int:
        return query.owed(self.state, self.keys[name].public)

    async def interval(
        self, t: int, curves: dict[str, tuple[str, ResponseCurve]]
    ) -> list[tuple[str, str, int]]:
        """Every named MG bargains interval t in `role` with its curve; the interval's trades as (seller,
        buyer, Wh) by name."""
        plays = []
        for name, (role, curve) in curves.items():
            me = Participant(self.keys[name].public.hex(), curve, ContractRules(), True)
            plays.append(chain_bargaining.bargain(self.agents[name], t, me, role, FEED_IN, RETAIL))
        await asyncio.wait_for(asyncio.gather(*plays), 120)
        names = {k.public: name for name, k in self.keys.items()}
        return [
            (names[tr["seller"]], names[tr["buyer"]], tr["quantity"]) for _, tr in query.trades(self.state, t)
        ]

    def demands(self, name: str, t: int) -> list[list[dict[str, Any]]]:
        """The demands of each bid and buyer move `name` sent in interval t, in order."""
        return [b["demands"] for b in self.sent[name] if b["interval"] == t and "demands" in b]

    def run(self, body: Any) -> None:
        async def go() -> None:
            self.ledger.start()
            try:
                await body()
            finally:
                self.ledger.close()

        asyncio.run(go())


def debtor_lines(caplog: pytest.LogCaptureFixture, t: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if f"interval {t}:" in r.getMessage()
            and DEBTOR_LINE in r.getMessage()]  # fmt: skip


def test_a_debtor_joins_with_an_empty_bid_sells_pays_off_and_buys_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="peergrid.edge.trader")
    m = Market(tmp_path)
    traded: dict[int, list[tuple[str, str, int]]] = {}

    async def day() -> None:
        await m.setup_debt()
        # interval 3: b wants 8 kWh but owes: it joins and moves asking nothing; c buys what a sells
        traded[3] = await m.interval(3, {"a": ("seller", sells(10.0)), "b": ("buyer", buys(8.0)),
                                         "c": ("buyer", buys(5.0))})  # fmt: skip
        assert m.owed("b") == OWED  # nothing paid it yet
        # interval 4: b sells as ever, to c; the DSO reads it delivered in full: its payment pays b's debt
        traded[4] = await m.interval(4, {"a": ("neither", sells(0.0)), "b": ("seller", sells(10.0)),
                                         "c": ("buyer", buys(5.0))})  # fmt: skip
        ((tid, sale),) = query.trades(m.state, 4)
        await m.send(m.dso, "settle", {"trade": tid, "delivered": sale["quantity"], "seller_short": 0,
                                       "buyer_short": 0})  # fmt: skip
        assert m.owed("b") == 0
        # interval 5: paid off, b buys again
        traded[5] = await m.interval(5, {"a": ("seller", sells(10.0)), "b": ("buyer", buys(8.0)),
                                         "c": ("neither", buys(0.0))})  # fmt: skip

    m.run(day)
    # no wait ran out (every phase's barrier, the joins, the closings) and the chain refused nothing
    assert m.waits and all(m.waits)
    assert all(b["landed"] for sent in m.sent.values() for b in sent)
    # interval 3: b's bid and every move asked nothing; it bought nothing, c bought from a
    asked = m.demands("b", 3)
    assert len(asked) >= 2 and all(d == [] for d in asked)  # the join and at least one round's move
    assert [(s, b) for s, b, _ in traded[3]] == [("a", "c")] and traded[3][0][2] == 5000
    assert len(debtor_lines(caplog, 3)) == 1  # once for the interval, naming the debt
    assert str(OWED) in debtor_lines(caplog, 3)[0]
    assert m.agents["b"].debt_noted == (3, OWED) and m.agents["b"]._owed_in(3) == OWED  # the record's `owed`
    # interval 4: b sold
    assert [(s, b) for s, b, _ in traded[4]] == [("b", "c")] and traded[4][0][2] == 5000
    assert debtor_lines(caplog, 4) == []
    # interval 5: b asked a for energy again and bought it
    assert any(d for d in m.demands("b", 5))
    assert [(s, b) for s, b, _ in traded[5]] == [("a", "b")] and traded[5][0][2] == 8000
    assert debtor_lines(caplog, 5) == [] and m.agents["b"]._owed_in(5) == 0


def test_a_purchase_refused_for_a_debt_the_buyer_missed_is_asked_again_as_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The debt lands after the buyer read its own (or the contract's limit is below the genesis's): its move
    asking for energy is refused, and it posts the round's move asking nothing, so no barrier waits it out."""
    caplog.set_level(logging.INFO, logger="peergrid.edge.trader")
    monkeypatch.setattr(debts, "barring_debt", lambda state, genesis, key: 0)  # it misses its debt
    m = Market(tmp_path)
    traded: list[tuple[str, str, int]] = []

    async def day() -> None:
        await m.setup_debt()
        traded.extend(await m.interval(3, {"a": ("seller", sells(10.0)), "b": ("buyer", buys(8.0)),
                                           "c": ("buyer", buys(5.0))}))  # fmt: skip

    m.run(day)
    assert m.waits and all(m.waits)  # no phase ran out
    moves = [b for b in m.sent["b"] if b["kind"] == "move"]
    refused = [k for k, b in enumerate(moves) if not b["landed"]]
    assert refused and all(moves[k]["demands"] for k in refused)  # only purchases were refused ...
    # ... each followed at once by the same round's move asking nothing, which landed
    assert all(moves[k + 1]["round"] == moves[k]["round"] and moves[k + 1]["demands"] == []
               and moves[k + 1]["landed"] for k in refused)  # fmt: skip
    assert all(b["landed"] for name in "ac" for b in m.sent[name])
    assert [(s, b) for s, b, _ in traded] == [("a", "c")]
    assert len(debtor_lines(caplog, 3)) == 1


def test_without_either_check_a_debtors_purchase_costs_its_peers_a_phase_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the edge avoids, and that these tests see it: a buyer blind to its debt (neither the read before
    its move nor the one after a refusal sees it) is refused, and its peers' barrier waits its timeout out."""
    m = Market(tmp_path)
    for agent in m.agents.values():
        agent.s.phase_timeout_s = 1.0
    traded: list[tuple[str, str, int]] = []

    async def day() -> None:
        await m.setup_debt()
        monkeypatch.setattr(debts, "barring_debt", lambda state, genesis, key: 0)
        monkeypatch.setattr(chain_bargaining.query, "owed", lambda state, key: 0)
        traded.extend(await m.interval(3, {"a": ("seller", sells(10.0)), "b": ("buyer", buys(8.0)),
                                           "c": ("buyer", buys(5.0))}))  # fmt: skip

    m.run(day)
    assert any(not b["landed"] and b["demands"] for b in m.sent["b"] if b["kind"] == "move")
    assert not all(m.waits)  # a barrier ran out waiting for b's move
    assert [(s, b) for s, b, _ in traded] == [("a", "c")]  # the interval still closes without b


def buyer_mg(n: int) -> Microgrid:
    """An MG short of energy every hour: 40 kW of load (30 critical), 10 kW of PV, a small battery; flat
    tariff."""
    return Microgrid(
        "short",
        Tariff(tuple(0.25 for _ in range(n)), tuple(0.05 for _ in range(n))),
        pv=(PvArray("pv", tuple(10.0 for _ in range(n))),),
        batteries=(Battery("bat", capacity_kwh=10.0, max_charge_kw=5.0, max_discharge_kw=5.0),),
        loads=(Load("load", tuple(30.0 for _ in range(n)), tuple(10.0 for _ in range(n))),),
    )


def test_a_buyer_that_got_nothing_is_dispatched_with_the_dso_covering_its_deficit() -> None:
    """The trader plans the interval with what the chain's trades give it (`position`): a debtor's none. The
    dispatched plan buys nothing from peers and imports the deficit from the DSO (never as if it bought)."""
    mg = buyer_mg(4)
    sched = MgSchedule(mg, 1.0)
    sched.solve()
    curve = sched.response_curve(0.05, 0.25)
    assert min(curve.quantities) < 0  # it would buy from peers at some price: a buyer
    bought, _ = interval_plan.deliver(0, sched, -20.0)  # had it bought 20 kW ...
    plan, delivered = interval_plan.deliver(0, sched, 0.0)  # ... and as it got nothing
    assert delivered == 0.0 and plan.p2p_net_export[0] == pytest.approx(0.0, abs=1e-6)
    # the balance at the PCC: what the load takes beyond PV, the battery and any shedding comes from the DSO
    supplied = plan.pv_used_kw[0] + plan.battery_kw[0] + plan.genset_kw[0] + plan.shed_kw[0]
    assert plan.dso_net_export[0] == pytest.approx(supplied - 40.0, abs=1e-6) and plan.dso_net_export[0] < -20
    assert plan.dso_net_export[0] == pytest.approx(bought.dso_net_export[0] - 20.0, abs=1e-6)
