"""A transaction whose nonce the chain already used is reported landed only where the transaction that used it
says the same (K7's finding, K8): `EdgeLedger.submit` returned LANDED for any used nonce, so the outbox of a
store behind the chain (restored from a backup, or started afresh after damage) marked a `der_commitment`
submitted that never reached the chain, and its interval's readings were never committed, silently.

On a real single-authority `EdgeLedger` (the node key its only authority; no broker) with the edge's own
outbox (`EdgeStore`, the daemon's `_submit_pending` and `_sign`, `LedgerTxSink`): the outbox that lost its
nonces renumbers what it holds from the chain's next nonce and every commitment lands; an earlier signing of
the same commitment (the one in flight at a restart, signed again at another time) still counts as landed,
also in a new process whose replica read it from its store, not from the blocks it saw commit."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import shutil
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from peergrid_edge.daemon import EdgeDaemon
from peergrid_edge.link import MqttLink, NonceTaken, Refused
from peergrid_edge.replicas import ChainSpec, EdgeLedger, LedgerTxSink
from peergrid_edge.store import EdgeStore
from peergrid_ledger import keyspace
from peergrid_ledger.genesis import Account, Genesis
from peergrid_ledger.keys import Keypair
from peergrid_ledger.tx import sign_tx

NODE = Keypair.from_seed(hashlib.sha256(b"edge-outbox-nonce/node").digest())
CHAIN = "edge-outbox-nonce"


def spec(tmp_path: Path) -> ChainSpec:
    genesis = Genesis(
        chain=CHAIN, time=0, authorities=(NODE.public,), accounts=(Account(NODE.public, ("mgmc",)),)
    )
    path = tmp_path / "mgmc-genesis.json"
    if not path.exists():
        path.write_text(json.dumps(genesis.to_json()))
    return ChainSpec(name="mgmc", genesis=path, data_dir=tmp_path / "mgmc.db", block_period_ms=50,
                     round_timeout_ms=500, wal_fsync=False)  # fmt: skip


def ledger_at(tmp_path: Path) -> EdgeLedger:
    return EdgeLedger(NODE, MqttLink("test", "127.0.0.1", 9), "feeder", [spec(tmp_path)])


def sealed(store: EdgeStore, *intervals: int) -> None:
    for interval in intervals:
        store.add_reading(interval, b"reading-%d" % interval)
        store.seal(interval)


def daemon(ledger: EdgeLedger, store: EdgeStore) -> EdgeDaemon:
    """An EdgeDaemon with only what its outbox uses (`_submit_pending`, `_sign`) over this replica."""
    d = object.__new__(EdgeDaemon)
    d.settings = SimpleNamespace(ledger=SimpleNamespace(submit_timeout_s=5.0))  # type: ignore[assignment]
    d.ledger, d.store, d.keypair, d.chain_id = ledger, store, NODE, CHAIN
    d.clock = SimpleNamespace(wall=time.time)  # type: ignore[assignment]
    d.stopping = asyncio.Event()
    d.tx_sink = LedgerTxSink(ledger)
    return d


def committed(ledger: EdgeLedger, interval: int) -> bool:
    return ledger.state("mgmc").get(keyspace.der_commitment(NODE.public, interval)) is not None


def run(ledger: EdgeLedger, body: Any) -> Any:
    async def main() -> Any:
        ledger.start()
        try:
            return await body()
        finally:
            ledger.close()

    return asyncio.run(main())


def test_an_outbox_behind_the_chain_renumbers_and_every_commitment_lands(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    ledger = ledger_at(tmp_path)
    old, new = EdgeStore(tmp_path / "edge.db"), EdgeStore(tmp_path / "edge-new.db")
    got: dict[str, Any] = {}

    async def body() -> None:
        sealed(old, 1)  # interval 1 at nonce 1
        await daemon(ledger, old)._submit_pending()
        assert committed(ledger, 1) and old.queued() == 0
        # the store is started afresh: intervals 2 and 3 queued at nonces 1 and 2 again
        sealed(new, 2, 3)
        assert [q.nonce for q in new.pending()] == [1, 2]
        outbox = daemon(ledger, new)
        await outbox._submit_pending()  # interval 2 finds nonce 1 used by interval 1's commitment
        got["after one round"] = (committed(ledger, 2), [q.nonce for q in new.pending()], new.queued())
        await outbox._submit_pending()
        sealed(new, 4)
        got["next seal"] = [q.nonce for q in new.pending()]

    run(ledger, body)
    # nothing marked submitted on a lost nonce; both renumbered from the chain's next (2)
    assert got["after one round"] == (False, [2, 3], 2)
    assert all(committed(ledger, t) for t in (1, 2, 3)) and got["next seal"] == [4]
    lost = [r.getMessage() for r in caplog.records if "lost its nonce" in r.getMessage()]
    assert len(lost) == 1 and "signed again from nonce 2" in lost[0] and "the 1 queued after it" in lost[0]
    old.close()
    new.close()


def test_the_sink_names_a_taken_nonce_and_an_earlier_signing_of_the_same_commitment_counts_as_landed(
    tmp_path: Path,
) -> None:
    store = EdgeStore(tmp_path / "edge.db")
    sealed(store, 1)
    (queued,) = store.pending()
    store.close()

    def signed(body: dict[str, Any], at_ms: int) -> bytes:
        return sign_tx(NODE, CHAIN, queued.kind, queued.nonce, at_ms, body).raw

    first = ledger_at(tmp_path)

    async def landed_then_taken() -> tuple[bool, bool, NonceTaken]:
        sink = LedgerTxSink(first)
        landed = await sink.submit(signed(queued.body, int(time.time() * 1000)), 5.0)
        # the same commitment signed again (the one in flight at a crash): this process saw it commit
        again = await sink.submit(signed(queued.body, int(time.time() * 1000) + 7), 5.0)
        other = {**queued.body, "interval": 2}
        with pytest.raises(NonceTaken) as taken:
            await sink.submit(signed(other, int(time.time() * 1000)), 5.0)
        return landed, again, taken.value

    landed, again, taken = run(first, landed_then_taken)
    assert landed and again
    assert taken.next_nonce == 2 and str(taken) == "nonce-taken: nonce 1 went to a der_commitment"
    # a new process over the same replica store: its own record of landed transactions is empty, the chain's
    # blocks say what holds nonce 1
    second = ledger_at(tmp_path)

    async def after_restart() -> tuple[bool, NonceTaken]:
        sink = LedgerTxSink(second)
        assert (NODE.public, 1) not in second._landed["mgmc"]  # read back from the blocks, not remembered
        again = await sink.submit(signed(queued.body, int(time.time() * 1000) + 11), 5.0)
        with pytest.raises(NonceTaken) as taken:
            await sink.submit(signed({**queued.body, "interval": 3}, int(time.time() * 1000)), 5.0)
        return again, taken.value

    again, taken = run(second, after_restart)
    assert again and taken.next_nonce == 2
    assert not committed(second, 2) and not committed(second, 3)


def test_a_store_restored_from_a_backup_taken_while_an_interval_was_open_drains_its_outbox(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """R24 F1: the restored store seals the interval open at backup time again from fewer readings - another
    root at the same nonce. The chain holds that interval for this key already: done, one WARNING, never renumbered
    into a `duplicate` refusal retried every round (which held back every later commitment)."""
    caplog.set_level(logging.WARNING)
    ledger = ledger_at(tmp_path)
    got: dict[str, Any] = {}

    async def body() -> None:
        old = EdgeStore(tmp_path / "edge.db")
        old.add_reading(1, b"reading-1a")
        old.close()
        shutil.copytree(tmp_path / "edge.db", tmp_path / "backup.db")  # interval 1 open, one reading
        old = EdgeStore(tmp_path / "edge.db")
        old.add_reading(1, b"reading-1b")
        old.seal(1)
        await daemon(ledger, old)._submit_pending()
        assert committed(ledger, 1)
        old.close()
        shutil.rmtree(tmp_path / "edge.db")
        shutil.copytree(tmp_path / "backup.db", tmp_path / "edge.db")  # the operator restores the backup
        store = EdgeStore(tmp_path / "edge.db")
        store.seal(1)  # one reading: another root than the committed one
        sealed(store, 2)
        outbox = daemon(ledger, store)
        await outbox._submit_pending()
        got["after one round"] = (store.queued(), committed(ledger, 2))
        sealed(store, 3)
        await outbox._submit_pending()
        got["later"] = (store.queued(), committed(ledger, 3))
        store.close()

    run(ledger, body)
    assert got["after one round"] == (0, True) and got["later"] == (0, True)
    warned = [
        r.getMessage() for r in caplog.records if "committed already with another root" in r.getMessage()
    ]
    assert len(warned) == 1 and "interval 1 " in warned[0] and "proofs will fail" in warned[0]
    assert not any("lost its nonce" in r.getMessage() for r in caplog.records)


def test_a_final_refusal_is_dropped_once_and_the_commitments_after_it_land(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A refusal the chain never takes back (here `malformed`: readings past the schema's bound) is not retried
    as if islanded: the sink raises `Refused`, the outbox logs it once, drops it and moves the ones after it
    down into its unused nonce."""
    caplog.set_level(logging.WARNING)
    ledger = ledger_at(tmp_path)
    store = EdgeStore(tmp_path / "edge.db")
    sealed(store, 1, 2)
    (bad, _) = store.pending()
    got: dict[str, Any] = {}

    async def body() -> None:
        sink = LedgerTxSink(ledger)
        raw = sign_tx(
            NODE, CHAIN, bad.kind, bad.nonce, int(time.time() * 1000), {**bad.body, "readings": 10**7}
        )
        with pytest.raises(Refused) as refused:
            await sink.submit(raw.raw, 5.0)
        got["refused"] = refused.value
        outbox = daemon(ledger, store)
        real = outbox.tx_sink
        calls: list[int] = []

        class FirstRefused:  # the real sink, except the first entry carries the body the chain refuses
            async def submit(self, raw: bytes, timeout_s: float) -> bool:
                calls.append(1)
                if len(calls) == 1:
                    raise Refused(str(got["refused"]), ledger.next_nonce("mgmc", NODE.public))
                return await real.submit(raw, timeout_s)

        outbox.tx_sink = FirstRefused()
        await outbox._submit_pending()
        got["after drop"] = [(q.seq, q.nonce) for q in store.pending()]
        await outbox._submit_pending()
        sealed(store, 3)
        got["next seal"] = [q.nonce for q in store.pending()]
        calls.clear()  # interval 3, the last queued, refused: nothing after it, the next seal takes its nonce
        await outbox._submit_pending()
        sealed(store, 4)
        got["after the last"] = [q.nonce for q in store.pending()]
        await outbox._submit_pending()

    run(ledger, body)
    assert str(got["refused"]).startswith("malformed") and got["refused"].next_nonce == 1
    assert got["after drop"] == [(2, 1)] and got["next seal"] == [2] and got["after the last"] == [2]
    assert store.queued() == 0 and committed(ledger, 2) and committed(ledger, 4)
    assert not committed(ledger, 1) and not committed(ledger, 3)
    dropped = [r.getMessage() for r in caplog.records if "for good" in r.getMessage()]
    assert len(dropped) == 2 and "interval 1 is never" in dropped[0] and "interval 3 is" in dropped[1]
    store.close()
