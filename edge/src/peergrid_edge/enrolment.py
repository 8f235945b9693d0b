"""The MGMC's own enrolment at the DSO: its first boot's signed request with the token the flash wrote, until the
DSO's operator approves it.

Promises: where edge.yaml has an `enrolment` section, `Enroller.run()` (a task of the daemon beside its poll loop,
which it never blocks: HTTP runs in a thread) asks the DSO (`GET /api/dso/enrolment/<identity key>`: this key's status alone, never the list
of every MG and its anonym) whether it knows this
MGMC's identity key; if not it sends `POST /api/dso/enrolment` once: the token read from `token_file`, the
identity key, the anonym (the pseudonym it trades under; made in the state folder when absent), its MG name as the
label, and the identity key's signature over `enrolment_digest` (the DSO's `services.enrolment`, same bytes).
Then it asks again, with back-off (`retry_s` doubling to `retry_max_s`), until the DSO says authorised, and
logs each turn once: pending approval (the operator approves in the console, Operations -> Enrolment), authorised,
refused or revoked with the DSO's own words (ERROR). A DSO that cannot be reached or answers 5xx is tried again
with the same back-off, told once at WARNING and once when reached again. What the DSO said is kept in
`<data_dir>/enrolment.json` (written whole, then renamed): once authorised it is never sent again; a token the
DSO refused is not sent again either (the state names the token's hash): an operator puts a new token in the file
and restarts the daemon. HTTPS is verified against `ca_file` (the operator's CA) or the system's trust store;
plain HTTP only to a loopback address (the lab). Stdlib HTTP only: the edge carries no web client or server.
Must never stop the daemon for an answer it did not like: every outcome is logged and the task ends or waits.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peergrid_edge.dso_http import DsoHttp, DsoUnreachable
from peergrid_edge.files import write_whole
from peergrid_ledger import keys

log = logging.getLogger("peergrid.edge.enrolment")

DOMAIN = b"peergrid/enrolment/v1"  # as peergrid_dso.services.enrolment.DOMAIN (a test holds them equal)
STATE_FILE = "enrolment.json"
ENROLMENT_PATH = "/api/dso/enrolment"


class EnrolmentUnreachable(OSError):
    """The DSO did not answer, or answered with a server error: ask again later."""


def enrolment_digest(token: str, mgmc: bytes, anonym: bytes, label: str) -> bytes:
    """What the identity key signs: the DSO's `enrolment_digest`, byte for byte."""
    h = hashlib.sha256(DOMAIN)
    for part in (token.encode(), mgmc, anonym, label.encode()):
        h.update(len(part).to_bytes(4, "big") + part)
    return h.digest()


def enrolment_body(token: str, identity: keys.Keypair, anonym: keys.Keypair, label: str) -> dict[str, str]:
    """The `POST /api/dso/enrolment` body, signed by `identity`."""
    signature = identity.sign(enrolment_digest(token, identity.public, anonym.public, label))
    return {
        "token": token,
        "mgmc": identity.public.hex(),
        "anonym": anonym.public.hex(),
        "label": label,
        "signature": signature.hex(),
    }


def token_hash(token: str) -> str:
    """How the state file names a token it sent (never the token itself)."""
    return hashlib.sha256(b"peergrid/enrolment-token/v1\x00" + token.encode()).hexdigest()


def status_of(answer: Any, mgmc: bytes) -> str:
    """This MGMC's status in the DSO's answer to `GET /api/dso/enrolment/<key>`."""
    if not isinstance(answer, dict) or answer.get("mgmc") != mgmc.hex() or "status" not in answer:
        raise EnrolmentUnreachable(f"the DSO's enrolment status is not this MGMC's: {str(answer)[:120]}")
    return str(answer["status"])


def check_url(url: str) -> str:
    """`url` as the enrolment takes it: https, or http to a loopback host (the token would cross a network in
    the clear); `ValueError` saying why not."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        raise ValueError(f"expected the DSO server's https URL like https://dso.example:8443, got {url!r}")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise ValueError(
            f"{url}: plain http carries the enrolment token in the clear; use https (http only to a loopback host)"
        )
    return url.rstrip("/")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


Transport = Callable[
    [str, str, dict[str, Any] | None], tuple[int, Any]
]  # (method, path, body) -> status, JSON


def http_transport(url: str, ca_file: Path | None, timeout_s: float) -> Transport:
    """HTTP(S) to the DSO server at `url` (`dso_http.DsoHttp`); no answer, or a 5xx, raises `EnrolmentUnreachable`."""
    dso = DsoHttp(url, ca_file, timeout_s)

    def send(method: str, path: str, body: dict[str, Any] | None) -> tuple[int, Any]:
        try:
            status, answer = dso.request(method, path, body)
        except DsoUnreachable as exc:
            raise EnrolmentUnreachable(str(exc)) from None
        if status >= 500:
            raise EnrolmentUnreachable(f"HTTP {status}: {_detail(answer)}")
        return status, answer

    return send


def _detail(answer: Any) -> str:
    return str(answer.get("detail", answer)) if isinstance(answer, dict) else str(answer)


@dataclass
class Enroller:
    """One MGMC's enrolment: its keys, its MG name, the token file, where it keeps what the DSO said."""

    url: str
    identity: keys.Keypair
    anonym_key_file: Path
    label: str
    token_file: Path
    state_file: Path
    transport: Transport
    retry_s: float = 2.0
    retry_max_s: float = 60.0
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    @classmethod
    def from_settings(cls, settings: Any, identity: keys.Keypair) -> Enroller:
        """From an `EdgeSettings` whose `enrolment` section is set."""
        e = settings.enrolment
        return cls(
            url=e.url, identity=identity, anonym_key_file=settings.anonym_key_file(), label=settings.mg,
            token_file=e.token_file, state_file=settings.data_dir / STATE_FILE,
            transport=http_transport(e.url, e.ca_file, e.timeout_s), retry_s=e.retry_s, retry_max_s=e.retry_max_s,
        )  # fmt: skip

    def state(self) -> dict[str, Any]:
        """What the DSO said last (empty before the first answer, or when the file is not this key's)."""
        try:
            doc = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:  # written whole then renamed: only a hand can damage it
            log.warning("enrolment: %s cannot be read (%s): asking the DSO afresh", self.state_file, exc)
            return {}
        same = isinstance(doc, dict) and doc.get("mgmc") == self.identity.public.hex()
        return doc if same else {}

    def _record(self, status: str, detail: str, token: str | None) -> None:
        doc = {
            "status": status, "detail": detail, "mgmc": self.identity.public.hex(), "label": self.label,
            "url": self.url, "token": None if token is None else token_hash(token), "at": time.time(),
        }  # fmt: skip
        write_whole(self.state_file, json.dumps(doc) + "\n")

    def _anonym(self) -> keys.Keypair:
        if not self.anonym_key_file.exists():
            self.anonym_key_file.parent.mkdir(parents=True, exist_ok=True)
            keys.write_keyfile(self.anonym_key_file, keys.Keypair.generate())
            log.info(
                "enrolment: made the anonym key %s (the pseudonym this MG trades under)", self.anonym_key_file
            )
        return keys.read_keyfile(self.anonym_key_file)

    def _token(self) -> str | None:
        try:
            token = self.token_file.read_text().strip()
        except OSError as exc:
            log.error(
                "enrolment: cannot read the token file %s (%s): not enrolling", self.token_file, exc.strerror
            )
            return None
        if not token:
            log.error("enrolment: the token file %s is empty: not enrolling", self.token_file)
        return token or None

    async def task(self) -> None:
        """The daemon's task: `run` until the DSO has answered for good (logged there)."""
        await self.run()

    async def run(self, turns: int | None = None) -> str:
        """Until the DSO authorises this MGMC, refuses or revokes it (the status it ends on; also 'no token'), or
        after `turns` asks (`peergrid-edge enrol`: one) with the last status ('unreachable' when not answered)."""
        said = self.state()
        if said.get("status") == "authorised":
            log.info(
                "enrolment: authorised by the DSO at %s (%s); not sent again",
                said.get("url"),
                self.state_file,
            )
            return "authorised"
        token = self._token()
        if token is None:
            return "no token"
        if said.get("status") in ("refused", "revoked") and said.get("token") == token_hash(token):
            log.error(
                "enrolment: the DSO %s this MGMC's request with this token: %s; not sent again (put a new token "
                "in %s and restart peergrid-edge)", said["status"], said.get("detail"), self.token_file,
            )  # fmt: skip
            return str(said["status"])
        anonym = await asyncio.to_thread(self._anonym)
        wait, down, told, turn = self.retry_s, False, None, 0
        while True:
            turn += 1
            try:
                status, detail = await asyncio.to_thread(self._ask, token, anonym)
            except EnrolmentUnreachable as exc:
                if not down:
                    log.warning(
                        "enrolment: the DSO at %s cannot be reached (%s): asking again, at most every %g s",
                        self.url, exc, self.retry_max_s,
                    )  # fmt: skip
                down = True
            else:
                if down:
                    log.info("enrolment: the DSO at %s is reached again", self.url)
                down = False
                if status != told:
                    self._record(status, detail, token)
                    told = status
                    if status == "pending":
                        log.info(
                            "enrolment: %s (MGMC %s) is pending approval at the DSO: its operator approves it in "
                            "the console, Operations -> Enrolment", self.label, self.identity.public.hex()[:12],
                        )  # fmt: skip
                if status == "authorised":
                    log.info("enrolment: %s is authorised by the DSO at %s", self.label, self.url)
                    return status
                if status in ("refused", "revoked"):
                    log.error("enrolment: the DSO %s %s's request: %s", status, self.label, detail)
                    return status
            if turns is not None and turn >= turns:
                return "unreachable" if down else str(told)
            await self.sleep(wait)
            wait = min(wait * 2, self.retry_max_s)

    def _ask(self, token: str, anonym: keys.Keypair) -> tuple[str, str]:
        """One turn: the DSO's status for this MGMC, sending the request when it does not list it."""
        mine = f"{ENROLMENT_PATH}/{self.identity.public.hex()}"
        code, found = self.transport("GET", mine, None)
        if code == 200:
            known = status_of(found, self.identity.public)
            return known, f"listed {known}"
        if code != 404:  # 404: the DSO does not know this key (yet): send the request
            raise EnrolmentUnreachable(f"HTTP {code} to GET {mine}: {_detail(found)}")
        code, answer = self.transport(
            "POST", ENROLMENT_PATH, enrolment_body(token, self.identity, anonym, self.label)
        )
        if code == 201 and isinstance(answer, dict):
            return str(answer.get("status")), "request accepted"
        if code in (403, 422):  # the DSO's words: a used or unknown token, a name held, a bad signature
            return "refused", f"HTTP {code}: {_detail(answer)}"
        raise EnrolmentUnreachable(f"HTTP {code} to POST {ENROLMENT_PATH}: {_detail(answer)}")
