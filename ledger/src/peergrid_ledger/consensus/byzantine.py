"""Byzantine authorities for the simulation: an honest engine whose outgoing messages are tampered with.

Promises: each behaviour signs only with its own key (it cannot forge others) and otherwise does what a
malicious authority could: `equivocate` sends conflicting proposals and votes to different peers,
`invalid` proposes blocks that break the chain's rules, `garbage` floods random and mangled bytes,
`wrong-chain` replays its votes signed for another chain, `silent` says nothing at all.
Used by the simulation only; never by a real node.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from .. import codec
from .messages import (
    COMMIT,
    PREPARE,
    PROPOSAL,
    ConsensusMessage,
    MessageError,
    decode_wire,
    encode_wire,
    sign_vote,
)
from .sim_app import SimApp, SimKey

BEHAVIOURS = ("equivocate", "invalid", "garbage", "wrong-chain", "silent")


class Byzantine:
    def __init__(
        self,
        behaviour: str,
        key: SimKey,
        app: Callable[[], SimApp],
        peers: Callable[[], list[str]],
        send: Callable[[str, bytes], None],
        rng: random.Random,
    ) -> None:
        if behaviour not in BEHAVIOURS:
            raise ValueError(f"unknown Byzantine behaviour {behaviour!r}")
        self.behaviour = behaviour
        self.key = key
        self.app = app
        self.peers = peers
        self.send = send
        self.rng = rng

    def broadcast(self, data: bytes) -> None:
        """Replaces the honest broadcast of `data`."""
        peers = self.peers()
        if self.behaviour == "silent":
            return
        message = self._decode(data)
        if (
            self.behaviour == "equivocate"
            and message is not None
            and message.vote.kind in (PROPOSAL, PREPARE, COMMIT)
        ):
            other = self._conflicting(message)
            self.rng.shuffle(peers)
            half = len(peers) // 2
            for i, peer in enumerate(peers):
                self.send(peer, data if i < half or other is None else other)
            if other is not None:  # over a broker someone always hears both
                self.send(peers[0], other)
            return
        if self.behaviour == "invalid" and message is not None and message.vote.kind == PROPOSAL:
            data = self._invalid_proposal(message) or data
        for peer in peers:
            self.send(peer, data)
        if self.behaviour == "garbage":
            for peer in peers:
                self.send(peer, self._mangle(data))
        elif self.behaviour == "wrong-chain" and message is not None:
            vote = message.vote
            foreign = sign_vote(
                "other-chain",
                self.key.sign,
                vote.author,
                vote.kind,
                vote.height,
                vote.round,
                vote.digest,
                vote.prepared_round,
            )
            for peer in peers:
                self.send(peer, encode_wire("other-chain", ConsensusMessage(foreign, message.block)))
                self.send(peer, encode_wire(self.app().chain_id, ConsensusMessage(foreign, message.block)))

    def _decode(self, data: bytes) -> ConsensusMessage | None:
        try:
            message = decode_wire(self.app().chain_id, data)
        except MessageError:
            return None
        return message if isinstance(message, ConsensusMessage) else None

    def _resign(self, message: ConsensusMessage, digest: bytes, block: bytes | None) -> bytes:
        vote = message.vote
        forged = sign_vote(
            self.app().chain_id, self.key.sign, vote.author, vote.kind, vote.height, vote.round, digest
        )
        return encode_wire(
            self.app().chain_id, ConsensusMessage(forged, block, message.justification, message.prepares)
        )

    def _conflicting(self, message: ConsensusMessage) -> bytes | None:
        app = self.app()
        if message.vote.kind == PROPOSAL:
            if message.block is None or message.vote.round > 0:
                return None
            info = app.inspect(message.block)
            if not hasattr(info, "timestamp_ms"):
                return None
            block = app.build_block(message.vote.height, 0, info.timestamp_ms + 1, self.key.public)
            twin = app.inspect(block)
            return self._resign(message, twin.block_hash, block)  # type: ignore[union-attr]
        return self._resign(message, self.rng.randbytes(32), None)

    def _invalid_proposal(self, message: ConsensusMessage) -> bytes | None:
        app = self.app()
        if message.block is None:
            return None
        value = codec.decode(message.block)
        flaw = self.rng.choice(["state-root", "parent", "future", "past", "bad-tx"])
        height, parent, ts = value["h"], value["p"], value["t"]
        txs, tx_root, root = value["txs"], value["tr"], value["sr"]
        if flaw == "state-root":
            root = self.rng.randbytes(32)
        elif flaw == "parent":
            parent = self.rng.randbytes(32)
        elif flaw == "future":
            ts += 3_600_000
        elif flaw == "past":
            ts = max(0, app.head().timestamp_ms - 1)
        else:
            from .. import merkle

            txs = [*txs, codec.encode(["pay", self.key.public, 10**6, b"", bytes(64)])]
            tx_root = merkle.root(txs)
        block = app.seal(height, parent, ts, self.key.public, txs, tx_root, root, value["r"])
        info = app.inspect(block)
        digest = getattr(info, "block_hash", self.rng.randbytes(32))
        return self._resign(message, digest, block)

    def _mangle(self, data: bytes) -> bytes:
        choice = self.rng.randrange(4)
        if choice == 0:
            return self.rng.randbytes(self.rng.randrange(1, 200))
        if choice == 1 and data:
            return data[: self.rng.randrange(len(data))]
        if choice == 2 and data:
            i = self.rng.randrange(len(data))
            return data[:i] + bytes([data[i] ^ (1 << self.rng.randrange(8))]) + data[i + 1 :]
        return codec.encode({"c": self.app().chain_id, "t": "vote", "v": [1, 2, 3]})
