"""`BlockStore.transactions`: a block's transactions as their wire bytes, undecoded, checked against its header's
tx_root (a reader after a few of them decodes only those: the edge's rejoin reads a session's steps so)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from peergrid_ledger.demo import NAMES, build_demo, demo_genesis, demo_key
from peergrid_ledger.store import BlockStore, StoreCorrupt, body_key


@pytest.fixture
def store(tmp_path: Path) -> Iterator[BlockStore]:
    built = BlockStore.create(tmp_path / "db", demo_genesis({n: demo_key(n) for n in NAMES}))
    build_demo(built, 4)
    yield built
    built.close()


def test_the_wire_bytes_are_the_blocks_own_in_order(store: BlockStore) -> None:
    for height in range(1, store.head_height() + 1):
        assert store.transactions(height) == tuple(tx.raw for tx in store.block(height).txs)


def test_a_missing_block_is_a_key_error_and_a_corrupt_or_foreign_body_names_its_height(
    store: BlockStore,
) -> None:
    with pytest.raises(KeyError):
        store.transactions(store.head_height() + 1)
    first, second = store.raw_get(body_key(1)), store.raw_get(body_key(2))
    assert first is not None and second is not None and first != second
    store.raw_put(body_key(1), b"\x00not a body")
    with pytest.raises(StoreCorrupt, match="height 1: stored body is corrupt"):
        store.transactions(1)
    store.raw_put(body_key(1), second)  # decodes, but is block 2's
    with pytest.raises(
        StoreCorrupt, match="height 1: its transactions are not the ones its header commits to"
    ):
        store.transactions(1)
