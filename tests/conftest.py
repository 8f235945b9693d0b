"""Fixtures shared by every test tier: real Mosquitto brokers on free loopback ports.

Each broker is started from a config generated into the test's temp dir and stopped by its PID at
teardown; no test assumes port 1883 is free or that any service is already running.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from peergrid_sim.broker import MosquittoBroker
from peergrid_sim.certs import LabPki, make_lab_pki

TLS_CLIENTS = ["mgmc-1", "mgmc-2", "dso"]


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A plain (anonymous, loopback-only) broker."""
    with MosquittoBroker(tmp_path / "broker") as broker:
        yield broker


@pytest.fixture(scope="session")
def test_pki(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    """A CA, a broker certificate and client certificates for TLS_CLIENTS."""
    return make_lab_pki(tmp_path_factory.mktemp("pki"), TLS_CLIENTS)


@pytest.fixture
def mosquitto_tls(tmp_path: Path, test_pki: LabPki) -> Iterator[MosquittoBroker]:
    """A TLS broker that requires client certificates; the certificate CN is the username.

    ACL: each client may publish and subscribe only under peergrid/+/health/<its CN> and read everything
    under peergrid/#, the pattern the pilot's generated ACLs follow.
    """
    acl = ["pattern readwrite peergrid/+/health/%u", "pattern read peergrid/#"]
    with MosquittoBroker(tmp_path / "broker", tls=test_pki, acl_lines=acl) as broker:
        yield broker
