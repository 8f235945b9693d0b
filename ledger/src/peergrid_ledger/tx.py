"""Signed transactions: build, sign, encode, decode.

Wire form: the canonical encoding of the array `[payload, signature]`, both byte strings, where `payload` is the
canonical encoding of the map `{body, chain, kind, nonce, sender, time}` and `signature` is the sender's
Ed25519 signature of the transaction id `txid = digest("tx", chain, payload)`.

Promises: `decode_tx` returns a `Tx` for exactly the well-formed encodings up to `max_size` bytes and raises
`DecodeError` for everything else; it does NOT check the signature, chain, nonce or time (the state machine
does, with typed rejections). `sign_tx` produces bytes that `decode_tx` accepts. Pure; no I/O.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .codec import (
    DecodeError,
    Value,
    decode,
    decode_prefix,
    decode_scalar_map,
    encode,
    expect_bytes,
    expect_int,
    expect_list,
    expect_map,
    expect_str,
)
from .hashing import TX, digest
from .keys import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, Keypair, verify

MAX_TX_BYTES = 64 * 1024
"""Default ceiling for one encoded transaction; genesis may set a lower `max_tx_bytes`."""

PAYLOAD_FIELDS = frozenset({"body", "chain", "kind", "nonce", "sender", "time"})
_SIGNATURE_HEAD = b"\x58\x40"  # a 64-byte byte string
MAX_CHAIN_ID = 64
MAX_KIND = 64


class Tx(NamedTuple):
    """A decoded signed transaction. `raw` is its wire form; `txid` names it. Immutable (a NamedTuple:
    building one costs a quarter of a frozen dataclass, and every received transaction builds one)."""

    chain: str
    kind: str
    sender: bytes
    nonce: int
    time: int
    body: dict[str, Any]
    signature: bytes
    payload: bytes
    raw: bytes
    txid: bytes

    def signature_ok(self) -> bool:
        return verify(self.sender, self.txid, self.signature)

    def to_json(self) -> dict[str, Any]:
        return {
            "txid": self.txid.hex(),
            "chain": self.chain,
            "kind": self.kind,
            "sender": self.sender.hex(),
            "nonce": self.nonce,
            "time": self.time,
            "body": to_jsonable(self.body),
            "signature": self.signature.hex(),
        }


def sign_tx(keypair: Keypair, chain: str, kind: str, nonce: int, time_ms: int, body: dict[str, Any]) -> Tx:
    """A transaction from `keypair.public`, signed. `body` must be encodable (see `codec`)."""
    payload = encode(
        {
            "body": body,
            "chain": chain,
            "kind": kind,
            "nonce": nonce,
            "sender": keypair.public,
            "time": time_ms,
        }
    )
    txid = digest(TX, chain, payload)
    signature = keypair.sign(txid)
    raw = encode([payload, signature])
    return Tx(chain, kind, keypair.public, nonce, time_ms, body, signature, payload, raw, txid)


# The payload's six keys in canonical order (shorter first, then bytewise), each with its text-string head.
_BODY_KEY = b"\xa6\x64body"  # with the head of a six-entry map
_KIND_KEY = b"\x64kind"
_TIME_KEY = b"\x64time"
_CHAIN_KEY = b"\x65chain"
_NONCE_KEY = b"\x65nonce"
_SENDER_KEY = b"\x66sender"
_SENDER_HEAD = b"\x58\x20"  # a 32-byte byte string
_TEXTS: dict[bytes, str] = {}
"""Short text values (kinds, chain ids) by their encoding: a chain sees a few dozen (a pure memo, bounded)."""


def _text(payload: bytes, pos: int, end: int, budget: list[int] | None) -> tuple[Any, int]:
    """The item at `pos`: a short text string seen before from the memo, anything else by `decode_prefix`."""
    if pos < end and 0x60 <= payload[pos] < 0x78:
        stop = pos + 1 + payload[pos] - 0x60
        text = _TEXTS.get(payload[pos:stop])
        if text is not None and stop <= end:
            return text, stop
        value, after = decode_prefix(payload, pos, end, budget)
        if after == stop and len(_TEXTS) < 4096:
            _TEXTS[payload[pos:stop]] = value
        return value, after
    return decode_prefix(payload, pos, end, budget)


def _uint(payload: bytes, pos: int, end: int, budget: list[int] | None) -> tuple[Any, int]:
    """The item at `pos`: an unsigned integer below 24 or of eight bytes (a nonce, a time in ms) read in
    place, with the codec's strictness (the shortest head only); anything else by `decode_prefix`."""
    if pos < end:
        initial = payload[pos]
        if initial < 0x18:
            return initial, pos + 1
        if initial == 0x1B and pos + 9 <= end:
            value = int.from_bytes(payload[pos + 1 : pos + 9], "big")
            if value > 0xFFFFFFFF:
                return value, pos + 9
    return decode_prefix(payload, pos, end, budget)


def _envelope(payload: bytes, budget: list[int] | None) -> tuple[Any, ...] | None:
    """The payload's six values (body, kind, time, chain, nonce, sender) read in place, or None if its bytes
    are not laid out as the canonical encoding of such a map (the caller then decodes it generally). Since
    a canonical encoding is unique, this accepts exactly what the general path would. The scalars are read
    in their usual forms without the general decoder (every received transaction comes through here)."""
    end = len(payload)
    if not payload.startswith(_BODY_KEY):
        return None
    scalars = decode_scalar_map(payload, len(_BODY_KEY), end, budget)  # a market body: no call per field
    body, pos = scalars if scalars is not None else decode_prefix(payload, len(_BODY_KEY), end, budget)
    if not payload.startswith(_KIND_KEY, pos):
        return None
    kind, pos = _text(payload, pos + len(_KIND_KEY), end, budget)
    if not payload.startswith(_TIME_KEY, pos):
        return None
    time_ms, pos = _uint(payload, pos + len(_TIME_KEY), end, budget)
    if not payload.startswith(_CHAIN_KEY, pos):
        return None
    chain, pos = _text(payload, pos + len(_CHAIN_KEY), end, budget)
    if not payload.startswith(_NONCE_KEY, pos):
        return None
    nonce, pos = _uint(payload, pos + len(_NONCE_KEY), end, budget)
    if not payload.startswith(_SENDER_KEY, pos):
        return None
    pos += len(_SENDER_KEY)
    if payload.startswith(_SENDER_HEAD, pos) and pos + 34 <= end:
        sender, pos = payload[pos + 2 : pos + 34], pos + 34
    else:
        sender, pos = decode_prefix(payload, pos, end, budget)
    return (body, kind, time_ms, chain, nonce, sender) if pos == end else None


def decode_tx(raw: bytes, max_size: int = MAX_TX_BYTES, budget: list[int] | None = None) -> Tx:
    """The transaction encoded by `raw`; `DecodeError` if it is not exactly a well-formed one. With a
    `budget` (`codec.item_budget`, shared by the caller across transactions), the body's array items and
    map entries are taken from it, and a header announcing more than is left is refused before anything of
    it is built (a transaction's bytes then cost a bounded decode: review21 F1)."""
    if len(raw) > max_size:
        raise DecodeError(f"transaction of {len(raw)} bytes exceeds the limit of {max_size}")
    end = len(raw) - 2 - SIGNATURE_BYTES
    if end > 1 and raw[0] == 0x82 and raw[end : end + 2] == _SIGNATURE_HEAD:
        # fast path for the one valid framing: array(2), payload bytes, 64-byte signature
        if raw[1] == 0x58 and 24 <= raw[2] == end - 3:  # the usual payload: 24..255 bytes, a 1-byte length
            payload = raw[3:end]
        else:
            payload, stop = decode_prefix(raw, 1, end)
            if type(payload) is not bytes or stop != end:
                raise DecodeError("transaction: expected [payload, signature]")
        signature = raw[end + 2 :]
    else:
        outer = decode(raw, max_size, None if budget is None else 2)
        if type(outer) is not list or len(outer) != 2:
            raise DecodeError("transaction: expected [payload, signature]")
        payload = expect_bytes(outer[0], "transaction payload")
        signature = expect_bytes(outer[1], "transaction signature", SIGNATURE_BYTES)
    envelope = _envelope(payload, budget)
    if envelope is not None:
        body, kind, time_ms, chain, nonce, sender = envelope
    else:  # not the usual layout: decode generally, which accepts the same set or says what is wrong
        items = None if budget is None else len(PAYLOAD_FIELDS) + budget[0]
        if budget is not None:
            budget[0] = 0  # what it took is not counted: take all that was left
        fields = expect_map(decode(payload, max_size, items), "transaction payload", PAYLOAD_FIELDS)
        chain, kind, sender = fields["chain"], fields["kind"], fields["sender"]
        nonce, time_ms, body = fields["nonce"], fields["time"], fields["body"]
    if not (  # one combined check on the hot path; the detailed one below names what is wrong
        type(chain) is str
        and len(chain) <= MAX_CHAIN_ID
        and type(kind) is str
        and len(kind) <= MAX_KIND
        and type(sender) is bytes
        and len(sender) == PUBLIC_KEY_BYTES
        and type(nonce) is int
        and nonce >= 0
        and type(time_ms) is int
        and time_ms >= 0
        and type(body) is dict
    ):
        expect_str(chain, "chain", MAX_CHAIN_ID)
        expect_str(kind, "kind", MAX_KIND)
        expect_bytes(sender, "sender", PUBLIC_KEY_BYTES)
        expect_int(nonce, "nonce")
        expect_int(time_ms, "time")
        raise DecodeError("body: expected a map")
    txid = digest(TX, chain, payload)
    return Tx(chain, kind, sender, nonce, time_ms, body, signature, payload, raw, txid)


def decode_tx_list(raw: bytes, max_count: int, max_size: int) -> list[Tx]:
    items = expect_list(decode(raw, max_size), "transaction list", max_count)
    return [decode_tx(expect_bytes(item, "transaction")) for item in items]


def to_jsonable(value: Value) -> Any:
    """A JSON view of a decoded value: byte strings become hex (for `show` and `export`, not for hashing)."""
    if type(value) is bytes:
        return value.hex()
    if type(value) is list:
        return [to_jsonable(v) for v in value]
    if type(value) is dict:
        return {k: to_jsonable(v) for k, v in value.items()}
    return value
