"""LevelDB block store (plyvel): every block with its certificate, indexes and state changes in one batch.

Promises: `append` writes the signed header, body, certificate, transaction index entries, state changes and
the new head in ONE `WriteBatch(sync=True)`, so after a crash (even `kill -9`) the store shows the previous
head or the new one, never a mix. `load_state` rebuilds the state tree - keys and leaf digests in memory, the
values read back from here on demand through a bounded cache (`state.StateTree.over_store`) - and refuses
(`StoreCorrupt`) a store whose state does not hash to its head's state root. Assumes one writer process per
directory (LevelDB's lock enforces it). This is the I/O shell around the pure core; nothing here decides validity.

Keys: meta/genesis, meta/head, hdr/<h>, body/<h>, cert/<h> (h as 8-byte big-endian), tx/<txid> -> [h, index],
st/<state key> -> value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TypeVar

import plyvel

from . import merkle
from .block import Block, Certificate, Header, Tip, body_items, decode_body, decode_signed_header
from .codec import DecodeError, decode, encode
from .contracts.market_fee import FEE_TICK, MAX_FEE
from .genesis import MAX_GENESIS_BYTES, Genesis, GenesisError
from .keyspace import u64
from .state import VALUE_CACHE_BYTES, StateTree

_Body = TypeVar("_Body")  # a stored body as one of the block's decoders gives it

GENESIS_KEY = b"meta/genesis"
HEAD_KEY = b"meta/head"
STATE_PREFIX = b"st/"


def _fee_off_the_tick(raw: bytes) -> int | None:
    """The exchange_fee of a stored genesis that fails to open when it is a fee the code before the whole-tick
    rule (a538b0a) took (in range, off the tick), so the refusal can say so rather than "corrupt"; None otherwise."""
    try:
        fee = decode(raw, MAX_GENESIS_BYTES)["params"]["exchange_fee"]
    except (DecodeError, KeyError, TypeError):
        return None
    if isinstance(fee, int) and not isinstance(fee, bool) and 0 < fee <= MAX_FEE and fee % FEE_TICK:
        return fee
    return None


def header_key(height: int) -> bytes:
    return b"hdr/" + u64(height)


def body_key(height: int) -> bytes:
    return b"body/" + u64(height)


def cert_key(height: int) -> bytes:
    return b"cert/" + u64(height)


def tx_key(txid: bytes) -> bytes:
    return b"tx/" + txid


class StoreError(Exception):
    """The directory is not a usable ledger store (missing, locked, or not initialised)."""


class StoreCorrupt(StoreError):
    """The store's own data is inconsistent: a loud failure, never silently repaired."""


class BlockStore:
    def __init__(self, db: plyvel.DB, path: Path, genesis: Genesis) -> None:
        self._db = db
        self.path = path
        self.genesis = genesis

    # -- opening
    @staticmethod
    def _open_db(path: Path, create: bool) -> plyvel.DB:
        try:
            return plyvel.DB(str(path), create_if_missing=create)
        except plyvel.IOError as exc:
            raise StoreError(f"{path}: cannot open ledger store ({exc})") from None
        except plyvel.Error as exc:
            raise StoreError(f"{path}: not a ledger store ({exc})") from None

    @classmethod
    def create(cls, path: str | Path, genesis: Genesis) -> BlockStore:
        """A new store holding only `genesis`; refuses a directory that already holds a ledger."""
        path = Path(path)
        db = cls._open_db(path, create=True)
        if db.get(GENESIS_KEY) is not None:
            db.close()
            raise StoreError(f"{path}: already holds a ledger")
        with db.write_batch(transaction=True, sync=True) as batch:
            batch.put(GENESIS_KEY, genesis.encode())
            batch.put(HEAD_KEY, encode([0, genesis.hash]))
            for key, value in genesis.initial_writes().items():
                if value is not None:
                    batch.put(STATE_PREFIX + key, value)
        return cls(db, path, genesis)

    @classmethod
    def open(cls, path: str | Path) -> BlockStore:
        path = Path(path)
        if not path.is_dir():
            raise StoreError(f"{path}: no such ledger store")
        db = cls._open_db(path, create=False)
        raw = db.get(GENESIS_KEY)
        if raw is None:
            db.close()
            raise StoreError(f"{path}: no genesis in this store")
        try:
            genesis = Genesis.decode(raw)
        except GenesisError as exc:
            db.close()
            fee = _fee_off_the_tick(raw)
            if fee is not None:  # a chain valid when written: not the disk's fault, and no repair opens it
                raise StoreCorrupt(
                    f"{path}: the stored genesis holds an exchange_fee of {fee:,} nano-currency per kWh, not a "
                    f"whole number of ticks ({FEE_TICK:,}): a fee taken when this chain was created, refused since "
                    "fees must be whole ticks, so this software cannot open it; recreate the chain with a "
                    "whole-tick fee"
                ) from None
            raise StoreCorrupt(f"{path}: stored genesis is corrupt ({exc})") from None
        return cls(db, path, genesis)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> BlockStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading
    def head_height(self) -> int:
        raw = self._db.get(HEAD_KEY)
        try:
            height, _ = decode(raw) if raw is not None else (None, None)
        except (DecodeError, ValueError, TypeError):
            raise StoreCorrupt(f"{self.path}: head record is corrupt") from None
        if type(height) is not int:
            raise StoreCorrupt(f"{self.path}: head record is corrupt")
        return height

    def signed_header(self, height: int) -> tuple[Header, bytes]:
        raw = self._db.get(header_key(height))
        if raw is None:
            raise KeyError(height)
        try:
            return decode_signed_header(raw)
        except DecodeError as exc:
            raise StoreCorrupt(f"height {height}: stored header is corrupt ({exc})") from None

    def header(self, height: int) -> Header:
        return self.signed_header(height)[0]

    def block(self, height: int) -> Block:
        header, seal = self.signed_header(height)
        return Block(header, seal, self._stored_body(height, decode_body))

    def transactions(self, height: int) -> tuple[bytes, ...]:
        """The wire bytes of the transactions of the block at `height`, undecoded, checked against its header's
        tx_root: a reader after a few of them (a kind, a session) decodes only those (`tx.decode_tx`), where
        `block` decodes every body. KeyError: no such block; StoreCorrupt: its body missing, corrupt, or not
        the transactions its header commits to."""
        header = self.header(height)
        txs = self._stored_body(height, body_items)
        if merkle.root(list(txs)) != header.tx_root:  # as `block.tx_root`, over the wire bytes
            raise StoreCorrupt(f"height {height}: its transactions are not the ones its header commits to")
        return txs

    def _stored_body(self, height: int, decode_with: Callable[[bytes, int, int], _Body]) -> _Body:
        """The body at `height` decoded by `decode_with` (the block's decoders) within the genesis' limits;
        StoreCorrupt when it is missing or does not decode."""
        raw = self._db.get(body_key(height))
        if raw is None:
            raise StoreCorrupt(f"height {height}: body missing")
        params = self.genesis.params
        try:
            return decode_with(raw, params.max_block_txs, params.max_block_bytes + 64 * 1024)
        except DecodeError as exc:
            raise StoreCorrupt(f"height {height}: stored body is corrupt ({exc})") from None

    def certificate(self, height: int) -> Certificate:
        raw = self._db.get(cert_key(height))
        if raw is None:
            raise StoreCorrupt(f"height {height}: certificate missing")
        try:
            return Certificate.decode(raw)
        except DecodeError as exc:
            raise StoreCorrupt(f"height {height}: stored certificate is corrupt ({exc})") from None

    def locate_tx(self, txid: bytes) -> tuple[int, int] | None:
        raw = self._db.get(tx_key(txid))
        if raw is None:
            return None
        height, index = decode(raw)
        return int(height), int(index)

    def tip(self) -> Tip:
        height = self.head_height()
        if height == 0:
            return Tip.of_genesis(self.genesis)
        return Tip.of(self.header(height))

    def state_items(self) -> Iterator[tuple[bytes, bytes]]:
        for key, value in self._db.iterator(prefix=STATE_PREFIX):
            yield key[len(STATE_PREFIX) :], value

    def state_value(self, key: bytes) -> bytes:
        """The stored value of state `key`, which a tree over this store holds (`state.CommittedValues`);
        StoreCorrupt when the store lost it."""
        value: bytes | None = self._db.get(STATE_PREFIX + key)
        if value is None:
            raise StoreCorrupt(f"{self.path}: the state value of {key!r} is missing from the store")
        return value

    def load_state(self, check: bool = True, cache_bytes: int = VALUE_CACHE_BYTES) -> StateTree:
        """The committed state at the head: a tree over this store, which must stay open while it is read."""
        tree = StateTree.over_store(self.genesis.chain, self, cache_bytes=cache_bytes)
        if check:
            height = self.head_height()
            expected = self.genesis.initial_state().root if height == 0 else self.header(height).state_root
            if tree.root != expected:
                raise StoreCorrupt(
                    f"{self.path}: stored state does not match the state root at height {height}"
                )
        return tree

    def raw_items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every key and value, for `export` and tamper tests."""
        yield from self._db.iterator()

    # -- writing
    def append(self, block: Block, certificate: Certificate, writes: Mapping[bytes, bytes | None]) -> None:
        """Store `block` as the new head, atomically and durably (one synced batch)."""
        height = block.height
        if height != self.head_height() + 1:
            raise StoreError(f"append height {height} after head {self.head_height()}")
        with self._db.write_batch(transaction=True, sync=True) as batch:
            batch.put(header_key(height), block.signed_header_bytes())
            batch.put(body_key(height), block.body_bytes())
            batch.put(cert_key(height), certificate.encode())
            for index, tx in enumerate(block.txs):
                batch.put(tx_key(tx.txid), encode([height, index]))
            for key, value in writes.items():
                if value is None:
                    batch.delete(STATE_PREFIX + key)
                else:
                    batch.put(STATE_PREFIX + key, value)
            batch.put(HEAD_KEY, encode([height, block.hash]))

    # for tamper-evidence tests: direct access, bypassing every check
    def raw_get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._db.get(key)
        return value

    def raw_put(self, key: bytes, value: bytes) -> None:
        self._db.put(key, value, sync=True)


class StoreState:
    """The committed state of an open store at its head, read key by key (a `state.StateReader`): nothing loaded
    whole, for a reader of a few keys of a long chain (`peergrid-ledger rules`; the DSO's check of the loop's keys
    before its node opens the store, `peergrid_dso.live.stored_word`)."""

    def __init__(self, store: BlockStore) -> None:
        self.store = store

    def get(self, key: bytes) -> bytes | None:
        return self.store.raw_get(STATE_PREFIX + key)
