"""The offer path's spelled-out steps (B2) give exactly what the general code gives.

Each is checked against the general form it stands for: the envelope's in-place reads of a transaction's
scalars and its one-byte payload length against `codec.decode` (on valid and mutated bytes), a seller's
position record against `codec.encode`, the one-loop check of a map of integers and booleans against the
field-by-field check (same verdict, same words), and an overlay's direct read of a committed tree against
`StateTree.get` after later commits.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st
from ledger_fixtures import Keys

from peergrid_ledger.codec import DecodeError, decode, encode, expect_map
from peergrid_ledger.contracts.market import KINDS as MARKET_KINDS
from peergrid_ledger.contracts.market_state import encode_position
from peergrid_ledger.results import RuleError
from peergrid_ledger.schema import INTERVAL, PRICE, QUANTITY, ROUND, Bool, Int, Map, check, compile_shape
from peergrid_ledger.state import Overlay, StateTree
from peergrid_ledger.tx import PAYLOAD_FIELDS, Tx, _envelope, decode_tx, sign_tx

UINT64 = 2**64 - 1
HEAD_EDGES = [0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, UINT64]
OFFER_SHAPE = MARKET_KINDS["offer"].shape


def canonical(value: Any) -> bytes:
    """Values compared by their encoding, so that True and 1 (equal in Python) differ."""
    return encode(value)


def general_envelope(payload: bytes) -> list[Any]:
    fields = expect_map(decode(payload), "transaction payload", PAYLOAD_FIELDS)
    return [fields[name] for name in ("body", "kind", "time", "chain", "nonce", "sender")]


def outcome(read: Any, data: bytes) -> Any:
    try:
        return read(data)
    except DecodeError:
        return "refused"


def signed(kind: str, chain: str, nonce: int, time_ms: int, body: dict[str, Any]) -> Tx:
    return sign_tx(Keys.p1, chain, kind, nonce, time_ms, body)


texts = st.text(max_size=30)
uints = st.one_of(st.sampled_from(HEAD_EDGES), st.integers(0, UINT64))
bodies = st.dictionaries(
    st.text(max_size=6), st.one_of(uints, st.booleans(), st.binary(max_size=40)), max_size=5
)


@given(texts, texts, uints, uints, bodies, st.data())
@settings(max_examples=300, deadline=None)
@example("offer", "bench-chain", 1, 1_767_225_601_000, {"interval": 0, "price": 250}, None)
def test_the_envelope_reads_what_the_general_decoder_reads(
    kind: str, chain: str, nonce: int, time_ms: int, body: dict[str, Any], data: st.DataObject | None
) -> None:
    payload = signed(kind, chain, nonce, time_ms, body).payload
    candidates = [payload]
    if data is not None:
        mutated = bytearray(payload)
        for _ in range(data.draw(st.integers(1, 3))):
            mutated[data.draw(st.integers(0, len(mutated) - 1))] = data.draw(st.integers(0, 255))
        candidates += [bytes(mutated), bytes(mutated[: data.draw(st.integers(0, len(mutated)))])]
    for candidate in candidates:
        general = outcome(general_envelope, candidate)
        for budget in (None, [1000, 1000]):
            fast = outcome(lambda p: _envelope(p, budget), candidate)  # noqa: B023 - called at once
            if general == "refused":
                assert fast in ("refused", None)
            else:
                assert fast is not None and canonical(list(fast)) == canonical(general)
    assert _envelope(payload, None) is not None  # a canonical payload takes the fast path


def general_tx(raw: bytes) -> list[Any]:
    """A transaction's fields and signature by `codec.decode` alone, refusing what `decode_tx` refuses."""
    outer = decode(raw)
    if not (type(outer) is list and len(outer) == 2 and type(outer[0]) is bytes and type(outer[1]) is bytes):
        raise DecodeError("not [payload, signature]")
    body, kind, time_ms, chain, nonce, sender = general_envelope(outer[0])
    if not (
        type(kind) is str
        and len(kind) <= 64
        and type(chain) is str
        and len(chain) <= 64
        and type(sender) is bytes
        and len(sender) == 32
        and type(nonce) is int
        and type(time_ms) is int
        and type(body) is dict
        and len(outer[1]) == 64
    ):
        raise DecodeError("a field of the wrong type")
    return [body, kind, time_ms, chain, nonce, sender, outer[1]]


@given(st.integers(0, 300), st.data())
@settings(max_examples=200, deadline=None)
def test_a_payload_of_any_length_decodes_as_its_general_framing(pad: int, data: st.DataObject) -> None:
    """Payload lengths across the one-byte length's bounds (24 and 255), and mutations of the framing."""
    tx = signed("der_commitment", "c", 1, 5, {"note": b"x" * pad})
    assert decode_tx(tx.raw) == tx
    mutated = bytearray(tx.raw)
    for _ in range(data.draw(st.integers(1, 2))):
        mutated[data.draw(st.integers(0, min(4, len(mutated) - 1)))] = data.draw(st.integers(0, 255))
    raw = bytes(mutated)
    general = outcome(general_tx, raw)
    decoded = outcome(decode_tx, raw)
    if general == "refused":
        assert decoded == "refused"
    else:
        assert decoded != "refused"
        assert canonical(general) == canonical(
            [
                decoded.body,
                decoded.kind,
                decoded.time,
                decoded.chain,
                decoded.nonce,
                decoded.sender,
                decoded.signature,
            ]
        )


@given(
    st.booleans(),
    *(st.one_of(st.sampled_from(HEAD_EDGES[:-1]), st.integers(0, s.high)) for s in (PRICE, QUANTITY, ROUND)),
)
@example(True, UINT64, UINT64, UINT64)
def test_the_position_record_is_its_general_encoding(
    clean: bool, price: int, quantity: int, round_: int
) -> None:
    record = {"clean": clean, "price": price, "quantity": quantity, "round": round_}
    assert encode_position(clean, price, quantity, round_) == encode(record)
    assert decode(encode_position(clean, price, quantity, round_)) == record


def field_by_field(shape: Map, value: Any, where: str) -> None:
    """The general check, field by field, whose words name the field (R38-1: not the compiled map's before)."""
    check(shape, value, where)


def verdict(validate: Any, value: Any) -> tuple[str, str] | None:
    try:
        validate(value, "body")
    except RuleError as err:
        return err.reason.value, err.detail
    return None


anything = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.text(max_size=3), st.binary(max_size=3)
)


@given(
    st.dictionaries(
        st.sampled_from(["clean", "interval", "price", "quantity", "round", "extra"]),
        st.one_of(anything, st.sampled_from([0, 1, 2**40, 2**40 + 1, 10**12, 10**12 + 1, 1_000_001])),
    )
    | anything
)
@settings(max_examples=400, deadline=None)
def test_a_map_of_integers_and_booleans_is_judged_as_field_by_field(value: Any) -> None:
    shape = Map({"interval": INTERVAL, "flag": Bool(), "n": Int(-5, 5)})
    for tested in (OFFER_SHAPE, shape):
        assert isinstance(tested, Map)
        assert verdict(compile_shape(tested), value) == verdict(partial(field_by_field, tested), value)


def test_an_overlay_reads_a_trees_later_commits() -> None:
    tree = StateTree("c", {b"a": b"\x01", b"b": b"\x02"})
    view = Overlay(Overlay(tree))
    view.put(b"b", b"\x03")
    tree.commit({b"a": None, b"c": b"\x04"})  # the plain commit
    assert [view.get(k) for k in (b"a", b"b", b"c")] == [None, b"\x03", b"\x04"]
    tree.root_after({b"d": b"\x05", b"c": None})
    tree.commit({b"d": b"\x05", b"c": None})  # the commit after a previewed root
    assert [view.get(k) for k in (b"c", b"d")] == [None, b"\x05"]
    assert view.get(b"d") == tree.get(b"d")
