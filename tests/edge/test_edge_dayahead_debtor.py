"""A day-ahead member that owes posts no purchase (edge `debts.owed_on`, `DayAheadAgent._bounds`/`_post`,
`ForwardAgent._decide`): the ledger refuses a debtor's exchange position with a purchase and its first accept
with one (`funds.refuse_debtor`); a refused position failed the debtor's stage after the coordinator waited
its post out, and a refused accept left it declining with zeros.

Independent agents, each holding only its own MG and trading key, run the session and the forward stage on
one real single-authority `EdgeLedger` whose genesis settles by both parties' statements, so a priced
settlement can leave a member owing: the debtor bought 100 Wh intraday that it then did not take, with no
money to pay the compensation. Every transaction the agents sign is recorded with what the chain made of it,
and every wait of the session: none may be refused, none may run out.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from edge_helpers import BLOCK_MS
from test_edge_dayahead_session import CONFIG, free_day, run_on, trading_key

from peergrid_controller.chain_venue import chain_rules
from peergrid_controller.dayahead import starting_prices
from peergrid_controller.model import Scenario
from peergrid_edge import debts
from peergrid_edge.dayahead_agent import DayAheadAgent
from peergrid_edge.exchange_io import ROLE, SessionOutcome
from peergrid_edge.forward_agent import ForwardAgent, ForwardOutcome
from peergrid_edge.link import MqttLink
from peergrid_edge.replicas import ChainSpec, EdgeLedger, Submission
from peergrid_ledger import query
from peergrid_ledger.genesis import Account, Genesis, Params
from peergrid_ledger.keys import Keypair

DSO = Keypair.from_seed(hashlib.sha256(b"edge-dayahead-debtor/dso").digest())
DEBTOR, SELLER = "mg002", "mg001"  # mg002 buys in interval 0 of this day and sells in the others
SETUP = 40  # the chain interval of the intraday trade that leaves the debtor owing (no session's)
PRICE, COVER_RETAIL, COVER_FEED_IN = 250, 300, 50  # micro-units per Wh
OWED = 100 * (PRICE - COVER_FEED_IN)  # the debtor bought 100 Wh and took none: the compensation it owes
DAY = free_day(3, 4)


class Market:
    """The chain (settling by both, the DSO in its genesis), the MGs' keys (the debtor holds no money) and a
    record of every transaction the agents sign and of every wait of the session stage."""

    def __init__(self, tmp_path: Path, scenario: Scenario = DAY) -> None:
        self.scenario = scenario
        authority = Keypair.from_seed(hashlib.sha256(b"edge-dayahead-debtor/authority").digest())
        self.keys = {mg.name: trading_key(mg.name) for mg in scenario.microgrids}
        genesis = Genesis(
            chain="mgmc-dayahead-debtor", time=0, authorities=(authority.public,),
            accounts=(Account(authority.public, ("mgmc",)), Account(DSO.public, ("dso",), "dso"),
                      *(Account(self.keys[mg.name].public, ("anonym",), mg.name,
                                balance=0 if mg.name == DEBTOR else 10**9, rules=chain_rules(mg.rules))
                        for mg in scenario.microgrids)),
            contracts=("market", "exchange", "payments"),
            # interval k ended long ago on this clock: every trade may be settled at once
            params=Params(credit_limit=0, settle_by_both=1, settle_wait_ms=60_000, settle_interval_ms=900_000),
        )  # fmt: skip
        path = tmp_path / "mgmc-genesis.json"
        path.write_text(json.dumps(genesis.to_json()))
        spec = ChainSpec(name="mgmc", genesis=path, data_dir=tmp_path / "mgmc.db", block_period_ms=BLOCK_MS,
                         round_timeout_ms=500, wal_fsync=False)  # fmt: skip
        self.ledger = EdgeLedger(authority, MqttLink("test", "127.0.0.1", 9), "feeder", [spec])
        self.names = {k.public: name for name, k in self.keys.items()}
        # (who, kind, body, what the chain made of it) for every transaction an agent signed
        self.sent: list[tuple[str, str, dict[str, Any], Submission]] = []
        self.waits: list[bool] = []  # the session stage's waits: False is one that ran out
        self.in_session = False
        signed: dict[bytes, tuple[str, str, dict[str, Any]]] = {}
        real_sign, real_submit, real_wait = self.ledger.sign, self.ledger.submit, self.ledger.wait_for

        def sign(role: str, key: Keypair, kind: str, body: dict[str, Any], nonce: int) -> bytes:
            raw = real_sign(role, key, kind, body, nonce)
            signed[raw] = (self.names.get(key.public, "other"), kind, body)
            return raw

        async def submit(role: str, raw: bytes, timeout_s: float) -> Submission:
            outcome = await real_submit(role, raw, timeout_s)
            if raw in signed:
                self.sent.append((*signed[raw], outcome))
            return outcome

        async def wait_for(role: str, predicate: Any, timeout_s: float) -> bool:
            done = bool(await real_wait(role, predicate, timeout_s))
            if self.in_session:
                self.waits.append(done)
            return done

        self.ledger.sign = sign  # type: ignore[method-assign]
        self.ledger.submit = submit  # type: ignore[method-assign]
        self.ledger.wait_for = wait_for  # type: ignore[method-assign]

    @property
    def state(self) -> Any:
        return self.ledger.state(ROLE)

    def owed(self) -> int:
        return query.owed(self.state, self.keys[DEBTOR].public)

    async def send(self, key: Keypair, kind: str, body: dict[str, Any]) -> None:
        """A transaction outside the agents (the DSO's, the setup's): it must land."""
        raw = self.ledger.sign(ROLE, key, kind, body, self.ledger.next_nonce(ROLE, key.public))
        outcome = await self.ledger.submit(ROLE, raw, 10.0)
        assert outcome.landed, (kind, body, outcome.reason)

    async def make_debt(self) -> None:
        """The DSO prices the cover of interval SETUP; the debtor buys 100 Wh of the seller there and takes
        none (the DSO's reading): the compensation it owes finds no money, so it owes OWED."""
        seller, debtor = self.keys[SELLER], self.keys[DEBTOR]
        for key in (seller, debtor):
            body = {"account": key.public, "first_interval": SETUP, "retail": [COVER_RETAIL],
                    "feed_in": [COVER_FEED_IN]}  # fmt: skip
            await self.send(DSO, "market.tariff", body)
        offer = {"interval": SETUP, "round": 0, "price": PRICE, "quantity": 100, "clean": True}
        await self.send(seller, "offer", offer)
        demands = [{"seller": seller.public, "quantity": 100}]
        await self.send(debtor, "bid", {"interval": SETUP, "round": 0, "demands": demands})
        await self.send(debtor, "trade", {"interval": SETUP})
        ((tid, _),) = query.trades(self.state, SETUP)
        await self.send(DSO, "settle", {"trade": tid, "delivered": 0, "seller_short": 0, "buyer_short": 100})
        assert self.owed() == OWED

    async def session(self, name: str, first: int, timeout_s: float = 10.0) -> dict[str, SessionOutcome]:
        """Every MG runs its own agent of session `name` on chain intervals first.., concurrently."""
        members = [self.keys[mg.name].public for mg in self.scenario.microgrids]
        opening = starting_prices(self.scenario)
        dt = self.scenario.interval_hours
        agents = {
            mg.name: DayAheadAgent(
                self.ledger, self.keys[mg.name], mg, dt, members, name, first, opening, CONFIG, timeout_s
            )
            for mg in self.scenario.microgrids
        }
        self.in_session = True
        try:
            done = await asyncio.wait_for(asyncio.gather(*(a.run() for a in agents.values())), 180)
        finally:
            self.in_session = False
        return dict(zip(agents, done, strict=True))

    async def forward(self, name: str) -> dict[str, ForwardOutcome]:
        dt = self.scenario.interval_hours
        stages = {
            mg.name: ForwardAgent(self.ledger, self.keys[mg.name], mg, dt, name, timeout_s=10.0)
            for mg in self.scenario.microgrids
        }
        done = await asyncio.wait_for(asyncio.gather(*(s.run() for s in stages.values())), 300)
        return dict(zip(stages, done, strict=True))

    def trades(self, first: int) -> list[tuple[int, str, str, int, bytes]]:
        """The day's trades on chain intervals first.. as (interval, seller, buyer, Wh, trade id)."""
        return [
            (t, self.names[tr["seller"]], self.names[tr["buyer"]], tr["quantity"], tid)
            for t in range(first, first + self.scenario.intervals)
            for tid, tr in query.trades(self.state, t)
        ]

    def positions(self, name: str, session: str) -> list[list[int]]:
        """Every exchange position `name` signed in `session` (both books of a clean one)."""
        return [
            body["positions"] + body.get("clean_positions", [])
            for who, kind, body, _ in self.sent
            if who == name and kind == "exchange.position" and body["session"] == session
        ]

    def accepts(self, name: str, session: str) -> list[list[int]]:
        return [
            body["positions"] + body.get("clean_positions", [])
            for who, kind, body, _ in self.sent
            if who == name and kind == "exchange.accept" and body["session"] == session
        ]

    def refused(self) -> list[tuple[str, str, str]]:
        return [(who, kind, outcome.reason) for who, kind, _, outcome in self.sent if not outcome.landed]

    def run(self, body: Any) -> Any:
        return run_on(self.ledger, body)


def lines(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def test_a_debtor_member_sells_without_a_refusal_pays_off_and_buys_the_next_day(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="peergrid.edge")
    m = Market(tmp_path)
    got: dict[str, Any] = {}

    async def days() -> None:
        await m.make_debt()
        got["day 1"] = await m.session("dayahead/debtor-1", 0)
        got["forward 1"] = await m.forward("dayahead/debtor-1")
        # the DSO reads every forward trade of the day delivered in full (the day is unpriced: no shortfalls
        # to state): the debtor's sales pay its debt first
        for _, _, _, quantity, tid in m.trades(0):
            await m.send(DSO, "settle", {"trade": tid, "delivered": quantity})
        got["owed after"] = m.owed()
        got["day 2"] = await m.session("dayahead/debtor-2", DAY.intervals)
        got["forward 2"] = await m.forward("dayahead/debtor-2")

    m.run(days)
    # nothing the agents sent was refused and no wait of either session ran out
    assert m.refused() == [] and m.waits and all(m.waits)
    for day in ("day 1", "day 2"):
        assert all(o.completed for o in got[day].values()), got[day]
    for day in ("forward 1", "forward 2"):
        assert all(o.cleared and o.reason == "" for o in got[day].values()), got[day]
    # day 1: every position the debtor posted and its accept are sales or nothing; it sold forward
    posted = m.positions(DEBTOR, "dayahead/debtor-1")
    assert len(posted) == got["day 1"][DEBTOR].iterations + 1 and all(min(p) >= 0 for p in posted)
    assert all(min(p) >= 0 for p in m.accepts(DEBTOR, "dayahead/debtor-1"))
    assert got["forward 1"][DEBTOR].decision != "declined"
    day1 = m.trades(0)
    assert any(seller == DEBTOR for _, seller, _, _, _ in day1)
    assert not any(buyer == DEBTOR for _, _, buyer, _, _ in day1)
    assert len(lines(caplog, "may not buy while it does: its positions carry no purchase")) == 1
    assert str(OWED) in lines(caplog, "may not buy while it does")[0]
    # paid off by its sales; day 2 it buys in interval 0 of the day again, forward too
    assert got["owed after"] == 0
    assert any(min(p) < 0 for p in m.positions(DEBTOR, "dayahead/debtor-2"))
    assert any(buyer == DEBTOR for _, _, buyer, _, _ in m.trades(DAY.intervals))
    assert lines(caplog, "dayahead/debtor-2: this MG owes") == []


def test_blind_to_its_debt_the_debtors_position_is_refused_and_its_peers_wait_it_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control (what the edge did before, and that the test above sees it): a debtor that does not read
    its debt posts its purchase, the chain refuses it, and the coordinator waits for its post until its
    timeout, after which the session fails for every member."""
    monkeypatch.setattr(debts, "owed_on", lambda ledger, key: 0)
    m = Market(tmp_path)
    got: dict[str, Any] = {}

    async def day() -> None:
        await m.make_debt()
        got["day"] = await m.session("dayahead/debtor-blind", 0, timeout_s=2.0)

    m.run(day)
    ((who, kind, reason),) = m.refused()
    assert (who, kind) == (DEBTOR, "exchange.position") and reason.startswith("insufficient-funds")
    assert not any(o.completed for o in got["day"].values())
    assert not all(m.waits)  # a wait for the debtor's post ran out


class AnswersBlind(DayAheadAgent):
    """Solves its answers as if it owed nothing (a debt that lands after an answer was solved): its posts
    alone see the debt."""

    def _bounds(self) -> tuple[list[float], list[float]]:
        return self.rules.bounds()


def test_an_answer_that_buys_is_posted_without_its_purchases_while_the_mg_owes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="peergrid.edge")
    m = Market(tmp_path)
    got: dict[str, Any] = {}
    members = [m.keys[mg.name].public for mg in DAY.microgrids]

    async def day() -> None:
        await m.make_debt()
        agents = [
            (AnswersBlind if mg.name == DEBTOR else DayAheadAgent)(
                m.ledger, m.keys[mg.name], mg, DAY.interval_hours, members, "dayahead/debtor-late", 0,
                starting_prices(DAY), CONFIG, 10.0,
            )
            for mg in DAY.microgrids
        ]  # fmt: skip
        m.in_session = True
        got["day"] = await asyncio.wait_for(asyncio.gather(*(a.run() for a in agents)), 180)

    m.run(day)
    assert m.refused() == [] and all(m.waits)
    assert all(o.completed for o in got["day"])
    posted = m.positions(DEBTOR, "dayahead/debtor-late")
    assert posted and all(min(p) >= 0 for p in posted)
    stripped = lines(caplog, "answer buys, and this MG owes: posted without its purchases")
    assert 1 <= len(stripped) <= len(posted)  # at least its first answer buys (interval 0)


@pytest.mark.parametrize("blind", [False, True], ids=["reads its debt", "control: blind to it"])
def test_a_debt_that_lands_after_the_session_leaves_the_accept_its_sales(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, blind: bool
) -> None:
    """The session closes with a purchase in the debtor's final position; then it comes to owe. Its accept
    carries its sales alone, which the chain takes. Blind to its debt (as before), its accept with the purchase
    is refused and it declines everything with zeros."""
    m = Market(tmp_path)
    got: dict[str, Any] = {}

    async def day() -> None:
        got["day"] = await m.session("dayahead/debtor-after", 0)
        await m.make_debt()
        if blind:
            monkeypatch.setattr(debts, "owed_on", lambda ledger, key: 0)
        got["forward"] = await m.forward("dayahead/debtor-after")

    m.run(day)
    assert all(o.completed for o in got["day"].values())
    final = list(got["day"][DEBTOR].positions)
    assert min(final) < 0 < max(final)  # it buys and sells
    trades = m.trades(0)
    if blind:
        ((who, kind, reason),) = m.refused()
        assert (who, kind) == (DEBTOR, "exchange.accept") and reason.startswith("insufficient-funds")
        assert got["forward"][DEBTOR].decision == "declined"
        assert not any(DEBTOR in (seller, buyer) for _, seller, buyer, _, _ in trades)
        return
    assert m.refused() == []
    accept = m.accepts(DEBTOR, "dayahead/debtor-after")[0]
    # its round-1 accept: no purchase, and every sale it accepts is within its final position's
    assert min(accept) >= 0 and all(0 <= a <= max(q, 0) for a, q in zip(accept, final, strict=True))
    assert any(accept) and got["forward"][DEBTOR].decision != "declined"
    assert any(seller == DEBTOR for _, seller, _, _, _ in trades)
    assert not any(buyer == DEBTOR for _, _, buyer, _, _ in trades)
