"""review14 K3b at the edge: a sealed trade both parties committed to and neither revealed by the reveal
deadline is the DSO's to meter (`peergrid_ledger.takeup.with_dso`, the rule the DSO node takes it up by), and
the edges post their PCC readings for it (`pcc_readings.readings_needed` at the chain's time; the agent's
`agent_settlement.counterparty_readings` wakes on the block that reaches the deadline, though no state
changed). Without that post an honest seller whose salt file was lost (it cannot reveal) was settled at 0 at
the DSO's deadline though its meter shows what it sent.

On a real sealed MGMC chain (`LocalChain`, tests/dso's market) with the DSO server's disputes API served over
loopback HTTP (the real routes and `DisputeSettler`); the seller's side is the edge's own `SealedStatements`,
`MgMetering` and `counterparty_readings`; time is the chain's.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from dso.test_disputes import CLOCK, END_MS, PRICE, Market, T, market, ramp
from dso.test_disputes_node import final_blocks, served_disputes
from dso.test_disputes_unrevealed import FEED_IN, RETAIL, WAIT_MS, both_commit
from test_edge_counterparty_readings import Store
from test_edge_settle_both import run_chain
from test_edge_settle_sealed import sealed_chain
from test_settlement import Node

from peergrid_dso.dispute_node import DisputeSettler
from peergrid_edge.agent_settlement import SealedStatements, chain_ms, counterparty_readings, pick_up
from peergrid_edge.pcc_readings import MgMetering, readings_needed
from peergrid_edge.replicas import Submission
from peergrid_edge.resume import record_day
from peergrid_ledger import query
from peergrid_ledger.contracts.market_sealed import seal_of
from peergrid_ledger.keys import Keypair


def needed(m: Market, mg: str, now_ms: int | None) -> list[bytes]:
    return readings_needed(query.trades(m.chain.state, T), m.anonyms[mg].public, now_ms)


def test_both_parties_need_their_readings_posted_from_the_reveal_deadline_on() -> None:
    m, tid, due = both_commit(400.0, 400.0)
    assert [needed(m, mg, due - 1) for mg in ("s", "b")] == [[], []]  # the parties may still reveal
    assert [needed(m, mg, None) for mg in ("s", "b")] == [[], []]  # no chain time: nothing is judged
    m.pass_time(due)
    assert [needed(m, mg, due) for mg in ("s", "b")] == [[tid], [tid]]
    assert [needed(m, mg, due + 10 * WAIT_MS) for mg in ("s", "b")] == [[tid], [tid]]
    m.do(m.dso, "settle", {"trade": tid, "delivered": 400, "seller_short": 0, "buyer_short": 0})
    assert [needed(m, mg, due + 10 * WAIT_MS) for mg in ("s", "b")] == [[], []]  # the DSO settled it


def test_a_reveal_in_time_is_the_contracts_until_the_deadline_then_both_post_while_nobody_repeats() -> None:
    """One party revealed, the other kept its reveal back: the parties' until the reveal deadline; then, while
    the stater has not repeated its statement, the DSO's (`takeup` "withheld", D4: before, it stayed open for
    ever and nobody posted), so both parties post; the stater's repeat settles it and ends that."""
    m, tid, due = both_commit(400.0, 400.0)
    m.do(m.anonyms["s"], "settle", {"trade": tid, "delivered": 400, "short": 0, "salt": bytes([1]) * 32})
    assert [needed(m, mg, due - 1) for mg in ("s", "b")] == [[], []]
    m.pass_time(due + WAIT_MS)
    assert [needed(m, mg, now) for mg in ("s", "b") for now in (due, due + WAIT_MS)] == [[tid]] * 4
    # the repeat: the penalty pays
    m.do(m.anonyms["s"], "settle", {"trade": tid, "delivered": 400, "short": 0})
    assert [needed(m, mg, due + WAIT_MS) for mg in ("s", "b")] == [[], []]


def test_the_watcher_reads_the_replicas_head_time_which_an_idle_chain_moves_on(tmp_path: Path) -> None:
    """`agent_settlement.chain_ms` is the edge replica's head block time, and the replica's `wait_for` wakes on
    a block that changes nothing but the time: an idle chain's heartbeat (the engine's `heartbeat_ms`), which
    is what lets `counterparty_readings` see a reveal deadline pass (a real single-authority `EdgeLedger`)."""
    seller, buyer, authority = (Keypair.generate() for _ in range(3))

    async def idle(node: Node) -> tuple[int, int]:
        agent = SimpleNamespace(ledger=node.ledger)
        await until_true(lambda: node.ledger.replicas["mgmc"].app.tip.height >= 1, "a first block", 10)
        first = chain_ms(agent)  # type: ignore[arg-type]
        assert first == node.ledger.replicas["mgmc"].app.head().timestamp_ms
        moved = await node.ledger.wait_for("mgmc", lambda _: chain_ms(agent) > first, 10)  # type: ignore[arg-type]
        assert moved
        return first, chain_ms(agent)  # type: ignore[arg-type]

    first, later = run_chain(tmp_path, sealed_chain(seller, buyer, authority), authority, idle)
    assert later > first


class ChainView:
    """The seller's replica for `counterparty_readings`, over the market's chain: its state, head and genesis,
    and `wait_for` woken on every final block (`block`), as `replicas.EdgeLedger.wait_for` is."""

    def __init__(self, m: Market) -> None:
        self.m = m
        self.replicas = {"mgmc": SimpleNamespace(app=self)}
        self._changed = asyncio.Event()

    @property
    def tip(self) -> Any:
        return self.m.chain.tip

    @property
    def genesis(self) -> Any:
        return self.m.chain.genesis

    def state(self, role: str) -> Any:
        return self.m.chain.state

    def block(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(self, role: str, predicate: Callable[[Any], bool], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not predicate(self.state(role)):
            if time.monotonic() >= deadline:
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), deadline - time.monotonic())
            except TimeoutError:
                return bool(predicate(self.state(role)))
        return True


class DsoNode:
    """The DSO node's side: once it runs, the chain is written on its loop only (its settles, and here the
    chain's heartbeats), each final block handed to its settler (`on_commit`) and then to the seller's
    replica view, a settler pass after each; waited for from the edge's loop without blocking it."""

    def __init__(self, m: Market, settler: DisputeSettler, view: ChainView) -> None:
        self.m, self.settler, self.view, self.seen = m, settler, view, 1

    async def on_loop(self, work: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        loop = self.settler.adapter.loop
        return await asyncio.to_thread(lambda: asyncio.run_coroutine_threadsafe(work(), loop).result(10))

    async def settle(self) -> None:
        await self.on_loop(self.settler.settle_due)

    async def blocks(self, until_ms: int, step_ms: int) -> None:
        """Empty blocks every `step_ms` of chain time up to `until_ms` (an idle chain's heartbeats)."""
        at = self.m.chain.tip.time
        while at < until_ms:
            at = min(until_ms, at + step_ms)
            await self.on_loop(functools.partial(self._beat, at))
            await self.settle()
            self.view.block()
            await asyncio.sleep(0.01)

    async def _beat(self, at: int) -> None:
        self.m.pass_time(at)
        self.seen = final_blocks(self.m, self.settler, self.seen)


async def until_true(check: Callable[[], bool], what: str, within_s: float = 10.0) -> None:
    ends = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < ends, what
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("edge", ["watching", "restarted", "silent"])
def test_a_seller_that_lost_its_salt_is_settled_from_its_meter_not_at_zero(tmp_path: Path, edge: str) -> None:
    """R14 K3b's case: 400 Wh agreed, the seller's meter shows 300 left; both commit through their edges, the
    seller's salt file is then lost (it cannot reveal: a final refusal), the buyer keeps its reveal and its
    readings back. The seller's edge sees the block that reaches the reveal deadline, posts its readings, and
    the DSO settles at its deadline by "seller metered only": 300 paid, the 100 the seller's shortfall. So
    does an edge restarted after the commitments (`pick_up` watches the intervals its last run left
    unsettled). Had no edge posted (`silent`: the edge before this change), the seller would be paid 0."""
    readings = {"s": ramp(300.0, export=True), "b": ramp(400.0, export=False)}
    m = market({("s", "b"): 400}, {}, readings=readings, wait_ms=WAIT_MS, cover=(RETAIL, FEED_IN),
               params={"sealed_statements": 1})  # fmt: skip
    tid, seller = m.trade_id("s", "b"), m.anonyms["s"]

    async def submit(body: dict[str, Any]) -> Submission:
        at = max(m.now, END_MS, m.chain.tip.time + 1)
        result = m.chain.sign_and_submit(seller, "settle", body, at)
        if not result.ok:
            return Submission(False, f"{result.reason.value}: {result.detail}")
        m.chain.seal(at)
        m.now = at + 1
        return Submission(True)

    sealed = SealedStatements(submit, lambda: m.chain.state, lambda: m.chain.genesis.chain, seller.public,
                              tmp_path / "seals", lambda: m.now / 1000, lambda: True)  # fmt: skip

    async def statements() -> Submission:
        assert (await sealed({"trade": tid, "delivered": 300, "short": 100})).landed  # the seller commits
        salt = bytes([7]) * 32  # the buyer commits, and never reveals
        seal = seal_of(m.chain.genesis.chain, tid, m.anonyms["b"].public, 400, 0, salt)
        m.do(m.anonyms["b"], "settle", {"trade": tid, "seal": seal})
        (tmp_path / "seals" / f"{tid.hex()}.json").unlink()  # the salt file is lost
        return await sealed({"trade": tid, "delivered": 300, "short": 100})

    lost = asyncio.run(statements())
    assert not lost.landed and lost.reason.startswith("invalid:") and "is gone" in lost.reason
    due = int(query.settlement(m.chain.state, tid)["deadline"])  # type: ignore[index]
    before = query.balance(m.chain.state, seller.public)
    with served_disputes(m) as (url, settler):
        trades = lambda t: query.trades(m.chain.state, t)  # noqa: E731
        metering = MgMetering(Store(m, "s"), 5.0, CLOCK.commit_ms / 1000, CLOCK.window, trades,
                              seller.public, m.nodes["s"].public, url)  # fmt: skip
        view = ChainView(m)
        dso = DsoNode(m, settler, view)
        picked: list[tuple[int, bytes, dict[str, Any]]] = []
        agent: Any = SimpleNamespace(
            s=SimpleNamespace(interval_s=0.05, first_interval=T, record_file=None, dso_api_url=url),
            anonym=seller, ledger=view, _metering=lambda: metering, recalled={}, day=record_day(0.0, T),
            d=SimpleNamespace(stopping=asyncio.Event(), _sleep=asyncio.sleep),
            _start_of=lambda k: CLOCK.window(k)[0] / 1000,
            settler=SimpleNamespace(by_both=False, pick_up=lambda unsettled, me: picked.extend(unsettled)),
        )  # fmt: skip
        edge_posts = edge != "silent"

        async def day() -> None:
            watcher: asyncio.Future[Any] | None = None
            if edge == "watching":
                watcher = asyncio.ensure_future(counterparty_readings(agent, T))
            if edge == "restarted":  # the agent resumes at T + 1: its trade of T is left to settle
                pick_up(agent, T + 1)
                assert [(t, trade) for t, trade, _ in picked] == [(T, tid)] and agent.settler.by_both
                [watcher] = metering.following
            await dso.blocks(due - 1, WAIT_MS // 4)  # before the deadline: nothing to post, the DSO watches
            assert metering.counterparty_followed == set() and settler.reveals == {tid: due}
            await dso.blocks(due, 1)  # the block that reaches the deadline: no state of the trade changed
            assert settler.reveals == {} and tid in settler.pending
            if edge_posts:
                await until_true(lambda: metering.counterparty_followed == {tid}, "the edge woke for it")
                node = m.nodes["s"].public
                # all the DSO reads of it: the window's commitment intervals (`settler.reads` also holds the
                # ones a meter clock off its stamps may reach, 9e44219, which an honest edge does not post)
                read = {(node, k) for k in settler.clock.commitments(T)}
                assert read <= settler.reads[tid]
                await until_true(lambda: read <= set(settler.sealed), "the seller's readings posted")
            await dso.settle()
            waiting = settler.decision(tid)
            assert waiting is not None and waiting["outcome"] == "unresolved"
            silent = "buyer" if edge_posts else "seller"  # the side whose readings the DSO waits for
            assert waiting["until_ms"] == due + WAIT_MS and f"the {silent}'s metering" in waiting["why"]
            await dso.blocks(due + WAIT_MS, WAIT_MS // 4)  # the DSO's deadline: it settles without the buyer
            assert query.settlement(m.chain.state, tid)["state"] == "settled"  # type: ignore[index]
            if watcher is not None:  # its own trade settled: the watcher and its follower end
                await asyncio.wait_for(watcher, 10)
                # the follower saw the DSO's decision resolved (its `until` is minutes away)
                await until_true(lambda: not metering.following, "the follower ended")

        asyncio.run(day())
        rule = settler.decision(tid)["rule"]
    where = query.settlement(m.chain.state, tid)
    assert where is not None and where["settlement"]["basis"] == "dso"
    paid = query.balance(m.chain.state, seller.public) - before
    if edge_posts:
        assert (where["settlement"]["delivered"], rule) == (300, "seller metered only")
        assert paid == 300 * PRICE  # both named the 100 short: no compensation either way
    else:
        assert (where["settlement"]["delivered"], rule) == (0, "seller not metered")
        assert paid <= 0, paid
