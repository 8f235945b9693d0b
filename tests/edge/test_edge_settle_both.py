"""Settling on both parties' statements (genesis `settle_by_both`), the edge's side: each MGMC states what it
metered for a trade it bought or sold, and the chain pays once when they agree, on the lone statement after
the deadline when the counterparty stays silent, or marks the trade disputed (no retry: the DSO settles it).

The chain tests run a real single-authority `EdgeLedger` (`test_settlement.Node`): the statements, the
deadline and the refusals come from the real mempool and market contract, not from a script. The PCC
metering is tested from reading leaves as the edge stores them, against the DSO's own reading of them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import threading
import time
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from dso.test_disputes import CLOCK, T, market, sealed_buckets
from edge_helpers import stand_in_daemon
from hypothesis import event, given, settings
from hypothesis import strategies as st
from test_settlement import KWH, PRICE, Node

from peergrid_dso.disputes import Unresolved, Vouched, resolve
from peergrid_edge.commitments import reading_leaf
from peergrid_edge.dispute_readings import DisputeReadings, readings_bodies, readings_missing
from peergrid_edge.pcc_readings import MgMetering, statement_wh
from peergrid_edge.replicas import Submission
from peergrid_edge.settle_book import PendingSettle, Settlements, judge, unsettled_trades
from peergrid_edge.settlement import Settler
from peergrid_ledger import query
from peergrid_ledger.codec import encode
from peergrid_ledger.genesis import Account, Genesis, Params
from peergrid_ledger.keys import Keypair
from peergrid_ledger.metering import COUNTER, Unmetered, commitment_intervals, metered, trade_share

WAIT_MS = 1500  # the genesis settle_wait_ms: a silent counterparty's window
DSO = Keypair.generate()


def both_chain(
    seller: Keypair, buyer: Keypair, authority: Keypair, tolerance: int = 0, credit: int = 10**12
) -> Genesis:
    return Genesis(
        chain="mgmc-both", time=0, authorities=(authority.public,),
        accounts=(Account(authority.public, ("mgmc",)), Account(seller.public, ("anonym",)),
                  Account(buyer.public, ("anonym",)),
                  Account(DSO.public, ("dso",))),  # it settles disputes (a settle_by_both genesis needs it)
        contracts=("market",),
        params=Params(credit_limit=credit, settle_by_both=1, settle_tolerance_wh=tolerance, settle_wait_ms=WAIT_MS,
                      settle_interval_ms=1000),  # the clock it needs: 1-s intervals from 1970, all long ended
    )  # fmt: skip


def party_settler(
    node: Node, who: Keypair, metering: dict[bytes, int | None] | None, sent: list[dict[str, Any]],
    disputes: list[PendingSettle], records: list[dict[str, Any]] | None = None,
) -> Settler:  # fmt: skip
    """One MGMC's settler on the shared chain, stating as `who`; `metering`: what its meter gives per trade."""

    async def submit(body: dict[str, Any]) -> Submission:
        sent.append(body)
        return await node.submit(who, "settle", body)

    def meter(p: PendingSettle) -> int | None:
        return None if metering is None else metering.get(p.trade)

    return Settler(
        submit, lambda tid: query.settlement(node.ledger.state("mgmc"), tid), time.time, asyncio.sleep,
        lambda: False, (records if records is not None else []).append, Settlements(0.2, 1.0), by_both=True,
        metering=meter, on_dispute=disputes.append,
    )  # fmt: skip


async def settle_within(settler: Settler, seconds: float) -> None:
    """`settler.work_until(now + seconds, while_pending=True)`, returning as soon as nothing is left pending.

    The Settler checks `while_pending` only before it sleeps, and with nothing due it sleeps to the deadline:
    called once with the whole bound, every settled test waited its full 5 or 10 s. Driven in short slices,
    the same retries run at the same due times and the test ends when the work does; `seconds` stays the
    bound a stuck settlement is given (the caller's asserts on `book.pending` then fail)."""
    deadline = time.time() + seconds
    while settler.book.pending and time.time() < deadline:
        await settler.work_until(min(deadline, time.time() + 0.05), while_pending=True)


def trades_of(node: Node, t: int) -> list[tuple[bytes, dict[str, Any]]]:
    return query.trades(node.ledger.state("mgmc"), t)


def run_chain(tmp_path: Path, genesis: Genesis, authority: Keypair, body: Any) -> Any:
    async def main() -> Any:
        node = Node(tmp_path, genesis, authority)
        node.ledger.start()
        try:
            return await body(node)
        finally:
            node.ledger.close()

    return asyncio.run(main())


def test_both_parties_state_agree_and_the_buyer_pays_once_the_lower(tmp_path: Path) -> None:
    seller, buyer, authority = (Keypair.generate() for _ in range(3))
    sent_s: list[dict[str, Any]] = []
    sent_b: list[dict[str, Any]] = []
    disputes: list[PendingSettle] = []

    async def day(node: Node) -> tuple[dict[str, Any], Settler, Settler]:
        tid = await node.agree(1, seller, buyer)
        s = party_settler(node, seller, {tid: KWH - 2}, sent_s, disputes)
        b = party_settler(node, buyer, {tid: KWH - 3}, sent_b, disputes)
        later = time.time() + 0.3  # the interval's end and a meter read after it
        assert await s.settle(1, trades_of(node, 1), seller.public, later) == 0  # nothing stated before it
        assert await b.settle(1, trades_of(node, 1), buyer.public, later) == 0
        assert (
            not sent_s and not sent_b and query.settlement(node.ledger.state("mgmc"), tid)["state"] == "open"
        )
        await asyncio.sleep(0.35)
        await s.retry_due()  # the seller states first: recorded, it waits
        assert query.settlement(node.ledger.state("mgmc"), tid)["state"] == "stated"
        assert list(s.book.pending) == [tid] and s.book.pending[tid].deadline is not None
        await b.retry_due()  # the buyer's agrees: paid
        assert not b.book.pending
        await settle_within(s, 5)  # the seller reads it paid, sends nothing
        return query.settlement(node.ledger.state("mgmc"), tid), s, b

    # tolerance 1 Wh: the two meters differ by one unit
    where, s, b = run_chain(tmp_path, both_chain(seller, buyer, authority, tolerance=1), authority, day)
    assert where["state"] == "settled" and where["settlement"]["basis"] == "agreed"
    assert where["settlement"]["delivered"] == KWH - 3 and where["settlement"]["amount"] == PRICE * (KWH - 3)
    assert [m["delivered"] for m in sent_s] == [KWH - 2] and [m["delivered"] for m in sent_b] == [KWH - 3]
    assert not s.book.pending and not b.book.pending and not disputes


def test_a_silent_counterparty_the_statement_settles_after_the_wait(tmp_path: Path) -> None:
    seller, buyer, authority = (Keypair.generate() for _ in range(3))
    sent: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []

    async def day(node: Node) -> dict[str, Any]:
        tid = await node.agree(1, seller, buyer)
        s = party_settler(node, seller, {tid: KWH - 100}, sent, [], records)
        await s.settle(1, trades_of(node, 1), seller.public, 0.0)
        stated = time.time()
        await settle_within(s, 10)
        assert not s.book.pending
        assert time.time() - stated >= WAIT_MS / 1000 - 0.3  # it waited for the buyer's window
        return query.settlement(node.ledger.state("mgmc"), tid)

    where = run_chain(tmp_path, both_chain(seller, buyer, authority), authority, day)
    assert where["state"] == "settled" and where["settlement"]["basis"] == "lapsed"
    assert where["settlement"]["delivered"] == KWH - 100
    assert [m["delivered"] for m in sent] == [
        KWH - 100,
        KWH - 100,
    ]  # the same body, once more at the deadline
    assert records[-1]["settlement"]["settled"] and records[-1]["settlement"]["party"] == "seller"


def test_a_disagreement_is_disputed_and_neither_party_retries(tmp_path: Path) -> None:
    seller, buyer, authority = (Keypair.generate() for _ in range(3))
    sent_s: list[dict[str, Any]] = []
    sent_b: list[dict[str, Any]] = []
    disputes: list[PendingSettle] = []
    records: list[dict[str, Any]] = []

    async def day(node: Node) -> dict[str, Any]:
        tid = await node.agree(1, seller, buyer)
        s = party_settler(node, seller, {tid: KWH}, sent_s, disputes, records)
        b = party_settler(node, buyer, {tid: KWH - 500}, sent_b, disputes, records)
        await s.settle(1, trades_of(node, 1), seller.public, 0.0)
        await s.retry_due()
        await b.settle(1, trades_of(node, 1), buyer.public, 0.0)
        await settle_within(b, 5)
        await settle_within(s, 5)  # the seller reads the dispute: ends
        assert not s.book.pending and not b.book.pending
        await asyncio.sleep(WAIT_MS / 1000 + 0.2)  # past the deadline: still nothing more is sent
        await s.work_until(time.time() + 0.5)
        return query.settlement(node.ledger.state("mgmc"), tid)

    where = run_chain(tmp_path, both_chain(seller, buyer, authority), authority, day)
    assert where["state"] == "disputed" and where["settlement"] is None
    assert len(sent_s) == 1 and len(sent_b) == 1
    assert sorted(p.party for p in disputes) == ["buyer", "seller"]
    assert all(not r["settlement"]["settled"] and "disputed" in r["settlement"]["reason"] for r in records)


def test_a_restart_mid_settlement_resumes_from_the_chain(tmp_path: Path) -> None:
    """The seller stated, then its agent restarted: the new run finds the trade on chain (a sale, with
    settle_by_both), reads its own statement back instead of metering again, waits out the buyer's window and
    settles on that same statement."""
    seller, buyer, authority = (Keypair.generate() for _ in range(3))
    sent: list[dict[str, Any]] = []

    async def day(node: Node) -> tuple[dict[str, Any], Settler]:
        tid = await node.agree(1, seller, buyer)
        first = party_settler(node, seller, {tid: KWH - 7}, sent, [])
        await first.settle(1, trades_of(node, 1), seller.public, 0.0)
        await first.retry_due()
        assert query.settlement(node.ledger.state("mgmc"), tid)["state"] == "stated"
        # the restart: a new settler whose meter now reads differently (readings pruned, say): never stated
        again = party_settler(node, seller, {tid: 1}, sent, [])
        state = node.ledger.state("mgmc")
        assert unsettled_trades(state, seller.public, range(0, 3)) == []  # purchases only: it sold
        left = unsettled_trades(state, seller.public, range(0, 3), sales=True)
        assert [tid_ for _, tid_, _ in left] == [tid]
        again.pick_up(left, seller.public)
        await settle_within(again, 10)
        return query.settlement(node.ledger.state("mgmc"), tid), again

    where, again = run_chain(tmp_path, both_chain(seller, buyer, authority), authority, day)
    assert where["state"] == "settled" and where["settlement"]["basis"] == "lapsed"
    assert where["settlement"]["delivered"] == KWH - 7
    assert [m["delivered"] for m in sent] == [KWH - 7, KWH - 7] and not again.book.pending


def test_the_second_statement_refused_for_funds_is_sent_again_until_it_lands(tmp_path: Path) -> None:
    seller, buyer, authority = (Keypair.generate() for _ in range(3))
    sent: list[dict[str, Any]] = []
    funded = threading.Event()

    async def day(node: Node) -> dict[str, Any]:
        tid = await node.agree(1, seller, buyer)
        assert (await node.submit(seller, "settle", {"trade": tid, "delivered": KWH})).landed  # the seller's
        b = party_settler(node, buyer, {tid: KWH}, sent, [])
        await b.settle(1, trades_of(node, 1), buyer.public, 0.0)
        await b.retry_due()
        assert "insufficient-funds" in b.book.pending[tid].reason  # refused, not recorded, kept
        assert "buyer" not in query.settlement(node.ledger.state("mgmc"), tid)["statements"]
        funded.set()
        return query.settlement(node.ledger.state("mgmc"), tid)

    where = run_chain(tmp_path, both_chain(seller, buyer, authority, credit=0), authority, day)
    assert funded.is_set() and where["state"] == "stated" and len(sent) == 1
    assert judge(where, Submission(False, "insufficient-funds: buyer cannot pay"), "buyer", True) == "retry"


def test_nothing_is_stated_before_the_meter_was_read_after_the_interval() -> None:
    sent: list[dict[str, Any]] = []
    readings: dict[bytes, int | None] = {b"t" * 32: None}

    on_chain: dict[str, Any] = {"state": "open", "statements": {}, "deadline": None, "settlement": None}

    async def submit(body: dict[str, Any]) -> Submission:
        sent.append(body)
        on_chain.update(state="stated", statements={"buyer": {"delivered": body["delivered"]}},
                        deadline=round(time.time() * 1000) + 60_000)  # fmt: skip
        return Submission(True)

    settler = Settler(
        submit, lambda tid: on_chain, time.time, asyncio.sleep, lambda: False, lambda doc: None,
        Settlements(0.05, 0.05), by_both=True, metering=lambda p: readings[p.trade],
    )  # fmt: skip

    async def day() -> None:
        await settler.settle(
            3, [(b"t" * 32, {"buyer": b"b", "seller": b"s", "quantity": 9})], b"b", time.time() + 0.2
        )
        await settler.retry_due()
        assert not sent  # before `not_before`
        await settler.work_until(time.time() + 0.4)
        assert not sent and "not metered yet" in settler.book.pending[b"t" * 32].reason
        readings[b"t" * 32] = 8
        for _ in range(100):  # retried within its 0.05-s back-off; a loaded host may need more than 0.3 s
            await settler.work_until(time.time() + 0.1)
            if sent:
                break

    asyncio.run(day())
    assert sent == [{"trade": b"t" * 32, "delivered": 8}]


def test_the_day_end_keeps_a_statement_whose_counterparty_may_still_state() -> None:
    book = Settlements(1.0, 4.0)
    waiting = PendingSettle(1, b"w" * 32, 5, party="seller", deadline=200.0)
    refused = PendingSettle(1, b"r" * 32, 5, reason="insufficient-funds: no")
    book.add(waiting, 200.0)
    book.add(refused, 150.0)
    assert book.waiting_until() == 200.0
    ended = book.give_up("the trading day ended", now=100.0)
    assert [e.pending.trade for e in ended] == [b"r" * 32] and list(book.pending) == [b"w" * 32]
    assert [e.pending.trade for e in book.give_up("the trading day ended", now=250.0)] == [b"w" * 32]


def test_without_settle_by_both_only_purchases_are_settled_at_once_with_the_agreed_quantity() -> None:
    sent: list[dict[str, Any]] = []

    async def submit(body: dict[str, Any]) -> Submission:
        sent.append(body)
        return Submission(True)

    paid = {"state": "settled", "statements": {}, "deadline": None, "settlement": {"amount": 1}}
    settler = Settler(submit, lambda tid: paid if sent else {**paid, "state": "open", "settlement": None},
                      time.time, asyncio.sleep, lambda: False, lambda doc: None, Settlements(0.1, 0.1))  # fmt: skip
    trades = [(b"b" * 32, {"buyer": b"me", "seller": b"x", "quantity": 7}),
              (b"s" * 32, {"buyer": b"x", "seller": b"me", "quantity": 9})]  # fmt: skip
    # the purchase it settled, and the sale the scripted chain then shows settled (by its buyer): both count
    # in the record's `settled` since E4 (U4's F4: a seller's sales never counted)
    assert asyncio.run(settler.settle(1, trades, b"me")) == 2
    assert sent == [{"trade": b"b" * 32, "delivered": 7}]  # the sale is the buyer's to settle


# --- the PCC metering --------------------------------------------------------------------------------------


def meter_leaves(points: list[tuple[int, float, float]], device: str = "pcc") -> list[bytes]:
    """Reading leaves of a PCC meter: (at_ms, export Wh, import Wh) counters."""
    return [
        reading_leaf(device, "meter", at / 1000, {"energy_wh": exp, "import_wh": imp, "power_w": 0.0})
        for at, exp, imp in points
    ]


def test_metered_energy_interpolates_the_boundaries_and_shares_pro_rata() -> None:
    leaves = meter_leaves([(0, 100.0, 5.0), (1000, 110.0, 5.0), (2000, 130.0, 5.0), (3000, 131.0, 9.0)])
    assert metered(leaves, (500, 2500), "energy_wh", 1000) == Fraction(51, 2)  # 105 -> 130.5
    assert metered(leaves, (500, 2500), "import_wh", 1000) == Fraction(2)
    # the seller side of a 10 Wh trade among 40 Wh of sales: a quarter of 25 Wh, floored
    assert statement_wh(leaves, (500, 2500), "seller", 10, 40, 1000) == 6
    assert statement_wh(leaves, (500, 2500), "seller", 10, 10, 1000) == 10  # never above the agreed
    assert trade_share(Fraction(0), 0, 0) == 0


@pytest.mark.parametrize(
    ("leaves", "why"),
    [
        (meter_leaves([(0, 1.0, 0.0), (1000, 2.0, 0.0)]), "around 2500 ms"),  # no reading after the end yet
        (meter_leaves([(0, 1.0, 0.0), (9000, 2.0, 0.0)]), "at most 1000 ms apart"),  # a gap: no measurement
        (meter_leaves([(0, 5.0, 0.0), (1000, 4.0, 0.0), (3000, 6.0, 0.0)]), "runs backwards"),
        (meter_leaves([(0, 1.0, 0.0)], "a") + meter_leaves([(3000, 2.0, 0.0)], "b"), "more than one meter"),
        ([b"\xff\x00junk"], "does not decode"),
    ],
)
def test_what_cannot_be_metered_is_said_not_guessed(leaves: list[bytes], why: str) -> None:
    with pytest.raises(Unmetered, match=why):
        metered(leaves, (500, 2500), "energy_wh", 1000)


def meter_readings(
    jitter: list[int], dropped: set[int], steps: list[tuple[int, int]], reset_at: int
) -> list[tuple[float, float, float]]:
    """PCC readings (at s, export Wh, import Wh) polled every 7.5 s from 20 s before interval T's window to
    17.5 s after it, each at a jitter within its slot, the `dropped` ones missed (around a boundary that can
    leave a gap the DSO does not measure across), each counter moved by its step in mWh, and the export
    counter set back by 1 Wh at poll `reset_at` (past the last poll: never)."""
    first = CLOCK.window(T)[0] - 20_000
    out, exp, imp = [], 10**9, 10**9
    for k, (late, (d_exp, d_imp)) in enumerate(zip(jitter, steps, strict=True)):
        exp, imp = exp + d_exp - (1000 if k == reset_at else 0), imp + d_imp
        if k not in dropped:
            out.append(((first + 7_500 * k + late) / 1000, exp / 1000, imp / 1000))
    return out


def pcc_readings() -> st.SearchStrategy[list[tuple[float, float, float]]]:
    n = 14
    jitter = st.lists(st.integers(0, 7_499), min_size=n, max_size=n)
    steps = st.lists(st.tuples(st.integers(0, 300_000), st.integers(0, 300_000)), min_size=n, max_size=n)
    dropped = st.sets(st.integers(0, n - 1), max_size=2)
    return st.builds(meter_readings, jitter, dropped, steps, st.integers(1, 4 * n))


@settings(max_examples=30, deadline=None)
@given(
    seller_readings=pcc_readings(),
    buyer_readings=pcc_readings(),
    quantity=st.integers(2, 5_000),
    other_sale=st.integers(1, 5_000),
)
def test_an_mgmc_states_for_a_disputed_trade_what_the_dso_vouches_for_its_side(
    seller_readings: list[tuple[float, float, float]],
    buyer_readings: list[tuple[float, float, float]],
    quantity: int,
    other_sale: int,
) -> None:
    """Both callers of `peergrid_ledger.metering` read one MG's sealed PCC readings alike: the edge's statement
    (`MgMetering.statement`, from its store's commitment intervals around the window) is the share the DSO
    finds for that side of a disputed trade (`disputes.resolve`, from the leaves it checks against the chain's
    der_commitments), and the DSO leaves the dispute unresolved exactly when a side's readings do not bracket
    the window (`metered` raises): the edge then states nothing, or as a seller read past the window's end
    only what its meter proves left (`provable_wh`, tests/edge/test_edge_settle_restart.py)."""
    # s sells to b (disputed: the buyer states half) and to c; the seller's share is pro rata over both sales
    m = market({("s", "b"): quantity, ("s", "c"): other_sale}, {("s", "b"): (quantity // 2, quantity)})
    m.commit("s", seller_readings)
    m.commit("b", buyer_readings)
    tid = m.trade_id("s", "b")

    unmetered: list[str] = []

    def edge_statement(mg: str, party: str, readings: list[tuple[float, float, float]]) -> int | None:
        buckets = sealed_buckets(readings)
        spans = commitment_intervals(CLOCK.window(T), CLOCK.commit_ms, CLOCK.max_gap_ms)
        leaves = [leaf for c in spans for leaf in buckets.get(c, [])]
        try:
            metered(leaves, CLOCK.window(T), COUNTER[party], CLOCK.max_gap_ms)
        except Unmetered:
            unmetered.append(party)
        store = SimpleNamespace(leaves=lambda c: buckets.get(c, []), is_sealed=lambda c: True)
        metering = MgMetering(store, CLOCK.max_gap_ms / 3000, CLOCK.commit_ms / 1000, CLOCK.window,
                              lambda t: query.trades(m.chain.state, t), m.anonyms[mg].public,
                              m.nodes[mg].public, None)  # fmt: skip
        assert metering.max_gap_ms == CLOCK.max_gap_ms  # three polls of the PCC meter: the DSO's gap
        return metering.statement(PendingSettle(T, tid, None, party=party))

    seller = edge_statement("s", "seller", seller_readings)
    buyer = edge_statement("b", "buyer", buyer_readings)
    decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed)
    event("a side unmetered" if unmetered else "both sides metered")
    if "buyer" in unmetered:
        assert buyer is None
    if "seller" in unmetered:
        event("the seller states its meter's bound" if seller is not None else "the seller states nothing")
    if unmetered:
        assert isinstance(decision, Unresolved) and "metering" in decision.why
    else:
        assert isinstance(decision, Vouched)
        # the never-stated s -> c sale comes off the seller's meter first at its full quantity (metering's
        # rest rule, review12 F2): the DSO's seller share is the rest, the edge's statement its pro-rata share
        assert decision.buyer.share_wh == buyer and decision.seller is not None
        energy = decision.seller.energy_wh
        assert decision.seller.taken_wh == other_sale
        assert decision.seller.share_wh == min(quantity, math.floor(max(0, energy - other_sale)))
        assert seller == trade_share(energy, quantity, quantity + other_sale)


def test_a_stored_leaf_that_is_no_reading_is_refused_not_skipped() -> None:
    """The edge once skipped a leaf that decoded to anything but a reading, where the DSO refused it: an MGMC
    then stated a number for readings the DSO would not vouch for. Both refuse it now (one module)."""
    leaves = [*meter_leaves([(0, 1.0, 0.0), (3000, 2.0, 0.0)]), encode([1, 2])]
    with pytest.raises(Unmetered, match="not a reading leaf"):
        statement_wh(leaves, (500, 2500), "seller", 10, 10, 1000)


# --- the dispute readings to the DSO ------------------------------------------------------------------------


def test_the_readings_bodies_are_what_the_dso_api_accepts_and_cover_the_window_with_its_gaps() -> None:
    from peergrid_dso.routes.disputes import ReadingsIn

    node = Keypair.generate().public
    # a market interval [60 s, 66 s), commitment intervals of 6 s, readings at most 4.5 s apart
    assert commitment_intervals((60_000, 66_000), 6_000, 4_500) == range(9, 12)
    leaves = meter_leaves([(60_100, 1.0, 0.0)])
    bodies = readings_bodies(node, [(10, leaves), (11, [])])
    assert len(bodies) == 1 and bodies[0]["interval"] == 10  # nothing to post for an empty interval
    ReadingsIn.model_validate(bodies[0])  # the DSO's own request model: the shape is exact
    assert readings_missing(None)
    assert readings_missing({"resolved": False, "why": "the buyer's metering: commitment interval 9's "
                                                      "readings are not at the DSO"})  # fmt: skip
    assert not readings_missing({"resolved": False, "why": "the trade is settled, not disputed"})
    assert not readings_missing({"resolved": True, "delivered": 5})


class FakeDso(BaseHTTPRequestHandler):
    """A DSO disputes API over real HTTP: 422 for the first post (as for readings the chain does not hold
    yet), 201 after; the decision says the readings are missing until two posts were kept."""

    posts: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeDso.posts.append(body)
        self._answer(422 if len(FakeDso.posts) == 1 else 201, {"detail": "no der_commitment yet"}
                     if len(FakeDso.posts) == 1 else {"accepted": len(body["leaves"])})  # fmt: skip

    def do_GET(self) -> None:
        kept = len(FakeDso.posts) - 1
        if kept < 2:
            self._answer(
                200, {"resolved": False, "why": "commitment interval 10's readings are not at the DSO"}
            )
        else:
            self._answer(200, {"resolved": True, "delivered": 3})

    def _answer(self, status: int, doc: dict[str, Any]) -> None:
        raw = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_disputed_trade_s_readings_are_posted_and_posted_again_while_the_dso_says_they_are_missing() -> (
    None
):
    FakeDso.posts = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeDso)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    node = Keypair.generate().public
    sealed = {10: meter_leaves([(60_100, 1.0, 0.0)])}
    try:
        poster = DisputeReadings(
            f"http://127.0.0.1:{server.server_address[1]}", node,
            lambda r: [(c, sealed[c]) for c in r if c in sealed], 6_000, 4_500,
        )  # fmt: skip
        resolved = asyncio.run(
            poster.follow(b"t" * 32, (60_000, 66_000), 0.0, 0.05, time.time() + 5, time.time, asyncio.sleep)
        )
        dead = DisputeReadings("http://127.0.0.1:9", node, lambda r: [(10, sealed[10])], 6_000, 4_500, 0.5)
        assert asyncio.run(dead.post((60_000, 66_000))) == 0  # unreachable: logged, not raised
        assert asyncio.run(dead.decision(b"t" * 32)) is None
    finally:
        server.shutdown()
    assert resolved and len(FakeDso.posts) == 3  # refused once, then posted again until the DSO decided
    assert all(
        p == {"node": node.hex(), "interval": 10, "leaves": [sealed[10][0].hex()]} for p in FakeDso.posts
    )


# --- the agent's metering over the edge store --------------------------------------------------------------


def test_the_agent_states_its_meter_share_from_the_edge_store_and_without_a_meter_only_what_dispatch_confirmed(
    tmp_path: Path,
) -> None:
    from peergrid_edge.commitments import interval_of
    from peergrid_edge.pcc_readings import MgMetering
    from peergrid_edge.store import EdgeStore

    me, other, node = b"m" * 32, b"o" * 32, b"n" * 32
    trades = {7: [(b"1" * 32, {"seller": me, "buyer": other, "quantity": 300}),
                  (b"2" * 32, {"seller": me, "buyer": b"x" * 32, "quantity": 100}),
                  (b"3" * 32, {"seller": other, "buyer": me, "quantity": 50})]}  # fmt: skip
    store = EdgeStore(tmp_path / "edge.db")
    try:
        # the PCC meter read every 2 s (commitment intervals of 6 s); the window is [60 s, 66 s)
        for at_s, export in [
            (58, 1000.0),
            (60, 1000.0),
            (62, 1100.0),
            (64, 1250.0),
            (66, 1400.0),
            (68, 1500.0),
        ]:
            store.add_reading(interval_of(at_s, 6.0), meter_leaves([(at_s * 1000, export, 7.0)])[0])
        metering = MgMetering(store, 2.0, 6.0, lambda t: (t * 6000 + 18_000, t * 6000 + 24_000),
                              lambda t: trades.get(t, []), me, node, None)  # fmt: skip
        assert metering.not_before(7) == 66.0 + 2.0  # the interval's end and a poll after it
        # 400 Wh exported over the window, shared 3:1 over the MG's 300 and 100 Wh sales; nothing imported
        assert metering.statement(PendingSettle(7, b"1" * 32, None, party="seller")) == 300
        assert metering.statement(PendingSettle(7, b"2" * 32, None, party="seller")) == 100
        assert metering.statement(PendingSettle(7, b"3" * 32, None, party="buyer")) == 0
        assert (
            metering.statement(PendingSettle(8, b"1" * 32, None, party="seller")) is None
        )  # not its interval
        blind = MgMetering(store, 0.0, 6.0, lambda t: (0, 1), lambda t: trades.get(t, []), me, node, None)
        pending = PendingSettle(7, b"3" * 32, None, party="buyer")
        assert blind.statement(pending) is None  # no meter and nothing confirmed: it states nothing
        blind.confirmed[7] = True
        assert blind.statement(pending) == 50  # dispatch read-back confirmed the agreed plan
        assert metering.disputed(pending, 1.0, 0.0, time.time, asyncio.sleep) is None  # no DSO to post to
    finally:
        store.close()


def test_a_restarted_agent_finds_its_sale_stated_on_chain_and_settles_it_after_the_buyers_window(
    tmp_path: Path,
) -> None:
    """The agent itself (its run loop): restarted after interval 5, whose sale its last run stated and whose
    buyer stays silent, it reads settle_by_both from the genesis, takes the sale up from the chain with its
    statement on record, waits out the buyer's window after the day's last interval and settles on it."""

    from peergrid_edge.config import MarketSettings
    from peergrid_edge.trader import MarketAgent
    from peergrid_ledger.keys import write_keyfile

    seller, buyer, authority = (Keypair.generate() for _ in range(3))
    write_keyfile(tmp_path / "anonym.key", seller)
    scenario = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"

    async def restart(node: Node) -> tuple[MarketAgent, bytes]:
        tid = await node.agree(5, seller, buyer)
        assert (
            await node.submit(seller, "settle", {"trade": tid, "delivered": KWH - 40})
        ).landed  # last run's
        settings = MarketSettings(scenario=scenario, anonym_key_file=tmp_path / "anonym.key",
                                  t0=time.time() - 100, interval_s=3.0, first_interval=5, intervals=1,
                                  phase_timeout_s=0.2, record_file=tmp_path / "market.jsonl")  # fmt: skip
        daemon = stand_in_daemon(node.ledger)
        agent = MarketAgent(daemon, settings)  # type: ignore[arg-type]
        await agent.run()
        return agent, tid

    agent, _ = run_chain(tmp_path, both_chain(seller, buyer, authority), authority, restart)
    assert agent.settler.by_both and agent.phase == "finished" and not agent.settler.book.pending
    [record] = [json.loads(line) for line in (tmp_path / "market.jsonl").read_text().splitlines()]
    assert record["settlement"]["settled"] and record["settlement"]["party"] == "seller"
    assert record["settlement"]["delivered"] == KWH - 40  # its statement read back, not metered again


def test_a_statement_the_chain_clock_finds_early_is_sent_again_after_the_interval_ended(
    tmp_path: Path,
) -> None:
    """With the genesis interval clock a settle before the trade's interval ended is refused (rule-violation);
    an MGMC whose wall clock runs ahead of the chain's (here: told to state at once) tries again and lands."""
    seller, buyer, authority = (Keypair.generate() for _ in range(3))
    sent: list[dict[str, Any]] = []
    ends_ms = round(time.time() * 1000) + 1500  # interval 1 ends 1.5 s from now on the chain's clock
    genesis = both_chain(seller, buyer, authority)
    params = dataclasses.replace(genesis.params, settle_epoch_ms=ends_ms - 2 * 1000, settle_interval_ms=1000)
    genesis = dataclasses.replace(genesis, params=params)

    async def day(node: Node) -> tuple[dict[str, Any], Settler]:
        tid = await node.agree(1, seller, buyer)
        s = party_settler(node, seller, {tid: KWH - 9}, sent, [])
        await s.settle(1, trades_of(node, 1), seller.public, 0.0)  # its clock says the interval is over
        await s.retry_due()
        assert "rule-violation" in s.book.pending[tid].reason and "ended" in s.book.pending[tid].reason
        await s.work_until(ends_ms / 1000 + 3)
        return query.settlement(node.ledger.state("mgmc"), tid), s

    where, _ = run_chain(tmp_path, genesis, authority, day)
    # stated (or, the buyer silent for the 1.5-s wait since, settled on it)
    assert where["state"] in ("stated", "settled") and where["statements"]["seller"]["delivered"] == KWH - 9
    assert where["statements"]["seller"]["time"] >= ends_ms  # it landed once the interval had ended
    assert {m["delivered"] for m in sent} == {KWH - 9} and len(sent) >= 2


class BothModel:
    """The settle_by_both rule in miniature (one trade, block time = the simulated clock in ms): statements
    once each, agreement within the tolerance pays the lower, a disagreement disputes, a lone statement sent
    again from the deadline settles on it; the silent party's own statement is then too late."""

    def __init__(self, quantity: int, tolerance: int, wait_ms: int, clock: list[float]) -> None:
        self.quantity, self.tolerance, self.wait_ms, self.clock = quantity, tolerance, wait_ms, clock
        self.statements: dict[str, int] = {}
        self.deadline: int | None = None
        self.paid: list[tuple[int, str]] = []
        self.disputed = False

    def now_ms(self) -> int:
        return round(self.clock[0] * 1000)

    def standing(self) -> dict[str, Any]:
        state = (
            "settled"
            if self.paid
            else "disputed"
            if self.disputed
            else "stated"
            if self.statements
            else "open"
        )
        return {"state": state, "statements": {p: {"delivered": d} for p, d in self.statements.items()},
                "deadline": self.deadline, "settlement": {"delivered": self.paid[0][0]} if self.paid else None}  # fmt: skip

    def settle(self, party: str, delivered: int) -> Submission:
        other = "seller" if party == "buyer" else "buyer"
        if self.paid:
            return Submission(False, "already-settled: paid")
        if party in self.statements:
            if other in self.statements:
                return Submission(False, "duplicate: disputed")
            assert self.deadline is not None
            if self.now_ms() < self.deadline or delivered != self.statements[party]:
                return Submission(False, "duplicate: a statement is final")
            self.paid.append((delivered, "lapsed"))
            return Submission(True)
        if other in self.statements:
            assert self.deadline is not None
            if self.now_ms() >= self.deadline:
                return Submission(False, "closed: after the deadline")
        else:
            self.deadline = self.now_ms() + self.wait_ms
        self.statements[party] = delivered
        if other in self.statements:
            a, b = self.statements["buyer"], self.statements["seller"]
            if abs(a - b) <= self.tolerance:
                self.paid.append((min(a, b), "agreed"))
            else:
                self.disputed = True
        return Submission(True)


@given(
    st.integers(1, 10_000), st.integers(0, 10_000), st.integers(0, 10_000), st.integers(0, 50),
    st.sampled_from(["both", "buyer", "seller"]), st.floats(0.0, 5.0), st.floats(0.0, 5.0),
)  # fmt: skip
def test_whoever_states_when_the_trade_is_paid_at_most_once_on_the_rule(
    quantity: int, buyer_wh: int, seller_wh: int, tolerance: int, who: str, buyer_at: float, seller_at: float
) -> None:
    buyer_wh, seller_wh = min(buyer_wh, quantity), min(seller_wh, quantity)
    clock = [100.0]
    chain = BothModel(quantity, tolerance, 3_000, clock)
    sent: dict[str, list[int]] = {"buyer": [], "seller": []}
    ended: dict[str, str] = {}

    async def sleep(seconds: float) -> None:
        clock[0] += max(seconds, 0.001)

    def settler(party: str, wh: int) -> Settler:
        async def submit(body: dict[str, Any]) -> Submission:
            sent[party].append(body["delivered"])
            return chain.settle(party, body["delivered"])

        def record(doc: dict[str, Any]) -> None:
            ended[party] = doc["settlement"]["reason"] or "settled"

        return Settler(submit, lambda tid: chain.standing(), lambda: clock[0], sleep, lambda: False, record,
                       Settlements(0.5, 2.0), by_both=True, metering=lambda p: wh)  # fmt: skip

    parties = {"buyer": (buyer_wh, buyer_at), "seller": (seller_wh, seller_at)}
    active = [p for p in parties if who in ("both", p)]
    settlers = {p: settler(p, parties[p][0]) for p in active}
    trade = (b"t" * 32, {"buyer": b"b", "seller": b"s", "quantity": quantity})

    async def day() -> None:
        for p, s in settlers.items():
            await s.settle(1, [trade], b"b" if p == "buyer" else b"s", 100.0 + parties[p][1])
        while any(s.book.pending for s in settlers.values()) and clock[0] < 200:
            for s in settlers.values():
                await s.retry_due()
            await sleep(0.1)

    asyncio.run(day())
    assert len(chain.paid) <= 1 and not any(s.book.pending for s in settlers.values())
    assert all(len(set(v)) <= 1 for v in sent.values())  # a party only ever sends its one statement
    if who != "both":  # one silent party: the other's statement settles after the wait, sent exactly twice
        (p,) = active
        assert chain.paid == [(parties[p][0], "lapsed")] and len(sent[p]) == 2
    elif chain.disputed:  # no retry after a dispute, and it was a real disagreement or a late statement
        assert abs(buyer_wh - seller_wh) > tolerance and not chain.paid
        assert all("disputed" in ended[p] for p in active) and all(len(sent[p]) == 1 for p in active)
    else:  # both in time: paid the lower; or one came after the other's window closed: lapsed on the first
        basis = chain.paid[0][1]
        if basis == "agreed":
            assert chain.paid[0][0] == min(buyer_wh, seller_wh) and abs(buyer_wh - seller_wh) <= tolerance
        else:
            assert basis == "lapsed" and abs(buyer_at - seller_at) >= 3.0 - 0.6
