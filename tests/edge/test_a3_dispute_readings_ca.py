"""An MGMC's dispute readings reach a DSO server that speaks HTTPS with a certificate of the operator's CA (A3: the
pilot's `dso_api_url` is the enrolment's server). Before, the poster verified against the system's trust store, which
holds no pilot's private CA, so every readings post and every question about a dispute failed and was logged as
"the DSO is unreachable"; now the enrolment's `ca_file` verifies it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from helpers_https import lab_https_server

from peergrid_edge.dispute_readings import DisputeReadings
from peergrid_sim.certs import LabPki

TRADE = bytes(range(32))


class Decisions(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"trade": TRADE.hex(), "resolved": True}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def dso(tmp_path: Path) -> Iterator[tuple[str, LabPki]]:
    with lab_https_server(tmp_path / "pki", Decisions) as served:
        yield served


def poster(url: str, ca_file: Path | None) -> DisputeReadings:
    return DisputeReadings(url, bytes(32), lambda _: [], 60_000, 3_000, timeout_s=10.0, ca_file=ca_file)


def test_the_operators_ca_verifies_the_dso(dso: tuple[str, LabPki]) -> None:
    url, pki = dso
    assert asyncio.run(poster(url, pki.ca_cert).decision(TRADE)) == {"trade": TRADE.hex(), "resolved": True}


def test_without_it_the_dso_is_not_trusted(dso: tuple[str, LabPki], caplog: pytest.LogCaptureFixture) -> None:
    url, _ = dso
    assert asyncio.run(poster(url, None).decision(TRADE)) is None
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text
