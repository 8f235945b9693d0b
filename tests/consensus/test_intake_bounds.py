"""What a hostile envelope costs a replica (review21 F1): a stranger's or a revoked key's envelope is refused
before its body is decoded or its signature checked; an envelope, a consensus body and a transaction batch are
decoded under an item budget, so a header announcing millions of one-byte items is refused before they are
built. Counted on the decoder's entry points (no timing thresholds); the counters are the ones of before.

Real replicas (`ChainReplica` over LevelDB) on the seeded in-memory network (`LedgerNet`)."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from peergrid_ledger import codec, keys
from peergrid_ledger.consensus import engine as engine_module
from peergrid_ledger.consensus import node as node_module
from peergrid_ledger.consensus.ledger_net import LedgerNet
from peergrid_ledger.consensus.messages import (
    MAX_VALIDATORS,
    MAX_VOTE_ITEMS,
    MAX_WIRE_BYTES,
    MAX_WIRE_ITEMS,
    PREPARE,
    ConsensusMessage,
    SyncResponse,
    decode_wire,
    encode_wire,
    sign_vote,
)
from peergrid_ledger.consensus.transport import (
    CONSENSUS,
    MAX_ENVELOPE_BYTES,
    SYNC,
    TX,
    encode_tx_batch,
    seal_envelope,
)
from peergrid_ledger.genesis import Account, Genesis
from peergrid_ledger.machine import kinds
from peergrid_ledger.schema import Bytes, Int, List, Map, OneOf, Shape, Str, max_items
from peergrid_ledger.schema import check as schema_check
from peergrid_ledger.tx import decode_tx, sign_tx

T0 = 1_767_225_600_000
CHAIN = "intake"


def key(name: str) -> keys.Keypair:
    return keys.Keypair.from_seed(hashlib.sha256(b"intake/" + name.encode()).digest())


AUTHORITIES = [key(f"authority-{i}") for i in range(4)]
MEMBER, STRANGER = key("member"), key("stranger")


@pytest.fixture
def net(tmp_path: Path) -> Iterator[LedgerNet]:
    genesis = Genesis(
        chain=CHAIN,
        time=T0,
        authorities=tuple(k.public for k in AUTHORITIES),
        accounts=(Account(MEMBER.public, ("anonym",), "member"),),
    )
    ledger = LedgerNet(tmp_path, genesis, AUTHORITIES, seed=5)
    ledger.run(600)
    yield ledger
    for replica in ledger.replicas.values():
        replica.store.close()


class Calls:
    """Counts calls of the wire decoder (both places the replica path calls it) and of the codec's item
    decoder (every array item and value goes through it)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.wire: list[int] = []
        self.items = 0

        def wire(
            chain: str, data: bytes, max_size: int = MAX_WIRE_BYTES, max_items: int = MAX_WIRE_ITEMS
        ) -> object:
            self.wire.append(max_items)
            return decode_wire(chain, data, max_size, max_items)

        inner = codec._decode_item

        def item(*args):  # type: ignore[no-untyped-def]
            self.items += 1
            return inner(*args)

        monkeypatch.setattr(node_module, "decode_wire", wire)
        monkeypatch.setattr(engine_module, "decode_wire", wire)
        monkeypatch.setattr(codec, "_decode_item", item)


@functools.cache
def hostile_body(size: int = MAX_WIRE_BYTES) -> bytes:
    """review21's body: a vote message whose justification announces ~4 M one-byte items (within 4 MiB)."""
    body = codec.encode({"c": CHAIN, "t": "vote", "v": [0] * 7, "b": None, "j": [0] * (size - 80), "p": []})
    assert len(body) <= size
    return body


def test_an_unknown_senders_4_mib_envelope_is_refused_without_decoding_its_body(
    net: LedgerNet, monkeypatch: pytest.MonkeyPatch
) -> None:
    replica = net.replicas["n0"]
    envelope = codec.encode([CHAIN, CONSENSUS, STRANGER.public, hostile_body(), b"\x00" * 64])
    assert len(envelope) <= MAX_ENVELOPE_BYTES
    signed = seal_envelope(CHAIN, CONSENSUS, STRANGER, hostile_body())  # signed or not: a stranger
    calls = Calls(monkeypatch)
    for data in (envelope, signed):
        replica.receive(CONSENSUS, data, net.now)
    stats = net.stats("n0")
    assert stats["dropped_unknown-sender"] == 2
    assert stats.get("dropped_unsigned", 0) == 0  # refused before its signature was even looked at
    assert calls.wire == []  # decode_wire never called
    assert calls.items == 2 * 6  # the envelope array and its 5 items, each time: nothing of the body


def test_a_revoked_key_is_refused_before_its_body_is_decoded(
    net: LedgerNet, monkeypatch: pytest.MonkeyPatch
) -> None:
    replica = net.replicas["n0"]
    monkeypatch.setattr(replica.app, "revoked", lambda sender: sender == MEMBER.public)
    calls = Calls(monkeypatch)
    replica.receive(CONSENSUS, seal_envelope(CHAIN, CONSENSUS, MEMBER, hostile_body()), net.now)
    assert net.stats("n0")["dropped_revoked"] == 1
    assert calls.wire == [] and calls.items == 6


@functools.cache
def eight_million_zeros() -> bytes:
    return codec.encode([0] * (MAX_ENVELOPE_BYTES - 16))


@pytest.mark.parametrize("kind", [CONSENSUS, TX, SYNC])
def test_an_envelope_of_8_m_items_is_refused_at_its_first_header(
    net: LedgerNet, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """review21 F1's second half: an 'envelope' that is an array of ~8 M zeros, on any topic."""
    data = eight_million_zeros()
    assert len(data) <= MAX_ENVELOPE_BYTES
    calls = Calls(monkeypatch)
    net.replicas["n0"].receive(kind, data, net.now)
    assert net.stats("n0")["dropped_malformed"] == 1
    assert calls.items == 1


def test_a_stranger_using_a_members_key_costs_at_most_a_vote_messages_items(
    net: LedgerNet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the member's private key nobody can sign, but anyone can name the key: the body is peeked at
    before the signature (to drop stale votes unverified) only within `MAX_VOTE_ITEMS`, then refused."""
    replica = net.replicas["n0"]
    forged = codec.encode([CHAIN, CONSENSUS, AUTHORITIES[1].public, hostile_body(), b"\x00" * 64])
    calls = Calls(monkeypatch)
    replica.receive(CONSENSUS, forged, net.now)
    assert net.stats("n0")["dropped_unsigned"] == 1
    assert calls.wire == [MAX_VOTE_ITEMS]  # the peek alone; the engine never decoded it
    assert (
        calls.items <= 6 + 1 + 5
    )  # envelope; the body's map header; its first entries before "j" is refused


def test_a_members_signed_hostile_body_is_decoded_under_the_wire_bound_and_counted_malformed(
    net: LedgerNet, monkeypatch: pytest.MonkeyPatch
) -> None:
    replica = net.replicas["n0"]
    calls = Calls(monkeypatch)
    replica.receive(CONSENSUS, seal_envelope(CHAIN, CONSENSUS, MEMBER, hostile_body()), net.now)
    replica.receive(TX, seal_envelope(CHAIN, TX, MEMBER, codec.encode([b""] * 100_000)), net.now)
    stats = net.stats("n0")
    assert stats["dropped_malformed"] == 2  # the engine's (bad body) and the batch's (over MAX_TX_BATCH)
    assert calls.wire == [MAX_VOTE_ITEMS, MAX_WIRE_ITEMS]
    assert calls.items < 2 * 20  # refused at the headers, not item by item


def test_the_item_bounds_hold_every_message_the_wire_accepts() -> None:
    """The bounds are sums, pinned here: a vote message with a full justification and prepare certificate
    fits `MAX_VOTE_ITEMS`, and the densest sync response within `MAX_WIRE_BYTES` (1024 empty blocks, then
    certificates of `MAX_VALIDATORS` seals as far as the bytes go) fits `MAX_WIRE_ITEMS`."""
    signer = AUTHORITIES[0]
    vote = sign_vote(CHAIN, signer.sign, signer.public, PREPARE, 3, 0, b"\x01" * 32)
    full = [vote] * MAX_VALIDATORS
    message = encode_wire(CHAIN, ConsensusMessage(vote, b"block", tuple(full), tuple(full)))
    assert decode_wire(CHAIN, message, max_items=MAX_VOTE_ITEMS) == decode_wire(CHAIN, message)
    seal = [b"\x02" * 32, b"\x03" * 64]
    blocks: list[list[object]] = [[b"", [0, []]] for _ in range(1024)]
    full_cert = [0, [seal] * MAX_VALIDATORS]
    spare = MAX_WIRE_BYTES - len(codec.encode({"c": CHAIN, "t": "sync-resp", "b": blocks}))
    per_cert = len(codec.encode(full_cert)) - len(codec.encode([0, []]))
    for i in range(spare // per_cert):
        blocks[i][1] = full_cert
    left = (spare % per_cert - 8) // 101
    blocks[spare // per_cert][1] = [0, [seal] * left]
    body = codec.encode({"c": CHAIN, "t": "sync-resp", "b": blocks})
    assert MAX_WIRE_BYTES - 202 < len(body) <= MAX_WIRE_BYTES  # as dense as the bytes allow
    response = decode_wire(CHAIN, body)
    assert isinstance(response, SyncResponse) and len(response.blocks) == 1024
    assert 125_000 < sum(3 * len(c.seals) + 5 for _, c in response.blocks) <= MAX_WIRE_ITEMS


def test_a_members_transactions_are_decoded_within_a_body_bound_and_a_batch_budget(
    net: LedgerNet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inside a signed batch each transaction is decoded by the pool: one body may hold at most what a valid
    one can (`body_items`), and one batch's transactions at most `MAX_BATCH_ITEMS` together, so a member's
    8 MiB of one-byte items is not built whole (it cost 5.9-14.3 s: notes/s1/f_member_tx_*.out)."""
    replica = net.replicas["n0"]
    assert replica.app.body_items == max(max_items(spec.shape) for spec in kinds().values())
    now = net.now
    big = [sign_tx(MEMBER, CHAIN, "equivalent_injection", n, now, {"x": [0] * 60_000}).raw for n in range(3)]
    calls = Calls(monkeypatch)
    replica.receive(TX, seal_envelope(CHAIN, TX, MEMBER, encode_tx_batch(big)), now)
    assert net.stats("n0")["tx_rejected"] == 3 and "tx_accepted" not in net.stats("n0")
    assert (
        calls.items < 3 * 20
    )  # each refused at its array's header, twice (the pool, then the duplicate check)
    monkeypatch.setattr(node_module, "MAX_BATCH_ITEMS", 2_000)
    small = [
        sign_tx(MEMBER, CHAIN, "equivalent_injection", n, now, {"x": [0] * 400}).raw for n in range(3, 53)
    ]
    calls.items = 0
    replica.receive(TX, seal_envelope(CHAIN, TX, MEMBER, encode_tx_batch(small)), now)
    stats = net.stats("n0")
    assert stats["tx_accepted"] == 2_000 // (
        1 + 400
    )  # what fits the budget (a body: its map entry, 400 items)
    assert stats["tx_rejected"] == 3 + 50 - 4
    assert calls.items < 2_000 + 50 * 20  # the budget's items, plus a few per transaction for its frame


def test_every_kinds_fullest_valid_body_fits_the_pools_bound() -> None:
    """`schema.max_items` is exact: for every registered kind, a body with every list at its longest (and the
    fullest option of a choice) passes the kind's shape and holds exactly `max_items(shape)` items; the
    pool's decode takes it."""

    def fullest(shape: Shape) -> object:
        if isinstance(shape, List):
            return [fullest(shape.item) for _ in range(shape.max_len)]
        if isinstance(shape, Map):
            return {name: fullest(field) for name, field in shape.fields.items()}
        if isinstance(shape, OneOf):
            return fullest(max(shape.options, key=max_items))
        if isinstance(shape, Int):
            return shape.low
        if isinstance(shape, Bytes):
            return bytes(shape.size or 0)
        if isinstance(shape, Str):
            return "x" * shape.min_len
        return False

    bound = max(max_items(spec.shape) for spec in kinds().values())
    for kind, spec in kinds().items():
        body = fullest(spec.shape)
        schema_check(spec.shape, body)
        raw = codec.encode(body)
        count = max_items(spec.shape)
        assert codec.decode(raw, max_items=count) == body, kind
        with pytest.raises(codec.DecodeError):
            codec.decode(raw, max_items=count - 1) if count else codec.decode(
                codec.encode([body]), max_items=0
            )
        tx = sign_tx(MEMBER, CHAIN, kind, 1, T0, body)  # type: ignore[arg-type]
        assert decode_tx(tx.raw, 1 << 24, codec.item_budget(bound)).body == body, kind
