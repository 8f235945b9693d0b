"""Sealed statements at the edge (genesis `sealed_statements`): the Settler's statements go through
`agent_settlement.SealedStatements`, which commits first (the salt kept on disk before the commitment goes
out), reveals only once the counterparty committed or the commit deadline passed, and repeats the statement
on record as the lone statement. On a real single-authority `EdgeLedger` (test_settlement.Node): both parties
agree; an agent restarted between commit and reveal reveals what it committed to, not what it meters now; a
crash between keeping the salt and publishing the commitment publishes the same commitment; a lone committer
settles on its word after the deadlines; a lost salt is a final refusal, and so is a corrupt kept file, set
aside for the operator (more in test_edge_settle_corrupt).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from test_edge_settle_both import DSO, WAIT_MS, party_settler, run_chain, settle_within, trades_of
from test_settlement import KWH, Node

from peergrid_edge.agent_settlement import SealedStatements, settle_day
from peergrid_edge.replicas import Submission
from peergrid_edge.settlement import Settler
from peergrid_ledger import query
from peergrid_ledger.contracts.market_sealed import seal_of
from peergrid_ledger.genesis import Account, Genesis, Params
from peergrid_ledger.keys import Keypair


def sealed_chain(seller: Keypair, buyer: Keypair, authority: Keypair) -> Genesis:
    return Genesis(
        chain="mgmc-sealed", time=0, authorities=(authority.public,),
        accounts=(Account(authority.public, ("mgmc",)), Account(seller.public, ("anonym",)),
                  Account(buyer.public, ("anonym",)), Account(DSO.public, ("dso",))),
        contracts=("market",),
        params=Params(credit_limit=10**12, settle_by_both=1, settle_wait_ms=WAIT_MS, settle_interval_ms=1000,
                      sealed_statements=1),
    )  # fmt: skip


def sealed_settler(
    node: Node, who: Keypair, kept: Path, metering: dict[bytes, int | None], sent: list[dict[str, Any]]
) -> tuple[Settler, SealedStatements]:
    """`party_settler` with its submit behind SealedStatements, as `agent_settlement.settler_for` wires it."""
    settler = party_settler(node, who, metering, sent, [])
    sealed = SealedStatements(
        settler._submit, lambda: node.ledger.state("mgmc"), lambda: "mgmc-sealed", who.public, kept,
        time.time, lambda: True,
    )  # fmt: skip
    settler._submit = sealed
    return settler, sealed


def kinds(sent: list[dict[str, Any]]) -> list[str]:
    return ["seal" if "seal" in b else "reveal" if "salt" in b else "statement" for b in sent]


def test_both_parties_commit_then_reveal_and_agree(tmp_path: Path) -> None:
    seller, buyer, authority = (Keypair.generate() for _ in range(3))
    sent_s: list[dict[str, Any]] = []
    sent_b: list[dict[str, Any]] = []

    async def day(node: Node) -> tuple[dict[str, Any], bytes]:
        tid = await node.agree(1, seller, buyer)
        s, _ = sealed_settler(node, seller, tmp_path / "s", {tid: KWH - 2}, sent_s)
        b, _ = sealed_settler(node, buyer, tmp_path / "b", {tid: KWH - 2}, sent_b)
        await s.settle(1, trades_of(node, 1), seller.public, 0.0)
        await b.settle(1, trades_of(node, 1), buyer.public, 0.0)
        await s.retry_due()  # the seller commits; nothing to read yet
        record = query.trade(node.ledger.state("mgmc"), tid)
        assert record is not None and set(record["seals"]) == {"seller"} and not record.get("statements")
        await asyncio.sleep(0.3)
        await s.retry_due()  # asked again before the buyer committed: it does not reveal
        assert kinds(sent_s) == ["seal"]
        await asyncio.gather(settle_within(s, 8), settle_within(b, 8))
        return query.settlement(node.ledger.state("mgmc"), tid), tid

    where, tid = run_chain(tmp_path, sealed_chain(seller, buyer, authority), authority, day)
    assert where["state"] == "settled" and where["settlement"]["basis"] == "agreed"
    assert where["settlement"]["delivered"] == KWH - 2
    assert kinds(sent_s) == ["seal", "reveal"] and kinds(sent_b) == ["seal", "reveal"]
    assert (tmp_path / "s" / f"{tid.hex()}.json").exists()


def test_an_agent_restarted_between_commit_and_reveal_reveals_what_it_committed_to(tmp_path: Path) -> None:
    seller, buyer, authority = (Keypair.generate() for _ in range(3))
    sent: list[dict[str, Any]] = []

    async def day(node: Node) -> dict[str, Any]:
        tid = await node.agree(1, seller, buyer)
        first, _ = sealed_settler(node, seller, tmp_path / "s", {tid: KWH - 5}, sent)
        await first.settle(1, trades_of(node, 1), seller.public, 0.0)
        await first.retry_due()
        assert kinds(sent) == ["seal"]
        # the restart: a new settler whose meter now reads otherwise; it picks the trade up from the chain
        again, _ = sealed_settler(node, seller, tmp_path / "s", {tid: 1}, sent)
        left = [(1, tid_, tr) for tid_, tr in trades_of(node, 1)]
        again.pick_up(left, seller.public)
        b, _ = sealed_settler(node, buyer, tmp_path / "b", {tid: KWH - 5}, [])
        await b.settle(1, trades_of(node, 1), buyer.public, 0.0)
        await asyncio.gather(settle_within(again, 8), settle_within(b, 8))
        return query.settlement(node.ledger.state("mgmc"), tid)

    where = run_chain(tmp_path, sealed_chain(seller, buyer, authority), authority, day)
    assert where["state"] == "settled" and where["settlement"]["basis"] == "agreed"
    assert where["settlement"]["delivered"] == KWH - 5
    assert kinds(sent) == ["seal", "reveal"] and sent[1]["delivered"] == KWH - 5


def test_a_crash_after_keeping_the_salt_publishes_the_same_commitment(tmp_path: Path) -> None:
    seller, buyer, authority = (Keypair.generate() for _ in range(3))

    async def day(node: Node) -> tuple[bytes, bytes]:
        tid = await node.agree(1, seller, buyer)

        async def crash(body: dict[str, Any]) -> Submission:
            raise RuntimeError("power lost before the commitment went out")

        state = lambda: node.ledger.state("mgmc")  # noqa: E731
        dead = SealedStatements(crash, state, lambda: "mgmc-sealed", seller.public, tmp_path / "s", time.time,
                                lambda: True)  # fmt: skip
        with pytest.raises(RuntimeError):
            await dead({"trade": tid, "delivered": KWH - 1})
        kept = dead.load(tid)
        assert kept is not None and len(kept["salt"]) == 32

        async def submit(body: dict[str, Any]) -> Submission:
            return await node.submit(seller, "settle", body)

        alive = SealedStatements(submit, state, lambda: "mgmc-sealed", seller.public, tmp_path / "s", time.time,
                                 lambda: True)  # fmt: skip
        assert (await alive({"trade": tid, "delivered": 3})).landed  # re-metered: still the kept figures
        record = query.trade(node.ledger.state("mgmc"), tid)
        assert record is not None
        return record["seals"]["seller"]["seal"], seal_of(
            "mgmc-sealed", tid, seller.public, KWH - 1, 0, kept["salt"]
        )

    on_chain, expected = run_chain(tmp_path, sealed_chain(seller, buyer, authority), authority, day)
    assert on_chain == expected


def test_a_lone_committer_reveals_after_the_commit_deadline_and_settles_on_its_word(tmp_path: Path) -> None:
    seller, buyer, authority = (Keypair.generate() for _ in range(3))
    sent: list[dict[str, Any]] = []

    async def day(node: Node) -> dict[str, Any]:
        tid = await node.agree(1, seller, buyer)
        s, _ = sealed_settler(node, seller, tmp_path / "s", {tid: KWH - 4}, sent)
        await s.settle(1, trades_of(node, 1), seller.public, 0.0)
        await s.retry_due()
        pending = s.book.pending[tid]
        assert pending.deadline is not None  # kept past the day's end: it waits on the commit deadline
        s.end_of_day()
        assert tid in s.book.pending
        await settle_within(s, 3 * WAIT_MS / 1000 + 5)
        return query.settlement(node.ledger.state("mgmc"), tid)

    where = run_chain(tmp_path, sealed_chain(seller, buyer, authority), authority, day)
    assert where["state"] == "settled" and where["settlement"]["basis"] == "lapsed"
    assert where["settlement"]["delivered"] == KWH - 4
    assert kinds(sent) == ["seal", "reveal", "statement"]


def test_a_lost_salt_is_a_final_refusal_and_so_is_a_corrupt_file_set_aside(tmp_path: Path) -> None:
    seller, buyer, authority = (Keypair.generate() for _ in range(3))

    async def day(node: Node) -> tuple[Submission, str]:
        tid = await node.agree(1, seller, buyer)

        async def submit(body: dict[str, Any]) -> Submission:
            return await node.submit(seller, "settle", body)

        state = lambda: node.ledger.state("mgmc")  # noqa: E731
        sealed = SealedStatements(submit, state, lambda: "mgmc-sealed", seller.public, tmp_path / "s",
                                  time.time, lambda: True)  # fmt: skip
        assert (await sealed({"trade": tid, "delivered": KWH})).landed
        path = tmp_path / "s" / f"{tid.hex()}.json"
        path.write_text('{"delivered": 5, "salt": "00"}')
        corrupt = await sealed({"trade": tid, "delivered": KWH})  # a refusal, not a raise: the others go on
        assert (
            not corrupt.landed
            and corrupt.reason.startswith("invalid:")
            and "a salt of 1 bytes" in corrupt.reason
        )
        aside = path.with_name(path.name + ".corrupt")
        assert not path.exists() and aside.read_text() == '{"delivered": 5, "salt": "00"}'
        aside.unlink()  # the operator removed it
        lost = await sealed({"trade": tid, "delivered": KWH})
        return lost, str(path.parent)

    lost, folder = run_chain(tmp_path, sealed_chain(seller, buyer, authority), authority, day)
    assert not lost.landed and lost.reason.startswith("invalid:") and folder in lost.reason


def test_the_days_end_prunes_the_kept_statements_of_settled_trades(tmp_path: Path) -> None:
    seller, buyer, authority = (Keypair.generate() for _ in range(3))

    async def day(node: Node) -> tuple[int, int, list[str]]:
        tid = await node.agree(1, seller, buyer)
        tid2 = await node.agree(2, seller, buyer)
        s, sealed = sealed_settler(node, seller, tmp_path / "s", {tid: KWH, tid2: KWH}, [])
        b, _ = sealed_settler(node, buyer, tmp_path / "b", {tid: KWH}, [])
        await s.settle(1, trades_of(node, 1), seller.public, 0.0)
        await s.settle(2, trades_of(node, 2), seller.public, 0.0)
        await b.settle(1, trades_of(node, 1), buyer.public, 0.0)
        await asyncio.gather(settle_within(s, 1), settle_within(b, 8))
        (tmp_path / "s" / "notes.json").write_text("{}")
        state = node.ledger.state("mgmc")
        assert query.settlement(state, tid)["state"] == "settled"  # type: ignore[index]
        assert query.settlement(state, tid2)["state"] == "open"  # type: ignore[index]
        first = sealed.prune(state)
        return first, sealed.prune(state), sorted(p.name for p in (tmp_path / "s").iterdir())

    first, second, left = run_chain(tmp_path, sealed_chain(seller, buyer, authority), authority, day)
    assert (first, second) == (1, 0)
    assert len(left) == 2 and "notes.json" in left  # the unsettled trade's commitment is kept


@pytest.mark.parametrize("keeps", [True, False], ids=["the agent keeps its statements", "control: none kept"])
def test_settle_day_prunes_through_the_agents_own_statements(tmp_path: Path, keeps: bool) -> None:
    """`settle_day` reaches the kept statements through the agent's public `sealed` (`agent_settlement.
    sealed_for`), not the Settler's private submit: the settled trade's file is pruned at the day's end; an
    agent that keeps none (`sealed` None: its Settler states as it is) prunes nothing."""
    seller, buyer, authority = (Keypair.generate() for _ in range(3))

    async def day(node: Node) -> tuple[list[str], list[str]]:
        tid = await node.agree(1, seller, buyer)
        s, sealed = sealed_settler(node, seller, tmp_path / "s", {tid: KWH}, [])
        b, _ = sealed_settler(node, buyer, tmp_path / "b", {tid: KWH}, [])
        await s.settle(1, trades_of(node, 1), seller.public, 0.0)
        await b.settle(1, trades_of(node, 1), buyer.public, 0.0)
        await asyncio.gather(settle_within(s, 8), settle_within(b, 8))
        assert query.settlement(node.ledger.state("mgmc"), tid)["state"] == "settled"  # type: ignore[index]
        before = sorted(p.name for p in (tmp_path / "s").iterdir())
        agent = SimpleNamespace(
            s=SimpleNamespace(interval_s=0.05, phase_timeout_s=0.05), settler=s, phase="settling",
            d=SimpleNamespace(stopping=asyncio.Event()), ledger=node.ledger, _start_of=lambda t: 0.0,
            _last_interval=lambda: 1, sealed=sealed if keeps else None,
        )  # fmt: skip
        await settle_day(agent)  # type: ignore[arg-type]
        assert agent.phase == "finished"
        return before, sorted(p.name for p in (tmp_path / "s").iterdir())

    before, after = run_chain(tmp_path, sealed_chain(seller, buyer, authority), authority, day)
    assert len(before) == 1  # its commitment's salt, kept until the trade settled
    assert after == ([] if keeps else before)
