"""Q11: a disputed trade gets one more line, in the log and the record file, when the DSO's settlement of it
lands (before: "not settled: disputed" was the last the owner read of it; only `peergrid-edge day` said how it
ended).

The Settler runs against E4's scripted chain (U4's trade 1fc21b4d: mg5 sold 1968 Wh and the DSO settled 1964
with 632 micro of compensation), its dispute heard by the agent's own `agent_settlement.on_dispute` on a
stand-in agent: the readings poster is a stand-in, the follow-up is the one the MGMC runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from types import SimpleNamespace
from typing import Any

import pytest
from test_e4_settlement_record import DSO_SETTLED, ME, SALE, TID, Chain

from peergrid_edge import agent_settlement
from peergrid_edge.settle_book import PendingSettle, Settlements
from peergrid_edge.settlement import Settler

INTERVAL_S = 5.0


class YieldingChain(Chain):
    """E4's scripted chain whose sleep lets other tasks run (the follow-up is a task of its own)."""

    def __init__(self) -> None:
        super().__init__()
        self.now = time.time()  # on_dispute bounds the follow-up by the wall clock

    async def sleep(self, s: float) -> None:
        self.now += s
        await asyncio.sleep(0)


def stand_in_agent(settler: Settler, posted: list[PendingSettle]) -> Any:
    """What `on_dispute` reads of the agent: its times, its metering (the readings poster: a stand-in), its
    replica's genesis, its Settler."""
    metering = SimpleNamespace(following=set(), disputed=lambda pending, *times: posted.append(pending))
    genesis = SimpleNamespace(params=SimpleNamespace(settle_wait_ms=10_000))
    return SimpleNamespace(
        s=SimpleNamespace(interval_s=INTERVAL_S), _start_of=lambda t: 0.0, _last_interval=lambda: 0,
        _metering=lambda: metering, settler=settler, d=SimpleNamespace(_sleep=asyncio.sleep),
        ledger=SimpleNamespace(replicas={"mgmc": SimpleNamespace(app=SimpleNamespace(genesis=genesis))}),
    )  # fmt: skip


def test_the_dsos_settlement_of_a_disputed_trade_is_told_in_one_line_when_it_lands(
    caplog: pytest.LogCaptureFixture,
) -> None:
    chain, records, posted = YieldingChain(), [], []  # type: ignore[var-annotated]
    agent: Any = None
    settler = Settler(
        chain.submit, lambda tid: chain.standing, lambda: chain.now, chain.sleep, lambda: False,
        records.append, Settlements(1.0, 8.0), by_both=True, metering=lambda pending: 1968,
        on_dispute=lambda pending: agent_settlement.on_dispute(agent, pending),
    )  # fmt: skip
    agent = stand_in_agent(settler, posted)

    async def day() -> None:
        await settler.settle(49, [(TID, SALE)], ME, not_before=0.0)
        await settler.retry_due()  # stated: waits for the buyer's statement
        chain.standing = {**chain.standing, "state": "stated", "statements": {"seller": {"delivered": 1968}}}
        chain.standing = {**chain.standing, "state": "disputed"}  # the buyer stated 1900
        chain.now += 1.0
        await settler.retry_due()
        assert [p.trade for p in posted] == [TID]  # the readings go to the DSO, as before
        [follow_up] = agent._metering().following
        for _ in range(3):  # the DSO has not ruled yet: nothing more is told
            await chain.sleep(1.0)
        assert len(records) == 1 and not follow_up.done()
        chain.standing = {**chain.standing, "state": "settled", "settlement": DSO_SETTLED}
        assert await asyncio.wait_for(follow_up, 5.0)

    with caplog.at_level(logging.INFO, "peergrid.edge.trader"):
        asyncio.run(day())
    disputed, settled = records
    assert not disputed["settlement"]["settled"] and disputed["settlement"]["reason"].startswith("disputed")
    assert settled["interval"] == 49 and settled["settlement"]["settled"]
    assert settled["settlement"]["delivered"] == 1968  # this side's statement, beside the DSO's figures
    assert settled["settlement"]["chain"] == {"delivered": 1964, "amount": 408512, "compensation": 632,
                                              "money": 0.409144, "txid": "e7" * 32, "basis": "dso"}  # fmt: skip
    told = [r.getMessage() for r in caplog.records if "by the DSO" in r.getMessage()]
    assert told == [
        f"interval 49: trade {TID.hex()[:16]} settled by the DSO after its dispute: 1964 of 1968 Wh, on the "
        "dso basis, compensation 632 micro to this MG, +0.409144 to this MG"
    ]


def follow_alone(chain: YieldingChain, until_s: float, change: dict[str, Any]) -> tuple[bool, list[Any]]:
    """`until_dso_settles` on a trade that ended disputed, the chain changed by `change` after a first read."""
    records: list[Any] = []
    settler = Settler(
        chain.submit, lambda tid: chain.standing, lambda: chain.now, chain.sleep, lambda: False,
        records.append, Settlements(1.0, 8.0), by_both=True,
    )  # fmt: skip
    chain.standing = {**chain.standing, "state": "disputed", "statements": {"seller": {"delivered": 1968}}}
    pending = PendingSettle(49, TID, 1968, party="seller", quantity=1968)

    async def follow() -> bool:
        task = asyncio.ensure_future(settler.until_dso_settles(pending, chain.now + until_s))
        await asyncio.sleep(0)
        chain.standing = {**chain.standing, **change}
        return await asyncio.wait_for(task, 5.0)

    return asyncio.run(follow()), records


def test_a_dispute_the_dso_has_not_settled_by_the_bound_is_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, "peergrid.edge.trader"):
        landed, records = follow_alone(YieldingChain(), 3.0, {})
    assert not landed and records == []  # the disputed line said it already; the record gets no second one
    [said] = [r for r in caplog.records if "disputed trade" in r.getMessage()]
    assert said.levelno == logging.WARNING and "not settled by the DSO yet" in said.getMessage()


def test_a_disputed_trade_a_reopening_superseded_ends_the_follow_up(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, "peergrid.edge.trader"):
        landed, records = follow_alone(YieldingChain(), 60.0, {"state": "superseded"})
    assert not landed and records == []
    assert any("superseded by a reopening" in r.getMessage() for r in caplog.records)
