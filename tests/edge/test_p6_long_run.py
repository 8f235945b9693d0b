"""An MGMC that trades for months stays small (P6): what the trading agent keeps per interval is bounded by what
the running day and the next settlement still read, not by how long the process ran.

Two bounds, each with a test that failed before it: the DSO's verdicts (`verdict_inbox.kept`: before, one more
interval's verdict every interval of a day, and for ever once the run ended while the daemon polled on, since
the DSO publishes every interval's), and the metering's dispatch verdicts, broken counters and unprovable trades
(`MgMetering.forget` at each day's end: before, one `confirmed` entry per interval for as long as the process
ran). The run: a real MarketAgent (`agent_interval.run_interval`) on a real single-authority MGMC chain, a
24-interval day, each interval one trade with a peer on the chain (the bargaining stubbed: an offer, a bid,
the close; this MG sells in even intervals and buys in odd ones, the peer paying at once), the DSO a stand-in
that answers each equivalent injection with a final verdict, dispatch stubbed. Run as a script
(`.venv/bin/python tests/edge/test_p6_long_run.py 1000 [--trace]`) it prints the process's RSS, the
tracemalloc total and the sizes of what could grow at intervals 10, 50, 100, 200, ... (edge/README.md, "Long
runs").
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import time
import tracemalloc
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from edge_helpers import stand_in_daemon
from test_p4_days import days_chain
from test_settlement import Node

from peergrid_edge import agent_interval, agent_settlement
from peergrid_edge.config import MarketSettings
from peergrid_edge.settle_book import PendingSettle, Settlements
from peergrid_edge.trader import MarketAgent
from peergrid_edge.verdict_inbox import VERDICTS_KEPT, kept
from peergrid_ledger import query
from peergrid_ledger.keys import Keypair

N = 24  # intervals a day
PRICE, WH = 150, 2000
SCENARIO = """\
name: p6-long
feeder: ieee33
start: "2026-06-21T00:00:00Z"
speed: 1
profiles:
  sunny:
    irradiance: [[0, 0], [6, 0], [12, 950], [18, 0], [24, 0]]
    temperature: [[0, 14], [14, 28], [24, 14]]
    load: [[0, 0.6], [12, 0.8], [24, 0.6]]
market:
  interval_minutes: 60
  retail: [[0, 0.10], [6, 0.12], [12, 0.20], [18, 0.25], [24, 0.30]]
microgrids:
  - name: mg1
    bus: 18
    profile: sunny
    devices:
      - {name: pv1, kind: pv, params: {rating_w: 50000}}
      - {name: bess1, kind: battery, params: {capacity_wh: 100000, max_charge_w: 30000, max_discharge_w: 30000,
                                              soc_pct: 50}}
      - {name: load, kind: load, params: {critical_w: 20000, sheddable_w: 10000}}
  - name: mg2
    bus: 22
    profile: sunny
    devices:
      - {name: load, kind: load, params: {critical_w: 40000, sheddable_w: 10000}}
"""


class DsoStandIn:
    """The agent's ledger with the DSO chain stood in: an equivalent injection lands at once, and the DSO answers
    it with the interval's final verdict, filed as the MQTT callback files one (`MarketAgent._on_verdict`)."""

    def __init__(self, ledger: Any) -> None:
        self.ledger, self.agent = ledger, None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ledger, name)

    def next_nonce(self, role: str, sender: bytes) -> int:
        return 0 if role == "dso" else self.ledger.next_nonce(role, sender)

    def sign(self, role: str, keypair: Keypair, kind: str, body: dict[str, Any], nonce: int) -> bytes:
        if role == "dso":  # the verdict the DSO will publish on it
            verdict = {"interval": body["interval"], "iteration": 0, "final": True, "secure": True}
            return json.dumps(verdict).encode()
        return self.ledger.sign(role, keypair, kind, body, nonce)  # type: ignore[no-any-return]

    async def submit(self, role: str, raw: bytes, timeout_s: float) -> Any:
        if role == "dso":
            assert self.agent is not None
            self.agent._on_verdict("verdict", raw)
            return SimpleNamespace(landed=True, reason="", final=True)
        return await self.ledger.submit(role, raw, timeout_s)


def sizes(agent: MarketAgent) -> dict[str, int]:
    """What could grow with every interval or day in the agent and its replica (`len` of each)."""
    m, ledger = agent.metering, agent.ledger.ledger
    return {
        "verdicts": len(agent.verdicts),
        "confirmed": -1 if m is None else len(m.confirmed),
        "following": -1 if m is None else len(m.following),
        "settler pending": len(agent.settler.book.pending),
        "tasks": len(asyncio.all_tasks()),
        "block_times": len(ledger.block_times["mgmc"]),
        "landed": len(ledger._landed["mgmc"]),
        "state keys": len(ledger.replicas["mgmc"].app.state),
        "verified": len(ledger.replicas["mgmc"].app._verified),  # the ledger's caches, bounded there
        "signatures": len(ledger.replicas["mgmc"].verify._good),
    }


def long_run(
    tmp_path: Path, intervals: int, checkpoints: set[int], trace: bool = False
) -> list[dict[str, Any]]:
    """A MarketAgent's run (the module's) for `intervals` intervals from interval 0, day after day; at each of
    `checkpoints` (intervals done) a row: `sizes`, the process's RSS and (with `trace`) tracemalloc's total."""
    me, peer, authority, genesis = days_chain(tmp_path, "mgmc-p6")
    (tmp_path / "scenario.yaml").write_text(SCENARIO)
    rows: list[dict[str, Any]] = []

    async def bargain(agent: MarketAgent, t: int, *_args: Any) -> list[dict[str, Any]]:
        seller, buyer = (me, peer) if t % 2 == 0 else (peer, me)
        offer = {"interval": t, "round": 1, "price": PRICE, "quantity": WH, "clean": True}
        assert (await node.submit(seller, "offer", offer)).landed
        bid = {"interval": t, "round": 1, "demands": [{"seller": seller.public, "quantity": WH}]}
        assert (await node.submit(buyer, "bid", bid)).landed
        assert (await node.submit(seller, "trade", {"interval": t})).landed
        if buyer is peer:  # the peer pays at once, as a buyer does without settle_by_both
            for tid, tr in query.trades(node.ledger.state("mgmc"), t):
                await node.submit(peer, "settle", {"trade": tid, "delivered": int(tr["quantity"])})
        return [{"round": 1}]

    async def main() -> None:
        nonlocal node
        node = Node(tmp_path, genesis, authority)
        node.ledger.start()
        ledger = DsoStandIn(node.ledger)
        readings = SimpleNamespace(leaves=lambda c: [], is_sealed=lambda c: False)
        daemon = stand_in_daemon(ledger, "mg1", commit_interval_s=1.0, store=readings, keypair=me)
        market = MarketSettings(scenario=tmp_path / "scenario.yaml", anonym_key_file=tmp_path / "anonym.key",
                                t0=time.time() + 0.5, first_interval=0, intervals=None, days=None,
                                interval_s=0.05, phase_timeout_s=0.1, record_file=tmp_path / "market.jsonl")  # fmt: skip
        agent = MarketAgent(daemon, market)  # type: ignore[arg-type]
        ledger.agent = agent  # type: ignore[assignment]

        async def dispatch(t: int, plan: Any) -> int:  # the actuator: every plan held in full
            agent.dispatched, agent.held = ("plan", t), True
            return 1

        agent._dispatch = dispatch  # type: ignore[method-assign]
        whole = agent.run_interval
        began = time.time()

        async def run_interval(t: int) -> None:
            await whole(t)
            done = agent.done + 1
            if done in checkpoints:
                gc.collect()
                row = {"intervals": done, "wall_s": round(time.time() - began, 1), "rss_kb": rss_kb(),
                       "load": os.getloadavg()[0], **sizes(agent)}  # fmt: skip
                if trace:
                    row["traced_kb"] = tracemalloc.get_traced_memory()[0] // 1024
                rows.append(row)
            if done >= intervals:
                agent.d.stopping.set()

        agent.run_interval = run_interval  # type: ignore[method-assign]
        try:
            await agent.run()
        finally:
            node.ledger.close()

    node: Any = None
    stubs = agent_interval.bargain, agent_interval.standing
    agent_interval.bargain = bargain  # type: ignore[assignment]
    agent_interval.standing = lambda agent, participant, t: participant  # type: ignore[assignment]
    try:
        asyncio.run(main())
    finally:
        agent_interval.bargain, agent_interval.standing = stubs
    return rows


def rss_kb() -> int:
    """The process's resident set (kB, /proc/self/status)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_two_days_and_more_keep_no_more_than_the_running_day(tmp_path: Path) -> None:
    """After 2 days and 4 intervals (52), the agent holds the dispatch verdicts of the running day and of no day
    before it (before: all 52), and no more than `VERDICTS_KEPT` DSO verdicts (before: up to a day's, pruned
    at each day's start only)."""
    (row,) = long_run(tmp_path, 2 * N + 4, {2 * N + 4})
    assert row["verdicts"] <= VERDICTS_KEPT
    assert row["confirmed"] <= N + 4  # the day before's given up at this day's end of it; was 52
    assert row["settler pending"] == 0 and row["following"] == 0
    lines = [json.loads(line) for line in (tmp_path / "market.jsonl").read_text().splitlines()]
    traded = [doc for doc in lines if "trades" in doc]
    assert [doc["interval"] for doc in traded] == list(range(2 * N + 4))  # every interval traded
    assert all(len(doc["trades"]) == 1 and doc["plan_confirmed"] for doc in traded)


def test_the_verdict_inbox_keeps_the_newest_intervals_and_none_before_the_one_in_hand() -> None:
    """The DSO publishes a verdict every interval; an agent whose run ended (`working_on` None: the default
    `market.days: 1` trades one day and the daemon polls on) filed every one before, for as long as it ran."""
    agent = object.__new__(MarketAgent)
    agent.verdicts, agent._verdict_event = {}, asyncio.Event()
    for t in range(1000):  # the run ended: nobody waits for them
        agent._on_verdict("v", json.dumps({"interval": t, "iteration": 0, "final": True}).encode())
    assert sorted(agent.verdicts) == list(range(1000 - VERDICTS_KEPT, 1000))  # was all 1000
    agent.working_on = 2000  # at work on 2000: 1999 (`previous_cleared`), 2000 and later ones are read
    for t in (1998, 1999, 2000, 2001):
        agent._on_verdict("v", json.dumps({"interval": t, "iteration": 1, "final": False}).encode())
    assert sorted(agent.verdicts) == [1999, 2000, 2001]
    assert agent.verdicts[2000]["iteration"] == 1  # the newest iteration per interval, as before
    assert kept({1: {}, 2: {}}, None) == {1: {}, 2: {}}


def test_the_metering_forgets_the_ended_days_but_what_the_settler_still_states() -> None:
    """`agent_settlement.end_days_before`, between days: the metering's dispatch verdicts and broken counters of
    the days before go, but those of a trade the Settler still holds (a statement waiting for its
    counterparty's deadline) stay, and so do the new day's."""
    from peergrid_edge.pcc_readings import MgMetering

    metering = MgMetering(SimpleNamespace(), 0.0, 1.0, lambda t: (0, 1), lambda t: [], b"me", b"node", None)
    metering.confirmed.update({t: True for t in range(100)})
    metering.broken.update({(t, "seller"): "broken" for t in range(100)})
    metering.unprovable.update({bytes([t]): "unprovable" for t in range(100)})
    book = Settlements(0.1, 1.0)
    waiting = PendingSettle(30, bytes([30]), 2000, party="seller", deadline=time.time() + 60)
    book.add(waiting, time.time() + 60)
    settler = SimpleNamespace(
        book=book, end_of_day=lambda first: book.give_up("the day ended", time.time(), first)
    )
    agent = SimpleNamespace(settler=settler, metering=metering, sealed=None)
    agent_settlement.end_days_before(agent, 96)  # type: ignore[arg-type]
    assert sorted(metering.confirmed) == [30, 96, 97, 98, 99]  # was 0-99
    assert sorted(t for t, _ in metering.broken) == [30, 96, 97, 98, 99]
    assert list(metering.unprovable) == [bytes([30])]
    book.pending.clear()
    agent_settlement.end_days_before(agent)  # type: ignore[arg-type]  # the run's end: nothing is kept
    assert metering.confirmed == {} and metering.broken == {} and metering.unprovable == {}


if __name__ == "__main__":  # the measurement (edge/README.md, "Long runs")
    import tempfile

    count, trace = int(sys.argv[1]), "--trace" in sys.argv
    if trace:
        tracemalloc.start()
    marks = {c for c in (10, 50, 100, 200, 400, 600, 800, 1000, 1500, 2000, 3000, 5000) if c <= count}
    with tempfile.TemporaryDirectory() as folder:
        for measured in long_run(Path(folder), count, marks | {count}, trace):
            print(json.dumps(measured), flush=True)
