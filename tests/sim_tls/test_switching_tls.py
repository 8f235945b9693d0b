"""A whole switching plan executed by the DSO over Modbus/TCP Security, and refused to a read-only role."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from peergrid_dso.drivers.relay_modbus import ModbusRelayDriver
from peergrid_dso.drivers.relay_tls import RelayTls, relay_endpoints
from peergrid_dso.services.dso_chain import ChainRecorder
from peergrid_dso.services.switching import RelayOperation, SwitchingExecutor, SwitchingPlan, SwitchingService
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.genesis import Account, Genesis, Params
from peergrid_ledger.keys import Keypair
from peergrid_sim.certs import LabPki, make_lab_pki
from peergrid_sim.scenario import ModbusTls, Relay, Scenario

from .test_modbus_tls import SimThread

BASE = (33, 34, 35, 36, 37)  # the 33-bus feeder's tie lines open
OPTIMUM = (7, 9, 14, 32, 37)  # the published loss-minimising configuration
RELAY_BRANCHES = (7, 9, 14, 32, 33, 34, 35, 36, 37)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    return make_lab_pki(
        tmp_path_factory.mktemp("pki"), ["dso", "console"], roles={"dso": "operator", "console": "viewer"}
    )


@pytest.fixture(scope="module")
def plan() -> SwitchingPlan:
    """`plan_switching(case33bw(), BASE, OPTIMUM)`'s make-before-break order, written out: the AC checks
    behind it are tests/dso's business and cost seconds; here only the relays' transport is under test."""
    pairs = ((33, 7), (34, 9), (35, 14), (36, 32))
    operations = tuple(op for c, o in pairs for op in (RelayOperation(c, True), RelayOperation(o, False)))
    return SwitchingPlan("tls-1", 0, BASE, OPTIMUM, operations)


@pytest.fixture
def sim(pki: LabPki) -> Iterator[SimThread]:
    scenario = Scenario(
        name="switching-tls",
        modbus_tls=ModbusTls(ca_file=pki.ca_cert, cert_file=pki.server.cert, key_file=pki.server.key),
        relays=[
            Relay(name=f"s{b}", branch=b, closed=b not in BASE, tie=b >= 33, operate_delay_s=0.05, tls=True)
            for b in RELAY_BRANCHES
        ],
    )
    with SimThread(scenario) as running:
        yield running


def service(
    sim: SimThread, pki: LabPki, client: str
) -> tuple[SwitchingService, SwitchingExecutor, ModbusRelayDriver]:
    pair = pki.clients[client]
    tls = RelayTls(ca_file=pki.ca_cert, cert_file=pair.cert, key_file=pair.key)
    driver = ModbusRelayDriver(relay_endpoints(sim.endpoints, tls), timeout_s=1.0)
    authority, dso = Keypair.generate(), Keypair.generate()
    genesis = Genesis(
        chain="dso-tls-test", time=0, authorities=(authority.public,), accounts=(Account(dso.public, ("dso",), "dso"),),
        params=Params(),
    )  # fmt: skip
    recorder = ChainRecorder(LocalChain(genesis, sealer=authority), dso)
    executor = SwitchingExecutor(driver, recorder, timeout_s=3.0, poll_s=0.02)
    return SwitchingService(executor, auto=True), executor, driver


def open_relays(sim: SimThread) -> set[int]:
    return sim.call(lambda: {r.branch for r in sim.app.sim.relays.values() if not r.mechanism.closed})


def test_plan_executed_over_modbus_tcp_security(sim: SimThread, pki: LabPki, plan: SwitchingPlan) -> None:
    switching, _, driver = service(sim, pki, "dso")
    try:
        result = switching.submit(plan)
    finally:
        driver.close()
    assert result is not None and result.ok, result
    assert open_relays(sim) == set(OPTIMUM)


def test_viewer_certificate_cannot_switch(sim: SimThread, pki: LabPki, plan: SwitchingPlan) -> None:
    switching, executor, driver = service(sim, pki, "console")
    try:
        result = switching.submit(plan)
    finally:
        driver.close()
    assert result is not None and not result.ok
    assert "Modbus exception 1" in (result.alarm or "") and executor.alarms
    assert open_relays(sim) == set(BASE)
    assert sim.call(lambda: sum(r.mechanism.operations for r in sim.app.sim.relays.values())) == 0
