"""A connection capacity the DSO posts while an interval is being joined (edge `chain_bargaining.standing`,
`_open`; session 16's "noticed, left alone"): the trader reads its rules, cut to the capacity standing then, before
its solves, and the chain takes a newer capacity for an interval until the MG's first position there.

On one real single-authority `EdgeLedger` (test_edge_capacity's `Chain`: the DSO in genesis, every transaction
an agent signed recorded with what the chain made of it), the MGs play interval T through `run_interval`:
  - a capacity posted after the trader read its rules and before the seller's offer is built: the offer is cut
    to it and lands (before: built from the rules read first, refused, the MG sat the interval out);
  - one landing ahead of the offer in the chain's order (the offer built and on its way): the refused offer is
    offered once more at the capacity and lands, one WARNING naming the capacity (before: sat out);
  - a second capacity ahead of that second offer: refused again, never a third offer, said by name;
  - a buyer's capacity posted before its (empty) join: its moves stay within it (before: refused above it).
Each has its control: the edge blind to a capacity it did not read first (`standing` the identity: HEAD's
behaviour) is refused where the test sees it land.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from test_edge_capacity import BUYER_CAP, INTRADAY, REFUSED, SELLER_CAP, Chain, T
from test_edge_guard import agent_for

from peergrid_edge import agent_interval, chain_bargaining
from peergrid_edge.replicas import Submission
from peergrid_edge.trader import MarketAgent
from peergrid_ledger.tx import decode_tx

SELLER, BUYER = "mg001", "mg004"  # at T mg001 offers ~700 kWh, mg004 asks ~124 kWh (test_edge_capacity)
CONTROL = ["cut as built", "control: blind to it"]


def blind(monkeypatch: pytest.MonkeyPatch) -> None:
    """The edge before this change: the participant the trader built, whatever stands by the offer."""
    monkeypatch.setattr(chain_bargaining, "standing", lambda _agent, me, _t: me, raising=False)  # HEAD: none
    monkeypatch.setattr(agent_interval, "standing", lambda _agent, me, _t: me)


def agents(chain: Chain, tmp_path: Path) -> dict[str, MarketAgent]:
    return {
        mg.name: agent_for(chain.ledger, chain.keys[mg.name], INTRADAY, mg.name, tmp_path / f"{mg.name}.jsonl",
                           "off", 0.0)
        for mg in INTRADAY.microgrids
    }  # fmt: skip


def post_before_bargaining(monkeypatch: pytest.MonkeyPatch, chain: Chain, caps: dict[str, int]) -> None:
    """The DSO posts `caps` (MG -> Wh) after each MG's trader read its rules and solved, before it bargains."""
    real = agent_interval.bargain

    async def bargain(agent: MarketAgent, t: int, *args: Any) -> Any:
        name = agent.mg.name
        if name in caps:
            await chain.capacity(name, caps.pop(name))
        return await real(agent, t, *args)

    monkeypatch.setattr(agent_interval, "bargain", bargain)


def post_ahead_of_offers(chain: Chain, seller: str, caps: list[int]) -> None:
    """The DSO's capacity lands ahead of each of `seller`'s next offers (one cap per offer), after each was
    built and signed: the chain judges the offer against it."""
    real = chain.ledger.submit
    key = chain.keys[seller].public

    async def submit(role: str, raw: bytes, timeout_s: float) -> Submission:
        tx = decode_tx(raw)
        if tx.kind == "offer" and tx.sender == key and caps:
            await chain.capacity(seller, caps.pop(0))
        return await real(role, raw, timeout_s)

    chain.ledger.submit = submit  # type: ignore[method-assign]


def play(chain: Chain, players: dict[str, MarketAgent]) -> None:
    async def interval() -> None:
        await asyncio.wait_for(asyncio.gather(*(a.run_interval(T) for a in players.values())), 120)

    chain.run(interval)


def warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and text in r.getMessage()]


@pytest.mark.parametrize("is_blind", [False, True], ids=CONTROL)
def test_a_capacity_posted_after_the_rules_were_read_cuts_the_offer_as_it_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, is_blind: bool
) -> None:
    if is_blind:
        blind(monkeypatch)
    chain = Chain(tmp_path, INTRADAY)
    post_before_bargaining(monkeypatch, chain, {SELLER: SELLER_CAP})
    play(chain, agents(chain, tmp_path))
    offers = chain.of(SELLER, "offer", "move")
    (first, outcome), *_ = offers
    if is_blind:  # built from the rules read before the capacity: refused, and the MG sits the interval out
        assert first["quantity"] > SELLER_CAP and not outcome.landed and REFUSED in outcome.reason
        assert len(chain.of(SELLER, "offer")) == 1 and chain.traded(SELLER, T) == (0, 0)
        return
    assert chain.refused() == []
    assert first["quantity"] == SELLER_CAP and outcome.landed  # its surplus is far above the capacity
    assert all(body["quantity"] <= SELLER_CAP for body, _ in offers)
    assert 0 < chain.traded(SELLER, T)[0] <= SELLER_CAP


@pytest.mark.parametrize("is_blind", [False, True], ids=CONTROL)
def test_an_offer_refused_for_a_capacity_that_landed_ahead_of_it_is_offered_once_more_at_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, is_blind: bool
) -> None:
    caplog.set_level(logging.INFO, logger="peergrid.edge")
    if is_blind:
        blind(monkeypatch)
    chain = Chain(tmp_path, INTRADAY)
    post_ahead_of_offers(chain, SELLER, [SELLER_CAP])
    play(chain, agents(chain, tmp_path))
    (first, refused), *rest = chain.of(SELLER, "offer")
    assert first["quantity"] > SELLER_CAP and not refused.landed and REFUSED in refused.reason
    if is_blind:  # today's refusal: the interval sat out, one offer
        assert rest == [] and chain.traded(SELLER, T) == (0, 0)
        assert len(warnings(caplog, "sits the interval out")) == 1
        return
    ((again, landed),) = rest  # once more, at the capacity
    assert again["quantity"] == SELLER_CAP and landed.landed
    assert again["price"] == first["price"]  # the same opening, only cut
    assert [(who, kind) for who, kind, _ in chain.refused()] == [(SELLER, "offer")]
    (said,) = warnings(caplog, "offered once more")
    assert f"{first['quantity']} Wh" in said and f"connection capacity of {SELLER_CAP} Wh" in said
    assert warnings(caplog, "sits the interval out") == []
    assert 0 < chain.traded(SELLER, T)[0] <= SELLER_CAP
    assert all(body["quantity"] <= SELLER_CAP for body, _ in chain.of(SELLER, "move"))


def test_a_second_refusal_is_never_retried_and_is_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The DSO lowers the capacity again ahead of the second offer (the chain still takes it: the MG holds no
    position in T): the second offer is refused too, and there is no third."""
    caplog.set_level(logging.INFO, logger="peergrid.edge")
    chain = Chain(tmp_path, INTRADAY)
    post_ahead_of_offers(chain, SELLER, [SELLER_CAP, SELLER_CAP // 2])
    play(chain, agents(chain, tmp_path))
    offers = chain.of(SELLER, "offer")
    assert [body["quantity"] for body, _ in offers][1:] == [SELLER_CAP]
    assert not any(o.landed for _, o in offers) and all(REFUSED in o.reason for _, o in offers)
    assert len(warnings(caplog, "offered once more")) == 1
    assert len(warnings(caplog, "offer (its first move) did not land")) == 1
    assert chain.traded(SELLER, T) == (0, 0)


@pytest.mark.parametrize("is_blind", [False, True], ids=CONTROL)
def test_a_buyers_capacity_posted_before_its_join_bounds_its_moves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, is_blind: bool
) -> None:
    if is_blind:
        blind(monkeypatch)
    chain = Chain(tmp_path, INTRADAY)
    post_before_bargaining(monkeypatch, chain, {BUYER: BUYER_CAP})
    play(chain, agents(chain, tmp_path))
    bids = chain.of(BUYER, "bid", "move")
    if is_blind:  # it asks above the capacity it did not read: refused
        assert any(not o.landed and REFUSED in o.reason for _, o in bids)
        return
    assert chain.refused() == []
    assert any(body["demands"] for body, _ in bids)  # it did ask
    assert all(sum(d["quantity"] for d in body["demands"]) <= BUYER_CAP for body, _ in bids)
    assert 0 < chain.traded(BUYER, T)[1] <= BUYER_CAP
