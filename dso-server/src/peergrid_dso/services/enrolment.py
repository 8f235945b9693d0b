"""Enrolment of MGMCs: a signed request with a one-time token, authorisation, an anonym, revocation.

Promises: `EnrolmentService.request` accepts a request only if its token was issued and not used before and its
Ed25519 signature by the MGMC's identity key covers (token, mgmc, anonym, label), no enrolment that is not revoked
holds its label (one MG, one key: the injection gate and the console name an MGMC by it) and none holds its anonym
(the chain enrols an anonym once); otherwise it raises `EnrolmentRefused` with the reason and the token stays
unused. Requests are taken one at a time (the API's thread pool sends them at once): a token is used once, and one
name held by one key, under any race. In `auto` mode (the lab) an accepted request is authorised at once (operator
`AUTO_OPERATOR`); otherwise it waits for `approve` by an operator. Approval records `enrol` on the DSO chain with
the operator's name (the anonym is the pseudonym the MGMC trades under, generated on the MGMC). `revoke` records
`gov.revoke` of the MGMC's identity key and of its anonym, naming the operator: the chain takes the MGMC out of
the authority set from the next height and refuses everything either key signs; with `mgmc_recorder` the same
revocation goes on the MGMC chain too. A revocation that failed half-way (a chain refused or was unreachable) can
be repeated: keys already revoked (by this service, as the chain's state says with `revoked_on_chain`, or as the
chain says when it refuses) are skipped. Decisions on one MGMC (approvals, revocations) are taken one at a time,
from its status to the file (two operators, or an operator and auto mode, at once): the chain hears each once, and
the later one is refused `AlreadyDecided` ('enrolment is already authorised'); decisions on different MGMCs do not
wait for each other. A revoked key never enrols again (a new identity key must). Token generation uses an injected
random source. A token may be issued for one MG (`issue_token(label)`): a request under another label is refused.
With a `store` (`enrolment_tokens.TokenStore`, the DSO's data directory) tokens outlive a restart and are shared
with `peergrid-dso enrolment token create`; without one they live in memory (the lab). A token's own MGMC may send
its request again with it (the DSO lost its pending enrolment in a restart: it waits again); any other key is
refused as for a used token. Revoking an MGMC retires the tokens it used in the store, so after a restart without
the queue's file (which empties the queue of enrolments the loop's config does not name) a revoked key is still
refused rather than pending again under its MG's name. With a `file` (`enrolment_file.EnrolmentFile`, the DSO's
data directory) the queue outlives a restart: `keep_in(file)` reads it back (a damaged file raises
`EnrolmentFileError`, never an empty queue), `follow_chain` takes the DSO chain's word on what it holds (the
closed loop's start), `forget_unapproved` drops, in auto mode, what is still pending then (an approval that never
landed: its MGMC asks again), and every change (a request taken, an approval, a revocation) writes the whole queue
before it is answered; a request the file cannot take is undone and raises `EnrolmentFileError` (its MGMC asks
again), an approval or revocation that landed on the chain but not in the file raises `EnrolmentRefused` saying
so.
Assumes a recorder with `submit(kind, body)` that raises when the chain refuses (`dso_chain.ChainRecorder`).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

import nacl.exceptions
import nacl.signing

from peergrid_dso.services.enrolment_tokens import TokenStoreError, check_label

DOMAIN = b"peergrid/enrolment/v1"
log = logging.getLogger("peergrid_dso.enrolment")


class EnrolmentRefused(ValueError):
    pass


class AlreadyDecided(EnrolmentRefused):
    """The approval or revocation asked for was made already (by another operator, or by auto mode, at the same
    time or before): nothing was sent to the chain."""


class EnrolmentNotKept(EnrolmentRefused):
    """An approval or revocation that landed on the chain(s), but the enrolment file could not take it: done, and
    its caller records it as done (the console's operator record) before it tells why the file missed it."""


def enrolment_digest(token: str, mgmc: bytes, anonym: bytes, label: str) -> bytes:
    h = hashlib.sha256(DOMAIN)
    for part in (token.encode(), mgmc, anonym, label.encode()):
        h.update(len(part).to_bytes(4, "big") + part)
    return h.digest()


STATUSES = ("pending", "authorised", "revoked")


@dataclass
class Enrolment:
    mgmc: bytes
    anonym: bytes
    label: str
    status: str  # one of STATUSES

    def to_json(self) -> dict[str, Any]:
        return {
            "mgmc": self.mgmc.hex(),
            "anonym": self.anonym.hex(),
            "label": self.label,
            "status": self.status,
        }


AUTO_OPERATOR = "auto-enrolment"  # who approved in `auto` mode: the DSO's own lab policy, not a person
UNNAMED = "unnamed"  # a caller that did not say who acted (recorded as such, never guessed)
ALREADY_REVOKED = "key already revoked"  # the ledger's detail for revoking a revoked key (core.revoke)


def chain_status(e: Enrolment, revoked: AbstractSet[bytes], enrolled: AbstractSet[bytes]) -> str:
    """`e`'s status on the DSO chain's word (`EnrolmentService.follow_chain`): revoked when its identity key is in
    `revoked`; authorised when pending and its anonym is in `enrolled` (an account on the chain: its approval
    landed); else as it stands."""
    if e.mgmc in revoked:
        return "revoked"
    return "authorised" if e.status == "pending" and e.anonym in enrolled else e.status


@dataclass
class EnrolmentService:
    recorder: Any  # ChainRecorder of the DSO chain: .submit(kind, body)
    auto: bool = True
    token_source: Callable[[], str] = lambda: secrets.token_urlsafe(16)
    tokens: set[str] = field(default_factory=set)
    enrolments: dict[bytes, Enrolment] = field(default_factory=dict)
    mgmc_recorder: Any = None  # the MGMC chain's recorder, where the DSO revokes too (None: DSO chain only)
    revoked_on: set[tuple[int, bytes]] = field(default_factory=set)  # (0 DSO / 1 MGMC chain, key) landed
    # (chain, key) -> whether that chain's state holds the key revoked already (the closed loop: a repeat after a
    # restart, `revoked_on` being empty then, sends only what did not land); None: `revoked_on` alone
    revoked_on_chain: Callable[[int, bytes], bool] | None = None
    store: Any = None  # enrolment_tokens.TokenStore (the DSO's data directory); None: `tokens` in memory
    token_labels: dict[str, str] = field(default_factory=dict)  # in memory: the MG a token was issued for
    # enrolment_file.EnrolmentFile (the DSO's data directory); None: the queue in memory only (the lab)
    file: Any = None
    # one request at a time: the token check, the name check and the insertion as one step (review41 R41-2)
    _taking: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)
    # one decision at a time per MGMC, held across the chain's round trip (seconds): a lock per MGMC, so one
    # approval waiting for its block never holds up another MG's (the lab approves six at once)
    _deciding: dict[bytes, threading.Lock] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _deciding_made: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    def keep_in(self, file: Any) -> bool:
        """Keep the queue in `file` from now on, adding the enrolments it holds for MGMCs the queue does not
        (those of the loop's config are read from the DSO chain at start: they stand); written back when that
        changed it. Whether it did."""
        with self._taking:
            kept = file.read()
            merged = kept | self.enrolments
            self.enrolments.clear()
            self.enrolments.update(merged)
            self.file = file
            changed = [e.to_json() for e in merged.values()] != [e.to_json() for e in kept.values()]
            if changed:
                file.write(list(merged.values()))
            return changed

    def follow_chain(self, revoked: set[bytes], enrolled: set[bytes]) -> list[Enrolment]:
        """Take the DSO chain's word on the queue read back at start: an MGMC whose identity key is in `revoked` is
        revoked, a pending one whose anonym is in `enrolled` (an account on the chain) authorised - its approval
        landed and the file missed it (a crash between the two, a full disk), and the chain would refuse to enrol
        that anonym again. The enrolments changed, written to the file."""
        with self._taking:
            changed = []
            for e in self.enrolments.values():
                if (status := chain_status(e, revoked, enrolled)) != e.status:
                    e.status = status
                    changed.append(e)
            if changed:
                self._save()
            return changed

    def forget_unapproved(self) -> list[Enrolment]:
        """In `auto` mode, at start (after `follow_chain`, which authorised those whose approval landed): drop the
        pending enrolments read back from the file and write it. In auto mode a pending one is a request taken
        whose approval never landed (the server stopped between the file and the chain, or the chain refused or
        timed out): nobody approves it, and its MGMC, answered 'pending', would poll for ever and never send it
        again (`peergrid_edge.enrolment`). Dropped, its next turn finds no enrolment and sends the request again,
        which its token allows. The dropped ones; none outside auto mode (an operator approves them)."""
        if not self.auto:
            return []
        with self._taking:
            dropped = [e for e in self.enrolments.values() if e.status == "pending"]
            for e in dropped:
                del self.enrolments[e.mgmc]
            if dropped:
                self._save()
            return dropped

    def _save(self) -> None:
        """Write the whole queue to the file (under `_taking`, so the last write holds the last change)."""
        if self.file is not None:
            self.file.write(list(self.enrolments.values()))

    def _saved(self, e: Enrolment, done: str) -> None:
        """After an approval or revocation on the chain: the queue written, or `EnrolmentNotKept` saying why not."""
        with self._taking:
            try:
                self._save()
            except Exception as exc:  # EnrolmentFileError, OSError (a full disk)
                raise EnrolmentNotKept(
                    f"{done} on the DSO chain, but the enrolment file could not be written ({exc}): the console "
                    f"shows it {e.status} until a restart, which reads the file as it was"
                ) from None

    def issue_token(self, label: str | None = None) -> str:
        """A new one-time token, for the MG `label` only when given (`ValueError` for a bad label)."""
        check_label(label)
        token = self.token_source()
        if self.store is not None:
            self.store.issue(token, label)
            return token
        self.tokens.add(token)
        if label is not None:
            self.token_labels[token] = label
        return token

    def _token_label(self, token: str, mgmc: bytes) -> str | None:
        """The label `token` was issued for (None: any), if `mgmc` may use it: unused, or used by `mgmc`."""
        unusable = EnrolmentRefused("unknown or already used enrolment token")
        if self.store is None:
            if token not in self.tokens:
                raise unusable
            return self.token_labels.get(token)
        record = self.store.get(token)
        if record is None or (record.used_by is not None and record.used_by != mgmc):
            raise unusable
        if record.retired_at is not None:  # its own key, revoked (the queue may have forgotten it since)
            raise EnrolmentRefused("this key was revoked; the MGMC must enrol with new keys")
        label: str | None = record.label
        return label

    def request(self, token: str, mgmc: bytes, anonym: bytes, label: str, signature: bytes) -> Enrolment:
        with self._taking:
            enrolment = self._take(token, mgmc, anonym, label, signature)
        if self.auto:
            try:
                self.approve(mgmc, AUTO_OPERATOR)
            except AlreadyDecided:  # an operator approved it between the request and this approval: done
                pass
            except EnrolmentNotKept as exc:
                # on the chain, only the file missed it: a refusal would make the MGMC give up for good
                log.error("enrolment of %s: %s", label, exc)
        return enrolment

    def _take(self, token: str, mgmc: bytes, anonym: bytes, label: str, signature: bytes) -> Enrolment:
        """`request`'s checks and its pending enrolment, under `_taking`."""
        bound = self._token_label(token, mgmc)
        if len(mgmc) != 32 or len(anonym) != 32:
            raise EnrolmentRefused("keys must be 32-byte Ed25519 public keys")
        if mgmc == anonym:
            raise EnrolmentRefused("the anonym must differ from the MGMC's identity key")
        revoked = {k for e in self.enrolments.values() if e.status == "revoked" for k in (e.mgmc, e.anonym)}
        if mgmc in revoked or anonym in revoked:
            raise EnrolmentRefused("this key was revoked; the MGMC must enrol with new keys")
        if mgmc in self.enrolments:
            raise EnrolmentRefused("this MGMC is already enrolled")
        if not 1 <= len(label) <= 64:
            raise EnrolmentRefused("label must be 1-64 characters")
        if bound is not None and label != bound:
            raise EnrolmentRefused(f"this token was issued for {bound}, not {label}")
        try:
            nacl.signing.VerifyKey(mgmc).verify(enrolment_digest(token, mgmc, anonym, label), signature)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
            raise EnrolmentRefused("signature does not verify with the MGMC's key") from None
        # one MG, one key: the label is the MG the DSO meters, prices and takes injections from under it; checked
        # after the signature, so only the key that asked learns who holds the name
        holder = next(
            (e for e in self.enrolments.values() if e.label == label and e.status != "revoked"), None
        )
        if holder is not None:
            raise EnrolmentRefused(
                f"{label} is already enrolled ({holder.status}, MGMC {holder.mgmc.hex()[:12]}): revoke that"
                " enrolment before another key enrols under its name"
            )
        # one anonym, one MGMC: the anonym is public on the chain, and a request naming another MGMC's (which the
        # chain refuses to enrol again) must not wait in the queue as if its approval could land (review43)
        if any(e.anonym == anonym for e in self.enrolments.values()):
            raise EnrolmentRefused("this anonym is another MGMC's; the MGMC must make a new anonym")
        if self.store is None:
            self.tokens.discard(token)
            self.token_labels.pop(token, None)
        elif self.store.use(token, mgmc) is None:  # another request took it since the check
            raise EnrolmentRefused("unknown or already used enrolment token")
        enrolment = Enrolment(mgmc, anonym, label, "pending")
        self.enrolments[mgmc] = enrolment
        try:
            self._save()
        except BaseException:  # not kept, not taken: its MGMC sends it again (its token lets it)
            del self.enrolments[mgmc]
            raise
        return enrolment

    def _one_decision(self, mgmc: bytes) -> threading.Lock:
        """The lock that makes decisions on `mgmc` one at a time (made on first use; kept, one per MGMC the queue
        ever held: a key it does not hold is refused first, so no caller grows the table with made-up keys)."""
        self._get(mgmc)
        with self._deciding_made:
            return self._deciding.setdefault(mgmc, threading.Lock())

    def approve(self, mgmc: bytes, operator: str = UNNAMED) -> Enrolment:
        """Record the enrolment on the DSO chain, naming `operator` (user name or key id)."""
        with self._one_decision(mgmc):
            e = self._get(mgmc)
            if e.status == "authorised":
                raise AlreadyDecided("enrolment is already authorised, not pending")
            if e.status != "pending":
                raise EnrolmentRefused(f"enrolment is {e.status}, not pending")
            body = {"mgmc": e.mgmc, "anonym": e.anonym, "label": e.label, "operator": _operator(operator)}
            self.recorder.submit("enrol", body)
            e.status = "authorised"
            self._saved(e, "approved")
            return e

    def revoke(self, mgmc: bytes, operator: str = UNNAMED) -> Enrolment:
        """Revoke the MGMC's identity key and its anonym for good (authority set, trading, every message)."""
        with self._one_decision(mgmc):
            return self._revoke(mgmc, operator)

    def _revoke(self, mgmc: bytes, operator: str) -> Enrolment:
        """`revoke`'s work, its MGMC's decision lock held."""
        e = self._get(mgmc)
        if e.status == "revoked":
            raise AlreadyDecided("enrolment is already revoked, not authorised")
        if e.status != "authorised":
            raise EnrolmentRefused(f"enrolment is {e.status}, not authorised")
        recorders = [self.recorder] if self.mgmc_recorder is None else [self.recorder, self.mgmc_recorder]
        for chain, recorder in enumerate(recorders):
            for key in (e.mgmc, e.anonym):
                if (chain, key) in self.revoked_on:  # a retry after a partial revocation: it stays revoked
                    continue  # (a networked chain's mempool would take the duplicate and never finalise it)
                if self.revoked_on_chain is not None and self.revoked_on_chain(chain, key):  # the same, after
                    self.revoked_on.add((chain, key))  # a restart: the chain's own word
                    continue
                try:
                    recorder.submit("gov.revoke", {"key": key, "operator": _operator(operator)})
                except Exception as exc:
                    if ALREADY_REVOKED not in str(exc):
                        raise
                self.revoked_on.add((chain, key))
        if self.store is not None:  # its token is never good again, whatever the queue forgets in a restart
            try:
                self.store.retire(e.mgmc)
            except TokenStoreError as exc:
                raise EnrolmentRefused(
                    f"revoked on the chain, but its token could not be retired ({exc}): revoke it again"
                ) from None
        e.status = "revoked"
        self._saved(e, "revoked")
        return e

    def _get(self, mgmc: bytes) -> Enrolment:
        e = self.enrolments.get(mgmc)
        if e is None:
            raise EnrolmentRefused("no enrolment for this MGMC")
        return e


def _operator(name: str) -> str:
    """The ledger's operator field: 1 to 64 characters."""
    name = name.strip()[:64]
    if not name:
        raise EnrolmentRefused("the operator must be named")
    return name
