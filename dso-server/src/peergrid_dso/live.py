"""The closed loop's DSO node, assembled (`DsoNode`), and inside `peergrid-dso serve` (`EmbeddedLoop`, what the
config's `loop:` section starts).

Promises: `DsoNode.assemble(settings)` builds on the running event loop everything the node runs - ledger
replicas over one MQTT connection, the networked DSO chain and its recorder, the Modbus relays behind the one
lock every writer holds (`LockedExecutor`), the interval planner and `interval_node.DsoLoop` - and `run(stop)`
serves until `stop`, cancels its tasks until each has ended (one cancel can be lost:
`peergrid_ledger.consensus.shutdown`), then closes its stores (standalone: `interval_node.serve`). With `halt_file` set it reads
the coordinated stop's heights every half second, as the MGMCs do, and its replicas finalise nothing above them.
`assemble`, before anything runs, reads every relay and starts from the positions they report when all read, none
is moving and they are radial, recorded on the DSO chain once the node runs (`switching_adopt`,
`DsoLoop.start_records`); otherwise from the feeder's open set, with an alarm (logged, the executor's
`alarms`, the console's) naming the relays that disagree or could not be read (`DsoNode.start`). After each
interval the loop reads every relay again (`switching_watch.RelayWatch`, `EmbeddedLoop.relay_alarm`).
`EmbeddedLoop(settings).start()` runs a `DsoNode` - the DSO-chain replica (an
authority), the MGMC-chain replica (a non-voting follower, through which the loop reopens intervals for
re-bargaining, and with a `disputes` section where it settles disputed trades: `dispute_node`) when configured, enrolment and the per-interval security check, adjustments and switching through the Modbus relays, writing `record_file` exactly as the
standalone node does - on a thread of its own with its own event loop, and returns the console's
`DsoServices` built on that node (one chain, one executor, one topology), whose enrolment queue holds the
loop's MGs and revokes on both chains: the DSO, a non-voting follower of the MGMC chain, still has the `dso`
role there and gossips its `gov.revoke` to the MGMCs' mempools (`DsoNode.mgmc_recorder`). `stop()` ends
it and closes its stores. `call(fn)` runs `fn` on the node's loop (for reads of the live ledger state, which only that loop
mutates); `readiness()` reads there what is final of the node's start's postings (`start_postings.readiness`:
the MGs enrolled on the DSO chain, `tariffs_through` and the connection `capacities` on the MGMC chain) for
`/api/health`, and `ledger()` whether the node's ledger transport still reaches the broker and its network
thread runs (`live_reconnect.LedgerLink`, which starts that transport). A start that fails (bad key file, a
store of another chain) raises `ConfigError` in the caller.

Why a thread of its own rather than the web server's event loop: the consensus timers (block period, round
timeouts) and the MQTT inbox must keep time while the web server is busy (a power flow for a page, a slow
client), and the node then runs exactly as it does standalone (`asyncio.run`), so the two modes cannot drift.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from peergrid_dso.live_reconnect import LedgerLink, ledger_reconnect, loop_setting

# `/api/health`'s reads of the start's postings (a module of their own; named here as before)
from peergrid_dso.start_postings import readiness as readiness
from peergrid_dso.start_postings import tariffs_through as tariffs_through
from peergrid_ledger import keys
from peergrid_ledger.consensus.node_cli import NodeSettings, build_node
from peergrid_ledger.consensus.shutdown import cancel_until_done
from peergrid_ledger.settings import ConfigError

log = logging.getLogger("peergrid_dso.live")
T = TypeVar("T")


def preflight(settings: Any, *, broker: bool = True) -> list[str]:
    """Fail fast, before the web server starts, on what the loop section names but cannot be read: the DSO
    key, the chains' geneses, the tariff file (read and checked as the node will: `tariff.load_tariff_file`),
    the feeder and the relays file (built as the node builds them: `switching_relays.check_relays`; branches
    without a relay are one WARNING), and, with `broker`, a broker that refuses the node for good (its TLS
    certificate, ACL login) (`ConfigError` with one line; `peergrid-dso serve` and `check-config` exit 2).
    Returns the warnings, for the caller to say (`cli`)."""
    from peergrid_ledger import keys
    from peergrid_ledger.consensus.node_cli import load_genesis

    loop = settings.loop
    if loop is None:
        return []
    try:
        keys.read_keyfile(loop.key_file)
    except keys.KeyFileError as exc:
        raise ConfigError(f"loop.key_file: {exc}") from None
    for chain in [loop.dso_chain, loop.mgmc_chain]:
        if chain is not None:
            load_genesis(chain.genesis)
    if loop.ties is not None and not loop.ties.is_file():
        raise ConfigError(f"loop.ties: {loop.ties}: no such file")
    if loop.tariff_file is not None:  # else the node's start fails inside uvicorn's, with a traceback
        from peergrid_dso.tariff import load_tariff_file

        load_tariff_file(loop.tariff_file, loop.mgs, loop.interval_minutes)
    from peergrid_dso.services.switching_relays import check_relays

    warnings = check_relays(loop)
    if broker:
        from peergrid_dso.broker_tls import check_broker

        check_broker(
            settings.broker.host, settings.broker.port, settings.broker.tls(), f"{settings.node_id}-check"
        )
    return warnings


class LockedExecutor:
    """The switching executor behind the one lock every writer to the relays holds (loop and operators)."""

    def __init__(self, inner: Any, lock: Any) -> None:
        self.inner, self.lock = inner, lock

    def __getattr__(self, name: str) -> Any:  # driver, recorder, alarms, ... of the wrapped executor
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

        from peergrid_dso.drivers.relay_memory import InMemoryRelays
        from peergrid_dso.interval_node import DsoLoop, build_feeder, relay_driver
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
        from peergrid_dso.services.switching_watch import RelayWatch

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
        recorder = ChainRecorder(networked, dso_key)
        mgmc_recorder = mgmc_adapter = disputes = None
        for other, follower in node.replicas.items():  # the MGMC chain: the DSO follows it, votes never,
            if other != chain:  # but its transactions (gov.revoke, market.reopen) reach the authorities'
                followed = Changed()  # mempools by gossip; one adapter, so one nonce in flight for its key
                follower.on_commit.append(followed.fire)
                mgmc_adapter = ChainAdapter(node, other, loop, followed)
                mgmc_recorder = ChainRecorder(NetworkedChain(mgmc_adapter, follower.store), dso_key)
                if settings.disputes is not None:  # it settles disputed trades from final blocks
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
        watch = RelayWatch(driver, lock, lambda kind, body: adapter.submit(dso_key, kind, body))
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
    its readings (`mgs.<mg>.meter_key`): those are read from meter-signed readings only."""
    from peergrid_dso.dispute_node import DisputeSettler, signing_meters
    from peergrid_dso.meter_clock import dispute_clock

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


def loop_enrolments(node: DsoNode) -> dict[bytes, Any]:
    """The MGs of the loop's config as the console's enrolment queue shows them: authorised (the node enrols
    each at start), or revoked when the DSO chain says so (a revocation outlives a restart). Call on the
    node's event loop (it reads the live ledger state)."""
    from peergrid_dso.services.enrolment import Enrolment
    from peergrid_ledger.core import is_revoked

    state = node.replica.app.state
    found = {}
    for mg, entry in sorted(node.settings.mgs.items()):
        mgmc, anonym = bytes.fromhex(entry.node), bytes.fromhex(entry.anonym)
        status = "revoked" if is_revoked(state, mgmc) else "authorised"
        found[mgmc] = Enrolment(mgmc, anonym, mg, status)
    return found


class EmbeddedLoop:
    def __init__(self, settings: Any) -> None:  # peergrid_dso.config.DsoSettings with a `loop` section
        from peergrid_dso.loop_settings import IntervalNodeSettings

        assert settings.loop is not None
        self.node_settings = IntervalNodeSettings.model_validate(
            settings.loop.model_dump()
            | {
                "feeder": settings.feeder,
                "broker_host": settings.broker.host,
                "broker_port": settings.broker.port,
                "broker_tls": settings.broker.tls(),
            }
            | loop_setting(settings.broker)
        )
        self.client_id = f"{settings.node_id}-loop"
        self.ledger_down_after_s = float(settings.loop.ledger_down_after_s)
        self.lock = threading.RLock()  # every writer to the relays holds it: the loop, operators, the API
        self.node: Any = None
        self.services: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="dso-loop", daemon=True)
        self._priced_through: int | None = None  # `readiness`'s last tariffs_through: it never goes back

    def start(self, timeout: float = 60.0) -> Any:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise ConfigError(f"the DSO node did not start within {timeout:.0f} s")
        if self._error is not None:
            if isinstance(self._error, ConfigError):
                raise self._error
            raise ConfigError(
                f"loop: the DSO node could not start: {type(self._error).__name__}: {self._error}"
            )
        return self.services

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        from peergrid_dso.services.container import live_services

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            self.node = DsoNode.assemble(self.node_settings, lock=self.lock, client_id=self.client_id)
            self.services = live_services(self.node)
            self.services.enrolment.mgmc_recorder = self.node.mgmc_recorder
            self.services.enrolment.auto = self.node_settings.auto_enrol
            self.services.enrolment.enrolments.update(loop_enrolments(self.node))
        except BaseException as exc:  # reported to start(); the thread ends
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self.node.run(self._stop)
        except Exception:
            log.exception("the DSO node stopped")

    def stop(self, timeout: float = 15.0) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and self._error is None

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run `fn` on the node's event loop (where the ledger state changes) and return its result."""
        assert self._loop is not None

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def readiness(self, timeout: float = 2.0) -> dict[str, Any] | None:
        """`readiness` of the running node, read on its event loop; None while it is not running or too
        busy to answer within `timeout` (health must not hang on it)."""
        if not self.running or self.node is None:
            return None
        node, known = self.node, self._priced_through
        try:
            found = self.call(lambda: readiness(node, known), timeout)
        except (TimeoutError, RuntimeError):  # (concurrent.futures' TimeoutError is the builtin's, 3.11)
            return None
        self._priced_through = found["tariffs_through"]
        return found

    @property
    def start_alarm(self) -> str | None:
        """The node's start alarm while it stands, for `/api/health`: the relays it could not adopt at start
        (`switching_adopt.start_topology`: unreadable, moving, or not radial), which refuses every plan until an
        operator adopts the relays' positions (`Operations.adopt_relays` lifts it). None when the node adopted
        them at start or had no relay to read. Read off the console's services, not the node's event loop."""
        standing = getattr(getattr(self, "services", None), "alarms", None) or []
        return str(standing[0]) if standing else None

    @property
    def relay_alarm(self) -> str | None:
        """While it stands, what the node's read of every relay after an interval found (`switching_watch`): the
        relays that report another position than the DSO holds, or cannot be read; None when all agree."""
        watch = getattr(getattr(self.node, "loop", None), "watch", None)
        return getattr(watch, "alarm", None)

    def ledger(self) -> dict[str, Any] | None:
        """For `/api/health`: whether the node's ledger transport reaches the broker and its thread runs
        (`live_reconnect.LedgerLink`); None before the node was assembled."""
        link = getattr(self.node, "link", None)
        return None if link is None else link.health(self.ledger_down_after_s)

    def replica(self, role: str) -> Any:
        """The node's replica of the `dso` or `mgmc` chain, or None when it does not follow that chain."""
        if self.node is None:
            return None
        if role == "dso":
            return self.node.replica
        others = [r for r in self.node.node.replicas.values() if r is not self.node.replica]
        return others[0] if others else None

    @property
    def listeners(self) -> list[Callable[[dict[str, Any]], None]]:
        listeners: list[Callable[[dict[str, Any]], None]] = self.node.loop.listeners
        return listeners
