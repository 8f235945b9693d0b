"""Nothing a transaction or block can contain makes the ledger raise anything but its typed errors.

Bodies are generated from each kind's own declared shape (so they pass the shape check and reach the rules),
with extreme integers; `apply` must return `Accepted` or `Rejected` and never raise. Random and mutated wire
bytes must raise only `DecodeError`.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_fixtures import T0, Keys, make_genesis

from peergrid_ledger.block import Certificate, Header, Tip, decode_block, propose
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.codec import DecodeError, encode
from peergrid_ledger.contracts.market import trade_id
from peergrid_ledger.genesis import Account, GenesisError, Params
from peergrid_ledger.machine import BlockContext, apply, kinds
from peergrid_ledger.results import Accepted, Rejected
from peergrid_ledger.schema import Bool, Bytes, Int, List, Map, OneOf, Shape, Str
from peergrid_ledger.tx import decode_tx, sign_tx

KNOWN_KEYS = [
    Keys.p1.public,
    Keys.p2.public,
    Keys.p3.public,
    Keys.dso.public,
    Keys.authority.public,
    trade_id(0, Keys.p1.public, Keys.p2.public),  # the seeded chain's agreed trade
]


def from_shape(shape: Shape) -> st.SearchStrategy[Any]:
    if isinstance(shape, Int):
        return st.one_of(st.integers(shape.low, shape.high), st.sampled_from([shape.low, shape.high]))
    if isinstance(shape, Bytes):
        if shape.size == 32:
            return st.one_of(st.sampled_from(KNOWN_KEYS), st.binary(min_size=32, max_size=32))
        if shape.size is not None:
            return st.binary(min_size=shape.size, max_size=shape.size)
        return st.binary(max_size=min(shape.max_size, 200))
    if isinstance(shape, Str):
        return st.text(min_size=shape.min_len, max_size=min(shape.max_len, 12))
    if isinstance(shape, Bool):
        return st.booleans()
    if isinstance(shape, List):
        return st.lists(from_shape(shape.item), max_size=min(shape.max_len, 4))
    if isinstance(shape, Map):
        return st.fixed_dictionaries({name: from_shape(sub) for name, sub in shape.fields.items()})
    assert isinstance(shape, OneOf)
    return st.one_of([from_shape(option) for option in shape.options])


def seeded_chain() -> LocalChain:
    """A chain with some history for the rules to look at: an offer, a bid, an agreed trade, an auction."""
    chain = LocalChain(make_genesis(params=Params(credit_limit=2**62)), Keys.authority)
    offer = {"interval": 0, "round": 0, "price": 10**12, "quantity": 10**12, "clean": True}
    assert chain.sign_and_submit(Keys.p1, "offer", offer).ok
    assert chain.sign_and_submit(
        Keys.p2,
        "bid",
        {"interval": 0, "round": 0, "demands": [{"seller": Keys.p1.public, "quantity": 10**12}]},
    ).ok
    assert chain.sign_and_submit(Keys.p2, "trade", {"interval": 0}).ok
    assert chain.sign_and_submit(
        Keys.p3, "auction.open", {"auction": "a", "quantity": 1, "reserve": 0, "close_height": 3}
    ).ok
    chain.seal()
    return chain


CHAIN = seeded_chain()
SENDERS = [Keys.p1, Keys.p2, Keys.p3, Keys.dso, Keys.authority]


@st.composite
def transactions(draw: st.DrawFn) -> tuple[str, dict[str, Any], int]:
    kind = draw(st.sampled_from(sorted(kinds())))
    body = draw(from_shape(kinds()[kind].shape))
    return kind, body, draw(st.integers(0, len(SENDERS) - 1))


@given(transactions())
@settings(max_examples=400, deadline=None)
def test_apply_never_raises_for_shape_valid_bodies(case: tuple[str, dict[str, Any], int]) -> None:
    kind, body, who = case
    sender = SENDERS[who]
    from peergrid_ledger import query

    nonce = query.last_nonce(CHAIN.state, sender.public) + 1
    tx = sign_tx(sender, "test-chain", kind, nonce, T0 + 2000, body)
    result = apply(CHAIN.state, tx, BlockContext(CHAIN.genesis, CHAIN.height + 1, T0 + 2000))
    assert isinstance(result, Accepted | Rejected)


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_random_bytes_are_a_decode_error(raw: bytes) -> None:
    for decoder in (decode_tx, decode_block, Header.decode, Certificate.decode):
        try:
            decoder(raw)
        except DecodeError:
            pass


@given(st.data())
@settings(max_examples=200, deadline=None)
def test_mutated_transactions_and_blocks_raise_only_decode_error(data: st.DataObject) -> None:
    genesis = make_genesis()
    tx = sign_tx(
        Keys.p1,
        "test-chain",
        "der_commitment",
        1,
        T0 + 1000,
        {"interval": 1, "root": bytes(32), "readings": 1},
    )
    block, _ = propose(
        genesis.initial_state(), Tip.of_genesis(genesis), genesis, [tx], T0 + 1000, Keys.authority
    )
    for raw, decoder in ((tx.raw, decode_tx), (block.encode(), decode_block)):
        mutated = bytearray(raw)
        for _ in range(data.draw(st.integers(1, 3))):
            i = data.draw(st.integers(0, len(mutated) - 1))
            mutated[i] = data.draw(st.integers(0, 255))
        cut = data.draw(st.integers(0, len(mutated)))
        for candidate in (bytes(mutated), bytes(mutated[:cut])):
            try:
                decoded = decoder(candidate)
            except DecodeError:
                continue
            if decoder is decode_tx:  # whatever decodes is canonical: it re-encodes to the same bytes
                fields = {"body": decoded.body, "chain": decoded.chain, "kind": decoded.kind}
                fields.update(nonce=decoded.nonce, sender=decoded.sender, time=decoded.time)
                assert encode(fields) == decoded.payload
                assert encode([decoded.payload, decoded.signature]) == candidate


def test_a_balance_past_64_bits_is_rejected_not_raised() -> None:
    accounts = tuple(
        Account(k.public, ("anonym",), balance=b)
        for k, b in ((Keys.p1, 2**63 - 1), (Keys.p2, 0), (Keys.p3, 0))
    )
    chain = LocalChain(make_genesis(accounts=accounts, params=Params(credit_limit=2**63 - 1)), Keys.authority)
    offer = {"interval": 0, "round": 0, "price": 10**12, "quantity": 10**7, "clean": True}
    assert chain.sign_and_submit(Keys.p1, "offer", offer).ok
    for buyer, quantity in ((Keys.p2, 9 * 10**6), (Keys.p3, 10**6)):
        demands = [{"seller": Keys.p1.public, "quantity": quantity}]
        assert chain.sign_and_submit(buyer, "bid", {"interval": 0, "round": 0, "demands": demands}).ok
    assert chain.sign_and_submit(Keys.p2, "trade", {"interval": 0}).ok
    first = {"trade": trade_id(0, Keys.p1.public, Keys.p2.public), "delivered": 9 * 10**6}
    assert chain.sign_and_submit(Keys.p2, "settle", first).ok  # the seller now holds about 1.8e19
    second = {"trade": trade_id(0, Keys.p1.public, Keys.p3.public), "delivered": 10**6}
    result = chain.sign_and_submit(Keys.p3, "settle", second)
    assert isinstance(result, Rejected) and "out of range" in result.detail
    with pytest.raises(GenesisError):
        make_genesis(accounts=(Account(Keys.p1.public, ("anonym",), balance=2**64),))


def test_envelope_fast_path_and_general_path_agree() -> None:
    tx = sign_tx(
        Keys.p1, "test-chain", "der_commitment", 1, T0, {"interval": 1, "root": bytes(32), "readings": 1}
    )
    # swap the first two entries (body, kind): same map, non-canonical order -> refused by the general path
    body_item = encode(tx.body)
    kind_item = encode(tx.kind)
    head_len = 1 + 5  # a6 + "body" key
    body_end = head_len + len(body_item)
    kind_end = body_end + 5 + len(kind_item)
    swapped = b"\xa6" + tx.payload[body_end:kind_end] + tx.payload[1:body_end] + tx.payload[kind_end:]
    assert sorted(swapped) == sorted(tx.payload)
    with pytest.raises(DecodeError, match="canonical order"):
        decode_tx(encode([swapped, tx.signature]))
    # an extra field after `sender` is refused too
    extended = b"\xa7" + tx.payload[1:] + encode("zzzzzzz") + b"\x00"
    with pytest.raises(DecodeError):
        decode_tx(encode([extended, tx.signature]))
