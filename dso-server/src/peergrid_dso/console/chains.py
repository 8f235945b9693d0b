"""The console's view of the ledgers: the DSO chain it records operator actions on, and read-only explorers.

Promises: `ActionRecorder.record` turns one operator action into DSO-chain transactions signed by the DSO key,
seals them into a block and returns the receipt (txids, height); the operator's name travels in the
transaction's label field (`"<subject> by <user>"`, at most 64 characters) where the transaction kind has one,
and every action also goes into an in-memory audit list with its txids. `ChainExplorer` lists blocks and
transactions as JSON-safe values and builds inclusion proofs (`peergrid_ledger.proof.build_proof`).
Assumes a `LocalChain`-like object (block, certificate, locate_tx, height, genesis); the lab builds its own
DSO chain in memory until the DSO engineer's ledger node is available. Never writes to a chain it only reads.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from peergrid_ledger.block import Block, Certificate
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.genesis import Account, Genesis
from peergrid_ledger.keys import Keypair
from peergrid_ledger.proof import build_proof
from peergrid_ledger.results import Accepted

LABEL_MAX = 64


class ChainRefused(RuntimeError):
    """The DSO chain refused an operator action's transaction; the message carries the ledger's reason."""


class ReadableChain(Protocol):
    genesis: Genesis

    @property
    def height(self) -> int: ...

    def block(self, height: int) -> Block: ...

    def certificate(self, height: int) -> Certificate: ...

    def locate_tx(self, txid: bytes) -> tuple[int, int] | None: ...


def lab_key(feeder: str, name: str) -> Keypair:
    """Deterministic lab keys (never used in the pilot, where keys are made on the device)."""
    return Keypair.from_seed(hashlib.sha256(f"peergrid-lab/{feeder}/{name}".encode()).digest())


def lab_dso_chain(feeder: str, clock: Callable[[], int] | None = None) -> tuple[LocalChain, Keypair]:
    dso = lab_key(feeder, "dso")
    genesis = Genesis(
        chain=f"dso-{feeder}"[:64],
        time=0,
        authorities=(dso.public,),
        accounts=(Account(dso.public, ("dso",), "dso"),),
    )
    return LocalChain(genesis, dso, clock=clock), dso


def by_label(subject: str, user: str) -> str:
    suffix = f" by {user}"
    return subject[: LABEL_MAX - len(suffix)] + suffix


@dataclass
class ActionRecorder:
    chain: LocalChain
    dso: Keypair
    audit: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, user: str, action: str, txs: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
        """Submit `txs` (kind, body) in order, seal them into one block, and remember who asked."""
        with self.lock:
            txids = []
            for kind, body in txs:
                result = self.chain.sign_and_submit(self.dso, kind, body)
                if not isinstance(result, Accepted):
                    self.chain.seal()  # keep what was accepted before the refusal, in order
                    raise ChainRefused(f"{kind}: {result}")
                txids.append(result.txid.hex())
            block, _ = self.chain.seal()
            entry = {
                "user": user,
                "action": action,
                "txids": txids,
                "height": block.height,
                "at": time.time(),
            }
            self.audit.append(entry)
            return entry


def jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


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
            proof: dict[str, Any] = build_proof(self.chain.block(height), self.chain.certificate(height), txid)
            return proof
