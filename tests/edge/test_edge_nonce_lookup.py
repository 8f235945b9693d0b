"""Who took a used nonce is read back from the store off the event loop (`EdgeLedger._used_on_chain`, K8's
taken-nonce lookup; session 16's "noticed, left alone"): a replica that did not see the block commit (a restart;
a store restored behind the chain) reads the blocks back from the head, about 1 s a day of 2-s heartbeat blocks,
and did so on the loop, so polling, consensus and the agent stood still for it (/work/notes/e24: 0.88-1.09 s of
stall on 43,200 blocks; 12-26 ms in a worker thread).

On a chain sealed into LevelDB by `LocalChain` and opened by a fresh `EdgeLedger` (not started: `submit` of a
used nonce answers from the store alone): the block reads happen in a worker thread while the loop runs on; what
the lookup answers is what every final transaction says (a Hypothesis property against a plain index of the
blocks); a ledger closed during a lookup is read no more, and the lookup says so.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid_edge.link import MqttLink
from peergrid_edge.replicas import LANDED, NONCE_TAKEN, ChainSpec, EdgeLedger
from peergrid_ledger import codec
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.genesis import Account, Genesis
from peergrid_ledger.keys import Keypair
from peergrid_ledger.results import Accepted
from peergrid_ledger.store import BlockStore
from peergrid_ledger.tx import Tx, sign_tx

NODE = Keypair.from_seed(hashlib.sha256(b"edge-nonce-lookup/node").digest())
OTHER = Keypair.from_seed(hashlib.sha256(b"edge-nonce-lookup/other").digest())
CHAIN = "edge-nonce-lookup"


def commitment(key: Keypair, nonce: int, interval: int, root: int, time_ms: int = 1000) -> Tx:
    body = {"interval": interval, "root": bytes([root]) * 32, "readings": 1}
    return sign_tx(key, CHAIN, "der_commitment", nonce, time_ms + nonce, body)


def sealed(base: Path, blocks: list[list[Keypair]]) -> list[Tx]:
    """A chain in `base` whose block h + 1 holds one commitment of each key in blocks[h] (each sender's nonces
    1, 2, ..., a new interval each); every final transaction, in order."""
    genesis = Genesis(chain=CHAIN, time=0, authorities=(NODE.public,),
                      accounts=(Account(NODE.public, ("mgmc",)), Account(OTHER.public, ("mgmc",))))  # fmt: skip
    (base / "genesis.json").write_text(json.dumps(genesis.to_json()))
    store = BlockStore.create(base / "mgmc.db", genesis)
    chain = LocalChain(genesis, NODE, store)
    nonces = {NODE.public: 0, OTHER.public: 0}
    final: list[Tx] = []
    for height, senders in enumerate(blocks, start=1):
        for key in senders:
            nonces[key.public] += 1
            tx = commitment(key, nonces[key.public], nonces[key.public], 1)
            assert isinstance(chain.submit(tx), Accepted)
            final.append(tx)
        chain.seal(height * 2000)
    store.close()
    return final


def opened(base: Path) -> EdgeLedger:
    spec = ChainSpec(name="mgmc", genesis=base / "genesis.json", data_dir=base / "mgmc.db", wal_fsync=False)
    return EdgeLedger(NODE, MqttLink("test", "127.0.0.1", 9), "feeder", [spec])


def submit(ledger: EdgeLedger, tx: Tx) -> Any:
    return ledger.submit("mgmc", tx.raw, 5.0)


def test_the_lookup_reads_the_blocks_in_a_worker_thread_while_the_loop_runs(tmp_path: Path) -> None:
    """Each block read waits until a callback queued on the loop has run: on the loop (before) the first read
    waits in vain and the lookup fails; in a worker thread the loop runs the callback at once."""
    sealed(tmp_path, [[NODE], [], [], [OTHER], []])
    ledger = opened(tmp_path)
    store = ledger.replicas["mgmc"].store
    real, loop_ran, readers = store.block, threading.Event(), set()

    def block(height: int) -> Any:
        readers.add(threading.get_ident())
        assert loop_ran.wait(5), "the block was read while the event loop was held"
        return real(height)

    store.block = block  # type: ignore[method-assign]

    async def main() -> Any:
        loop = asyncio.get_running_loop()
        loop.call_soon(loop_ran.set)  # runs only once the loop is free
        return await submit(ledger, commitment(NODE, 1, 1, 2))  # nonce 1 went to the root-1 commitment

    try:
        outcome = asyncio.run(main())
    finally:
        ledger.close()
    assert outcome.reason.startswith(NONCE_TAKEN) and "der_commitment" in outcome.reason
    assert readers and threading.main_thread().ident not in readers


BLOCKS = st.lists(
    st.lists(st.sampled_from([NODE, OTHER]), max_size=2, unique_by=lambda k: k.public), max_size=8
)
"""Blocks of up to one commitment per key (a sender's nonces grow with the height)."""


@settings(max_examples=25, deadline=None)
@given(BLOCKS, st.data())
def test_the_lookup_answers_what_the_final_transaction_at_that_nonce_says(
    blocks: list[list[Keypair]], data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        final = sealed(Path(tmp), blocks)
        if not final:
            return
        index = {(tx.sender, tx.nonce): tx for tx in final}  # every final transaction by sender and nonce
        held = data.draw(st.sampled_from(final))
        same = data.draw(st.booleans())
        key = NODE if held.sender == NODE.public else OTHER
        again = commitment(key, held.nonce, held.body["interval"], 1 if same else 2, 5000)  # signed anew
        ledger = opened(Path(tmp))
        try:
            head = ledger.height("mgmc")
            found = ledger._used_on_chain("mgmc", held.sender, held.nonce, head)
            outcome = asyncio.run(submit(ledger, again))
        finally:
            ledger.close()
    expected = index[(held.sender, held.nonce)]
    assert found == (expected.kind, hashlib.sha256(codec.encode(expected.body)).digest())
    if same:  # the same content at another time: an earlier signing of it, landed
        assert outcome == LANDED
    else:
        assert outcome.reason == f"{NONCE_TAKEN}: nonce {held.nonce} went to a der_commitment"


class _Waiting(tuple):  # type: ignore[type-arg]
    """A block's transactions whose reading (after the block read, outside the store) waits for `gate`."""

    gate: threading.Event

    def __reversed__(self) -> Iterator[Any]:
        assert self.gate.wait(5)
        return iter(tuple(self)[::-1])


def test_a_ledger_closed_during_a_lookup_is_read_no_more(tmp_path: Path) -> None:
    sealed(tmp_path, [[NODE], [], [], []])
    ledger = opened(tmp_path)
    store = ledger.replicas["mgmc"].store
    real, first_read, closed, reads = store.block, threading.Event(), threading.Event(), []

    def block(height: int) -> Any:
        reads.append((height, ledger.closed))
        read = real(height)
        first_read.set()
        waiting = _Waiting(read.txs)
        waiting.gate = closed
        return dataclasses.replace(read, txs=waiting)

    store.block = block  # type: ignore[method-assign]

    async def main() -> None:
        lookup = asyncio.ensure_future(submit(ledger, commitment(NODE, 1, 1, 2)))
        assert await asyncio.to_thread(first_read.wait, 5)
        ledger.close()  # the head block was read; the lookup goes on to the next one
        closed.set()
        with pytest.raises(RuntimeError, match="closed during a taken-nonce lookup"):
            await lookup

    asyncio.run(main())
    assert reads == [(4, False)]  # the head only: nothing read after the close
