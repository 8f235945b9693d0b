"""LevelDB store: reopen, corrupt-store detection, and tamper evidence naming the right height."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from peergrid_ledger import keyspace as ks
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.demo import NAMES, build_demo, demo_genesis, demo_key
from peergrid_ledger.store import BlockStore, StoreCorrupt, StoreError, body_key, cert_key, header_key, tx_key
from peergrid_ledger.verify import verify_store

BLOCKS = 6


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ledger") / "db"
    store = BlockStore.create(path, demo_genesis({n: demo_key(n) for n in NAMES}))
    build_demo(store, BLOCKS)
    store.close()
    return path


@pytest.fixture
def store(pristine: Path, tmp_path: Path) -> Iterator[BlockStore]:
    import shutil

    copy = tmp_path / "db"
    shutil.copytree(pristine, copy)
    with BlockStore.open(copy) as opened:
        yield opened


def flip(store: BlockStore, key: bytes, position: int) -> None:
    value = store.raw_get(key)
    assert value is not None, key
    i = position % len(value)
    store.raw_put(key, value[:i] + bytes([value[i] ^ 0x01]) + value[i + 1 :])


def test_pristine_store_verifies_and_reopens_as_a_chain(store: BlockStore) -> None:
    report = verify_store(store)
    assert report.ok and report.verified == BLOCKS, report.summary()
    chain = LocalChain.open(store, demo_key("authority-a"))
    assert chain.height == BLOCKS and chain.state.root == store.header(BLOCKS).state_root
    chain.seal()
    assert verify_store(store).ok


@pytest.mark.parametrize("height", [1, 3, BLOCKS])
@pytest.mark.parametrize("what", ["header", "body", "certificate"])
def test_flipped_byte_in_a_block_names_its_height(store: BlockStore, what: str, height: int) -> None:
    key = {"header": header_key, "body": body_key, "certificate": cert_key}[what](height)
    size = len(store.raw_get(key) or b"")
    for position in range(0, size, max(1, size // 12)):
        flip(store, key, position)
        report = verify_store(store)
        assert not report.ok and report.first_bad == height, (position, report.summary())
        flip(store, key, position)  # restore
    assert verify_store(store).ok


def test_flipped_state_names_the_height_that_last_wrote_it(store: BlockStore) -> None:
    mg1 = demo_key("mg1").public
    cases = {
        ks.der_commitment(mg1, 5): 5,  # the demo commits interval k's data in block k (k > 3)
        ks.der_commitment(mg1, 1): 1,
        ks.account(demo_key("dso").public): 0,  # written by genesis, never since
    }
    for key, height in cases.items():
        stored_key = b"st/" + key
        for position in (0, 3, 11):
            flip(store, stored_key, position)
            report = verify_store(store)
            assert not report.ok and report.first_bad == height, report.summary()
            flip(store, stored_key, position)
    with pytest.raises(StoreCorrupt):
        flip(store, b"st/" + ks.der_commitment(mg1, 5), 2)
        store.load_state()  # opening a tampered store for use fails loudly


def test_deleted_or_extra_state_and_bad_tx_index_are_caught(store: BlockStore) -> None:
    block = store.block(4)
    txid = block.txs[0].txid
    entry = store.raw_get(tx_key(txid))
    store.raw_put(tx_key(txid), b"\x82\x01\x00")
    assert verify_store(store).first_bad == 4
    assert entry is not None
    store.raw_put(tx_key(txid), entry)
    store.raw_put(b"st/" + b"bal/" + bytes(32), b"\x01")
    report = verify_store(store)
    assert not report.ok and "unexpected" in report.reason


def test_corrupt_head_and_foreign_directories(store: BlockStore, tmp_path: Path) -> None:
    store.raw_put(b"meta/head", b"\xff")
    assert not verify_store(store).ok
    with pytest.raises(StoreCorrupt):
        store.head_height()
    with pytest.raises(StoreError, match="no such ledger store"):
        BlockStore.open(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError):
        BlockStore.open(tmp_path / "empty")


def test_create_refuses_an_existing_ledger(pristine: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "db2"
    shutil.copytree(pristine, copy)
    with pytest.raises(StoreError, match="already holds"):
        BlockStore.create(copy, demo_genesis({n: demo_key(n) for n in NAMES}))


def test_append_is_only_at_the_head(store: BlockStore) -> None:
    block = store.block(2)
    with pytest.raises(StoreError, match="append height"):
        store.append(block, store.certificate(2), {})
