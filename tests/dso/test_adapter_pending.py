"""The DSO's `ChainAdapter` never signs a nonce that one of its key's transactions still holds in the pool (the
lab's DSO spun for ever re-signing its pending `enrol`: "another transaction with nonce 1 is pending", 21 M log
lines). Against a real consensus replica (`ChainReplica`, a single authority that finalises a block each time
the test pumps it, LevelDB store in tmp_path), with no block at first, so the first submit times out pending:

- the same transaction asked again is that one, adopted and waited for: it lands once, nothing re-signed;
- another transaction is sent at once with the next nonce (pipelined: the adapter's bound is far above two)
  and lands after the pending one;
- a pending transaction of the key that this adapter did not send (gossiped back after a restart) is waited
  for too, block by block, and the new one signed after it;
- with no block at all the wait ends at the submit's timeout, a few wake-ups and one log line, not a spin;
- `DsoLoop.enrol` after its first enrolment timed out: that one lands, nothing is signed again.
`Throttled` says a repeated message once per period, then how often it repeated.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from peergrid_dso.interval_node import DsoLoop
from peergrid_dso.node_chains import ChainAdapter, Throttled
from peergrid_ledger import query
from peergrid_ledger.keys import Keypair
from peergrid_ledger.tx import sign_tx

from .test_refused_submit import Lab


def offer(interval: int) -> dict[str, Any]:
    return {"interval": interval, "round": 1, "price": 200, "quantity": 900, "clean": True}


class Counting:
    """Counts what reaches the replica's pool from the adapter and the adapter's waits for a block."""

    def __init__(self, lab: Lab) -> None:
        self.sent = 0
        self.waits = 0
        submit, wait = lab.replica.submit, lab.changed.wait

        def counted_submit(raw: bytes, now: int) -> Any:
            self.sent += 1
            assert self.sent < 100, "the adapter spins: signing again and again with no block in between"
            return submit(raw, now)

        async def counted_wait(timeout: float) -> None:
            self.waits += 1
            await wait(timeout)

        lab.replica.submit = counted_submit  # type: ignore[method-assign]
        lab.changed.wait = counted_wait  # type: ignore[method-assign]


async def blocks_after(lab: Lab, delay_s: float, stop: asyncio.Event) -> None:
    await asyncio.sleep(delay_s)
    await lab.pumping(stop)


async def with_blocks_after(lab: Lab, delay_s: float, work: Any) -> Any:
    stop = asyncio.Event()
    pumping = asyncio.create_task(blocks_after(lab, delay_s, stop))
    try:
        return await work
    finally:
        stop.set()
        await pumping


def test_the_same_transaction_asked_again_is_the_pending_one_waited_for(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    app = lab.replica.app
    nonce = app.next_nonce(lab.seller.public)

    async def run() -> tuple[Any, Any, Counting]:
        adapter = ChainAdapter(lab.node, "mgmc", asyncio.get_running_loop(), lab.changed)
        first = await adapter.submit(lab.seller, "offer", offer(50), timeout=0.2)
        assert first.reason == "timeout" and first.txid in app.mempool, first  # no block: still pending
        counting = Counting(lab)
        again = await with_blocks_after(lab, 0.3, adapter.submit(lab.seller, "offer", offer(50), timeout=30))
        return first, again, counting

    first, again, counting = asyncio.run(run())
    assert again.ok and again.txid == first.txid, again  # (the old adapter: "mempool", nonce pending)
    assert counting.sent == 0  # nothing signed again
    assert app.next_nonce(lab.seller.public) == nonce + 1 and lab.store.locate_tx(first.txid) is not None
    lab.store.close()


def test_another_transaction_waits_for_the_pending_one_then_takes_the_next_nonce(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    app = lab.replica.app
    nonce = app.next_nonce(lab.seller.public)

    async def run() -> tuple[Any, Any]:
        adapter = ChainAdapter(lab.node, "mgmc", asyncio.get_running_loop(), lab.changed)
        first = await adapter.submit(lab.seller, "offer", offer(50), timeout=0.2)
        assert first.reason == "timeout", first
        second = await with_blocks_after(lab, 0.3, adapter.submit(lab.seller, "offer", offer(51), timeout=30))
        return first, second

    first, second = asyncio.run(run())
    assert second.ok and second.txid != first.txid, second
    assert app.next_nonce(lab.seller.public) == nonce + 2
    assert lab.store.locate_tx(first.txid) is not None and lab.store.locate_tx(second.txid) is not None
    lab.store.close()


def test_a_pending_transaction_the_adapter_did_not_send_is_waited_for(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    app = lab.replica.app
    nonce = app.next_nonce(lab.seller.public)
    gossiped = sign_tx(lab.seller, "mgmc", "offer", nonce, lab.node.clock(), offer(50))
    lab.replica.submit(gossiped.raw, lab.node.clock())  # e.g. its own, from before a restart, gossiped back

    async def run() -> tuple[Any, Counting]:
        adapter = ChainAdapter(lab.node, "mgmc", asyncio.get_running_loop(), lab.changed)
        counting = Counting(lab)
        result = await with_blocks_after(lab, 0.3, adapter.submit(lab.seller, "offer", offer(51), timeout=30))
        return result, counting

    result, counting = asyncio.run(run())
    assert result.ok, result  # (the old adapter: "mempool", another transaction with nonce N is pending)
    assert app.next_nonce(lab.seller.public) == nonce + 2 and lab.store.locate_tx(gossiped.txid) is not None
    assert counting.sent <= 3, counting.sent  # refused once, maybe again at a block, then signed after it
    lab.store.close()


def test_the_dso_enrols_once_after_its_first_enrolment_timed_out(tmp_path: Path) -> None:
    """The lab's livelock end to end: `DsoLoop.enrol` with the real adapter and replica, its first enrol still
    pending (not final in its time), the chain's blocks only coming a little later: one enrol lands."""
    lab = Lab(tmp_path)
    app = lab.replica.app
    nonce = app.next_nonce(lab.dso.public)
    node, anonym = Keypair.generate(), Keypair.generate()
    settings = SimpleNamespace(
        mgs={"mg1": SimpleNamespace(anonym=anonym.public.hex(), node=node.public.hex())}
    )
    body = {"mgmc": node.public, "anonym": anonym.public, "label": "mg1"}

    async def run() -> tuple[Any, Counting]:
        adapter = ChainAdapter(lab.node, "mgmc", asyncio.get_running_loop(), lab.changed)
        first = await adapter.submit(lab.dso, "enrol", body, timeout=0.2)
        assert first.reason == "timeout", first
        counting = Counting(lab)
        dso = DsoLoop(settings, lab.replica, adapter, lab.changed, *[None] * 4, lab.dso, None, None)  # type: ignore[arg-type]
        await with_blocks_after(lab, 0.3, asyncio.wait_for(dso.enrol(), 30))
        return first, counting

    first, counting = asyncio.run(run())
    assert query.account(app.state, anonym.public) is not None  # enrolled
    assert app.next_nonce(lab.dso.public) == nonce + 1 and lab.store.locate_tx(first.txid) is not None
    assert counting.sent == 0  # by the first enrol, waited for; none signed again
    lab.store.close()


@pytest.mark.parametrize("same", [True, False])
def test_with_no_block_the_wait_ends_at_the_timeout_without_spinning(
    tmp_path: Path, same: bool, caplog: pytest.LogCaptureFixture
) -> None:
    lab = Lab(tmp_path)

    async def run() -> tuple[Any, Counting]:
        adapter = ChainAdapter(lab.node, "mgmc", asyncio.get_running_loop(), lab.changed)
        first = await adapter.submit(lab.seller, "offer", offer(50), timeout=0.2)
        assert first.reason == "timeout", first
        counting = Counting(lab)
        results = [
            await adapter.submit(lab.seller, "offer", offer(50 if same else 51), timeout=1.0)
            for _ in range(3)
        ]
        assert all(r == results[0] for r in results[1:]), results
        return results[0], counting

    with caplog.at_level(logging.WARNING, "peergrid_dso.node_chains"):
        result, counting = asyncio.run(run())
    assert not result.ok and result.reason == "timeout", result  # (the old adapter: "mempool" at once)
    # the same one is adopted; another is pipelined on the next nonce once, then adopted: never re-signed
    assert counting.sent == (0 if same else 1), counting.sent
    assert 3 <= counting.waits <= 3 * 3, counting.waits  # 0.5-s waits for 1 s, thrice
    said = [r.getMessage() for r in caplog.records if r.name == "peergrid_dso.node_chains"]
    assert said == [], said  # nothing waits for a nonce: nothing to say
    lab.store.close()


def test_throttled_says_a_repeated_message_once_per_period_then_how_often(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    said = Throttled(logging.getLogger("test.throttled"), every_s=5.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, "test.throttled"):
        for _ in range(1000):
            said.warning("enrolment of %s not final yet: %s", "mg1", "nonce 1 pending")
            now[0] += 0.001  # a second in all
        said.warning("enrolment of %s not final yet: %s", "mg2", "nonce 1 pending")  # another: said at once
        now[0] += 5.0
        said.warning("enrolment of %s not final yet: %s", "mg1", "nonce 1 pending")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "enrolment of mg1 not final yet: nonce 1 pending",
        "enrolment of mg2 not final yet: nonce 1 pending",
        "enrolment of mg1 not final yet: nonce 1 pending (and 999 more times in 6 s)",
    ], lines
