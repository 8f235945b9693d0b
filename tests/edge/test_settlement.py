"""Settling purchases: a settle the chain refuses for a reason another party cures later is retried until it
settles; a permanent refusal ends it; nothing is ever paid twice.

The integration test runs a real single-authority `EdgeLedger` (its node key is the only authority, so it
finalises alone, no broker): the refusal comes from the real mempool and contract, not from a script.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from edge_helpers import stand_in_daemon
from hypothesis import given
from hypothesis import strategies as st

from peergrid_edge.link import MqttLink
from peergrid_edge.replicas import LANDED, ChainSpec, EdgeLedger, Submission
from peergrid_edge.settle_book import PendingSettle, Settlements, judge, permanent, unsettled_purchases
from peergrid_edge.settlement import Settler
from peergrid_ledger import keyspace as ks
from peergrid_ledger import query
from peergrid_ledger.contracts import market as contract
from peergrid_ledger.genesis import Account, Genesis, Params
from peergrid_ledger.keys import Keypair

PRICE, KWH = 200, 3000  # micro-units per Wh, Wh: a trade worth 600,000


def standing(
    state: str, statements: dict[str, Any] | None = None, deadline: int | None = None
) -> dict[str, Any]:
    """A trade's `query.settlement` as the chain gives it."""
    paid = {"amount": 1} if state == "settled" else None
    return {"state": state, "statements": statements or {}, "deadline": deadline, "settlement": paid}


OPEN = standing("open")


def test_refusal_reasons_are_told_apart() -> None:
    assert not permanent("insufficient-funds: buyer cannot pay 600000")
    assert not permanent("time-out-of-bounds: too old to land (time 5)")
    assert not permanent("nonce-taken: nonce 4 went to a move")
    assert not permanent("not final within 5 s")
    assert not permanent("mempool full")
    assert permanent("already-settled: trade already settled")
    assert permanent("closed: trade was superseded when its interval was reopened")
    assert permanent("forbidden: not a party to the trade")
    assert permanent("unknown sender") and permanent("sender revoked")


def test_the_chain_record_decides_before_the_attempt() -> None:
    unsettled = OPEN
    assert judge(unsettled, None) == "retry"  # on chain, unpaid: send it
    assert judge(standing("settled"), None) == "settled"  # paid (by the seller, or an earlier try)
    assert judge(standing("superseded"), None) == "superseded"
    assert judge(None, None) == "permanent"  # no such trade
    refused = Submission(False, "insufficient-funds: buyer cannot pay 1")
    assert judge(unsettled, refused) == "retry"
    # a refusal while the chain shows it paid (an earlier, timed-out signing landed): settled, not retried
    assert judge(standing("settled"), refused) == "settled"
    assert judge(unsettled, Submission(False, "already-settled: trade already settled")) == "permanent"
    assert judge(unsettled, LANDED) == "settled"


@given(st.floats(0.01, 100), st.floats(0.01, 1000), st.integers(1, 60))
def test_back_off_starts_at_first_wait_doubles_and_is_capped(first: float, cap: float, attempts: int) -> None:
    book = Settlements(first, cap)
    assert book.wait_after(1) == pytest.approx(first)
    assert book.wait_after(attempts) <= max(first, cap) + 1e-9
    assert book.wait_after(attempts + 1) >= book.wait_after(attempts)
    assert book.wait_after(attempts + 1) in (pytest.approx(2 * book.wait_after(attempts)), max(first, cap))


# --- against a real replica ------------------------------------------------------------------------------


class Node:
    """One MGMC's node with a real MGMC-chain replica, alone on its chain (it is the only authority)."""

    def __init__(self, tmp_path: Path, genesis: Genesis, key: Keypair) -> None:
        path = tmp_path / "mgmc-genesis.json"
        path.write_text(json.dumps(genesis.to_json()))
        spec = ChainSpec(name="mgmc", genesis=path, data_dir=tmp_path / "mgmc.db", block_period_ms=50,
                         round_timeout_ms=500, wal_fsync=False)  # fmt: skip
        self.link = MqttLink("test", "127.0.0.1", 9)  # never started: gossip is dropped, the replica is alone
        self.ledger = EdgeLedger(key, self.link, "feeder", [spec])
        self.submitted: list[dict[str, Any]] = []

    async def submit(self, who: Keypair, kind: str, body: dict[str, Any]) -> Submission:
        raw = self.ledger.sign("mgmc", who, kind, body, self.ledger.next_nonce("mgmc", who.public))
        return await self.ledger.submit("mgmc", raw, 10.0)

    def balance(self, who: Keypair) -> int:
        return ks.decode_int(self.ledger.state("mgmc").get(ks.balance(who.public)))

    def settler(self, buyer: Keypair, records: list[dict[str, Any]], first_wait_s: float = 0.2) -> Settler:
        async def settle(body: dict[str, Any]) -> Submission:
            self.submitted.append(body)
            return await self.submit(buyer, "settle", body)

        return Settler(
            settle, lambda tid: query.settlement(self.ledger.state("mgmc"), tid), time.time, asyncio.sleep,
            lambda: False, records.append, Settlements(first_wait_s, 1.0),
        )  # fmt: skip

    async def agree(self, t: int, seller: Keypair, buyer: Keypair) -> bytes:
        offer = {"interval": t, "round": 1, "price": PRICE, "quantity": KWH, "clean": True}
        assert (await self.submit(seller, "offer", offer)).landed
        demands = [{"seller": seller.public, "quantity": KWH}]
        assert (await self.submit(buyer, "bid", {"interval": t, "round": 1, "demands": demands})).landed
        assert (await self.submit(seller, "trade", {"interval": t})).landed
        ((tid, _),) = [(tid, tr) for tid, tr in contract_trades(self, t)]
        return tid


def contract_trades(node: Node, t: int) -> list[tuple[bytes, dict[str, Any]]]:
    from peergrid_ledger import query

    return query.trades(node.ledger.state("mgmc"), t)


def chain_of(seller: Keypair, buyer: Keypair, third: Keypair, authority: Keypair) -> Genesis:
    """The buyer starts with nothing and no credit: it can pay only once its own sale is paid for."""
    return Genesis(
        chain="mgmc-settle", time=0, authorities=(authority.public,),
        accounts=(Account(authority.public, ("mgmc",)), Account(seller.public, ("anonym",)),
                  Account(buyer.public, ("anonym",)), Account(third.public, ("anonym",), balance=10**9)),
        contracts=("market",), params=Params(credit_limit=0),
    )  # fmt: skip


def test_a_settle_refused_for_funds_is_retried_until_the_buyers_income_lands_and_never_paid_twice(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seller, buyer, third, authority = (Keypair.generate() for _ in range(4))
    records: list[dict[str, Any]] = []

    async def day() -> None:
        node = Node(tmp_path, chain_of(seller, buyer, third, authority), authority)
        node.ledger.start()
        try:
            bought = await node.agree(1, seller, buyer)  # the buyer owes 600,000 and holds 0
            sold = await node.agree(2, buyer, third)  # ... and is owed 600,000 by `third`
            state = node.ledger.state("mgmc")
            assert [tid for _, tid, _ in unsettled_purchases(state, buyer.public, range(0, 3))] == [bought]
            settler = node.settler(buyer, records)
            with caplog.at_level(logging.INFO, logger="peergrid.edge.trader"):
                assert await settler.settle(1, [(bought, contract.trade(state, bought))]) == 0
                assert list(settler.book.pending) == [bought]  # refused, kept for a retry
                assert "insufficient-funds" in settler.book.pending[bought].reason
                await settler.work_until(time.time() + 1.5)  # retried with back-off: still refused
                assert settler.book.pending[bought].attempts >= 2
                # `third` pays the buyer: the reason is cured by another party
                assert (await node.submit(third, "settle", {"trade": sold, "delivered": KWH})).landed
                await settler.work_until(time.time() + 10, while_pending=True)
            assert not settler.book.pending
            assert contract.trade(node.ledger.state("mgmc"), bought)["settlement"] is not None
            assert node.balance(seller) == PRICE * KWH and node.balance(buyer) == 0
            assert "retrying the settlement" in caplog.text and "insufficient-funds" in caplog.text
            assert records[-1]["settlement"]["settled"] and records[-1]["interval"] == 1
            # never twice: the agent reads the trade settled and sends nothing; the contract refuses a second
            sent = len(node.submitted)
            assert await settler.settle(1, [(bought, {"quantity": KWH})]) == 1  # settled: on chain already
            assert len(node.submitted) == sent
            again = await node.submit(buyer, "settle", {"trade": bought, "delivered": KWH})
            assert not again.landed and again.reason.startswith("already-settled")
            assert node.balance(seller) == PRICE * KWH and node.balance(buyer) == 0
        finally:
            node.ledger.close()

    asyncio.run(day())


def test_a_permanent_refusal_ends_at_once_and_the_day_end_gives_up_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outcomes = {b"a" * 32: Submission(False, "forbidden: not a party to the trade"),
                b"b" * 32: Submission(False, "insufficient-funds: buyer cannot pay 1")}  # fmt: skip
    sent: list[bytes] = []
    records: list[dict[str, Any]] = []

    async def submit(body: dict[str, Any]) -> Submission:
        sent.append(body["trade"])
        return outcomes[body["trade"]]

    settler = Settler(
        submit, lambda tid: OPEN if tid != b"c" * 32 else standing("superseded"), time.time,
        asyncio.sleep, lambda: False, records.append, Settlements(0.01, 0.02),
    )  # fmt: skip
    trades = [(tid, {"quantity": 5}) for tid in (b"a" * 32, b"b" * 32, b"c" * 32)]
    assert asyncio.run(settler.settle(7, trades)) == 0
    assert sent == [b"a" * 32, b"b" * 32]  # a superseded trade is never sent
    assert list(settler.book.pending) == [b"b" * 32]
    asyncio.run(settler.work_until(time.time() + 0.5))
    assert sent.count(b"a" * 32) == 1 and sent.count(b"b" * 32) > 2  # only the curable one is retried
    with caplog.at_level(logging.WARNING, logger="peergrid.edge.trader"):
        ended = settler.end_of_day()
    assert [e.pending.trade for e in ended] == [b"b" * 32] and not settler.book.pending
    assert "the trading day ended" in caplog.text
    reasons = {bytes.fromhex(r["settlement"]["trade"]): r["settlement"] for r in records}
    assert reasons[b"a" * 32]["reason"].startswith("forbidden") and not reasons[b"a" * 32]["settled"]
    assert reasons[b"c" * 32]["reason"] == "superseded"
    assert "insufficient-funds" in reasons[b"b" * 32]["reason"] and not reasons[b"b" * 32]["settled"]


def test_a_stopping_agent_retries_nothing() -> None:
    sent: list[bytes] = []

    async def submit(body: dict[str, Any]) -> Submission:
        sent.append(body["trade"])
        return Submission(False, "insufficient-funds: no")

    settler = Settler(submit, lambda tid: OPEN, time.time, asyncio.sleep, lambda: True,
                      lambda doc: None, Settlements(0.0, 0.0))  # fmt: skip
    settler.book.add(PendingSettle(1, b"a" * 32, 5), 0.0)
    asyncio.run(settler.work_until(time.time() + 1.0, while_pending=True))
    assert sent == []


def test_a_restarted_agent_settles_what_its_last_run_left_unpaid_once_the_buyer_can_pay(
    tmp_path: Path,
) -> None:
    """The agent itself (its run loop, not only the settler): after a restart at interval 5, which its last run
    closed but never settled (refused: no funds), it picks the purchase up from the chain and retries it
    until its own income lands, before the day ends."""

    from peergrid_edge.config import MarketSettings
    from peergrid_edge.trader import MarketAgent
    from peergrid_ledger.keys import write_keyfile

    seller, buyer, third, authority = (Keypair.generate() for _ in range(4))
    write_keyfile(tmp_path / "anonym.key", buyer)
    record_file = tmp_path / "market.jsonl"
    scenario = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"

    async def restart() -> tuple[MarketAgent, Node, bytes]:
        node = Node(tmp_path, chain_of(seller, buyer, third, authority), authority)
        node.ledger.start()
        try:
            sold = await node.agree(4, buyer, third)
            bought = await node.agree(5, seller, buyer)
            refused = await node.submit(buyer, "settle", {"trade": bought, "delivered": KWH})
            assert refused.reason.startswith("insufficient-funds")  # the last run's attempt
            settings = MarketSettings(scenario=scenario, anonym_key_file=tmp_path / "anonym.key",
                                      t0=time.time() - 100, interval_s=5.0, first_interval=5, intervals=1,
                                      phase_timeout_s=0.2, record_file=record_file)  # fmt: skip
            daemon = stand_in_daemon(node.ledger)
            agent = MarketAgent(daemon, settings)  # type: ignore[arg-type]

            async def income_lands() -> None:  # once the restarted agent was refused for funds itself
                while not any(p.attempts for p in agent.settler.book.pending.values()):
                    await asyncio.sleep(0.05)
                assert (await node.submit(third, "settle", {"trade": sold, "delivered": KWH})).landed

            await asyncio.gather(agent.run(), income_lands())
            return agent, node, bought
        finally:
            node.ledger.close()

    agent, node, bought = asyncio.run(restart())
    assert agent.phase == "finished" and not agent.settler.book.pending
    settled = contract.trade(node.ledger.state("mgmc"), bought)
    assert settled is not None and settled["settlement"] is not None
    [record] = [json.loads(line) for line in record_file.read_text().splitlines()]
    assert (
        record["interval"] == 5 and record["settlement"]["settled"] and record["settlement"]["attempts"] >= 2
    )


class ModelChain:
    """The settle rule of the market contract in miniature: a trade pays once, if not superseded, from a
    balance that may not go below zero. `lost_verdicts` makes an attempt land but report a timeout."""

    def __init__(self, amounts: dict[bytes, int], superseded: set[bytes], lost_verdicts: set[int]) -> None:
        self.amounts, self.superseded, self.lost_verdicts = amounts, superseded, lost_verdicts
        self.balance, self.paid, self.sent = 0, {tid: 0 for tid in amounts}, 0

    def record(self, tid: bytes) -> dict[str, Any]:
        if tid in self.superseded:
            return standing("superseded")
        return standing("settled" if self.paid[tid] else "open")

    async def submit(self, body: dict[str, Any]) -> Submission:
        tid, self.sent = body["trade"], self.sent + 1
        if tid in self.superseded:
            return Submission(False, "closed: trade was superseded")
        if self.paid[tid]:
            return Submission(False, "already-settled: trade already settled")
        if self.balance < self.amounts[tid]:
            return Submission(False, "insufficient-funds: buyer cannot pay")
        self.balance -= self.amounts[tid]
        self.paid[tid] += 1
        if self.sent in self.lost_verdicts:
            return Submission(False, "not final within 5 s", final=False)
        return LANDED


@given(
    st.lists(st.integers(1, 50), min_size=1, max_size=5),
    st.sets(st.integers(0, 4), max_size=2),
    st.sets(st.integers(1, 30), max_size=6),
    st.lists(st.integers(0, 60), max_size=12),
)
def test_whatever_the_chain_says_nothing_is_paid_twice_and_every_payable_trade_is_paid(
    amounts: list[int], superseded: set[int], lost: set[int], incomes: list[int]
) -> None:
    tids = [bytes([i]) * 32 for i in range(len(amounts))]
    chain = ModelChain(
        dict(zip(tids, amounts, strict=True)), {tids[i] for i in superseded if i < len(tids)}, lost
    )
    clock = [0.0]

    async def sleep(seconds: float) -> None:
        clock[0] += seconds

    records: list[dict[str, Any]] = []
    settler = Settler(chain.submit, chain.record, lambda: clock[0], sleep, lambda: False, records.append,
                      Settlements(1.0, 8.0))  # fmt: skip

    async def day() -> None:
        await settler.settle(1, [(tid, {"quantity": 1}) for tid in tids])
        for income in incomes:  # between the agent's idle spells, others pay it
            chain.balance += income
            await settler.work_until(clock[0] + 10.0)
        chain.balance += sum(amounts)  # at last it can pay everything
        await settler.work_until(clock[0] + 100.0, while_pending=True)

    asyncio.run(day())
    assert all(n <= 1 for n in chain.paid.values())  # never twice, even after a lost verdict
    assert chain.balance >= 0
    for tid in tids:  # every trade that could be paid was, and only superseded ones were given up
        assert chain.paid[tid] == (tid not in chain.superseded)
    assert not settler.book.pending
    ended = {bytes.fromhex(r["settlement"]["trade"]): r["settlement"] for r in records}
    assert all(not ended[tid]["settled"] for tid in chain.superseded)
