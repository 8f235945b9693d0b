"""Enrolment of MGMCs: a signed request with a one-time token, authorisation, an anonym, revocation.

Promises: `EnrolmentService.request` accepts a request only if its token was issued and not used before and
its Ed25519 signature by the MGMC's identity key covers (token, mgmc, anonym, label); otherwise it raises
`EnrolmentRefused` with the reason and the token stays unused. In `auto` mode (the lab) an accepted request is
authorised at once; otherwise it waits for `approve` (an operator, in the pilot). Authorisation records `enrol`
on the DSO chain (the anonym is the pseudonym the MGMC trades under, generated on the MGMC); `revoke` records
`authorise false`. Token generation uses an injected random source.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import nacl.exceptions
import nacl.signing

DOMAIN = b"peergrid/enrolment/v1"


class EnrolmentRefused(ValueError):
    pass


def enrolment_digest(token: str, mgmc: bytes, anonym: bytes, label: str) -> bytes:
    h = hashlib.sha256(DOMAIN)
    for part in (token.encode(), mgmc, anonym, label.encode()):
        h.update(len(part).to_bytes(4, "big") + part)
    return h.digest()


@dataclass
class Enrolment:
    mgmc: bytes
    anonym: bytes
    label: str
    status: str  # "pending" | "authorised" | "revoked"

    def to_json(self) -> dict[str, Any]:
        return {
            "mgmc": self.mgmc.hex(),
            "anonym": self.anonym.hex(),
            "label": self.label,
            "status": self.status,
        }


@dataclass
class EnrolmentService:
    recorder: Any  # ChainRecorder: .enrol(mgmc, anonym, label), .authorise(key, bool)
    auto: bool = True
    token_source: Callable[[], str] = lambda: secrets.token_urlsafe(16)
    tokens: set[str] = field(default_factory=set)
    enrolments: dict[bytes, Enrolment] = field(default_factory=dict)

    def issue_token(self) -> str:
        token = self.token_source()
        self.tokens.add(token)
        return token

    def request(self, token: str, mgmc: bytes, anonym: bytes, label: str, signature: bytes) -> Enrolment:
        if token not in self.tokens:
            raise EnrolmentRefused("unknown or already used enrolment token")
        if len(mgmc) != 32 or len(anonym) != 32:
            raise EnrolmentRefused("keys must be 32-byte Ed25519 public keys")
        if mgmc == anonym:
            raise EnrolmentRefused("the anonym must differ from the MGMC's identity key")
        if mgmc in self.enrolments and self.enrolments[mgmc].status != "revoked":
            raise EnrolmentRefused("this MGMC is already enrolled")
        if not 1 <= len(label) <= 64:
            raise EnrolmentRefused("label must be 1-64 characters")
        try:
            nacl.signing.VerifyKey(mgmc).verify(enrolment_digest(token, mgmc, anonym, label), signature)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
            raise EnrolmentRefused("signature does not verify with the MGMC's key") from None
        self.tokens.discard(token)
        enrolment = Enrolment(mgmc, anonym, label, "pending")
        self.enrolments[mgmc] = enrolment
        if self.auto:
            self.approve(mgmc)
        return enrolment

    def approve(self, mgmc: bytes) -> Enrolment:
        e = self._get(mgmc)
        if e.status != "pending":
            raise EnrolmentRefused(f"enrolment is {e.status}, not pending")
        self.recorder.enrol(e.mgmc, e.anonym, e.label)
        e.status = "authorised"
        return e

    def revoke(self, mgmc: bytes) -> Enrolment:
        e = self._get(mgmc)
        if e.status != "authorised":
            raise EnrolmentRefused(f"enrolment is {e.status}, not authorised")
        self.recorder.authorise(e.mgmc, False)
        self.recorder.authorise(e.anonym, False)
        e.status = "revoked"
        return e

    def _get(self, mgmc: bytes) -> Enrolment:
        e = self.enrolments.get(mgmc)
        if e is None:
            raise EnrolmentRefused("no enrolment for this MGMC")
        return e
