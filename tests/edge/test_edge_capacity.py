"""What an MGMC posts stays within the connection capacity the DSO posted for its trading key (edge
`connection.py`; the chain refuses more since c10acc4: `market.capacity`, review22 F4).

Independent agents, each holding only its own MG and trading key, play on one real single-authority
`EdgeLedger` (its node key the only authority; no broker) whose genesis names the DSO, which posts capacities
below what some MG's devices can move. Every transaction the agents sign is recorded with what the chain made
of it. Intraday (`MarketAgent.run_interval`): a seller's offer lands at its capacity and a buyer's bid total
within its own, where before the offer was refused and the MG sat the interval out. Day-ahead
(`DayAheadAgent`): the session completes with a capped member's answers within its capacity, where before its
refused post failed the stage for every member; a capacity posted after the answer's bounds were read is met
by the post's last guard; one posted after the session closed (an exchange post fixes none) is met by the
forward accept, which before was refused and declined the whole day. Each has its control: the edge blind to
the capacity (its cut replaced by the identity) is refused where the test above sees it land.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path
from typing import Any

import pytest
from test_edge_dayahead_session import CONFIG, free_day, ledger_for, run_on, simulated
from test_edge_forward import venue_keys
from test_edge_guard import agent_for

from peergrid_controller.dayahead import starting_prices
from peergrid_controller.model import Scenario
from peergrid_edge import (
    chain_bargaining,
    dayahead_agent,
    dayahead_capacity,
    forward_agent,
    forward_first,
    interval_offer,
)
from peergrid_edge.dayahead_agent import DayAheadAgent
from peergrid_edge.exchange_io import ROLE, SessionOutcome
from peergrid_edge.forward_agent import ForwardAgent, ForwardOutcome
from peergrid_edge.replicas import EdgeLedger, Submission
from peergrid_ledger import query
from peergrid_ledger.genesis import Params
from peergrid_ledger.keys import Keypair

DSO = Keypair.from_seed(hashlib.sha256(b"edge-capacity/dso").digest())
REFUSED = "connection capacity"  # the chain's words (market_capacity.within_capacity)


class Chain:
    """The chain (the DSO in its genesis), the MGs' trading keys and every transaction an agent signed, with
    the chain's outcome."""

    def __init__(self, tmp_path: Path, scenario: Scenario) -> None:
        self.scenario, self.tmp_path = scenario, tmp_path
        credit = Params(credit_limit=10**12)  # a buyer pays before any income of its own
        self.ledger, self.keys = ledger_for(
            tmp_path, scenario, key_of=venue_keys(scenario), params=credit, dso=DSO
        )
        self.names = {k.public: name for name, k in self.keys.items()}
        self.sent: list[tuple[str, str, dict[str, Any], Submission]] = []
        signed: dict[bytes, tuple[str, str, dict[str, Any]]] = {}
        ledger: EdgeLedger = self.ledger
        real_sign, real_submit = ledger.sign, ledger.submit

        def sign(role: str, key: Keypair, kind: str, body: dict[str, Any], nonce: int) -> bytes:
            raw = real_sign(role, key, kind, body, nonce)
            if key.public in self.names:
                signed[raw] = (self.names[key.public], kind, body)
            return raw

        async def submit(role: str, raw: bytes, timeout_s: float) -> Submission:
            outcome = await real_submit(role, raw, timeout_s)
            if raw in signed:
                self.sent.append((*signed[raw], outcome))
            return outcome

        ledger.sign = sign  # type: ignore[method-assign]
        ledger.submit = submit  # type: ignore[method-assign]

    @property
    def state(self) -> Any:
        return self.ledger.state(ROLE)

    async def capacity(self, name: str, wh: int, start: int = 0) -> None:
        """The DSO posts MG `name`'s connection capacity, `wh` per interval from chain interval `start`."""
        body = {"account": self.keys[name].public, "from_interval": start, "wh": wh}
        raw = self.ledger.sign(ROLE, DSO, "market.capacity", body, self.ledger.next_nonce(ROLE, DSO.public))
        outcome = await self.ledger.submit(ROLE, raw, 10.0)
        assert outcome.landed, outcome.reason

    def of(self, name: str, *kinds: str) -> list[tuple[dict[str, Any], Submission]]:
        return [(body, o) for who, kind, body, o in self.sent if who == name and kind in kinds]

    def refused(self) -> list[tuple[str, str, str]]:
        return [(who, kind, o.reason) for who, kind, _, o in self.sent if not o.landed]

    def traded(self, name: str, t: int) -> tuple[int, int]:
        """(Wh sold, Wh bought) by MG `name` in chain interval t."""
        key = self.keys[name].public
        trades = [tr for _, tr in query.trades(self.state, t)]
        return (sum(tr["quantity"] for tr in trades if tr["seller"] == key),
                sum(tr["quantity"] for tr in trades if tr["buyer"] == key))  # fmt: skip

    def run(self, body: Any) -> Any:
        return run_on(self.ledger, body)


# --- intraday ------------------------------------------------------------------------------------------------

INTRADAY = free_day(4, 8, seed=2)
T = 3  # midday: mg001 offers ~700 kWh (its surplus at the opening price), mg004 asks ~124 kWh
SELLER_CAP, BUYER_CAP = 100_000, 50_000  # Wh: well below both


def blind_intraday(monkeypatch: pytest.MonkeyPatch) -> None:
    """The edge before the cut: the owner's rules as they are (where the trader's offer reads them, and where the
    bargaining cuts them again to the capacity standing at its join: `chain_bargaining.standing`)."""
    monkeypatch.setattr(interval_offer, "connected_rules", lambda rules, *_args: rules)
    monkeypatch.setattr(chain_bargaining, "connected_rules", lambda rules, *_args: rules)


@pytest.mark.parametrize("blind", [False, True], ids=["within its capacity", "control: blind to it"])
def test_an_intraday_offer_lands_at_the_sellers_capacity_and_a_bid_within_the_buyers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, blind: bool
) -> None:
    if blind:
        blind_intraday(monkeypatch)
    chain = Chain(tmp_path, INTRADAY)
    agents = [
        agent_for(chain.ledger, chain.keys[mg.name], INTRADAY, mg.name, tmp_path / f"{mg.name}.jsonl", "off", 0.0)
        for mg in INTRADAY.microgrids
    ]  # fmt: skip

    async def interval() -> None:
        await chain.capacity("mg001", SELLER_CAP)
        await chain.capacity("mg004", BUYER_CAP)
        await asyncio.wait_for(asyncio.gather(*(a.run_interval(T) for a in agents)), 120)

    chain.run(interval)
    offers = chain.of("mg001", "offer", "move")
    bids = chain.of("mg004", "bid", "move")
    if blind:  # its offer (above the capacity) refused: it sits the interval out; the buyer's ask refused
        (first, outcome), *_ = offers
        assert first["quantity"] > SELLER_CAP and not outcome.landed and REFUSED in outcome.reason
        assert chain.traded("mg001", T) == (0, 0)
        assert any(not o.landed and REFUSED in o.reason for _, o in bids)
        return
    assert chain.refused() == []
    # the seller's opening offer is its capacity (its surplus is far above it), and no move goes above it
    assert offers[0][0]["quantity"] == SELLER_CAP
    assert all(body["quantity"] <= SELLER_CAP for body, _ in offers)
    assert all(sum(d["quantity"] for d in body["demands"]) <= BUYER_CAP for body, _ in bids)
    assert any(body["demands"] for body, _ in bids)  # it did ask
    sold, bought = chain.traded("mg001", T)[0], chain.traded("mg004", T)[1]
    assert 0 < sold <= SELLER_CAP and 0 < bought <= BUYER_CAP


# --- day-ahead -----------------------------------------------------------------------------------------------

DAY = free_day(3, 4)
CAPPED = "mg001"  # sells ~312 and ~424 kWh in intervals 1 and 2 of the simulation's session


def day_cap() -> int:
    """Half of the capped MG's largest position in the simulation's session (no capacity there)."""
    _, _, positions = simulated(DAY)
    return max(abs(q) for q in positions[CAPPED]) // 2


async def session(chain: Chain, name: str, blind_bounds: bool = False) -> dict[str, SessionOutcome]:
    members = [chain.keys[mg.name].public for mg in DAY.microgrids]
    make = {mg.name: DayAheadAgent for mg in DAY.microgrids}
    if blind_bounds:
        make[CAPPED] = BoundsBlind
    agents = {
        mg.name: make[mg.name](chain.ledger, chain.keys[mg.name], mg, DAY.interval_hours, members, name, 0,
                               starting_prices(DAY), CONFIG, 3.0)
        for mg in DAY.microgrids
    }  # fmt: skip
    done = await asyncio.wait_for(asyncio.gather(*(a.run() for a in agents.values())), 180)
    return dict(zip(agents, done, strict=True))


async def forward(chain: Chain, name: str) -> dict[str, ForwardOutcome]:
    stages = {
        mg.name: ForwardAgent(chain.ledger, chain.keys[mg.name], mg, DAY.interval_hours, name, timeout_s=10.0)
        for mg in DAY.microgrids
    }
    done = await asyncio.wait_for(asyncio.gather(*(s.run() for s in stages.values())), 300)
    return dict(zip(stages, done, strict=True))


def posts(chain: Chain, name: str, kind: str) -> list[list[int]]:
    return [body["positions"] + body.get("clean_positions", []) for body, _ in chain.of(name, kind)]


class BoundsBlind(DayAheadAgent):
    """Solves its answers without the capacity (one the DSO posted after the bounds were read): its posts
    alone see it."""

    def _bounds(self) -> tuple[list[float], list[float]]:
        return self.rules.bounds()


def lines(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


@pytest.mark.parametrize("blind", [False, True], ids=["within its capacity", "control: blind to it"])
def test_a_day_ahead_session_with_a_member_capped_below_its_answer_completes_and_clears(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, blind: bool
) -> None:
    cap = day_cap()
    if blind:
        monkeypatch.setattr(dayahead_agent, "connected_bounds", lambda bounds, *_args: bounds)
        monkeypatch.setattr(dayahead_capacity, "within_capacity", lambda row, *_args, **_kw: tuple(row))
        monkeypatch.setattr(dayahead_capacity, "first_above", lambda *_args: None)  # nor a refusal's re-post
    chain = Chain(tmp_path, DAY)
    got: dict[str, Any] = {}

    async def day() -> None:
        await chain.capacity(CAPPED, cap)
        got["session"] = await session(chain, "dayahead/capacity")
        if not blind:
            got["forward"] = await forward(chain, "dayahead/capacity")

    chain.run(day)
    if blind:  # its post above the capacity refused: the stage fails for every member
        assert any(who == CAPPED and kind == "exchange.position" and REFUSED in reason
                   for who, kind, reason in chain.refused())  # fmt: skip
        assert not any(o.completed for o in got["session"].values())
        return
    assert chain.refused() == []
    assert all(o.completed for o in got["session"].values()), got["session"]
    posted = posts(chain, CAPPED, "exchange.position")
    assert posted and all(abs(q) <= cap for p in posted for q in p)
    assert max(abs(q) for q in posted[-1]) == pytest.approx(cap, abs=2)  # it binds: the answer meets it
    assert all(o.cleared and o.reason == "" for o in got["forward"].values()), got["forward"]
    assert got["forward"][CAPPED].decision != "declined"
    for t in range(DAY.intervals):
        sold, bought = chain.traded(CAPPED, t)
        assert sold <= cap and bought <= cap


def test_a_capacity_the_answer_did_not_see_is_met_by_the_posts_last_guard(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="peergrid.edge")
    cap = day_cap()
    chain = Chain(tmp_path, DAY)
    got: dict[str, Any] = {}

    async def day() -> None:
        await chain.capacity(CAPPED, cap)
        got["session"] = await session(chain, "dayahead/capacity-late", blind_bounds=True)

    chain.run(day)
    assert chain.refused() == []
    assert all(o.completed for o in got["session"].values()), got["session"]
    posted = posts(chain, CAPPED, "exchange.position")
    assert posted and all(abs(q) <= cap for p in posted for q in p)
    cut = lines(caplog, "above this MG's connection capacity (market.capacity): posted within it")
    assert 1 <= len(cut) <= len(posted)  # its unbounded answers sell more than the capacity


@pytest.mark.parametrize("blind", [False, True], ids=["within its capacity", "control: blind to it"])
def test_a_capacity_posted_after_the_session_closed_cuts_the_forward_accept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, blind: bool
) -> None:
    """An exchange post fixes no capacity: the DSO may post one after the session, and the accept meets it.
    Blind to it (as before), the accept is refused and the MG declines the whole day with zeros."""
    caplog.set_level(logging.INFO, logger="peergrid.edge")
    cap = day_cap()
    if blind:
        monkeypatch.setattr(forward_first, "within_capacity", lambda row, *_args, **_kw: tuple(row))
        # nor met after the decision or a refusal (forward_agent._accept)
        monkeypatch.setattr(forward_agent, "above_capacity", lambda *_args: False)
    chain = Chain(tmp_path, DAY)
    got: dict[str, Any] = {}

    async def day() -> None:
        got["session"] = await session(chain, "dayahead/capacity-after")
        await chain.capacity(CAPPED, cap)
        got["forward"] = await forward(chain, "dayahead/capacity-after")

    chain.run(day)
    assert all(o.completed for o in got["session"].values())
    final = got["session"][CAPPED].positions
    assert max(abs(q) for q in final) > cap  # the session's position is above the capacity posted after it
    if blind:
        ((who, kind, reason),) = chain.refused()
        assert (who, kind) == (CAPPED, "exchange.accept") and REFUSED in reason
        assert got["forward"][CAPPED].decision == "declined"
        assert all(chain.traded(CAPPED, t) == (0, 0) for t in range(DAY.intervals))
        return
    assert chain.refused() == []
    (accept, *_) = posts(chain, CAPPED, "exchange.accept")
    # within the capacity, reduce-only against the final position (same sign, no larger)
    assert all(abs(a) <= cap and a * q >= 0 and abs(a) <= abs(q) for a, q in zip(accept, final, strict=True))
    assert got["forward"][CAPPED].decision != "declined" and any(accept)
    assert all(o.cleared for o in got["forward"].values())
    assert (
        len(lines(caplog, "above this MG's connection capacity (market.capacity): it accepts within it")) == 1
    )
    for t in range(DAY.intervals):
        assert max(chain.traded(CAPPED, t)) <= cap
