"""An MGMC posts its PCC readings for a counterparty's dispute too, not only for its own (D5).

The DSO shares a party's metered energy over its trades by what its counterparties' meters prove, and waits
for an unmetered counterparty until the dispute's deadline (the chain's `settle_wait_ms`, an hour here), then
takes it least in its favour. Buyer b bought from sellers s and c; b states differently from both
(two disputes: an agreed trade would come off b's meter at what it settled, review12 F2, and leave the DSO
nothing to ask c's meter for). Before, only s and b posted: the DSO waited for c's meter until the deadline. Now c's
agent (`agent_settlement.counterparty_readings`, over the chain the DSO reads) sees the dispute in a block and
posts its sealed readings over real HTTP to the DSO server's disputes API (the real routes and
`DisputeSettler`, the fixture of test_edge_settle_both_dso), and the dispute settles by the counterparties'
meters, long before its deadline. Which MGs are asked is exactly whose readings the DSO reads
(`disputes.read_nodes`; both `metering.meters_read`): a counterparty's meter only where its trade with the
party is disputed too (D10; tests/edge/test_pcc_meters_read.py checks it against what the DSO meters).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest
from dso.test_disputes import CLOCK, Market, T, market, ramp
from dso.test_disputes_node import served_disputes

from peergrid_dso.disputes import read_nodes
from peergrid_edge import agent_settlement
from peergrid_edge.pcc_readings import DisputeReadings, MgMetering, counterparties_done, readings_needed
from peergrid_ledger import query
from peergrid_ledger.metering import commitment_intervals
from peergrid_ledger.takeup import with_dso

SALES = {("s", "b"): 500, ("c", "b"): 500, ("c", "d"): 200}
# b's import 800 Wh: 300 from s (its meter shows 300 exported), 500 from c (c exported 700: 500 to b, 200 to d)
READINGS = {
    "s": ramp(300.0, export=True),
    "c": ramp(700.0, export=True),
    "b": ramp(800.0, export=False),
    "d": ramp(200.0, export=False),
}


@pytest.fixture
def dso_api() -> Iterator[tuple[str, Market, Any]]:
    """The DSO server's disputes API on a loopback port over a settler of the market's chain: s -> b disputed
    (b states 300, s 500), c -> b disputed (b 450, c 500), c -> d agreed and settled."""
    statements = {("s", "b"): (300, 500), ("c", "b"): (450, 500), ("c", "d"): (200, 200)}
    m = market(SALES, statements, readings=READINGS)
    with served_disputes(m) as (url, settler):
        yield url, m, settler


class Store:
    """One MG's edge store as the market sealed it (`MgMetering`'s reading side)."""

    def __init__(self, m: Market, mg: str) -> None:
        self.m, self.node = m, m.nodes[mg].public

    def leaves(self, interval: int) -> list[bytes]:
        return list(self.m.sealed.get((self.node, interval), []))

    def is_sealed(self, interval: int) -> bool:
        return (self.node, interval) in self.m.sealed


class ChainApp:
    """The MGMC replica's app as the watch reads it: the chain's genesis and its head (`tip`, whose time is the
    chain's time the agent judges reveal deadlines by: agent_settlement.chain_ms)."""

    def __init__(self, m: Market) -> None:
        self.m, self.genesis = m, m.chain.genesis

    @property
    def tip(self) -> Any:
        return self.m.chain.tip


class ChainLedger:
    """The agent's ledger over the market's chain (`EdgeLedger.state`, `wait_for` and the MGMC replica's
    genesis and head): final at once, so waiting is polling."""

    def __init__(self, m: Market) -> None:
        self.m = m
        self.replicas = {"mgmc": SimpleNamespace(app=ChainApp(m))}

    def state(self, _role: str) -> Any:
        return self.m.chain.state

    async def wait_for(self, _role: str, predicate: Any, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not predicate(self.m.chain.state):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True


def agent_of(url: str, m: Market, mg: str) -> Any:
    """The parts of a `MarketAgent` that its counterparty watch uses: its interval clock (the DSO's `CLOCK`),
    settle_by_both, its metering (PCC polls 5 s apart: the DSO's 15-s bracket) posting to the DSO's API and
    asking it again every 0.05 s (its market's `interval_s`)."""
    start_s = CLOCK.window(T)[0] / 1000
    interval_s = CLOCK.interval_ms / 1000
    agent = SimpleNamespace(
        s=SimpleNamespace(interval_s=0.05), anonym=m.anonyms[mg], ledger=ChainLedger(m),
        d=SimpleNamespace(stopping=threading.Event(), _sleep=asyncio.sleep),
        settler=SimpleNamespace(by_both=True), _start_of=lambda t: start_s + (t - T) * interval_s,
    )  # fmt: skip
    metering = MgMetering(
        Store(m, mg), 5.0, CLOCK.commit_ms / 1000, CLOCK.window, lambda t: query.trades(m.chain.state, t),
        m.anonyms[mg].public, m.nodes[mg].public, url,
    )  # fmt: skip
    agent._metering = lambda: metering
    return agent


@contextmanager
def dso_rounds(dso_round: Callable[[], None], finished: Callable[[], bool] = lambda: False) -> Iterator[None]:
    """The DSO node's rounds (`dso_round`, every 0.05 s) on a thread of their own while the body runs the
    agent's watch, until the body ends or `finished`."""
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set() and not finished():
            dso_round()
            time.sleep(0.05)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


def test_the_mgs_asked_for_a_counterpartys_dispute_are_those_whose_readings_the_dso_reads() -> None:
    m = market(SALES, {("s", "b"): (300, 500)})  # c -> b and c -> d not stated yet
    disputed = m.trade_id("s", "b")

    def asked(mg: str) -> bool:
        return readings_needed(query.trades(m.chain.state, T), m.anonyms[mg].public) == [disputed]

    def read() -> set[str]:
        nodes = read_nodes(m.chain.state, disputed, m.node_of())
        return {mg for mg in m.nodes if m.nodes[mg].public in nodes}

    # c -> b is not disputed (yet): b's purchase from c would take what it settles at on the parties' word, so
    # c's meter is not read for s -> b, and nobody but the parties is asked (D10; before, c was asked)
    assert read() == {"s", "b"} and not any(asked(mg) for mg in m.anonyms)
    # each watches until no trade that could read it can any more: c's c -> b may still be disputed
    trades = query.trades(m.chain.state, T)
    assert not counterparties_done(trades, m.anonyms["c"].public)
    assert not counterparties_done(trades, m.anonyms["d"].public)  # c -> d beside c -> b, both unsettled
    m.state("c", "b", 450, 500)  # disputed too: b's share of s -> b now goes by c's meter
    assert read() == {"s", "b", "c"}
    assert [mg for mg in sorted(m.anonyms) if asked(mg)] == ["c"]  # exactly the MG the DSO reads, no party
    c_b = m.trade_id("c", "b")
    assert {mg for mg in m.nodes if m.nodes[mg].public in read_nodes(m.chain.state, c_b, m.node_of())} == {
        "s",
        "b",
        "c",
    }  # not d: c -> d is not disputed
    m.state("c", "d", 200, 200)  # agreed and settled: d's meter is never read for c's disputes
    trades = query.trades(m.chain.state, T)
    assert counterparties_done(trades, m.anonyms["d"].public) and not asked("d")
    assert not counterparties_done(trades, m.anonyms["c"].public)  # s -> b is still with the DSO


def test_a_counterpartys_readings_reach_the_dso_and_the_dispute_settles_before_its_deadline(
    dso_api: tuple[str, Market, Any],
) -> None:
    url, m, settler = dso_api
    tid = m.trade_id("s", "b")
    assert query.settlement(m.chain.state, tid)["state"] == "disputed"
    assert query.settlement(m.chain.state, m.trade_id("c", "b"))["state"] == "disputed"
    window = CLOCK.window(T)

    def dso_round() -> None:  # the DSO node's own loop: look at the chain and settle what it can
        settler.look_everywhere()
        asyncio.run_coroutine_threadsafe(settler.settle_due(), settler.adapter.loop).result(10)

    def poster(mg: str) -> DisputeReadings:
        node = m.nodes[mg].public
        return DisputeReadings(
            url, node, lambda r: [(c, m.sealed[(node, c)]) for c in r if (node, c) in m.sealed],
            CLOCK.commit_ms, CLOCK.max_gap_ms,
        )  # fmt: skip

    dso_round()

    async def parties_post() -> list[int]:  # the disputing parties post theirs, as their settlers do
        return [await poster("s").post(window), await poster("b").post(window)]

    assert all(asyncio.run(parties_post()))
    dso_round()
    waiting = settler.decision(tid)
    assert waiting is not None and waiting["outcome"] == "unresolved", waiting
    assert "counterparty" in waiting["why"] and "not at the DSO" in waiting["why"]  # c's, and until when
    assert query.settlement(m.chain.state, tid)["state"] == "disputed"  # waiting for c's meter
    deadline_ms = query.settlement(m.chain.state, tid)["deadline"]

    async def c_watches() -> list[bool]:
        c = agent_of(url, m, "c")
        metering = c._metering()
        await asyncio.wait_for(agent_settlement.counterparty_readings(c, T), 10)  # the dispute settled
        return [await task for task in list(metering.following)]

    with dso_rounds(dso_round, lambda: query.settlement(m.chain.state, tid)["state"] == "settled"):
        followed = asyncio.run(c_watches())
    where = query.settlement(m.chain.state, tid)
    assert where["state"] == "settled" and where["settlement"]["basis"] == "dso"
    assert m.chain.tip.time < deadline_ms  # long before the dispute's deadline
    assert followed in ([], [True])  # c's follower ends with the DSO's decision (or had already)
    shown = settler.decision(tid)
    assert shown is not None and shown["outcome"] == "settled"
    # b's 800 Wh shared by its sellers' meters (s 300, c 500), not c taken least in s's favour
    assert shown["buyer"]["shared_by"] == "counterparties' meters"
    assert where["settlement"]["delivered"] == 300


def test_a_sellers_readings_reach_the_dso_for_its_own_trade_on_one_statement() -> None:
    """review13 F4: the buyer is silent (its meter cannot prove the interval), the seller states alone; its
    agent's watch posts its readings for its own trade that stands on one statement, and the DSO node settles
    it from them (the seller's 100 of 400, equal shortfalls) before the lapse; the watch ends once it settled."""
    m = market(
        {("s", "b"): 400}, {}, readings={"s": ramp(100.0, export=True)}, wait_ms=120_000, cover=(300, 50)
    )
    tid = m.trade_id("s", "b")
    m.do(
        m.anonyms["s"], "settle", {"trade": tid, "delivered": 100, "short": 0}, max(m.now, CLOCK.window(T)[1])
    )
    lapse = int(query.settlement(m.chain.state, tid)["deadline"])  # type: ignore[index]
    taken = with_dso(query.trade(m.chain.state, tid), m.chain.tip.time)  # type: ignore[arg-type]
    assert taken is not None and taken.kind == "lone"
    s_node = m.nodes["s"].public
    # each commitment interval of s's readings that brackets interval T: its watch posts them one request each
    around = commitment_intervals(CLOCK.window(T), CLOCK.commit_ms, CLOCK.max_gap_ms)
    s_readings = {(s_node, c) for c in around if (s_node, c) in m.sealed}
    assert len(s_readings) == 3
    with served_disputes(m) as (url, settler):

        async def dso_round() -> None:
            # on the node's loop, as offer_readings: the chain's time moves on once all of s's readings are in.
            # Not on the first of them: a round between two posts then passed the DSO's part of the wait with s
            # half metered, and the DSO settled s's statement at 0 (seen under load). The watch posts for a
            # lone word once the DSO meters it (E4: LONE_FROM of the wait), so the chain's time reaches that first
            if m.chain.tip.time < taken.meters_from_ms:
                m.pass_time(taken.meters_from_ms)
                settler.on_commit(SimpleNamespace(block=m.chain.block(m.chain.height).encode()))
            elif s_readings <= settler.sealed.keys() and m.chain.tip.time < lapse - 1:
                m.pass_time(lapse - 1)  # the DSO's part of the wait has passed, the lapse has not
                settler.on_commit(SimpleNamespace(block=m.chain.block(m.chain.height).encode()))
            settler.look_everywhere()
            await settler.settle_due()

        def on_node_loop() -> None:
            asyncio.run_coroutine_threadsafe(dso_round(), settler.adapter.loop).result(10)

        with dso_rounds(on_node_loop):
            asyncio.run(
                asyncio.wait_for(agent_settlement.counterparty_readings(agent_of(url, m, "s"), T), 10)
            )
    where = query.settlement(m.chain.state, tid)
    assert where is not None and where["state"] == "settled" and where["settlement"]["basis"] == "dso"
    assert where["settlement"]["delivered"] == 100 and where["settlement"]["compensation"]["amount"] == 0


def test_a_sellers_readings_reach_the_dso_for_its_own_agreed_trade_that_waits_for_its_word() -> None:
    """review13 F2: on a seller_vouched chain the parties agree (400) and the trade waits for the DSO's word;
    the seller's watch posts its readings (its meter shows 250) and the buyer's its own (400 taken: D2, its
    meter names its shortfall, none), and the DSO settles 250 from them, the 150 the seller's, within the
    window; the watches end once it settled."""
    readings = {"s": ramp(250.0, export=True), "b": ramp(400.0, export=False)}
    m = market({("s", "b"): 400}, {("s", "b"): (400, 400)}, readings=readings, wait_ms=120_000,
               cover=(300, 50), params={"seller_vouched": 1})  # fmt: skip
    tid = m.trade_id("s", "b")
    until = query.settlement(m.chain.state, tid)["vouch"]["until"]  # type: ignore[index]
    with served_disputes(m) as (url, settler):

        def dso_round() -> None:
            settler.look_everywhere()
            asyncio.run_coroutine_threadsafe(settler.settle_due(), settler.adapter.loop).result(10)

        async def both_watch() -> None:
            watches = [agent_settlement.counterparty_readings(agent_of(url, m, mg), T) for mg in ("s", "b")]
            await asyncio.wait_for(asyncio.gather(*watches), 10)

        with dso_rounds(dso_round):
            asyncio.run(both_watch())
    where = query.settlement(m.chain.state, tid)
    assert where is not None and where["state"] == "settled" and where["settlement"]["basis"] == "dso"
    assert where["settlement"]["delivered"] == 250 and m.chain.tip.time < until
    assert where["settlement"]["compensation"]["seller_short"] == 150
    assert where["settlement"]["compensation"]["buyer_short"] == 0
