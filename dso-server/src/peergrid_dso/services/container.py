"""The DSO's services wired together for the REST API: built once in the app's lifespan, never at import.

Holds the feeder model and its current switch state, the MGs' equivalent injections per interval, the
DSO-chain recorder, enrolment, the security check/adjustment, reconfiguration, and the switching service.
Two ways to build it: `build_dso_services` (lab mode: an in-process `LocalChain`, relays in memory, operator
approval) and `live_services(node)` (the closed loop: the embedded DSO node's networked chain replica, its
Modbus relays and executor behind the relays' lock, its topology and injections - one of each, shared).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from peergrid_dso.drivers.relay_memory import InMemoryRelays
from peergrid_dso.feeder.cases import case33bw
from peergrid_dso.feeder.model import Feeder
from peergrid_dso.services.dso_chain import ChainRecorder
from peergrid_dso.services.enrolment import EnrolmentService
from peergrid_dso.services.powerflow import net_injection_mw
from peergrid_dso.services.switching import RelayDriver, SwitchingExecutor, SwitchingService, check_state
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.genesis import Account, Genesis, Params
from peergrid_ledger.keys import Keypair


@dataclass
class DsoServices:
    feeder: Feeder
    open_set: tuple[int, ...]
    chain: Any  # LocalChain (lab) or services.dso_chain.NetworkedChain (the closed loop)
    dso_key: Keypair
    recorder: ChainRecorder
    enrolment: EnrolmentService
    switching: SwitchingService
    injections: dict[int, dict[str, tuple[float, float]]] = field(default_factory=dict)
    last_reconfiguration: dict[str, Any] | None = None
    last_opf: dict[str, Any] | None = None
    # REST plan ids from the wall clock in ms at start: the DSO chain keeps every id across restarts (X6)
    plan_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(round(time.time() * 1000)))
    injection_gate: Any = None  # services.injections.InjectionGate, made by routes.dso on first use
    disputes: Any = None  # dispute_node.DisputeSettler of the closed loop's node (None: it settles none)
    alarms: list[str] = field(default_factory=list)  # the node's start: relays it could not adopt


def build_dso_services(
    mg_buses: dict[str, int],
    *,
    dso_key: Keypair | None = None,
    driver: RelayDriver | None = None,
    auto_enrol: bool = True,
    auto_switch: bool = False,
) -> DsoServices:
    feeder = case33bw(mg_buses)
    dso_key = dso_key or Keypair.generate()
    genesis = Genesis(
        chain="dso-local", time=0, authorities=(dso_key.public,), accounts=(Account(dso_key.public, ("dso",), "dso"),),
        params=Params(),
    )  # fmt: skip
    chain = LocalChain(genesis, sealer=dso_key)
    recorder = ChainRecorder(chain, dso_key)
    open_set = feeder.initially_open()
    if driver is None:
        driver = InMemoryRelays({b.number: b.closed for b in feeder.branches})
    p, q = net_injection_mw(feeder)
    executor = SwitchingExecutor(
        driver,
        recorder,
        timeout_s=5.0,
        step_check=lambda open_after: check_state(feeder, open_after, p, q, feeder.vmin_pu),
    )
    return DsoServices(
        feeder=feeder,
        open_set=open_set,
        chain=chain,
        dso_key=dso_key,
        recorder=recorder,
        enrolment=EnrolmentService(recorder, auto=auto_enrol),
        switching=SwitchingService(executor, auto=auto_switch),
    )


def live_services(node: Any) -> DsoServices:
    """The services of an embedded `interval_node.DsoNode`: the same feeder, chain, recorder and switching
    service its loop uses. The loop is pointed at these services for the topology and injections, so an
    operator's switching and the loop's see one open set. Operators get their own switching service on the
    loop's executor (the same relays, the same lock) in approval mode: their plans wait for approval. The
    node's start alarm (relays it could not adopt) goes to the console's alarms."""
    services = DsoServices(
        feeder=node.feeder,
        open_set=tuple(node.loop.live.open_set),
        chain=node.chain,
        dso_key=node.loop.dso_key,
        recorder=node.recorder,
        enrolment=EnrolmentService(node.recorder, auto=True),
        switching=SwitchingService(node.switching.executor, auto=False),
        injections=node.loop.live.injections,
        disputes=node.disputes,
        alarms=[start.alarm] if (start := getattr(node, "start", None)) is not None and start.alarm else [],
    )
    node.loop.live = services
    return services
