"""Signed equivalent injections from enrolled MGMCs: verify, refuse replays, count refusals.

Promises: `InjectionGate.accept` takes an MGMC's report of its equivalent injection for one interval and
returns the `Injection` it accepted, or raises `InjectionRefused` with an HTTP-style status, a refusal
category (`malformed`, `unknown_key`, `forged`, `replay`, `stale`) and a reason; every refusal is counted
in `refusals`. A report is accepted only if
  - its key is the identity key of an enrolled MGMC whose enrolment is authorised (not pending or revoked),
  - its Ed25519 signature verifies over `injection_message(...)`: the canonical ledger encoding (CBOR subset)
    of `[INJECTION_DOMAIN, chain id, key, interval, revision, p_w, q_var]`, so a signature is bound to this
    purpose, this DSO chain, this MGMC, interval and revision and can be used for nothing else,
  - it is not older than what this MGMC already reported: a lower interval than its latest is `stale`; the
    same interval and revision with different values is a `replay` (the identical report again is accepted
    and changes nothing); a revised injection for the same interval needs a higher revision (what an MGMC
    sends after re-bargaining under an adjustment contract).
The MG the report is for is the enrolment's label; powers are integer W and var (no float ambiguity in
what is signed). Pure: no I/O, no clock; the caller stores accepted injections.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from peergrid_ledger.codec import encode
from peergrid_ledger.keys import Keypair, verify

INJECTION_DOMAIN = "peergrid/dso-injection/v1"
MAX_POWER_W = 10**9  # 1 GW: far beyond any MG on a distribution feeder
MAX_INTERVAL = 2**40


class InjectionRefused(ValueError):
    def __init__(self, status: int, category: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.category, self.reason = status, category, reason


@dataclass(frozen=True)
class Injection:
    mg: str
    mgmc: bytes
    interval: int
    revision: int
    p_w: int
    q_var: int


def injection_message(chain: str, mgmc: bytes, interval: int, revision: int, p_w: int, q_var: int) -> bytes:
    return encode([INJECTION_DOMAIN, chain, mgmc, interval, revision, p_w, q_var])


def signed_injection(
    keypair: Keypair, chain: str, interval: int, p_w: int, q_var: int = 0, revision: int = 0
) -> dict[str, object]:
    """The request body an MGMC sends (what the tests and the lab tools post)."""
    sig = keypair.sign(injection_message(chain, keypair.public, interval, revision, p_w, q_var))
    return {
        "mgmc": keypair.public.hex(), "interval": interval, "revision": revision, "p_w": p_w, "q_var": q_var,
        "signature": sig.hex(),
    }  # fmt: skip


@dataclass
class InjectionGate:
    chain: str  # the DSO chain id the signatures must name
    authorised_mg: Callable[[bytes], str | None]  # identity key -> MG id if enrolled and authorised
    latest: dict[bytes, Injection] = field(default_factory=dict)  # per MGMC key
    refusals: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def refuse(self, status: int, category: str, reason: str) -> InjectionRefused:
        """Count a refusal (also the route's, for bodies that never reach `accept`) and make its error."""
        self.refusals[category] += 1
        return InjectionRefused(status, category, reason)

    def accept(
        self, mgmc: bytes, interval: int, revision: int, p_w: int, q_var: int, signature: bytes
    ) -> tuple[Injection, bool]:
        """(the injection, whether it is new). Raises `InjectionRefused`."""
        with self._lock:  # routes run in a thread pool; one MGMC's reports are ordered here
            return self._accept(mgmc, interval, revision, p_w, q_var, signature)

    def _accept(
        self, mgmc: bytes, interval: int, revision: int, p_w: int, q_var: int, signature: bytes
    ) -> tuple[Injection, bool]:
        if len(mgmc) != 32 or len(signature) != 64:
            raise self.refuse(400, "malformed", "mgmc must be a 32-byte key and signature 64 bytes")
        for name, value, low, high in (
            ("interval", interval, 0, MAX_INTERVAL),
            ("revision", revision, 0, 10**6),
            ("p_w", p_w, -MAX_POWER_W, MAX_POWER_W),
            ("q_var", q_var, -MAX_POWER_W, MAX_POWER_W),
        ):
            if not low <= value <= high:
                raise self.refuse(422, "malformed", f"{name} {value} outside [{low}, {high}]")
        mg = self.authorised_mg(mgmc)
        if mg is None:
            raise self.refuse(403, "unknown_key", "key is not an enrolled, authorised MGMC")
        if not verify(mgmc, injection_message(self.chain, mgmc, interval, revision, p_w, q_var), signature):
            raise self.refuse(403, "forged", "signature does not verify with the MGMC's key for this report")
        report = Injection(mg, mgmc, interval, revision, p_w, q_var)
        last = self.latest.get(mgmc)
        if last is not None:
            if interval < last.interval:
                raise self.refuse(
                    409, "stale", f"interval {interval} is older than {last.interval} already reported"
                )
            if interval == last.interval:
                if report == last:
                    return report, False
                if revision <= last.revision:
                    raise self.refuse(
                        409, "replay",
                        f"interval {interval} revision {revision} already reported with other values; "
                        f"a revised injection needs revision > {last.revision}",
                    )  # fmt: skip
        self.latest[mgmc] = report
        return report, True
