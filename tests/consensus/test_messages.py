"""Consensus wire codec: any bytes give a message or MessageError; certificates and evidence verify."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid_ledger import keys
from peergrid_ledger.consensus.messages import (
    COMMIT,
    PREPARE,
    PROPOSAL,
    ROUND_CHANGE,
    Certificate,
    ConsensusMessage,
    Evidence,
    MessageError,
    SyncRequest,
    SyncResponse,
    decode_certificate,
    decode_evidence,
    decode_wire,
    encode_wire,
    evidence_ok,
    make_certificate,
    max_faulty,
    quorum,
    sign_vote,
    verify_certificate,
    vote_ok,
)

CHAIN = "test-chain"
KEYS = [keys.Keypair.from_seed(bytes([i + 1]) * 32) for i in range(7)]
BLOCK = bytes(range(32))


def vote(
    i: int, kind: str = COMMIT, height: int = 5, round_: int = 0, digest: bytes = BLOCK, chain: str = CHAIN
):
    return sign_vote(chain, KEYS[i].sign, KEYS[i].public, kind, height, round_, digest)


def test_quorum_is_more_than_two_thirds() -> None:
    assert [quorum(n) for n in range(1, 11)] == [1, 2, 3, 3, 4, 5, 5, 6, 7, 7]
    for n in range(1, 50):  # two quorums always share an honest authority, and n - f honest reach a quorum
        assert 2 * quorum(n) - n >= max_faulty(n) + 1
        assert n - max_faulty(n) >= quorum(n)


def test_messages_round_trip() -> None:
    rc = sign_vote(CHAIN, KEYS[1].sign, KEYS[1].public, ROUND_CHANGE, 5, 2, BLOCK, 1)
    messages = [
        ConsensusMessage(vote(0, PROPOSAL), b"block", (rc,), (vote(2, PREPARE),)),
        ConsensusMessage(vote(3, PREPARE)),
        SyncRequest(10, 64),
        SyncResponse(((b"block", make_certificate(0, [vote(0), vote(1), vote(2)])),)),
    ]
    for message in messages:
        assert decode_wire(CHAIN, encode_wire(CHAIN, message)) == message


def test_wrong_chain_and_oversized_are_refused() -> None:
    data = encode_wire("other-chain", ConsensusMessage(vote(0, chain="other-chain")))
    with pytest.raises(MessageError, match="other-chain"):
        decode_wire(CHAIN, data)
    big = encode_wire(CHAIN, ConsensusMessage(vote(0), b"x" * 5000))
    with pytest.raises(MessageError, match="exceeds"):
        decode_wire(CHAIN, big, max_size=4096)
    # a vote signed for another chain does not verify here even if re-wrapped
    assert not vote_ok(CHAIN, vote(0, chain="other-chain"), keys.verify)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_message_error(data: bytes) -> None:
    try:
        decode_wire(CHAIN, data)
    except MessageError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 255))
def test_flipped_bytes_raise_only_message_error_or_fail_signature(position: int, flip: int) -> None:
    data = bytearray(encode_wire(CHAIN, ConsensusMessage(vote(0, PREPARE))))
    data[position % len(data)] ^= flip or 1
    try:
        message = decode_wire(CHAIN, bytes(data))
    except MessageError:
        return
    assert isinstance(message, ConsensusMessage)
    assert not vote_ok(CHAIN, message.vote, keys.verify) or message.vote == vote(0, PREPARE)


def test_certificate_needs_a_quorum_of_distinct_authorities() -> None:
    validators = [k.public for k in KEYS[:4]]
    good = make_certificate(0, [vote(0), vote(1), vote(2)])
    assert verify_certificate(CHAIN, 5, BLOCK, good, validators, keys.verify)
    assert decode_certificate(good.encode()) == good
    two = make_certificate(0, [vote(0), vote(1)])
    assert not verify_certificate(CHAIN, 5, BLOCK, two, validators, keys.verify)
    repeated = Certificate(0, good.seals[:2] + good.seals[:1])
    assert not verify_certificate(CHAIN, 5, BLOCK, repeated, validators, keys.verify)
    outsider = make_certificate(0, [vote(0), vote(1), vote(5)])
    assert not verify_certificate(CHAIN, 5, BLOCK, outsider, validators, keys.verify)
    assert not verify_certificate(CHAIN, 6, BLOCK, good, validators, keys.verify)  # another height
    assert not verify_certificate(CHAIN, 5, bytes(32), good, validators, keys.verify)  # another block
    wrong_round = Certificate(1, good.seals)
    assert not verify_certificate(CHAIN, 5, BLOCK, wrong_round, validators, keys.verify)


def test_evidence_proves_equivocation_only() -> None:
    a, b = vote(2, PREPARE), vote(2, PREPARE, digest=bytes(32))
    evidence = Evidence(a, b)
    assert evidence_ok(CHAIN, decode_evidence(evidence.encode()), keys.verify)
    assert not evidence_ok(CHAIN, Evidence(a, a), keys.verify)  # the same vote twice
    assert not evidence_ok(CHAIN, Evidence(a, vote(3, PREPARE, digest=bytes(32))), keys.verify)  # two authors
    assert not evidence_ok(CHAIN, Evidence(a, vote(2, PREPARE, round_=1, digest=bytes(32))), keys.verify)
    with pytest.raises(MessageError):
        decode_evidence(b"\x00garbage")
