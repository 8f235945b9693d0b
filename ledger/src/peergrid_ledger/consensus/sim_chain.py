"""What a simulated chain is made of, outside its rules (`sim_app.SimApp`): keys, genesis, store, transactions.

Promises: `SimKeys` hands out cheap keyed-hash signing keys (`SimKey`) and verifies their signatures - the
simulation's stand-in for Ed25519, which no one holding only the registry can forge; `SimGenesis` names a
chain (its authorities, its admin, its accounts) and hashes to the genesis block hash; `SimStore` is what a node
keeps on disk and survives its crashes; `make_tx` signs a transaction as `SimApp` parses it. Pure; no I/O.
`sim_app` re-exports every name here, as its importers knew them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from .. import codec, hashing
from .app import Signer
from .messages import Certificate


class SimKeys:
    """Cheap keyed-hash signatures for the simulation: whoever holds the registry can verify, no one forges
    a key it was not given (Byzantine nodes only get their own). Real Ed25519 is used by a subset of seeds."""

    def __init__(self) -> None:
        self._secrets: dict[bytes, bytes] = {}

    def key(self, name: str) -> SimKey:
        secret = hashlib.sha256(b"sim-secret/" + name.encode()).digest()
        public = hashlib.sha256(b"sim-public/" + secret).digest()
        self._secrets[public] = secret
        return SimKey(public, secret)

    def verify(self, public: bytes, message: bytes, signature: bytes) -> bool:
        secret = self._secrets.get(public)
        return secret is not None and signature == _sim_sign(secret, message)


def _sim_sign(secret: bytes, message: bytes) -> bytes:
    return hashlib.sha256(secret + message).digest() * 2


@dataclass(frozen=True)
class SimKey:
    public: bytes
    secret: bytes = field(repr=False)

    def sign(self, message: bytes) -> bytes:
        return _sim_sign(self.secret, message)


@dataclass(frozen=True)
class SimGenesis:
    chain_id: str
    validators: tuple[bytes, ...]
    admin: bytes
    accounts: tuple[bytes, ...]
    time_ms: int = 0

    @property
    def block_hash(self) -> bytes:
        body = codec.encode([list(self.validators), self.admin, list(self.accounts), self.time_ms])
        return hashing.digest(hashing.GENESIS, self.chain_id, body)


@dataclass
class SimStore:
    """What a node keeps on disk: committed blocks and their certificates (survives crashes)."""

    blocks: list[bytes] = field(default_factory=list)
    certificates: list[Certificate] = field(default_factory=list)


def make_tx(chain_id: str, key: Signer, kind: str, nonce: int, body: object) -> bytes:
    unsigned = [kind, key.public, nonce, body]
    signature = key.sign(hashing.digest(hashing.TX, chain_id, codec.encode(unsigned)))
    return codec.encode([*unsigned, signature])
