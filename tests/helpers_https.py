"""A loopback HTTPS server with a certificate of the lab PKI's CA, shared by the tests of the edge's clients of the
DSO server (its enrolment and dispute readings), which must trust the operator's CA and not the system's."""

from __future__ import annotations

import contextlib
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from peergrid_sim.certs import LabPki, make_lab_pki


@contextlib.contextmanager
def lab_https_server(pki_dir: Path, answers: type[BaseHTTPRequestHandler]) -> Iterator[tuple[str, LabPki]]:
    """`answers` served over HTTPS on a free loopback port, with the server certificate of a lab PKI made in
    `pki_dir`: (its https://localhost:<port> URL, the PKI) for the block; stopped after it."""
    pki = make_lab_pki(pki_dir, [])
    server = ThreadingHTTPServer(("127.0.0.1", 0), answers)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(pki.server.cert, pki.server.key)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://localhost:{server.server_address[1]}", pki
    finally:
        server.shutdown()
        server.server_close()
