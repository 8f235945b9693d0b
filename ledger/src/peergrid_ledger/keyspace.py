"""Where each kind of record lives in the state map, and the typed account record.

Promises: every state key is built here, as an ASCII prefix followed by fixed-width binary parts, with at most
one variable-length part at the end, so no two record types or two records of one type share a key.
Integers in keys are 8-byte big-endian. Pure; no I/O.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from .codec import UINT64_MAX, decode, encode, head

ROLE_DSO = "dso"  # governance: authorities, enrolment, adjustment contracts, switching
ROLE_AUTHORITY = "authority"  # signs blocks
ROLE_MGMC = "mgmc"  # an enrolled microgrid master controller (identity key)
ROLE_ANONYM = "anonym"  # the pseudonymous key an MGMC trades with
# posts the market's interval clock (`market.clock`) and nothing else: a key apart from the DSO's own (its own
# nonces) that holds none of the DSO's other powers - capacity, tariff, reopen, gov.* (review23 F2)
ROLE_CLOCK = "clock"
ROLES = frozenset({ROLE_DSO, ROLE_AUTHORITY, ROLE_MGMC, ROLE_ANONYM, ROLE_CLOCK})
PARTICIPANT_ROLES = frozenset({ROLE_MGMC, ROLE_ANONYM})

AUTHSET = b"gov/authset"
# the exchange fee in force ({fee, fund_cap} and, with a fee, `coordinators`: `market.fee`,
# contracts/market_fee.py); absent: the genesis'
MARKET_FEE = b"upl/fee"
# the part of the uplift fund's balance no refund returns: make-whole owed but not paid (a day left unfunded, a
# defaulted payee's credit), kept for later sessions' payouts (contracts/uplift_fund.py); absent: 0
UPLIFT_RESERVE = b"upl/reserve"
# the uplift fund's account id (its balance at `balance(UPLIFT_FUND)`): a hash, not a key anybody holds the
# secret of, and no `acct/` record, so no transaction is ever signed by it; only the uplift contract debits it
UPLIFT_FUND = hashlib.sha256(b"peergrid/uplift/fund").digest()


def u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


def account(key: bytes) -> bytes:
    return b"acct/" + key


def balance(key: bytes) -> bytes:
    return b"bal/" + key


def nonce(key: bytes) -> bytes:
    return b"nonce/" + key


def der_commitment(sender: bytes, interval: int) -> bytes:
    return b"der/" + sender + u64(interval)


def schedule_contract(sender: bytes, interval: int, der: str) -> bytes:
    return b"sched/" + sender + u64(interval) + der.encode()


def injection(sender: bytes, interval: int) -> bytes:
    return b"inj/" + u64(interval) + sender


def adjustment(to: bytes, interval: int, txid: bytes) -> bytes:
    return b"adj/" + to + u64(interval) + txid


def adjustment_index(to: bytes, interval: int) -> bytes:
    return b"adjx/" + to + u64(interval)


def switching_plan(plan: str) -> bytes:
    return b"plan/" + plan.encode()


def evidence(signer: bytes, height: int, round_: int, step: str) -> bytes:
    return b"evid/" + signer + u64(height) + u64(round_) + step.encode()


def revoked(key: bytes) -> bytes:
    return b"revoked/" + key


@dataclass(frozen=True, slots=True)
class AccountRecord:
    """A known key: its roles, whether it is authorised to trade, and a human label."""

    roles: frozenset[str]
    authorised: bool = True
    label: str = ""

    def to_value(self) -> dict[str, Any]:
        return {"authorised": self.authorised, "label": self.label, "roles": sorted(self.roles)}

    def encode(self) -> bytes:
        return encode(self.to_value())

    @staticmethod
    def decode(raw: bytes) -> AccountRecord:
        value = decode(raw)
        return AccountRecord(frozenset(value["roles"]), value["authorised"], value["label"])

    def has(self, role: str) -> bool:
        return role in self.roles


_SMALL_INTS = [encode(n) for n in range(24)]
_UINT_SIZES = {0x18: 1, 0x19: 2, 0x1A: 4, 0x1B: 8}


def encode_int(n: int) -> bytes:
    """A state integer (nonce, balance, interval) in canonical form."""
    if 0 <= n < 24:
        return _SMALL_INTS[n]
    if 0 <= n <= UINT64_MAX:
        return head(0, n)  # an unsigned integer is exactly its head
    return encode(n)


def decode_int(raw: bytes | None) -> int:
    """A state integer; absent means 0. Unsigned values are read without the general decoder, with the same
    strictness (shortest form only)."""
    if raw is None:
        return 0
    first = raw[0]
    if first < 24 and len(raw) == 1:
        return first
    size = _UINT_SIZES.get(first)
    if size is not None and len(raw) == size + 1:
        value = int.from_bytes(raw[1:], "big")
        if value >= (24 if size == 1 else 1 << (4 * size)):
            return value
    value = decode(raw)
    if type(value) is not int:
        raise ValueError("state integer is not an integer")
    return value
