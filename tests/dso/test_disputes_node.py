"""The DSO node settles disputed trades (`peergrid_dso.dispute_node.DisputeSettler`) on a real MGMC chain
(`LocalChain` standing in for its non-voting replica, final at once; the adapter of test_rebargain_reopen).

Two parties state different energies, the trade is disputed; the DSO finds it in a final block, waits (and
says why) until it holds both MGs' sealed readings, then settles with the energy both PCC meters confirm under
its `dso` key: the buyer pays once, basis "dso". Readings that are not the sealed set are refused; a refusal
by the chain is recorded with its reason and tried again later; a trade an authority settled first is left
alone; a restarted DSO finds disputes from before its start."""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

from peergrid_dso.dispute_node import DisputeSettler, ReadingsNotNeeded, ReadingsRefused
from peergrid_dso.node_chains import Submitted
from peergrid_dso.routes.dso import install_dso_api
from peergrid_dso.services.container import build_dso_services
from peergrid_edge.commitments import commitment_body, reading_leaf
from peergrid_ledger import query
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.keys import Keypair

from .test_disputes import CLOCK, PRICE, Market, market, ramp, sealed_buckets
from .test_rebargain_reopen import Adapter


class Clock:
    def __init__(self) -> None:
        self.s = 100.0

    def __call__(self) -> float:
        return self.s


class Replica:
    """The DSO's MGMC-chain replica over a LocalChain: its state, head and blocks are the chain's (final at
    once), as a `ChainReplica`'s app and store give them."""

    def __init__(self, chain: LocalChain) -> None:
        self.store = chain  # locate_tx, header, genesis: what the settler reads of a BlockStore

    @property
    def app(self) -> SimpleNamespace:
        return SimpleNamespace(state=self.store.state, tip=self.store.tip)


class MarketAdapter(Adapter):
    """test_rebargain_reopen's adapter over the market's chain, its blocks on the market's clock (not 10**12:
    the dispute's deadline is the chain's time), its replica the chain's blocks and head."""

    def __init__(self, m: Market) -> None:
        super().__init__(m.chain)
        self.market = m
        self.node.replicas["mgmc"] = Replica(m.chain)

    async def submit(
        self, key: Keypair, kind: str, body: dict[str, Any], timeout: float = 8.0, precheck: bool = False
    ) -> Submitted:
        self.sent.append((key.public, kind, dict(body), timeout))
        at = max(self.market.now, self.local.tip.time + 1)
        result = self.local.sign_and_submit(key, kind, body, at)
        if not result.ok:
            return Submitted(False, "refused", f"{result.reason.value}: {result.detail}")
        self.market.pass_time(at)
        return Submitted(True, txid=result.txid)


def settler_for(m: Market, tmp_path: Path | None = None) -> tuple[DisputeSettler, Adapter, Clock]:
    adapter, clock = MarketAdapter(m), Clock()
    record = None if tmp_path is None else tmp_path / "disputes.jsonl"
    settler = DisputeSettler(adapter, m.dso, CLOCK, m.node_of(), record_file=record, retry_s=30.0, now=clock)
    return settler, adapter, clock


@contextmanager
def served_disputes(m: Market) -> Iterator[tuple[str, DisputeSettler]]:
    """The DSO server's disputes API on a loopback port over a settler of `m`'s chain (its adapter's loop on a
    thread of its own, as the node's): the base URL and the settler; stopped on exit."""
    settler, adapter, _ = settler_for(m)
    loop = asyncio.new_event_loop()
    loop_thread = threading.Thread(target=loop.run_forever, daemon=True)
    loop_thread.start()
    adapter.loop = loop  # type: ignore[attr-defined]
    app = FastAPI()
    install_dso_api(app)
    app.state.dso = build_dso_services({"mg1": 18, "mg2": 33})
    app.state.dso.disputes = settler
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", settler
    finally:
        server.should_exit = True
        thread.join(10)
        loop.call_soon_threadsafe(loop.stop)
        loop_thread.join(5)
        loop.close()


def final_blocks(m: Market, settler: DisputeSettler, since: int = 1) -> int:
    """Hand the settler the chain's blocks from `since`, as its replica's on_commit does; the next height."""
    for height in range(since, m.chain.height + 1):
        settler.on_commit(SimpleNamespace(block=m.chain.block(height).encode()))
    return m.chain.height + 1


def hand_over(m: Market, settler: DisputeSettler, mg: str) -> None:
    """The MG's readings as it sealed them, offered to the DSO per commitment interval."""
    node = m.nodes[mg].public
    for (key, bucket), leaves in sorted(m.sealed.items()):
        if key == node:
            assert settler.offer_readings(node, bucket, leaves) == len(leaves)


def test_the_dso_settles_a_dispute_from_both_parties_sealed_readings_once(tmp_path: Path) -> None:
    readings = {"s": ramp(480.0, export=True), "b": ramp(455.0, export=False)}
    m = market({("s", "b"): 500}, {("s", "b"): (300, 500)}, readings=readings)
    tid = m.trade_id("s", "b")
    settler, adapter, _ = settler_for(m, tmp_path)
    m.sealed, held = {}, dict(m.sealed)  # the DSO holds no readings yet
    seen = final_blocks(m, settler)
    asyncio.run(settler.settle_due())
    assert adapter.sent == [] and settler.pending == {tid: math.inf}
    waiting = settler.decision(tid)
    assert waiting is not None and waiting["outcome"] == "unresolved"
    assert "readings are not at the DSO" in waiting["why"]
    m.sealed = held
    hand_over(m, settler, "s")
    asyncio.run(
        settler.settle_due()
    )  # the buyer's readings still missing: the same decision, not recorded again
    assert adapter.sent == [] and "the buyer's metering" in settler.decision(tid)["why"]  # type: ignore[index]
    before = {mg: query.balance(m.chain.state, m.anonyms[mg].public) for mg in ("s", "b")}
    hand_over(m, settler, "b")
    asyncio.run(settler.settle_due())
    [(sender, kind, body, _)] = adapter.sent
    assert (sender, kind, body) == (m.dso.public, "settle", {"trade": tid, "delivered": 455})
    settled = query.settlement(m.chain.state, tid)
    assert settled is not None and settled["state"] == "settled"
    assert settled["settlement"]["basis"] == "dso" and settled["settlement"]["delivered"] == 455
    paid = {mg: query.balance(m.chain.state, m.anonyms[mg].public) - before[mg] for mg in ("s", "b")}
    assert paid == {"s": 455 * PRICE, "b": -455 * PRICE}
    done = settler.decision(tid)
    assert done is not None and done["settled"] and done["delivered"] == 455
    assert done["statements"] == {"buyer": 300, "seller": 500} and done["seller"]["share_wh"] == 480
    # its own settle in a final block, and every later pass: nothing more is sent, nothing moves again
    final_blocks(m, settler, seen)
    asyncio.run(settler.settle_due())
    settler.look_everywhere()
    asyncio.run(settler.settle_due())
    assert len(adapter.sent) == 1 and settler.pending == {} and settler.sealed == {}  # its readings dropped
    assert {mg: query.balance(m.chain.state, m.anonyms[mg].public) - before[mg] for mg in ("s", "b")} == paid
    lines = [json.loads(line) for line in (tmp_path / "disputes.jsonl").read_text().splitlines()]
    assert [d["outcome"] for d in lines] == ["unresolved", "unresolved", "settled"]
    assert settler.snapshot()["disputes"][0]["outcome"] == "settled"


def test_readings_that_are_not_the_sealed_set_are_refused() -> None:
    m = market({("s", "b"): 500}, {("s", "b"): (300, 500)}, readings={"s": ramp(480.0, export=True)})
    settler, _, _ = settler_for(m)
    final_blocks(m, settler)  # the dispute is known: it reads these readings
    node = m.nodes["s"].public
    (key, bucket), leaves = next(iter(m.sealed.items()))
    with pytest.raises(ReadingsRefused, match="not the sealed ones"):
        settler.offer_readings(node, bucket, leaves[1:])
    with pytest.raises(ReadingsRefused, match="no der_commitment"):
        settler.offer_readings(node, bucket + 100, leaves)
    with pytest.raises(
        ReadingsRefused, match="no der_commitment"
    ):  # another MG's commitment is not this one's
        settler.offer_readings(m.nodes["b"].public, bucket, leaves)
    assert settler.sealed == {}
    assert settler.offer_readings(key, bucket, leaves) == len(leaves)


def test_readings_no_pending_dispute_reads_or_sealed_late_are_not_kept() -> None:
    """review10 F4: a sealed set is kept only for a (node, commitment) a dispute the DSO waits on reads, and
    only when it was sealed in time; anything else is refused (`ReadingsNotNeeded`, the API's 409), so posting
    the sets of commitments of one's own making fills nothing."""
    m = market(
        {("s", "b"): 500}, {("s", "b"): (300, 500)}, readings={"s": ramp(480.0, export=True)}, wait_ms=60_000
    )
    settler, _, _ = settler_for(m)
    node = m.nodes["s"].public
    (_, bucket), leaves = next(iter(m.sealed.items()))
    with pytest.raises(ReadingsNotNeeded, match="no pending dispute reads commitment interval"):
        settler.offer_readings(node, bucket, leaves)  # the dispute is not in a block the DSO has seen yet
    final_blocks(m, settler)
    far = [reading_leaf("x", "battery", 10**6 * 60 + i, {"soc_pct": float(i)}) for i in range(50)]
    m.do(m.nodes["b"], "der_commitment", commitment_body(10**6, far))  # an interval no trade's window reaches
    with pytest.raises(ReadingsNotNeeded, match="no pending dispute reads commitment interval 1000000"):
        settler.offer_readings(m.nodes["b"].public, 10**6, far)
    # the buyer's readings of the window, sealed only now: more than a minute after bucket 16 ended
    late = sealed_buckets(ramp(455.0, export=False))
    m.commit("b", ramp(455.0, export=False))
    with pytest.raises(ReadingsNotNeeded, match=r"commitment interval 16 was sealed at .* it does not count"):
        settler.offer_readings(m.nodes["b"].public, 16, late[16])
    assert settler.sealed == {}
    assert settler.offer_readings(node, bucket, leaves) == len(leaves)
    assert settler.offer_readings(m.nodes["b"].public, 18, late[18]) == len(late[18])  # 18 was in time


def test_a_refusal_is_recorded_with_the_chains_reason_and_tried_again_later() -> None:
    """The buyer cannot pay: the chain refuses the DSO's settle (insufficient-funds); the DSO records it, does
    not hammer the chain, and settles once the retry is due and the buyer has the funds."""
    readings = {"s": ramp(480.0, export=True), "b": ramp(455.0, export=False)}
    m = market({("s", "b"): 500}, {("s", "b"): (300, 500)}, balance=50_000, readings=readings)
    tid = m.trade_id("s", "b")
    settler, adapter, clock = settler_for(m)
    final_blocks(m, settler)
    hand_over(m, settler, "s")
    hand_over(m, settler, "b")
    asyncio.run(settler.settle_due())
    refused = settler.decision(tid)
    assert refused is not None and refused["outcome"] == "refused" and not refused["settled"]
    assert refused["detail"].startswith("insufficient-funds")
    assert len(adapter.sent) == 1 and query.settlement(m.chain.state, tid)["state"] == "disputed"  # type: ignore[index]
    asyncio.run(settler.settle_due())
    assert len(adapter.sent) == 1  # not due yet
    clock.s += 31
    asyncio.run(settler.settle_due())
    assert len(adapter.sent) == 2  # tried again, refused again: one record for the same refusal
    assert len(settler.history) == 1
    m.do(m.nodes["s"], "pay", {"payee": m.anonyms["b"].public, "amount": 45_000, "ref": "float"})
    clock.s += 31
    asyncio.run(settler.settle_due())
    assert len(adapter.sent) == 3 and settler.pending == {}
    assert query.settlement(m.chain.state, tid)["settlement"]["delivered"] == 455  # type: ignore[index]
    assert [d["outcome"] for d in settler.history] == ["refused", "settled"]


def test_a_trade_the_dso_settled_first_by_hand_is_left_alone() -> None:
    # only the DSO settles a dispute on a settle_by_both chain (review9 F2): an operator's hand settlement under
    # the DSO key before the node got to it leaves the node nothing to do
    m = market({("s", "b"): 500}, {("s", "b"): (300, 500)})
    tid = m.trade_id("s", "b")
    settler, adapter, _ = settler_for(m)
    seen = final_blocks(m, settler)
    asyncio.run(settler.settle_due())  # no readings: unresolved, pending
    assert tid in settler.pending
    m.do(m.dso, "settle", {"trade": tid, "delivered": 400})
    final_blocks(m, settler, seen)
    settler.pending[tid] = 0.0
    asyncio.run(settler.settle_due())
    assert adapter.sent == [] and settler.pending == {}
    decided = settler.decision(tid)
    assert decided is not None and decided["outcome"] == "no longer disputed: settled"


def test_a_restarted_dso_finds_disputes_made_before_it_started() -> None:
    readings = {"s": ramp(600.0, export=True), "b1": ramp(600.0, export=False), "b2": ramp(300.0, False),
                "x": ramp(50.0, True), "y": ramp(50.0, False)}  # fmt: skip
    statements = {("s", "b1"): (100, 600), ("s", "b2"): (300, 300)}
    m = market({("s", "b1"): 600, ("s", "b2"): 300, ("x", "y"): 50}, statements, readings=readings)
    settler, adapter, _ = settler_for(m)  # no block handed over: only the state
    settler.look_everywhere()
    # b2's trade is not disputed: it takes what it settled at on the parties' word (review12 F2), so b2's
    # meter is not read (D10), nor that of an MG no dispute involves
    for mg in ("s", "b1"):
        hand_over(m, settler, mg)
    for mg in ("b2", "x"):
        with pytest.raises(ReadingsNotNeeded):
            settler.offer_readings(m.nodes[mg].public, *next((b, v) for (n, b), v in m.sealed.items()
                                                             if n == m.nodes[mg].public))  # fmt: skip
    asyncio.run(settler.settle_due())
    # b2's trade was agreed (300 = 300) and paid; b1's was disputed and shares what that left of s's 600
    # (review12 F2: shared over both by the buyers' meters it was 600 × 600/(600 + 300) = 400, so s settled 700)
    [(_, kind, body, _)] = adapter.sent
    assert (kind, body) == ("settle", {"trade": m.trade_id("s", "b1"), "delivered": 300})


def test_the_disputes_section_needs_the_mgmc_chain_and_builds_the_market_clock(tmp_path: Path) -> None:
    """`loop.disputes` without `mgmc_chain` is a config error (one line); with it, the node's settler reads
    interval t's window from the MGMCs' t0 and interval_s, and maps each MG's anonym to its node key."""
    from peergrid_dso.dso_node import dispute_settler
    from peergrid_dso.loop_settings import IntervalNodeSettings
    from peergrid_ledger.keys import Keypair
    from peergrid_ledger.settings import ConfigError, load_settings

    chain = {"genesis": str(tmp_path / "g.json"), "data_dir": str(tmp_path / "d")}
    node, anonym = Keypair.generate(), Keypair.generate()
    raw = {
        "key_file": str(tmp_path / "dso.key"), "dso_chain": chain, "first_interval": 36,
        "mgs": {"mg1": {"node": node.public.hex(), "anonym": anonym.public.hex(), "bus": 18}},
        "disputes": {"t0": 1000.5, "interval_s": 6.0, "commit_interval_s": 6.0, "max_gap_s": 3.0},
    }  # fmt: skip
    config = tmp_path / "node.json"
    config.write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match="disputes: the DSO settles disputed trades on the MGMC chain"):
        load_settings(config, IntervalNodeSettings)
    config.write_text(json.dumps({**raw, "mgmc_chain": chain}))
    settings = load_settings(config, IntervalNodeSettings)
    settler = dispute_settler(settings, Adapter(market({("s", "b"): 1}, {}).chain), Keypair.generate())
    assert settler.clock.window(37) == (1_006_500, 1_012_500) and settler.clock.max_gap_ms == 3000
    assert settler.nodes == {anonym.public: node.public} and settler.retry_s == 30.0
    assert not settler.meterless
    raw["mgs"]["mg1"]["meterless"] = True  # type: ignore[index]  # an MG without a PCC meter (review12 F4)
    config.write_text(json.dumps({**raw, "mgmc_chain": chain}))
    settings = load_settings(config, IntervalNodeSettings)
    settler = dispute_settler(settings, Adapter(market({("s", "b"): 1}, {}).chain), Keypair.generate())
    assert set(settler.meterless) == {anonym.public}


def test_readings_another_pending_dispute_needs_are_kept() -> None:
    """Two disputes of one interval share readings: s sold to b1 and b2, b2 bought from s and s2. s -> b1 reads
    s, b1 and b2 (s's disputed sales: its buyers prove its shares) and settles; s -> b2 reads the same three
    and waits, so settling the first keeps every reading the second reads; it waits for s2 -> b2, which is
    not settled yet (what it takes comes off b2's import first: review12 F2), but not for s2's meter: that
    trade is not disputed, so s2's readings are not read (D10) and not kept; once s2 -> b2 agrees it
    settles, and afterwards all are dropped."""
    readings = {"s": ramp(600.0, export=True), "b1": ramp(600.0, export=False), "b2": ramp(480.0, False),
                "s2": ramp(200.0, export=True)}  # fmt: skip
    statements = {("s", "b1"): (100, 600), ("s", "b2"): (50, 300)}
    m = market({("s", "b1"): 600, ("s", "b2"): 300, ("s2", "b2"): 200}, statements, readings=readings)
    settler, adapter, _ = settler_for(m)
    seen = final_blocks(m, settler)
    for mg in ("s", "b1", "b2"):
        hand_over(m, settler, mg)
    asyncio.run(settler.settle_due())
    # s's 600 shared 600 : 288 (b1's import; b2's 480 pro rata over its 500 agreed, 300 of them s's)
    assert [body for _, _, body, _ in adapter.sent] == [{"trade": m.trade_id("s", "b1"), "delivered": 405}]
    assert settler.pending.keys() == {m.trade_id("s", "b2")}
    waiting = settler.decision(m.trade_id("s", "b2"))
    assert waiting is not None and "the buyer's counterparty" in waiting["why"]
    kept = {node for node, _ in settler.sealed}
    assert kept == {m.nodes[mg].public for mg in ("s", "b1", "b2")}
    with pytest.raises(ReadingsNotNeeded):
        hand_over(m, settler, "s2")
    asyncio.run(settler.settle_due())
    still = settler.decision(m.trade_id("s", "b2"))
    assert still is not None and still["outcome"] == "unresolved" and len(adapter.sent) == 1
    assert f"its trade {m.trade_id('s2', 'b2').hex()[:16]}… with the buyer is not settled yet" in still["why"]
    m.state("s2", "b2", 200, 200)  # agreed and paid: its 200 comes off b2's 480
    final_blocks(m, settler, seen)
    asyncio.run(settler.settle_due())
    # b2's 280 left is 80 more than s proves (200), all on s's trade (280); s's share 600 x 288/888: 194
    assert adapter.sent[-1][2] == {"trade": m.trade_id("s", "b2"), "delivered": 194}
    assert settler.pending == {} and settler.sealed == {}


def test_a_dispute_whose_buyer_withholds_its_readings_settles_at_the_deadline() -> None:
    """review10 F1(a): the buyer states 0 and never hands its sealed readings over. The DSO waits, is not
    woken by other MGs' commitments, and once a final block's time reaches the deadline (settle_wait_ms
    after the dispute) it settles on the seller's metered share: the seller is paid, the dispute ends."""
    wait = 120_000
    readings = {"s": ramp(481.0, export=True), "b": ramp(480.0, export=False), "x": ramp(1.0, export=False)}
    m = market({("s", "b"): 500, ("s", "x"): 1}, {("s", "b"): (0, 480)}, readings=readings, wait_ms=wait)
    tid = m.trade_id("s", "b")
    settler, adapter, _ = settler_for(m)
    seen = final_blocks(m, settler)
    hand_over(m, settler, "s")
    asyncio.run(settler.settle_due())
    waiting = settler.decision(tid)
    assert waiting is not None and waiting["outcome"] == "unresolved" and "not at the DSO" in waiting["why"]
    until = waiting["until_ms"]
    statements = query.settlement(m.chain.state, tid)["statements"]  # type: ignore[index]
    assert until == max(int(s["time"]) for s in statements.values()) + wait
    assert settler.pending == {tid: math.inf} and settler.deadlines == {tid: until}
    m.commit("x", ramp(2.0, export=False, window=(10**7, 10**7 + 60_000)))  # another MG's commitments
    m.pass_time(until - 1)
    seen = final_blocks(m, settler, seen)
    assert settler.pending == {tid: math.inf}  # not due: neither its readings nor its deadline came
    m.pass_time(until)
    final_blocks(m, settler, seen)
    assert settler.pending == {tid: 0.0}
    asyncio.run(settler.settle_due())
    [(_, kind, body, _)] = adapter.sent
    assert (kind, body) == ("settle", {"trade": tid, "delivered": 480})
    done = settler.decision(tid)
    assert done is not None and done["settled"] and done["rule"] == "seller metered only"
    assert "not at the DSO" in done["unmetered"]["buyer"] and done["buyer"] is None
    assert settler.pending == {} and settler.deadlines == {} and settler.sealed == {}
