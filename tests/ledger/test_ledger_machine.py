"""The state machine: every refusal path has a typed reason, and every built-in kind does what it says."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_fixtures import T0, Keys, key, make_genesis, reason

from peergrid_ledger import query
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.codec import encode
from peergrid_ledger.genesis import Params
from peergrid_ledger.hashing import digest
from peergrid_ledger.keys import seal
from peergrid_ledger.machine import BlockContext, apply
from peergrid_ledger.results import Accepted, Reason
from peergrid_ledger.tx import Tx, decode_tx, sign_tx
from peergrid_ledger.votes import COMMIT, PREPARE, vote_digest

ROOT = hashlib.sha256(b"readings").digest()


def der(interval: int = 1) -> dict[str, object]:
    return {"interval": interval, "root": ROOT, "readings": 96}


def ctx_for(chain: LocalChain, time_ms: int = T0 + 1000) -> BlockContext:
    return BlockContext(chain.genesis, chain.height + 1, time_ms, Keys.authority.public)


# ---------------------------------------------------------------------------------------------- envelope checks


def test_a_valid_transaction_is_accepted_and_apply_does_not_mutate(chain: LocalChain) -> None:
    tx = sign_tx(Keys.p1, "test-chain", "der_commitment", 1, T0 + 1000, der())
    before = chain.state.as_dict()
    result = apply(chain.state, tx, ctx_for(chain))
    assert isinstance(result, Accepted)
    assert result.writes and chain.state.as_dict() == before


def test_wrong_chain_id(chain: LocalChain) -> None:
    tx = sign_tx(Keys.p1, "other-chain", "der_commitment", 1, T0 + 1000, der())
    assert reason(apply(chain.state, tx, ctx_for(chain))) is Reason.WRONG_CHAIN


def test_bad_signature(chain: LocalChain) -> None:
    tx = sign_tx(Keys.p1, "test-chain", "der_commitment", 1, T0 + 1000, der())
    forged = decode_tx(encode([tx.payload, Keys.p2.sign(tx.txid)]))
    assert reason(apply(chain.state, forged, ctx_for(chain))) is Reason.BAD_SIGNATURE
    flipped = bytearray(tx.signature)
    flipped[5] ^= 1
    tampered = decode_tx(encode([tx.payload, bytes(flipped)]))
    assert reason(apply(chain.state, tampered, ctx_for(chain))) is Reason.BAD_SIGNATURE


def test_replayed_and_out_of_order_nonces(chain: LocalChain) -> None:
    first = sign_tx(Keys.p1, "test-chain", "der_commitment", 1, T0 + 1000, der(1))
    assert chain.submit(first).ok
    assert reason(chain.submit(first)) is Reason.REPLAYED_NONCE
    chain.seal()
    assert reason(chain.submit(first)) is Reason.REPLAYED_NONCE  # also after sealing
    gap = sign_tx(Keys.p1, "test-chain", "der_commitment", 3, T0 + 1000, der(2))
    assert reason(chain.submit(gap)) is Reason.NONCE_GAP
    zero = sign_tx(Keys.p2, "test-chain", "der_commitment", 0, T0 + 1000, der(2))
    assert reason(chain.submit(zero)) is Reason.REPLAYED_NONCE


@pytest.mark.parametrize("offset", [-120_001, 5_001])
def test_timestamp_out_of_bounds(chain: LocalChain, offset: int) -> None:
    block_time = T0 + 200_000
    tx = sign_tx(Keys.p1, "test-chain", "der_commitment", 1, block_time + offset, der())
    assert reason(apply(chain.state, tx, ctx_for(chain, block_time))) is Reason.TIME_OUT_OF_BOUNDS
    edge = sign_tx(
        Keys.p1,
        "test-chain",
        "der_commitment",
        1,
        block_time + (offset - 1 if offset > 0 else offset + 1),
        der(),
    )
    assert apply(chain.state, edge, ctx_for(chain, block_time)).ok


def test_unknown_sender(chain: LocalChain) -> None:
    tx = sign_tx(Keys.stranger, "test-chain", "der_commitment", 1, T0 + 1000, der())
    assert reason(apply(chain.state, tx, ctx_for(chain))) is Reason.UNKNOWN_SENDER


def test_oversized_transaction_and_malformed_bytes() -> None:
    chain = LocalChain(make_genesis(params=Params(max_tx_bytes=400)), Keys.authority)
    big = sign_tx(
        Keys.p1,
        "test-chain",
        "schedule_contract",
        1,
        T0 + 1000,
        {"interval": 1, "der": "bat", "setpoints": list(range(1000, 1100)), "step_s": 900},
    )
    assert reason(chain.submit(big)) is Reason.OVERSIZED
    assert reason(chain.submit(big.raw)) is Reason.MALFORMED  # refused already while decoding, by size
    assert reason(chain.submit(b"\x82\x40")) is Reason.MALFORMED
    assert reason(chain.submit(big.raw[:-3])) is Reason.MALFORMED


def test_unknown_kind_and_body_shape(chain: LocalChain) -> None:
    assert reason(chain.sign_and_submit(Keys.p1, "mint", {})) is Reason.UNKNOWN_KIND
    assert reason(chain.sign_and_submit(Keys.p1, "der_commitment", {"interval": 1})) is Reason.MALFORMED
    bad_root = {"interval": 1, "root": b"short", "readings": 1}
    assert reason(chain.sign_and_submit(Keys.p1, "der_commitment", bad_root)) is Reason.MALFORMED
    extra = {**der(), "extra": 1}
    assert reason(chain.sign_and_submit(Keys.p1, "der_commitment", extra)) is Reason.MALFORMED
    negative = {"interval": -1, "root": ROOT, "readings": 1}
    assert reason(chain.sign_and_submit(Keys.p1, "der_commitment", negative)) is Reason.MALFORMED


def test_contract_kinds_need_the_contract_in_genesis() -> None:
    chain = LocalChain(make_genesis(contracts=("market",)), Keys.authority)
    body = {"auction": "a", "quantity": 1, "reserve": 1, "close_height": 5}
    assert reason(chain.sign_and_submit(Keys.p1, "auction.open", body)) is Reason.UNKNOWN_KIND


def test_rejections_consume_no_nonce(chain: LocalChain) -> None:
    assert not chain.sign_and_submit(Keys.p1, "der_commitment", {"interval": 1}).ok
    assert query.last_nonce(chain.view, Keys.p1.public) == 0
    assert chain.sign_and_submit(Keys.p1, "der_commitment", der()).ok
    assert query.last_nonce(chain.view, Keys.p1.public) == 1


# ---------------------------------------------------------------------------------------------- governance


def test_governance_changes_the_authority_set_from_the_next_height(chain: LocalChain) -> None:
    new = Keys.authority2.public
    assert reason(chain.sign_and_submit(Keys.p1, "gov.add_authority", {"key": new})) is Reason.FORBIDDEN
    assert chain.sign_and_submit(Keys.dso, "gov.add_authority", {"key": new}).ok
    assert reason(chain.sign_and_submit(Keys.dso, "gov.add_authority", {"key": new})) is Reason.DUPLICATE
    chain.seal()
    assert query.authorities_at(chain.state, 1) == [Keys.authority.public]
    assert query.authorities_at(chain.state, 2) == sorted([Keys.authority.public, new])
    third = Keys.p4.public
    assert chain.sign_and_submit(Keys.dso, "gov.rotate_authority", {"old": new, "new": third}).ok
    bad = {"old": Keys.stranger.public, "new": Keys.p3.public}
    assert reason(chain.sign_and_submit(Keys.dso, "gov.rotate_authority", bad)) is Reason.NOT_FOUND
    assert chain.sign_and_submit(Keys.dso, "gov.remove_authority", {"key": third}).ok
    only = {"key": Keys.authority.public}
    assert reason(chain.sign_and_submit(Keys.dso, "gov.remove_authority", only)) is Reason.INVALID
    account = query.account(chain.view, third)
    assert account is not None and "authority" not in account.roles


def test_enrolment_and_authorisation(chain: LocalChain) -> None:
    mgmc, anonym = Keys.stranger, key("anonym-x")
    assert reason(chain.sign_and_submit(anonym, "der_commitment", der())) is Reason.UNKNOWN_SENDER
    body = {"mgmc": mgmc.public, "anonym": anonym.public, "label": "mg9"}
    assert chain.sign_and_submit(Keys.dso, "enrol", body).ok
    assert reason(chain.sign_and_submit(Keys.dso, "enrol", body)) is Reason.DUPLICATE
    assert chain.sign_and_submit(anonym, "der_commitment", der()).ok
    assert chain.sign_and_submit(Keys.dso, "authorise", {"key": anonym.public, "authorised": False}).ok
    assert reason(chain.sign_and_submit(anonym, "der_commitment", der(2))) is Reason.NOT_AUTHORISED
    assert (
        reason(chain.sign_and_submit(Keys.dso, "authorise", {"key": Keys.dso.public, "authorised": True}))
        is Reason.INVALID
    )
    mgmc_account = query.account(chain.view, mgmc.public)
    assert mgmc_account is not None and mgmc_account.label == "mg9"


# ---------------------------------------------------------------------------------------------- MGMC and DSO records


def test_data_commitments_schedules_and_injections(chain: LocalChain) -> None:
    assert chain.sign_and_submit(Keys.p1, "der_commitment", der()).ok
    assert reason(chain.sign_and_submit(Keys.p1, "der_commitment", der())) is Reason.DUPLICATE
    assert query.der_commitment(chain.view, Keys.p1.public, 1)["root"] == ROOT  # type: ignore[index]
    schedule = {"interval": 1, "der": "battery", "setpoints": [100, -100], "step_s": 900}
    assert chain.sign_and_submit(Keys.p1, "schedule_contract", schedule).ok
    assert reason(chain.sign_and_submit(Keys.p1, "schedule_contract", schedule)) is Reason.DUPLICATE
    assert (
        reason(
            chain.sign_and_submit(Keys.p1, "schedule_contract", {**schedule, "der": "pv", "setpoints": []})
        )
        is Reason.INVALID
    )
    assert reason(chain.sign_and_submit(Keys.dso, "der_commitment", der())) is Reason.FORBIDDEN
    inj = {"interval": 1, "injection": -2500, "revision": 0}
    assert chain.sign_and_submit(Keys.p1, "equivalent_injection", inj).ok
    assert reason(chain.sign_and_submit(Keys.p1, "equivalent_injection", inj)) is Reason.DUPLICATE
    assert chain.sign_and_submit(
        Keys.p1, "equivalent_injection", {**inj, "injection": -1500, "revision": 1}
    ).ok
    assert query.equivalent_injection(chain.view, Keys.p1.public, 1)["injection"] == -1500  # type: ignore[index]


def test_adjustment_contract_is_stored_encrypted_with_its_hash(chain: LocalChain) -> None:
    secret = b'{"max_injection_w": 1500}'
    body = {"interval": 4, "to": Keys.p2.public, "ciphertext": seal(Keys.p2.public, secret)}
    assert reason(chain.sign_and_submit(Keys.p1, "adjustment_contract", body)) is Reason.FORBIDDEN
    assert chain.sign_and_submit(Keys.dso, "adjustment_contract", body).ok
    unknown = {**body, "to": Keys.stranger.public}
    assert reason(chain.sign_and_submit(Keys.dso, "adjustment_contract", unknown)) is Reason.NOT_FOUND
    chain.seal()
    [stored] = query.adjustment_contracts(chain.state, Keys.p2.public, 4)
    assert secret not in stored["ciphertext"]
    assert Keys.p2.unseal(stored["ciphertext"]) == secret
    assert stored["hash"] == digest("ciphertext", "test-chain", stored["ciphertext"])
    with pytest.raises(ValueError):
        Keys.p3.unseal(stored["ciphertext"])


def test_switching_plan_and_its_result(chain: LocalChain) -> None:
    plan = {
        "plan": "p1",
        "interval": 3,
        "actions": [{"switch": "s33", "close": True}, {"switch": "s7", "close": False}],
    }
    assert chain.sign_and_submit(Keys.dso, "switching_plan", plan).ok
    assert reason(chain.sign_and_submit(Keys.dso, "switching_plan", plan)) is Reason.DUPLICATE
    partial = {"plan": "p1", "results": [{"switch": "s33", "closed": True, "ok": True}]}
    assert reason(chain.sign_and_submit(Keys.dso, "switching_result", partial)) is Reason.INVALID
    full = {
        "plan": "p1",
        "results": [
            {"switch": "s33", "closed": True, "ok": True},
            {"switch": "s7", "closed": True, "ok": False},
        ],
    }
    result = chain.sign_and_submit(Keys.dso, "switching_result", full)
    assert isinstance(result, Accepted) and result.events[0][1]["failed"] == ["s7"]
    assert reason(chain.sign_and_submit(Keys.dso, "switching_result", full)) is Reason.CLOSED
    assert (
        reason(chain.sign_and_submit(Keys.dso, "switching_result", {**full, "plan": "p2"}))
        is Reason.NOT_FOUND
    )


# ---------------------------------------------------------------------------------------------- evidence


def _votes(signer_key, height: int, step: str, blocks: tuple[bytes, bytes]) -> dict[str, object]:  # type: ignore[no-untyped-def]
    votes = [
        {"block": b, "sig": signer_key.sign(vote_digest("test-chain", height, 0, step, b))} for b in blocks
    ]
    return {
        "signer": signer_key.public,
        "height": height,
        "round": 0,
        "step": step,
        "first": votes[0],
        "second": votes[1],
    }


def test_equivocation_evidence(chain: LocalChain) -> None:
    chain.seal()
    a, b = b"\x01" * 32, b"\x02" * 32
    good = _votes(Keys.authority, 1, COMMIT, (a, b))
    result = chain.sign_and_submit(Keys.p1, "evidence", good)
    assert isinstance(result, Accepted) and result.events[0][0] == "equivocation"
    assert reason(chain.sign_and_submit(Keys.p2, "evidence", good)) is Reason.DUPLICATE
    assert query.evidence(chain.view, Keys.authority.public, 1, 0, COMMIT) is not None
    same = _votes(Keys.authority, 1, PREPARE, (a, a))
    assert reason(chain.sign_and_submit(Keys.p1, "evidence", same)) is Reason.INVALID_EVIDENCE
    not_authority = _votes(Keys.p3, 1, PREPARE, (a, b))
    assert reason(chain.sign_and_submit(Keys.p1, "evidence", not_authority)) is Reason.INVALID_EVIDENCE
    forged = _votes(Keys.authority, 1, PREPARE, (a, b))
    forged["second"] = {"block": b, "sig": Keys.p3.sign(b"x" * 32)}
    assert reason(chain.sign_and_submit(Keys.p1, "evidence", forged)) is Reason.INVALID_EVIDENCE
    future = _votes(Keys.authority, 9, PREPARE, (a, b))
    assert reason(chain.sign_and_submit(Keys.p1, "evidence", future)) is Reason.INVALID_EVIDENCE


# ---------------------------------------------------------------------------------------------- determinism


def test_two_replicas_that_apply_the_same_blocks_share_the_state_root() -> None:
    genesis = make_genesis()
    a, b = LocalChain(genesis, Keys.authority), LocalChain(genesis, Keys.authority)
    txs: list[Tx] = []
    for i in range(1, 6):
        txs.append(sign_tx(Keys.p1, "test-chain", "der_commitment", i, T0 + 1000, der(i)))
        txs.append(
            sign_tx(
                Keys.p2,
                "test-chain",
                "equivalent_injection",
                i,
                T0 + 1000,
                {"interval": i, "injection": i, "revision": 0},
            )
        )
    for tx in txs:
        assert a.submit(tx).ok
    block_a, _ = a.seal(T0 + 1000)
    for tx in reversed(list(reversed(txs))):
        assert b.submit(tx.raw).ok
    block_b, _ = b.seal(T0 + 1000)
    assert block_a.hash == block_b.hash
    assert a.state.root == b.state.root == block_a.header.state_root
    assert a.state.as_dict() == b.state.as_dict()


GOV_KEYS = [Keys.authority2, Keys.p1, Keys.p2, Keys.p3]


@given(
    st.lists(
        st.tuples(st.sampled_from(["add", "remove", "rotate"]), st.integers(0, 4), st.integers(0, 4)),
        max_size=12,
    )
)
@settings(max_examples=60, deadline=None)
def test_random_governance_keeps_a_sane_authority_set(steps: list[tuple[str, int, int]]) -> None:
    chain = LocalChain(make_genesis(), Keys.authority)
    everyone = [Keys.authority.public, *(k.public for k in GOV_KEYS)]
    for op, a, b in steps:
        if op == "add":
            body: dict[str, object] = {"key": everyone[a]}
        elif op == "remove":
            body = {"key": everyone[a]}
        else:
            body = {"old": everyone[a], "new": everyone[b]}
        before = query.authorities_at(chain.view, chain.height + 2)
        result = chain.sign_and_submit(Keys.dso, f"gov.{op}_authority", body)
        after = query.authorities_at(chain.view, chain.height + 2)
        assert after and len(set(after)) == len(after) and after == sorted(after)
        if not result.ok:
            assert after == before
        # the block being built is always governed by the set in force before it
        assert query.authorities_at(chain.view, chain.height + 1) == query.authorities_at(
            chain.state, chain.height + 1
        )
        if Keys.authority.public in query.authorities_at(chain.view, chain.height + 2):
            chain.seal()
    for member in query.authorities_at(chain.view, chain.height + 2):
        account = query.account(chain.view, member)
        assert account is not None and "authority" in account.roles


@pytest.mark.parametrize(
    "account",
    [
        {"balance": True},
        {"balance": 2**63},
        {"rules": {"floor_price": 1}},
        {"label": "x" * 65},
        {"roles": ("king",)},
    ],
)
def test_malformed_genesis_accounts_are_refused(account: dict[str, object]) -> None:
    from peergrid_ledger.genesis import Account, GenesisError

    fields: dict[str, object] = {"key": Keys.p1.public, "roles": ("anonym",), **account}
    with pytest.raises(GenesisError):
        make_genesis(accounts=(Account(**fields),))  # type: ignore[arg-type]
