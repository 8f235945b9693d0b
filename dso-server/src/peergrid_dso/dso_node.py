"""The closed loop's DSO node, assembled (`DsoNode`): one assembly for both ways it runs, inside `peergrid-dso
serve` (`live.EmbeddedLoop`, the config's `loop:` section) and standalone (`interval_node.serve`), so the two
cannot drift.

Promises: `DsoNode.assemble(settings)` builds on the running event loop everything the node runs - ledger
replicas over one MQTT connection, the networked DSO chain and its recorder, the Modbus relays behind the one
lock every writer holds (`LockedExecutor`), the interval planner and `interval_node.DsoLoop` - and `run(stop)`
serves until `stop`, cancels its tasks until each has ended (one cancel can be lost:
`peergrid_ledger.consensus.shutdown`), then closes its stores. With `halt_file` set it reads the coordinated
stop's heights every half second, as the MGMCs do, and its replicas finalise nothing above them.
`assemble`, before anything runs, reads every relay and starts from the positions they report when all read, none
is moving and they are radial, recorded on the DSO chain once the node runs (`switching_adopt`,
`DsoLoop.start_records`); otherwise from the feeder's open set, with an alarm (logged, the executor's
`alarms`, the console's) naming the relays that disagree or could not be read (`DsoNode.start`). After each
interval the loop reads every relay again (`switching_watch.RelayWatch`). With an MGMC chain the node is a
non-voting follower of it, through which the loop reopens intervals for re-bargaining and whose authorities'
mempools its `gov.revoke` reaches by gossip (`DsoNode.mgmc_recorder`), and with a `disputes` section it settles
disputed trades there from final blocks (`dispute_settler`, `dispute_node`), refusing (`ConfigError`) an MGMC
chain whose settle wait leaves the MGMCs no time to post their readings (`dispute_time.check_settle_wait`).
`live` (the topology and the MGs' latest injections) and `lock` are the console's when embedded; a standalone
node makes its own (`LiveTopology`, an `RLock`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from peergrid_dso.live_reconnect import LedgerLink, ledger_reconnect
from peergrid_ledger import keys
from peergrid_ledger.consensus.node_cli import NodeSettings, build_node
from peergrid_ledger.consensus.shutdown import cancel_until_done

log = logging.getLogger("peergrid_dso.live")  # the name its lines had before the split (as interval_reopen's)


class LockedExecutor:
    """The switching executor behind the one lock every writer to the relays holds (loop and operators)."""

    def __init__(self, inner: Any, lock: Any) -> None:
        self.inner, self.lock = inner, lock

    def __getattr__(self, name: str) -> Any:  # driver, recorder, alarms, ... of the wrapped executor
        # not a dunder nor its own field: copy and pickle look those up on an instance whose fields are not
        # set yet, and asking the executor for them would recurse without end (R36-4, as RecorderTellingWatch)
        if name.startswith("__") or name in ("inner", "lock"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    def execute(self, plan: Any) -> Any:
        with self.lock:
            return self.inner.execute(plan)


@dataclass
class LiveTopology:
    """The topology the relays last confirmed and the MGs' latest injections (MW, Mvar) per interval; the
    console's `DsoServices` plays this part when the node is embedded."""

    open_set: tuple[int, ...]
    injections: dict[int, dict[str, tuple[float, float]]] = field(default_factory=dict)


@dataclass
class DsoNode:
    """Everything the DSO node runs, assembled on its event loop; `run(stop)` serves until `stop` is set."""

    settings: Any  # interval_node.IntervalNodeSettings
    node: Any
    transport: Any
    stores: list[Any]
    replica: Any
    adapter: Any  # interval_node.ChainAdapter
    chain: Any  # services.dso_chain.NetworkedChain over this replica
    feeder: Any
    recorder: Any
    switching: Any
    loop: Any  # interval_node.DsoLoop
    mgmc_recorder: Any = None  # ChainRecorder on the MGMC chain (gov.revoke goes there too), with mgmc_chain
    disputes: Any = None  # dispute_node.DisputeSettler, with mgmc_chain and a `disputes` section
    start: Any = None  # services.switching_adopt.StartTopology: what the relays said at start
    link: Any = None  # live_reconnect.LedgerLink: starts the transport, says whether it reaches the broker

    @classmethod
    def assemble(cls, settings: Any, live: Any = None, lock: Any = None, client_id: str = "") -> DsoNode:
        """Build on the running event loop. `live` (open_set, injections) and `lock` are shared with the
        console when embedded; defaults make a standalone node."""
        from dataclasses import replace

        from peergrid_dso.dispute_time import check_settle_wait
        from peergrid_dso.drivers.relay_memory import InMemoryRelays
        from peergrid_dso.interval_node import DsoLoop
        from peergrid_dso.loop_feeder import build_feeder, relay_driver
        from peergrid_dso.node_chains import ChainAdapter, Changed
        from peergrid_dso.services.dso_chain import ChainRecorder, NetworkedChain
        from peergrid_dso.services.interval import IntervalPlanner
        from peergrid_dso.services.powerflow import net_injection_mw
        from peergrid_dso.services.switching import SwitchingExecutor, SwitchingService, check_state
        from peergrid_dso.services.switching_adopt import (
            adoption_id,
            adoption_records,
            start_topology,
            summary,
        )
        from peergrid_dso.services.switching_watch import RecorderTellingWatch, RelayWatch

        chains = [settings.dso_chain] + ([settings.mgmc_chain] if settings.mgmc_chain is not None else [])
        node_settings = NodeSettings(
            key_file=settings.key_file, feeder=settings.feeder, broker_host=settings.broker_host,
            broker_port=settings.broker_port, client_id=client_id or f"dso-node-{settings.feeder}",
            status_file=settings.status_file, chains=chains,
        )  # fmt: skip
        tls = settings.broker_tls.context() if settings.broker_tls is not None else None  # before any store
        node, transport, stores = build_node(node_settings)
        if tls is not None:  # the pilot's broker: TLS, this node's client certificate
            transport.client.tls_set_context(tls)
        ledger_reconnect(transport, getattr(settings, "broker_reconnect_max_s", None))  # the config's bound
        link = LedgerLink(transport)  # before paho's thread runs: it notes each lost connection
        chain = next(iter(node.replicas))  # the DSO chain comes first
        replica = node.replicas[chain]
        changed = Changed()
        replica.on_commit.append(changed.fire)
        loop = asyncio.get_running_loop()
        dso_key = keys.read_keyfile(settings.key_file)
        adapter = ChainAdapter(node, chain, loop, changed)
        feeder = build_feeder(settings)
        if settings.vmin_pu is not None:
            feeder = replace(feeder, vmin_pu=settings.vmin_pu)
        driver = relay_driver(settings, feeder)
        start = start_topology(feeder, driver)  # the relays' positions, adopted when they can be (R27-1)
        if start.alarm is not None:
            log.error("%s", start.alarm)
        elif start.adoption is not None:
            log.info("relays at start: %s", summary(start.adoption))
        live = live if live is not None else LiveTopology(start.open_set)
        lock = lock if lock is not None else threading.RLock()
        networked = NetworkedChain(adapter, replica.store)
        watch = RelayWatch(driver, lock, lambda kind, body: adapter.submit(dso_key, kind, body))
        # every plan and adoption (the loop's, the console's, REST's) is recorded through it: the watch learns
        # that the chain's last word on the relays is theirs, not its own last record (W1)
        recorder: Any = RecorderTellingWatch(ChainRecorder(networked, dso_key), watch)
        mgmc_recorder = mgmc_adapter = disputes = None
        for other, follower in node.replicas.items():  # the MGMC chain: the DSO follows it, votes never,
            if other != chain:  # but its transactions (gov.revoke, market.reopen) reach the authorities'
                followed = Changed()  # mempools by gossip; one adapter, so one nonce in flight for its key
                follower.on_commit.append(followed.fire)
                mgmc_adapter = ChainAdapter(node, other, loop, followed)
                mgmc_recorder = ChainRecorder(NetworkedChain(mgmc_adapter, follower.store), dso_key)
                if settings.disputes is not None:  # it settles disputed trades from final blocks
                    # one line and no start where the MGMCs could not post their readings in time (D12; `serve`
                    # refuses it before, in `live.preflight`)
                    check_settle_wait(settings.disputes, int(follower.app.genesis.params.settle_wait_ms))
                    disputes = dispute_settler(settings, mgmc_adapter, dso_key)
                    follower.on_commit.append(disputes.on_commit)

        def step_check(open_after: tuple[int, ...]) -> str | None:  # with the latest injections
            injections = dso_loop.live.injections  # late bound: the console may put its services in
            latest = injections[max(injections)] if injections else {}
            p, q = net_injection_mw(feeder, latest)
            return check_state(feeder, open_after, p, q, feeder.vmin_pu)

        executor = SwitchingExecutor(driver, recorder, timeout_s=3.0, step_check=step_check)
        if start.alarm is not None:
            executor.alarms.append(start.alarm)
        records = []
        if start.adoption is not None and not isinstance(driver, InMemoryRelays):  # on the DSO chain once the
            # node runs (`DsoLoop.run`); relays in memory start where the feeder says: nothing read in the field
            plan_id = adoption_id(time.time(), "at start")
            records = adoption_records(start.adoption, plan_id, settings.first_interval)
        switching = SwitchingService(LockedExecutor(executor, lock), auto=True)  # type: ignore[arg-type]
        planner = IntervalPlanner(
            feeder, tuple(live.open_set), settings.reconfigure_every,
            reconfigure_when_insecure=settings.reconfigure_when_insecure,
        )  # fmt: skip
        dso_loop = DsoLoop(settings, replica, adapter, changed, transport, recorder, switching, planner, dso_key,
                           live, lock, mgmc=mgmc_adapter, start_records=records, watch=watch)  # fmt: skip
        return cls(settings, node, transport, stores, replica, adapter, networked, feeder, recorder, switching,
                   dso_loop, mgmc_recorder, disputes, start, link)  # fmt: skip

    async def run(self, stop: asyncio.Event) -> None:
        self.node.attach_loop()
        (self.link or self.transport).start()  # the link starts the transport and keeps its thread
        runner = asyncio.create_task(self.node.run(stop))
        worker = asyncio.create_task(self.loop.run(stop))
        halter = asyncio.create_task(self.follow_halt(stop))
        tasks = [worker, halter]
        if self.disputes is not None:
            tasks.append(asyncio.create_task(self.disputes.run(stop)))
        try:
            await stop.wait()
        finally:
            # the interval loop waits on chain events through wait_for, which in Python 3.11 can swallow a
            # single cancel() (then gather() waited on it for good): cancel until each has ended
            await cancel_until_done(tasks)
            if not stop.is_set():  # cancelled from outside: the ledger node would never see its stop
                await cancel_until_done([runner])
            try:
                if not runner.cancelled():
                    await runner  # it ends on `stop`; a failure of the ledger node is raised, as before
            finally:  # and the stores are closed all the same
                self.transport.stop()
                close = getattr(self.switching.executor.driver, "close", None)
                if close is not None:
                    close()
                for store in self.stores:
                    store.close()

    async def follow_halt(self, stop: asyncio.Event, period_s: float = 0.5) -> None:
        """The end of a lab run: the testbed's halt file names a height per chain; the DSO's replicas stop
        there with the MGMCs'. Not told, its DSO-chain replica idled a 2-s heartbeat on each height it proposed
        while the MGMCs, heading for the halt, expected a block per period and round-changed on it (6 MGs:
        the DSO chain reached the halt 7.8 s after the file was written; told, 4.3 s)."""
        from peergrid_ledger.consensus.halt import HaltFile, apply_halt

        path = self.settings.halt_file
        followed = HaltFile(path)  # this follower's own last good reading
        while path is not None and not stop.is_set():
            apply_halt(self.node.replicas.values(), followed.read(), self.node.clock())
            await asyncio.sleep(period_s)


def dispute_settler(settings: Any, mgmc: Any, dso_key: keys.Keypair) -> Any:
    """The node's `DisputeSettler` on its MGMC-chain adapter: the market clock from the `disputes` section
    (`meter_clock.dispute_clock`),
    each MG's anonym mapped to its node key from `mgs` (the DSO enrolled both), and the MGs whose PCC meter signs
    its readings (`mgs.<mg>.meter_key`): those are read from meter-signed readings only. The sealed readings an
    earlier run took are read back (`dispute_readings_file`: a damaged file is a `ConfigError`)."""
    from peergrid_dso.dispute_node import DisputeSettler
    from peergrid_dso.meter_clock import dispute_clock, signing_meters

    d = settings.disputes
    clock = dispute_clock(settings)  # t0 in s, or 'chain': the MGMC chain's market.clock at first use
    nodes = {bytes.fromhex(e.anonym): bytes.fromhex(e.node) for e in settings.mgs.values()}
    meterless = {
        bytes.fromhex(e.anonym) for e in settings.mgs.values() if e.meterless
    }  # no PCC meter (config)
    return DisputeSettler(
        mgmc, dso_key, clock, nodes, record_file=d.record_file, retry_s=d.retry_s, meterless=meterless,
        signing=signing_meters(settings.mgs, d.meter_time_bound_s),
    )  # fmt: skip
