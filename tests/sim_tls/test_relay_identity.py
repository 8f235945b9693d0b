"""The DSO checks which relay it is talking to over Modbus/TCP Security, not only that the relay CA issued
its certificate: a relay presenting another relay's valid certificate is refused with a clear reason.

firmware-sim serves its TLS relays with one certificate; here that is relay-s14's (subjectAltName DNS
`relay-s14`, from the same CA), so for branch 14 it is the right relay and for branch 7 it is an impostor.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

from peergrid_dso.drivers.relay_modbus import ModbusRelayDriver
from peergrid_dso.drivers.relay_tls import RelayTls, relay_endpoints
from peergrid_dso.services.switching import RelayError
from peergrid_sim.background import BackgroundSim
from peergrid_sim.certs import LabPki, make_lab_pki
from peergrid_sim.scenario import ModbusTls, Relay, Scenario

PINNED = {7: "relay-s7", 14: "relay-s14"}


class SimThread(BackgroundSim):
    def __init__(self, scenario: Scenario) -> None:
        super().__init__(scenario, None)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    return make_lab_pki(
        tmp_path_factory.mktemp("relay-identity-pki"), ["dso"], roles={"dso": "operator"},
        servers=["relay-s7", "relay-s14"],
    )  # fmt: skip


@pytest.fixture(scope="module")
def sim(pki: LabPki) -> Iterator[SimThread]:
    presented = pki.servers["relay-s14"]  # every TLS relay of this sim presents relay-s14's certificate
    scenario = Scenario(
        name="relay-identity",
        modbus_tls=ModbusTls(ca_file=pki.ca_cert, cert_file=presented.cert, key_file=presented.key),
        relays=[
            Relay(name="s7", branch=7, closed=True, operate_delay_s=0.05, tls=True),
            Relay(name="s14", branch=14, closed=True, operate_delay_s=0.05, tls=True),
        ],
    )
    with SimThread(scenario) as running:
        yield running


def driver(sim: SimThread, pki: LabPki, names: dict[int, str]) -> ModbusRelayDriver:
    tls = RelayTls(ca_file=pki.ca_cert, cert_file=pki.clients["dso"].cert, key_file=pki.clients["dso"].key,
                   names=names)  # fmt: skip
    return ModbusRelayDriver(relay_endpoints(sim.endpoints, tls), timeout_s=1.0)


def test_a_relay_presenting_another_relays_certificate_is_refused(
    sim: SimThread, pki: LabPki, caplog: pytest.LogCaptureFixture
) -> None:
    relays = driver(sim, pki, PINNED)
    try:
        assert relays.status(14).closed is True  # the right certificate: it is relay-s14
        with (
            caplog.at_level(logging.WARNING, logger="peergrid_dso.relay_tls"),
            pytest.raises(
                RelayError,
                match=r"127\.0\.0\.1:\d+: its certificate is refused \(Hostname mismatch.*naming 'relay-s7'",
            ),
        ):
            relays.command(7, close=False)  # relay-s14's valid certificate on branch 7's relay
        assert "relay-s7" in caplog.text
    finally:
        relays.close()
    time.sleep(0.2)
    assert sim.call(lambda: sim.app.sim.relays["s7"].mechanism.closed) is True  # never operated


def test_without_a_pinned_name_the_relays_address_must_be_in_its_certificate(
    sim: SimThread, pki: LabPki
) -> None:
    """relay-s14's certificate names only `relay-s14`, not 127.0.0.1: reached by address it is refused."""
    relays = driver(sim, pki, {})
    try:
        with pytest.raises(RelayError, match=r"refused \(IP address mismatch.*naming '127\.0\.0\.1'"):
            relays.status(14)
    finally:
        relays.close()


def test_the_pinned_names_are_per_relay_and_the_config_stays_hashable(pki: LabPki) -> None:
    entries = [
        {"kind": "relay", "protocol": "modbus-tls", "branch": 7, "host": "10.0.0.7", "port": 802},
        {"kind": "relay", "protocol": "modbus-tls", "branch": 9, "host": "10.0.0.9", "port": 802},
    ]
    tls = RelayTls(ca_file=pki.ca_cert, cert_file=pki.clients["dso"].cert, key_file=pki.clients["dso"].key,
                   names={7: "relay-s7"})  # fmt: skip
    endpoints = relay_endpoints(entries, tls)
    assert endpoints[7].tls.server_name == "relay-s7"
    assert endpoints[9].tls.server_name is None  # checked against 10.0.0.9
    assert len({hash(endpoints[7]), hash(endpoints[9])}) == 2
