"""Q11: the edge's two clients of the DSO server (the enrolment, the dispute readings) are one `dso_http.DsoHttp`:
the same CA handling and the same words for a DSO that gives no answer (before: the readings poster logged
urllib's '<urlopen error [Errno 111] Connection refused>' where the enrolment said '[Errno 111] Connection
refused', and each built its own request and TLS context).

A real loopback HTTPS server of the lab PKI; a port nothing listens on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from helpers_https import lab_https_server

from peergrid_edge.dispute_readings import DisputeReadings
from peergrid_edge.dso_http import DsoHttp, DsoUnreachable
from peergrid_edge.enrolment import EnrolmentUnreachable, http_transport
from peergrid_sim.certs import LabPki

TRADE = bytes(range(32))


class Answers(BaseHTTPRequestHandler):
    """200 with the trade's decision on GET; 503 with no JSON on POST."""

    def do_GET(self) -> None:
        self._send(200, json.dumps({"trade": TRADE.hex(), "resolved": True}).encode())

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._send(503, b"busy")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def dso(tmp_path: Path) -> Iterator[tuple[str, LabPki]]:
    with lab_https_server(tmp_path / "pki", Answers) as served:
        yield served


def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@contextlib.contextmanager
def answering_once(raw: bytes) -> Iterator[str]:
    """The http:// URL of a loopback port that answers its first connection with `raw` bytes, whatever it asked."""
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(1)

        def answer() -> None:
            conn, _ = listening.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(raw)

        threading.Thread(target=answer, daemon=True).start()
        yield f"http://127.0.0.1:{listening.getsockname()[1]}"


def poster(url: str, ca_file: Path | None) -> DisputeReadings:
    return DisputeReadings(url, bytes(32), lambda _: [], 60_000, 3_000, timeout_s=10.0, ca_file=ca_file)


def test_the_operators_ca_verifies_the_dso_and_every_status_is_the_callers(dso: tuple[str, LabPki]) -> None:
    url, pki = dso
    client = DsoHttp(url, pki.ca_cert, 10.0)
    assert client.request("GET", f"/api/dso/disputes/{TRADE.hex()}") == (
        200,
        {"trade": TRADE.hex(), "resolved": True},
    )
    assert client.request("POST", "/api/dso/disputes/readings", {"x": 1}) == (503, {"detail": "busy"})
    with pytest.raises(EnrolmentUnreachable, match="HTTP 503: busy"):  # the enrolment's reading of a 5xx
        http_transport(url, pki.ca_cert, 10.0)("POST", "/api/dso/enrolment", {})


def test_both_callers_say_the_same_words_for_a_dso_that_gives_no_answer(
    dso: tuple[str, LabPki], caplog: pytest.LogCaptureFixture
) -> None:
    url, _ = dso
    for where, ca in ((closed_port(), None), (url, None)):  # nothing listens; the pilot's CA not given
        with pytest.raises(DsoUnreachable) as raised:
            DsoHttp(where, ca, 10.0).request("GET", "/api/dso/enrolment/00")
        why = str(raised.value)
        assert why and not why.startswith("<urlopen error")
        with pytest.raises(EnrolmentUnreachable) as enrolling:
            http_transport(where, ca, 10.0)("GET", "/api/dso/enrolment/00", None)
        assert str(enrolling.value) == why
        caplog.clear()
        with caplog.at_level(logging.WARNING, "peergrid.edge.trader"):
            assert asyncio.run(poster(where, ca).decision(TRADE)) is None
        assert caplog.records[-1].getMessage().endswith(f"is unreachable: {why}")
    assert "CERTIFICATE_VERIFY_FAILED" in why or "certificate verify failed" in why


def test_bytes_that_are_no_http_answer_are_no_answer() -> None:
    """Before, http.client's BadStatusLine (no OSError) escaped both clients: the enroller's task and the
    readings follower would have ended on it."""
    with answering_once(b"not http at all\r\n\r\n") as url, pytest.raises(DsoUnreachable):
        DsoHttp(url, None, 10.0).request("GET", "/api/dso/enrolment/00")


def test_an_error_answer_cut_short_is_no_answer() -> None:
    """R43: the body of an error status (a 503 whose body breaks off: the DSO's process killed mid-answer, a
    proxy's reset) was read outside the clause that turns a failure into `DsoUnreachable`: http.client's
    IncompleteRead (no OSError) escaped both callers, which catch only that, and would end the enroller's task
    and the readings follower."""
    cut = b'HTTP/1.1 503 Busy\r\nContent-Length: 100\r\n\r\n{"detail": '
    with answering_once(cut) as url, pytest.raises(DsoUnreachable, match="89 more expected"):
        DsoHttp(url, None, 10.0).request("GET", "/api/dso/enrolment/00")
