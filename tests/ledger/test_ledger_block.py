"""Blocks: proposing, validating every header field, certificates and their quorum."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from ledger_fixtures import T0, Keys, make_genesis

from peergrid_ledger.block import (
    Block,
    Certificate,
    Header,
    InvalidBlock,
    Tip,
    commit_vote,
    decode_block,
    make_certificate,
    propose,
    quorum,
    tx_root,
    validate_block,
    verify_certificate,
)
from peergrid_ledger.codec import DecodeError
from peergrid_ledger.genesis import Genesis
from peergrid_ledger.tx import Tx, sign_tx
from peergrid_ledger.votes import PROPOSE, vote_digest


def sample_txs(n: int = 3) -> list[Tx]:
    root = hashlib.sha256(b"r").digest()
    return [
        sign_tx(
            Keys.p1,
            "test-chain",
            "der_commitment",
            i,
            T0 + 1000,
            {"interval": i, "root": root, "readings": 1},
        )
        for i in range(1, n + 1)
    ]


def proposed(genesis: Genesis | None = None) -> tuple[Genesis, Block]:
    genesis = genesis or make_genesis()
    block, _ = propose(
        genesis.initial_state(), Tip.of_genesis(genesis), genesis, sample_txs(), T0 + 1000, Keys.authority
    )
    return genesis, block


def reseal(genesis: Genesis, header: Header, txs: tuple[Tx, ...], key=Keys.authority) -> Block:  # type: ignore[no-untyped-def]
    seal = key.sign(vote_digest(genesis.chain, header.height, header.round, PROPOSE, header.hash))
    return Block(header, seal, txs)


def expect_invalid(genesis: Genesis, block: Block, match: str, now_ms: int | None = None) -> None:
    with pytest.raises(InvalidBlock, match=match) as err:
        validate_block(genesis.initial_state(), Tip.of_genesis(genesis), genesis, block, now_ms)
    assert err.value.height == 1


def test_a_proposed_block_validates_and_round_trips() -> None:
    genesis, block = proposed()
    outcome = validate_block(
        genesis.initial_state(), Tip.of_genesis(genesis), genesis, block, now_ms=T0 + 1000
    )
    assert len(outcome.accepted) == 3
    assert decode_block(block.encode()) == block


def test_proposer_leaves_out_rejected_transactions() -> None:
    genesis = make_genesis()
    txs = sample_txs()
    bad = sign_tx(
        Keys.stranger,
        "test-chain",
        "der_commitment",
        1,
        T0,
        {"interval": 1, "root": bytes(32), "readings": 1},
    )
    block, outcome = propose(
        genesis.initial_state(), Tip.of_genesis(genesis), genesis, [*txs, bad], T0 + 1000, Keys.authority
    )
    assert block.txs == tuple(txs) and not outcome.results[-1].ok


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"chain": "other"}, "chain"),
        ({"height": 2}, "height"),
        ({"prev": bytes(32)}, "link"),
        ({"time": T0}, "not after"),
        ({"tx_root": bytes(32)}, "transaction root"),
        ({"state_root": bytes(32)}, "state root"),
        ({"proposer": Keys.p1.public}, "not an authority"),
    ],
)
def test_each_header_field_is_checked(change: dict[str, object], match: str) -> None:
    genesis, block = proposed()
    header = dataclasses.replace(block.header, **change)  # type: ignore[arg-type]
    key = Keys.p1 if "proposer" in change else Keys.authority
    expect_invalid(genesis, reseal(genesis, header, block.txs, key), match)


def test_bad_seal_future_time_and_invalid_transactions() -> None:
    genesis, block = proposed()
    expect_invalid(genesis, Block(block.header, Keys.p1.sign(b"x" * 32), block.txs), "seal")
    expect_invalid(
        genesis, block, "ahead of the clock", now_ms=T0 + 1000 - genesis.params.block_max_future_ms - 1
    )
    swapped = (block.txs[1], block.txs[0], block.txs[2])
    header = dataclasses.replace(block.header, tx_root=tx_root(swapped))
    expect_invalid(genesis, reseal(genesis, header, swapped), "nonce")


def test_too_many_transactions() -> None:
    genesis = make_genesis(params=dataclasses.replace(make_genesis().params, max_block_txs=2))
    block, _ = propose(
        genesis.initial_state(),
        Tip.of_genesis(genesis),
        make_genesis(),
        sample_txs(),
        T0 + 1000,
        Keys.authority,
    )
    expect_invalid(genesis, block, "transactions >")


def test_certificates_need_more_than_two_thirds() -> None:
    assert [quorum(n) for n in (1, 2, 3, 4, 5, 6, 7)] == [1, 2, 3, 3, 4, 5, 5]
    _, block = proposed()
    keys = [Keys.authority, Keys.authority2, Keys.p1, Keys.p2]
    members = [k.public for k in keys]
    three = make_certificate(block.header, [commit_vote(k, block.header) for k in keys[:3]])
    verify_certificate(three, block.header, members)
    assert Certificate.decode(three.encode()) == three
    two = make_certificate(block.header, [commit_vote(k, block.header) for k in keys[:2]])
    with pytest.raises(InvalidBlock, match="needed votes"):
        verify_certificate(two, block.header, members)
    doubled = Certificate(two.height, two.round, two.block, two.votes + two.votes[:1])
    with pytest.raises(InvalidBlock, match="needed votes"):
        verify_certificate(doubled, block.header, members)
    outsider = make_certificate(block.header, [commit_vote(k, block.header) for k in [*keys[:2], Keys.p3]])
    with pytest.raises(InvalidBlock, match="non-authority"):
        verify_certificate(outsider, block.header, members)
    forged = Certificate(three.height, three.round, three.block, ((members[0], bytes(64)), *three.votes[1:]))
    with pytest.raises(InvalidBlock, match="does not verify"):
        verify_certificate(forged, block.header, members)
    other = dataclasses.replace(block.header, time=block.header.time + 1)
    with pytest.raises(InvalidBlock, match="another block"):
        verify_certificate(three, other, members)


def test_malformed_block_bytes_raise_decode_error() -> None:
    _, block = proposed()
    raw = block.encode()
    for bad in (raw[:-1], raw + b"\x00", b"\x83\x40\x40\x80", b""):
        with pytest.raises(DecodeError):
            decode_block(bad)


def test_block_byte_limit_and_local_chain_keeps_what_does_not_fit() -> None:
    from peergrid_ledger.chain import LocalChain

    size = len(sample_txs(1)[0].raw)
    genesis = make_genesis(params=dataclasses.replace(make_genesis().params, max_block_bytes=2 * size + 10))
    block, _ = propose(
        genesis.initial_state(),
        Tip.of_genesis(genesis),
        make_genesis(),
        sample_txs(),
        T0 + 1000,
        Keys.authority,
    )
    assert len(block.txs) == 3
    expect_invalid(genesis, block, "body larger")
    chain = LocalChain(genesis, Keys.authority)
    for tx in sample_txs(5):
        assert chain.submit(tx).ok
    first, _ = chain.seal(T0 + 1000)
    assert len(first.txs) == 2 and len(chain.pending) == 3
    chain.seal(T0 + 2000)
    chain.seal(T0 + 3000)
    assert chain.height == 3 and not chain.pending


def test_local_chain_with_an_injected_clock_and_a_signer() -> None:
    from peergrid_ledger.chain import LocalChain
    from peergrid_ledger.results import Reason, Rejected

    now = [T0 + 10_000]
    chain = LocalChain(make_genesis(), Keys.authority, clock=lambda: now[0])
    signer = chain.signer(Keys.p1)
    root = hashlib.sha256(b"r").digest()
    stale = signer.sign("der_commitment", {"interval": 1, "root": root, "readings": 1}, now[0] - 200_000)
    result = chain.submit(stale)
    assert isinstance(result, Rejected) and result.reason is Reason.TIME_OUT_OF_BOUNDS
    signer = chain.signer(Keys.p1)  # a rejection used no nonce: start again from the chain's view
    for i in range(3):
        assert chain.submit(
            signer.sign("der_commitment", {"interval": i, "root": root, "readings": 1}, now[0])
        ).ok
    block, _ = chain.seal()
    assert block.header.time == now[0] and len(block.txs) == 3
    now[0] -= 5_000  # a clock going backwards never makes a block older than its parent
    block2, _ = chain.seal()
    assert block2.header.time == block.header.time + 1


def test_batch_signature_check_still_refuses_a_forged_transaction() -> None:
    from peergrid_ledger.codec import encode
    from peergrid_ledger.machine import BlockContext, InvalidTransaction, execute
    from peergrid_ledger.results import Reason
    from peergrid_ledger.tx import decode_tx

    genesis = make_genesis()
    txs = sample_txs(3)
    forged = decode_tx(encode([txs[1].payload, Keys.p2.sign(txs[1].txid)]))
    batch = [txs[0], forged, txs[2]]
    ctx = BlockContext(genesis, 1, T0 + 1000)
    outcome = execute(genesis.initial_state(), batch, ctx, strict=False)
    assert outcome.accepted == [txs[0]]  # the forged one is refused; the third then has a nonce gap
    assert [r.ok for r in outcome.results] == [True, False, False]
    assert outcome.results[1].reason is Reason.BAD_SIGNATURE  # type: ignore[union-attr]
    with pytest.raises(InvalidTransaction) as err:
        execute(genesis.initial_state(), batch, ctx, strict=True)
    assert err.value.index == 1 and err.value.result.reason is Reason.BAD_SIGNATURE


def test_local_chain_reports_pending_transactions_that_expired_before_sealing() -> None:
    from peergrid_ledger.chain import LocalChain
    from peergrid_ledger.results import Reason

    chain = LocalChain(make_genesis(), Keys.authority)
    root = hashlib.sha256(b"r").digest()
    early = sign_tx(
        Keys.p1, "test-chain", "der_commitment", 1, T0 + 1000, {"interval": 1, "root": root, "readings": 1}
    )
    late = sign_tx(
        Keys.p2, "test-chain", "der_commitment", 1, T0 + 500_000, {"interval": 1, "root": root, "readings": 1}
    )
    assert chain.submit(early).ok and chain.submit(late).ok
    block, _ = chain.seal()  # logical time: the newest transaction's, by which `early` is too old
    assert block.txs == (late,)
    assert [(tx, r.reason) for tx, r in chain.dropped] == [(early, Reason.TIME_OUT_OF_BOUNDS)]
