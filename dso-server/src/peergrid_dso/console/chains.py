"""The console's view of the ledgers: the DSO chain it records operator actions on, and read-only explorers.

Promises: `ChainExplorer` lists blocks and transactions as JSON-safe values and builds inclusion proofs
(`peergrid_ledger.proof.build_proof`); it only reads. `by_label` puts the operator's name into a ledger label
(`"<subject> by <user>"`, at most 64 characters), which is how switching records say who acted.
Assumes a `LocalChain`-like object (block, certificate, locate_tx, height, genesis); `StoreChain` makes one
of a replica's LevelDB store (the live chains, read from any thread while the replica's loop appends).
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from peergrid_ledger.block import Block, Certificate
from peergrid_ledger.genesis import Genesis
from peergrid_ledger.proof import build_proof

LABEL_MAX = 64


class ReadableChain(Protocol):
    genesis: Genesis

    @property
    def height(self) -> int: ...

    def block(self, height: int) -> Block: ...

    def certificate(self, height: int) -> Certificate: ...

    def locate_tx(self, txid: bytes) -> tuple[int, int] | None: ...


def by_label(subject: str, user: str) -> str:
    suffix = f" by {user}"
    return subject[: LABEL_MAX - len(suffix)] + suffix


def jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


class StoreChain:
    """A ledger replica's store, read-only, as a `ReadableChain`."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.genesis = store.genesis

    @property
    def height(self) -> int:
        return int(self.store.head_height())

    def block(self, height: int) -> Block:
        block: Block = self.store.block(height)
        return block

    def certificate(self, height: int) -> Certificate:
        cert: Certificate = self.store.certificate(height)
        return cert

    def locate_tx(self, txid: bytes) -> tuple[int, int] | None:
        found: tuple[int, int] | None = self.store.locate_tx(txid)
        return found


class ChainExplorer:
    def __init__(self, name: str, chain: ReadableChain, lock: threading.Lock | None = None) -> None:
        self.name = name
        self.chain = chain
        self.lock = lock or threading.Lock()

    def head(self) -> dict[str, Any]:
        with self.lock:
            height = self.chain.height
            head = self.chain.block(height).hash.hex() if height else self.chain.genesis.hash.hex()
        return {"chain": self.chain.genesis.chain, "height": height, "head": head}

    def blocks(self, before: int | None, limit: int) -> list[dict[str, Any]]:
        with self.lock:
            top = self.chain.height if before is None else min(before - 1, self.chain.height)
            out = []
            for height in range(top, max(0, top - limit), -1):
                block = self.chain.block(height)
                out.append(block.header.to_json() | {"txs": len(block.txs)})
            return out

    def block(self, height: int) -> dict[str, Any] | None:
        with self.lock:
            if not 1 <= height <= self.chain.height:
                return None
            block = self.chain.block(height)
            cert = self.chain.certificate(height)
        txs = [
            {
                "txid": tx.txid.hex(),
                "kind": tx.kind,
                "sender": tx.sender.hex(),
                "nonce": tx.nonce,
                "time": tx.time,
                "body": jsonable(tx.body),
                "bytes": len(tx.raw),
            }
            for tx in block.txs
        ]
        header: dict[str, Any] = block.header.to_json()
        return header | {
            "seal": block.seal.hex(),
            "commit_signers": [s.hex() for s, _ in cert.votes],
            "transactions": txs,
        }

    def proof(self, txid: bytes) -> dict[str, Any] | None:
        with self.lock:
            where = self.chain.locate_tx(txid)
            if where is None:
                return None
            height, _ = where
            proof: dict[str, Any] = build_proof(
                self.chain.block(height), self.chain.certificate(height), txid
            )
            return proof
