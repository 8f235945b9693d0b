"""review15 M6: the day's end (`agent_settlement.settle_day`) waits again while a deadline moved later.

On a sealed chain a buyer that commits just before the seller's commit deadline moves the trade's deadline to
the reveal deadline; if it then never reveals, only the seller's repeated statement after that deadline
settles the trade (the contract's withheld rule). settle_day used to wait out the commit deadline once and
leave: the seller revealed, never repeated, and the trade stayed `stated` for ever, the buyer never charged.
On a real single-authority `EdgeLedger` with the real Settler behind `SealedStatements`: the late commitment
(made only once settle_day is waiting for the commit deadline) and the early one (made before the day's end)
both end `settled` on the seller's word; the loop itself, driven by a scripted book, waits once per deadline
move and ends at once when nothing is pending.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from test_edge_settle_both import run_chain, trades_of
from test_edge_settle_sealed import kinds, sealed_chain, sealed_settler
from test_settlement import KWH, Node

from peergrid_edge.agent_settlement import settle_day
from peergrid_ledger import query
from peergrid_ledger.contracts.market_sealed import seal_of
from peergrid_ledger.keys import Keypair

WAIT_MS = 3000  # settle_wait_ms: the late commitment comes half of it before the commit deadline


def day_agent(settler: Any, sealed: Any, node: Node | None = None) -> Any:
    """What settle_day reads of a MarketAgent: the day's last interval (1) began at 0 and has long ended."""
    return SimpleNamespace(
        s=SimpleNamespace(interval_s=0.05, phase_timeout_s=0.3), settler=settler, phase="settling",
        d=SimpleNamespace(stopping=asyncio.Event()), ledger=None if node is None else node.ledger,
        _start_of=lambda t: 0.0, _last_interval=lambda: 1, sealed=sealed,
    )  # fmt: skip


@pytest.mark.parametrize("late", [True, False], ids=["commits once the day's end waits", "commits before"])
def test_a_buyer_that_commits_and_never_reveals_is_settled_on_the_sellers_word(
    tmp_path: Path, late: bool
) -> None:
    seller, buyer, authority = (Keypair.generate() for _ in range(3))
    sent: list[dict[str, Any]] = []

    async def day(node: Node) -> tuple[dict[str, Any], bool, str, dict[str, Any]]:
        tid = await node.agree(1, seller, buyer)
        s, sealed = sealed_settler(node, seller, tmp_path / "s", {tid: KWH - 3}, sent)
        await s.settle(1, trades_of(node, 1), seller.public, 0.0)
        await s.retry_due()  # the seller commits: the commit deadline is set
        waiting = asyncio.Event()
        first_deadline: list[float] = []
        read = s.book.waiting_until

        def watched() -> float | None:  # settle_day reads the deadline it waits for
            deadline = read()
            if deadline is not None and not first_deadline:
                first_deadline.append(deadline)
                waiting.set()
            return deadline

        s.book.waiting_until = watched  # type: ignore[method-assign]

        async def buyer_commits() -> None:  # and never reveals
            if late:  # half a wait before the commit deadline the day's end waits for: the deadline moves
                await waiting.wait()  # by half a wait, past that single wait (its phase_timeout_s)
                await asyncio.sleep(max(0.0, first_deadline[0] - WAIT_MS / 2000 - time.time()))
            seal = seal_of("mgmc-sealed", tid, buyer.public, KWH, 0, b"\1" * 32)
            assert (await node.submit(buyer, "settle", {"trade": tid, "seal": seal})).landed

        if not late:
            await buyer_commits()
        agent = day_agent(s, sealed, node)
        await asyncio.gather(buyer_commits() if late else asyncio.sleep(0), settle_day(agent))
        record = query.trade(node.ledger.state("mgmc"), tid)
        assert record is not None
        if late:  # committed after the day's end read the commit deadline; moved it past that one wait
            moved_past = (first_deadline[0] + agent.s.phase_timeout_s) * 1000
            assert (
                record["seals"]["buyer"]["time"] < first_deadline[0] * 1000 < moved_past < record["deadline"]
            )
        where = query.settlement(node.ledger.state("mgmc"), tid)
        return where, tid in s.book.pending, agent.phase, record

    genesis = sealed_chain(seller, buyer, authority)
    genesis = replace(genesis, params=replace(genesis.params, settle_wait_ms=WAIT_MS))
    where, still_pending, phase, record = run_chain(tmp_path, genesis, authority, day)
    assert where["state"] == "settled", where
    # the seller's repeat settles it; the buyer, who committed and kept its reveal back, took all of it
    assert where["settlement"]["delivered"] == KWH, where
    assert sorted(record["seals"]) == ["buyer", "seller"] and sorted(record["statements"]) == ["seller"]
    assert kinds(sent) == ["seal", "reveal", "statement"]
    assert not still_pending and phase == "finished"


class ScriptedBook:
    """A Settler's book whose latest deadline follows a script (one value per read, the last one kept)."""

    def __init__(self, deadlines: list[float | None]) -> None:
        self.deadlines = deadlines
        self.pending: dict[bytes, Any] = {b"t": object()} if deadlines[0] is not None else {}

    def last_due(self) -> float | None:
        return None

    def waiting_until(self) -> float | None:
        deadline = self.deadlines.pop(0) if len(self.deadlines) > 1 else self.deadlines[0]
        if deadline is None:
            self.pending.clear()
        return deadline


class ScriptedSettler:
    def __init__(self, deadlines: list[float | None]) -> None:
        self.book = ScriptedBook(deadlines)
        self.worked: list[float] = []  # the `until` of each work_until after the day's own
        self.ended = 0

    async def work_until(self, until: float, while_pending: bool = False) -> None:
        assert while_pending
        self.worked.append(until)

    def end_of_day(self, first: int | None = None) -> None:
        self.ended += 1


@pytest.mark.parametrize(
    ("deadlines", "waits"),
    [
        ([None], []),  # nothing pending: the day ends at once
        ([100.0, 100.0], [100.0]),  # one deadline, not moved: waited out once
        ([100.0, 250.0, 250.0], [100.0, 250.0]),  # moved once (the second commitment): waited out again
        ([100.0, 250.0, 400.0, 400.0], [100.0, 250.0, 400.0]),  # then the vouch's window
        ([100.0, 250.0, 90.0], [100.0, 250.0]),  # an earlier one left: not waited for again
        ([100.0, 250.0, None], [100.0, 250.0]),  # settled meanwhile
    ],
)
def test_the_days_end_waits_once_per_deadline_move_and_no_more(
    deadlines: list[float | None], waits: list[float]
) -> None:
    settler = ScriptedSettler(deadlines)
    agent = day_agent(settler, None)
    asyncio.run(settle_day(agent))
    settler.worked.pop(0)  # the day's own work, until its end
    assert settler.worked == [w + agent.s.phase_timeout_s for w in waits]
    assert settler.ended == 1 and agent.phase == "finished"
