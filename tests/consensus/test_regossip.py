"""A replica gossips its own pending transactions again (`regossip.Regossip`, wired into `ChainReplica`).

- the schedule: due after 2 s, then 4, 8, 16, 16 s; forgotten once out of the pool; at most `batch` per call
  and never sooner than `spacing_ms` after the last call that sent anything (the flood bound), whatever the
  pool holds (hypothesis);
- a lone authority's replica: its own submitted transactions go out again on its own timer, in envelopes of
  at most the batch, until they land; then the timer stops. Before, a transaction was published once only.
The same over a real broker, a publish lost before the proposer subscribed: tests/consensus/test_regossip_mqtt.py.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from helpers_replica import wall_ms
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid_ledger.consensus.actions import Timer
from peergrid_ledger.consensus.engine import EngineConfig
from peergrid_ledger.consensus.node import REGOSSIP_TIMER, ChainReplica
from peergrid_ledger.consensus.regossip import REGOSSIP_BATCH, REGOSSIP_SPACING_MS, Regossip
from peergrid_ledger.consensus.transport import TX, decode_tx_batch, read_envelope
from peergrid_ledger.genesis import Account, Genesis
from peergrid_ledger.keys import Keypair
from peergrid_ledger.store import BlockStore
from peergrid_ledger.tx import sign_tx


class Timers:
    def __init__(self) -> None:
        self.armed: list[tuple[int, int]] = []

    def __call__(self, generation: int, at: int) -> None:
        self.armed.append((generation, at))


def test_back_off_doubles_to_the_cap_and_stops_when_the_transaction_leaves_the_pool() -> None:
    timers = Timers()
    schedule = Regossip(timers, 2_000, 16_000)
    pooled = {b"a"}
    schedule.track(b"a", b"raw-a", 0)
    sent_at = []
    for _ in range(7):
        generation, at = timers.armed[-1]
        assert schedule.fire(generation, at, pooled.__contains__) == [b"raw-a"]
        sent_at.append(at)
    assert sent_at == [2_000, 6_000, 14_000, 30_000, 46_000, 62_000, 78_000]
    pooled.clear()  # landed (or refused, or too old): nothing more, and no timer
    generation, at = timers.armed[-1]
    armed = len(timers.armed)
    assert schedule.fire(generation, at, pooled.__contains__) == []
    assert len(schedule) == 0 and len(timers.armed) == armed and schedule.next_at() is None


def test_a_superseded_timer_sends_nothing() -> None:
    timers = Timers()
    schedule = Regossip(timers, 2_000, 16_000)
    schedule.track(b"a", b"raw-a", 0)
    schedule.fire(*timers.armed[-1][:1], 2_000, lambda _: True)  # a: next due at 6,000
    schedule.track(b"b", b"raw-b", 3_000)  # b due at 5,000: a sooner timer, the 6,000 one superseded
    old, new = timers.armed[-2], timers.armed[-1]
    assert new[1] == 5_000 and old[1] == 6_000
    assert schedule.fire(old[0], 6_000, lambda _: True) == []
    assert schedule.fire(new[0], 6_000, lambda _: True) == [b"raw-b", b"raw-a"]  # oldest due first


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="re-gossip"):
        Regossip(Timers(), 0, 16_000)
    with pytest.raises(ValueError, match="re-gossip"):
        Regossip(Timers(), 4_000, 2_000)
    with pytest.raises(ValueError, match="re-gossip"):
        Regossip(Timers(), 2_000, 16_000, batch=0)


@settings(max_examples=60, deadline=None)
@given(
    arrivals=st.lists(st.tuples(st.integers(0, 20_000), st.integers(1, 400)), min_size=1, max_size=12),
    batch=st.integers(1, 300),
    landed_at=st.integers(0, 60_000),
)
def test_the_flood_bound_holds_whatever_the_pool_holds(
    arrivals: list[tuple[int, int]], batch: int, landed_at: int
) -> None:
    """Bursts of up to 400 submitted at once, all leaving the pool at `landed_at`: every call hands out at
    most `batch`, calls that send are at least `spacing` apart, each transaction goes out at most once per
    `first` ms and never after it left the pool, and a timer is armed whenever something is tracked."""
    timers = Timers()
    schedule = Regossip(timers, 2_000, 16_000, batch=batch, spacing_ms=250)
    pooled: set[bytes] = set()
    events = sorted(arrivals)
    last_out: dict[bytes, int] = {}
    sends: list[int] = []
    now, serial = 0, 0
    while now < 90_000:
        if schedule.next_at() is None:
            if not events:
                break
            now = max(now, events[0][0])
        else:
            generation, at = timers.armed[-1]  # the latest timer: the one that counts
            if events and events[0][0] < at:
                now = max(now, events[0][0])
            else:
                now = max(now, at)
                if now >= landed_at:
                    pooled.clear()
                out = schedule.fire(generation, now, pooled.__contains__)
                assert len(out) <= batch
                if out:
                    assert not sends or now - sends[-1] >= 250
                    sends.append(now)
                for txid in out:
                    assert txid in pooled
                    assert now - last_out.get(txid, -(10**9)) >= 2_000
                    last_out[txid] = now
                if schedule.next_at() is not None:
                    assert timers.armed[-1][0] != generation  # armed again for the rest
                continue
        while events and events[0][0] <= now:
            at, count = events.pop(0)
            for _ in range(count):
                txid = serial.to_bytes(4, "big")
                serial += 1
                if at < landed_at:
                    pooled.add(txid)
                schedule.track(txid, txid, at)


# --- on a replica ---------------------------------------------------------------------------------------


class Wire:
    """A lone authority's transport and scheduler: keeps what it publishes and the timers it sets."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []
        self.timers: list[tuple[Timer, int]] = []

    def publish(self, _chain: str, kind: str, data: bytes, to: bytes | None = None) -> None:
        self.published.append((kind, data))

    def schedule(self, timer: Timer, at_ms: int) -> None:
        self.timers.append((timer, at_ms))

    def take(self, kind: str) -> list[tuple[Timer, int]]:
        mine = [(t, at) for t, at in self.timers if t.kind == kind]
        self.timers = [(t, at) for t, at in self.timers if t.kind != kind]
        return mine

    def tx_batches(self, chain: str) -> list[list[bytes]]:
        batches = [decode_tx_batch(read_envelope(chain, d)[0].body) for k, d in self.published if k == TX]
        self.published = [(k, d) for k, d in self.published if k != TX]
        return batches


def _lone_authority(tmp_path: Path, wire: Wire) -> tuple[ChainReplica, Keypair]:
    authority, sender = Keypair.generate(), Keypair.generate()
    genesis = Genesis(
        chain="mgmc", time=wall_ms() - 1000, authorities=(authority.public,),
        accounts=(Account(sender.public, ("dso",)),),
    )  # fmt: skip
    replica = ChainReplica(
        BlockStore.create(tmp_path / "chain", genesis),
        authority,
        EngineConfig(block_period_ms=50, heartbeat_ms=60_000),
        wire,
        wire.schedule,
    )  # type: ignore[arg-type]
    return replica, sender


def _actions(sender: Keypair, start: int, count: int, now: int) -> list[Any]:
    body = {"operator": "olga", "action": "switch", "txs": []}
    return [sign_tx(sender, "mgmc", "operator_action", n, now, body) for n in range(start, start + count)]


def test_a_replica_gossips_its_pending_transactions_again_in_bounded_batches_until_they_land(
    tmp_path: Path,
) -> None:
    wire = Wire()
    replica, sender = _lone_authority(tmp_path, wire)
    t0 = wall_ms()
    replica.start(t0)
    txs = _actions(sender, replica.app.next_nonce(sender.public), 600, t0)
    for tx in txs:
        assert type(replica.submit(tx.raw, t0)).__name__ == "Accepted"
    replica.flush()
    first = wire.tx_batches("mgmc")
    assert sum(map(len, first)) == 600  # the first gossip (envelopes of at most GOSSIP_BATCH)

    # not in a block yet (the lone authority may have taken the first at once): every regossip firing sends
    # at most the batch, spaced apart, the earliest due first, each pending transaction once a round
    pending = {tx.raw for tx in txs if tx.txid in replica.app.mempool}
    assert len(pending) >= 500
    sent: dict[bytes, int] = {}
    fired_at: list[int] = []
    for _ in range(10):  # three firings send them all
        if len(sent) == len(pending):
            break
        timers = wire.take(REGOSSIP_TIMER)
        assert timers, "pending transactions and no regossip timer"
        timer, at = max(timers, key=lambda t: t[0].height)  # the others were superseded
        replica.fire(timer, at)
        for batch in wire.tx_batches("mgmc"):
            assert len(batch) <= REGOSSIP_BATCH
            for raw in batch:
                sent[raw] = sent.get(raw, 0) + 1
        fired_at.append(at)
    assert fired_at[0] == t0 + 2_000 and len(fired_at) == -(-len(pending) // REGOSSIP_BATCH)
    assert all(b - a >= REGOSSIP_SPACING_MS for a, b in itertools.pairwise(fired_at))
    assert set(sent) == pending and set(sent.values()) == {1}
    assert replica.stats["tx_regossiped"] == len(pending)

    # they land: the next regossip finds nothing pooled, sends nothing and sets no further timer
    for _ in range(20):
        if replica.app.next_nonce(sender.public) > txs[-1].nonce:
            break
        for timer, at in wire.take("propose"):
            replica.fire(timer, max(at, wall_ms()))
    assert replica.app.next_nonce(sender.public) == txs[-1].nonce + 1
    wire.tx_batches("mgmc")
    for timer, at in wire.take(REGOSSIP_TIMER):
        replica.fire(timer, at + 60_000)
    assert wire.tx_batches("mgmc") == []
    assert wire.take(REGOSSIP_TIMER) == [] and len(replica.regossip) == 0


def test_a_transaction_submitted_before_start_is_gossiped_again_once_started(tmp_path: Path) -> None:
    """Before start the embedder's timers may not run (no loop yet): the timer is set at start."""
    wire = Wire()
    replica, sender = _lone_authority(tmp_path, wire)
    t0 = wall_ms()
    (tx,) = _actions(sender, replica.app.next_nonce(sender.public), 1, t0)
    replica.submit(tx.raw, t0)
    assert wire.take(REGOSSIP_TIMER) == []
    replica.start(t0)
    (timer, at), = wire.take(REGOSSIP_TIMER)  # fmt: skip
    assert at == t0 + 2_000
    replica.fire(timer, at)
    assert wire.tx_batches("mgmc") == [[tx.raw]]
