"""The edge's one HTTP(S) client of the DSO server: a JSON request at a time, stdlib only (the Pi carries no web
client), blocking (its callers run it in a thread: the enrolment, the dispute readings).

Promises: `DsoHttp(url, ca_file, timeout_s).request(method, path, body)` sends `body` as JSON (None: no body) to
`url + path` and returns the status and the answer's JSON (`{"detail": text}` where the answer is no JSON),
whatever the status: what a status means is its caller's. HTTPS is verified against `ca_file`, the operator's CA
that the enrolment names (the pilot's DSO has a certificate of it), or, None, the system's trust store. A
request that gets no answer (refused, timed out, a certificate not verified, a URL it cannot send to, bytes that
are no HTTP answer, a body cut short, an error status's too) raises `DsoUnreachable`, an OSError saying why in the same words for every caller. Never
retries: each caller decides when to ask again.
"""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


class DsoUnreachable(OSError):
    """The DSO server gave no answer (`DsoHttp.request`): the message says why."""


class DsoHttp:
    """The DSO server at `url` (http://host:port, or https://host:port verified by `ca_file`)."""

    def __init__(self, url: str, ca_file: Path | None, timeout_s: float) -> None:
        self.url, self.timeout_s = url.rstrip("/"), timeout_s
        self._tls = ssl.create_default_context(cafile=None if ca_file is None else str(ca_file))

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        """(status, answer) of one request (module)."""
        request = urllib.request.Request(
            self.url + path, data=None if body is None else json.dumps(body).encode(), method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )  # fmt: skip
        try:
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s, context=self._tls) as response:
                    return int(response.status), answer_of(response.read())
            except urllib.error.HTTPError as exc:  # its body read here too: one cut short is no answer either
                with exc:
                    return int(exc.code), answer_of(exc.read())
        except (OSError, ValueError, http.client.HTTPException) as exc:
            # refused, timed out, TLS not verified, a URL it cannot send to, an answer that is no HTTP or is cut
            raise DsoUnreachable(str(getattr(exc, "reason", None) or exc)) from None


def answer_of(raw: bytes) -> Any:
    """An answer's JSON, or `{"detail": its first 200 bytes as text}` where it is none."""
    try:
        return json.loads(raw)
    except ValueError:
        return {"detail": raw[:200].decode("utf-8", "replace")}
