"""The MGMC daemon's asyncio shell: poll, dispatch, commit readings to the ledger, report health and metrics.

Promises: each device is polled by its own task, so one slow or dead device never delays the others; every good
reading goes into the local LevelDB under its commitment interval, each closed interval is sealed into a signed
`der_commitment` transaction queued on disk and submitted in order, one at a time, only while the broker
acknowledges (islanded: polling and dispatch go on, the queue grows, nothing is lost; the outbox and the replicas
it builds are `daemon_ledger.py`'s); dispatch runs `decide` on
a frozen snapshot every `dispatch.period_s`, falling back to each device's safe state when no valid schedule
arrived within `schedule_timeout_s`; one that arrives before its start waits for it, the schedule in force
running on until then, and a replay of a schedule held is no sign of the controller's life (`schedule_holder`).
The trading agent's plan (`agent_dispatch.set_plan`) is not judged by that timer: it is followed while valid and while the
agent's task lives, ahead of an MQTT controller's schedules. Health goes to `peergrid/<feeder>/health/<node>` as
JSON {node, mg, at, devices: [...]}. systemd: READY=1 after the first poll cycle with a good reading, WATCHDOG=1
only while every poll task makes progress, STOPPING=1 on SIGTERM/SIGINT followed by a clean shutdown: every task
is cancelled until it has ended (`peergrid_ledger.consensus.shutdown`: one cancel can be lost), then the MQTT
link stops accepting messages before the ledger and the store close, so nothing touches a closed database. A
long-lived task that dies (an exception, or cancelled while the daemon runs) is logged as CRITICAL with its
traceback and stops the daemon the same clean way, after which `run` raises `TaskDied`: the process exits
non-zero and systemd restarts it (`task_watch`). The trading agent returning after its last day's end
(`market.days`) is no death. Beside the agent the owner's contract rules are posted on the MGMC chain where they
do not stand there (`rules_poster`); the agent's day starts once they are sent (final, for a day-ahead stage) or
found standing.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import signal
from pathlib import Path

from peergrid_edge import commitments, daemon_ledger
from peergrid_edge.actuation import Actuator, view_of
from peergrid_edge.clock import Clock, SystemClock
from peergrid_edge.config import EdgeSettings
from peergrid_edge.dispatch import Schedule, decide
from peergrid_edge.drivers import Driver, make_driver
from peergrid_edge.link import MqttLink, MqttTxSink, TxSink
from peergrid_edge.meter_signed import meter_signed
from peergrid_edge.metrics import Histogram, serve_metrics
from peergrid_edge.notify import Notifier
from peergrid_edge.polling import DeviceHealth, DeviceState, line_wait_s, poll_device
from peergrid_edge.quality import implausible
from peergrid_edge.schedule_holder import ScheduleHolder
from peergrid_edge.schedule_intake import ScheduleIntake
from peergrid_edge.store import Queued, open_store
from peergrid_edge.summary import device_summary
from peergrid_edge.task_watch import TaskDied, watch
from peergrid_ledger.consensus.halt import HaltFile
from peergrid_ledger.consensus.shutdown import cancel_until_done

log = logging.getLogger("peergrid.edge")


def load_or_create_key(path: Path):  # type: ignore[no-untyped-def]
    from peergrid_ledger import keys

    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        keys.write_keyfile(path, keys.Keypair.generate())
        log.info("created node key %s", path)
    return keys.read_keyfile(path)


def _opt(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _not_dead(task: asyncio.Task[None]) -> bool:
    """Running, or returned (the trading agent after its day's end); not raised or cancelled (`task_watch`)."""
    return not task.done() or (not task.cancelled() and task.exception() is None)


class EdgeDaemon:
    def __init__(
        self, settings: EdgeSettings, clock: Clock | None = None, tx_sink: TxSink | None = None
    ) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.notifier = Notifier()
        self.stopping = asyncio.Event()
        broker = settings.broker
        tls = None
        if broker.ca_file is not None:
            tls = (str(broker.ca_file), _opt(broker.cert_file), _opt(broker.key_file))
        self.link = MqttLink(
            settings.node_id,
            broker.host,
            broker.port,
            broker.keepalive_s,
            tls,
            reconnect_max_s=broker.reconnect_max_s,
        )
        self.drivers: dict[str, Driver] = {
            d.name: make_driver(d, settings, self.link) for d in settings.devices
        }
        self.states = {d.name: DeviceState(d, DeviceHealth.for_device(d)) for d in settings.devices}
        self.actuator = Actuator(self.drivers, self.states, settings.dispatch, self.clock)
        self.store = open_store(settings.data_dir / "edge.db")  # damaged or in use: one ConfigError (exit 2)
        self.keypair = load_or_create_key(settings.node_key_file())
        # the schedule in force, the next held for its start, the controller's silence timer, the intake
        self.schedules = ScheduleHolder(self.clock, settings.dispatch.schedule_timeout_s)
        self.mode = "safe"
        self.scheduled_before = False  # whether it has followed a schedule since its start
        self.latency = Histogram()
        self.ledger_heights: dict[str, int] = {}  # filled by an embedded ledger replica when one runs
        self.health_topic = settings.topic("health", settings.node_id)
        self.tx_topic = settings.topic("ledger", settings.ledger.chain_id, "tx")
        self.schedule_topic = settings.topic("schedule", settings.node_id)
        self.halt_file = HaltFile(settings.ledger.halt_file)  # this daemon's own last good reading of it
        self.chain_id = settings.ledger.chain_id
        self.ledger = daemon_ledger.embedded_ledger(settings, self.keypair, self.link)
        if self.ledger is not None:
            from peergrid_edge.replicas import LedgerTxSink

            self.chain_id = self.ledger.replicas["mgmc"].chain
            self.tx_topic = settings.topic("ledger", self.chain_id, "tx")
            tx_sink = tx_sink or LedgerTxSink(self.ledger)  # the cursor moves on inclusion in a final block
        self.tx_sink: TxSink = tx_sink or MqttTxSink(self.link, self.tx_topic)
        self.agent = None
        self.rules_poster = None
        if settings.market is not None:
            from peergrid_edge.rules_poster import RulesPoster
            from peergrid_edge.trader import MarketAgent

            self.agent = MarketAgent(self, settings.market)  # fmt: skip
            # the owner's rules go on the chain (market.rules); edge.yaml's, where given, are the agent's too
            self.rules_poster = RulesPoster.for_agent(self.agent, settings.market.rules, self._sleep)
        self.metrics_port: int | None = None
        self._progress: dict[str, int] = {}

    # --- polling ---------------------------------------------------------------------------------------

    def _on_poll(self, state: DeviceState) -> None:
        for latency in state.latencies:
            self.latency.observe(latency)
        state.latencies.clear()
        snapshot = state.last
        if snapshot is None or not snapshot.ok:
            return
        doubts = tuple(implausible(snapshot.nature, snapshot.reading))
        if doubts:
            state.implausible_total += 1
            if doubts != state.doubts:
                log.warning("device %s reads implausibly: %s", snapshot.device, "; ".join(doubts))
        state.doubts = doubts
        interval = commitments.interval_of(snapshot.at, self.settings.ledger.commit_interval_s)
        if self.store.is_sealed(interval):
            return  # a reading that arrived after its interval was sealed (clock step): not committed
        # whether its counters can roll is the driver's (L2): an MQTT meter's reset is then never read as one
        rolls = commitments.counters_roll(state.settings.protocol)
        leaf = commitments.reading_leaf(
            snapshot.device,
            snapshot.nature,
            snapshot.at,
            snapshot.reading,
            meter_signed(snapshot.points),
            rolls=rolls,
        )
        self.store.add_reading(interval, leaf)

    def first_cycle_done(self) -> bool:
        if not self.states:
            return True
        return all(s.polls > 0 for s in self.states.values()) and any(
            s.last_good is not None for s in self.states.values()
        )

    def progressing(self) -> bool:
        """True when no poll task is stuck: each polled since the last check, is quarantined, or is not due
        (its period and the longest its poll may take: `polling.poll_once`'s bound per attempt, the wait for a
        shared serial line included)."""
        now = self.clock.monotonic()
        ok = True
        for name, state in self.states.items():
            device = state.settings
            attempt_s = 4 * device.timeout_s + line_wait_s(self.drivers[name])
            budget = device.poll_interval_s + attempt_s * (device.retries + 1) + 1.0
            moved = state.polls != self._progress.get(name)
            self._progress[name] = state.polls
            recent = state.last_poll_mono is not None and now - state.last_poll_mono < budget
            if not (moved or recent or state.health.quarantined(now)):
                ok = False
        return ok

    def status_text(self) -> str:
        now = self.clock.monotonic()
        ok = sum(1 for s in self.states.values() if s.last is not None and s.last.ok)
        stale = sum(1 for s in self.states.values() if s.is_stale(now))
        quarantined = sum(1 for s in self.states.values() if s.health.quarantined(now))
        return (
            f"{len(self.states)} devices: {ok} ok, {stale} stale, {quarantined} quarantined; "
            f"dispatch {self.mode}; {self.store.queued()} txs queued"
        )

    async def _supervise(self, period_s: float = 1.0) -> None:
        while not self.stopping.is_set():
            await self._sleep(period_s)
            if not self.notifier.ready_sent and self.first_cycle_done():
                self.notifier.ready(self.status_text())
                log.info("first poll cycle done: %s", self.status_text())
            if self.notifier.ready_sent:
                if self.progressing():
                    self.notifier.watchdog()
                self.notifier.status(self.status_text())

    # --- dispatch --------------------------------------------------------------------------------------

    # the daemon's names for `schedules`: `exposition` reads `schedule`; the trading agent sets its plan through `agent_dispatch.set_plan`
    @property
    def schedule(self) -> Schedule | None:
        """The schedule in force: the agent's plan while it rules, else the controller's (timer aside)."""
        return self.schedules.in_force

    @property
    def schedule_at(self) -> float | None:
        return self.schedules.schedule_at

    @property
    def next_schedule(self) -> Schedule | None:
        return self.schedules.next_schedule

    @property
    def schedule_intake(self) -> ScheduleIntake:
        return self.schedules.intake

    def _on_schedule(self, topic: str, payload: bytes) -> None:
        self.schedules.take(payload)

    def set_schedule(self, schedule: Schedule) -> None:
        """A plan without the agent's bridge (`ScheduleHolder.set_plan`): followed while it is valid, never by the
        controller-silence timer (review16 N1). The trading agent sets its own through `agent_dispatch.set_plan`,
        which adds the bridge over its slots (E23)."""
        self.schedules.set_plan(schedule)

    def current_schedule(self) -> Schedule | None:
        return self.schedules.current()

    async def dispatch_once(self, dt: float) -> None:
        now = self.clock.monotonic()
        views = {n: v for n, s in self.states.items() if (v := view_of(s, now)) is not None}
        if not views:
            return
        dispatch = self.settings.dispatch
        decision = decide(
            views, self.current_schedule(), self.clock.wall(), dt, dispatch.readback_tolerance_pct
        )
        if decision.mode != self.mode:
            # every start begins in safe mode: its first schedule is the normal start (INFO); a move to safe
            # after a schedule, and back from it, is an event an operator looks at (WARNING)
            start = decision.mode == "schedule" and not self.scheduled_before
            level = logging.INFO if start else logging.WARNING
            log.log(level, "dispatch mode %s -> %s (%s)", self.mode, decision.mode, decision.reason)
            self.mode = decision.mode
            self.scheduled_before = self.scheduled_before or decision.mode == "schedule"
        await self.actuator.perform(decision)
        self.actuator.check_following(views)
        await self.actuator.feed(views)  # the devices' own watchdogs: a dead MGMC leaves them safe

    async def _dispatch_loop(self) -> None:
        period = self.settings.dispatch.period_s
        while not self.stopping.is_set():
            await self._sleep(period)
            if self.notifier.ready_sent or self.first_cycle_done():
                await self.dispatch_once(period)

    # --- ledger: the outbox of DER commitments (`daemon_ledger`) ------------------------------------------

    def _sign(self, queued: Queued) -> bytes:
        return daemon_ledger.sign(self, queued)

    def seal_closed_intervals(self) -> int:
        return daemon_ledger.seal_closed(self)

    def prune_old_readings(self) -> int:
        return daemon_ledger.prune_old(self)

    async def _commit_loop(self) -> None:
        await daemon_ledger.commit_loop(self)

    async def _submit_pending(self) -> None:
        await daemon_ledger.submit_pending(self)

    # --- health and metrics ----------------------------------------------------------------------------

    def health(self) -> dict[str, object]:
        now, wall = self.clock.monotonic(), self.clock.wall()
        devices = [
            device_summary(s, stale=s.is_stale(now)) for s in self.states.values() if s.last is not None
        ]
        doc: dict[str, object] = {
            "node": self.settings.node_id,
            "mg": self.settings.mg,
            "at": wall,
            "devices": devices,
        }
        if self.ledger is not None:
            self.ledger_heights = self.ledger.heights()
            doc["ledger"] = self.ledger.heads()  # {chain: {"height", "head"}}: what the console compares
        if self.agent is not None:
            doc["market"] = self.agent.status()
        return doc

    async def _publish_health(self) -> None:
        while not self.stopping.is_set():
            self.link.publish(self.health_topic, json.dumps(self.health(), separators=(",", ":")))
            await self._sleep(self.settings.health_period_s)

    async def _ledger_status_loop(self) -> None:
        assert self.ledger is not None
        while not self.stopping.is_set():
            self.ledger.halt_at(self.halt_file.read())
            self.ledger_heights = self.ledger.heights()
            self.ledger.write_status()
            await self._sleep(1.0)

    def metrics_text(self) -> str:
        from peergrid_edge.exposition import families

        self.schedules.advance()  # the schedule interval shown is the one in force now
        return families(self, self.schedules.intake)

    async def _sleep(self, seconds: float) -> None:
        sleep = asyncio.ensure_future(self.clock.sleep(seconds))
        stop = asyncio.ensure_future(self.stopping.wait())
        await asyncio.wait({sleep, stop}, return_when=asyncio.FIRST_COMPLETED)
        for future in (sleep, stop):
            future.cancel()

    # --- lifecycle -------------------------------------------------------------------------------------

    async def run(self, install_signals: bool = True) -> None:
        loop = asyncio.get_running_loop()
        if install_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.stop)
        self.link.subscribe(self.schedule_topic, self._on_schedule)
        if self.ledger is not None:
            self.ledger.start()
        self.link.start()
        server = None
        if self.settings.metrics.port is not None:
            server = await serve_metrics(
                self.settings.metrics.host, self.settings.metrics.port, self.metrics_text
            )
            self.metrics_port = server.sockets[0].getsockname()[1]
            log.info("metrics on http://%s:%d/metrics", self.settings.metrics.host, self.metrics_port)
        log.info(
            "edge %s (mg %s) polling %d devices", self.settings.node_id, self.settings.mg, len(self.drivers)
        )
        count = max(1, len(self.states))
        loops = {  # first polls spread over the period: no burst of every request at the same instant
            f"poll {n}": poll_device(
                self.drivers[n],
                s,
                self.clock,
                self.stopping,
                self._on_poll,
                i * s.settings.poll_interval_s / count,
            )
            for i, (n, s) in enumerate(self.states.items())
        }
        loops |= {
            "supervise": self._supervise(),
            "health": self._publish_health(),
            "commit": self._commit_loop(),
        }
        if self.settings.dispatch.enabled:
            loops["dispatch"] = self._dispatch_loop()
        if self.ledger is not None:
            loops["ledger status"] = self._ledger_status_loop()
        if self.agent is not None:
            loops["trading agent"] = self._trade()
        if self.rules_poster is not None:
            loops["owner rules"] = self.rules_poster.run()
        if self.settings.enrolment is not None:  # first boot of a pilot MGMC: ends once the DSO has answered
            from peergrid_edge.enrolment import Enroller

            loops["enrolment"] = Enroller.from_settings(self.settings, self.keypair).task()
        tasks = [asyncio.create_task(c, name=name) for name, c in loops.items()]
        for task in tasks:
            if task.get_name() == "trading agent":  # its plan is followed only while it has not died
                self.schedules.agent_alive = functools.partial(_not_dead, task)
        died = None
        try:  # a task that dies stops the daemon, which exits non-zero: never polling on without it
            died = await watch(tasks, self.stopping)
        finally:
            log.info("edge %s stopping", self.settings.node_id)
            self.notifier.stopping()
            await cancel_until_done(tasks)  # one cancel() may be lost; nothing runs on
            # the agent's followers read the store: ended before it closes (a stand-in agent may have none)
            await cancel_until_done(getattr(self.agent, "background", list)())
            if server is not None:
                server.close()
            for driver in self.drivers.values():
                driver.close()
            self.link.stop()  # no message reaches the ledger from here on, not even one queued already
            if self.ledger is not None:
                self.ledger.close()
            self.store.close()
        if died is not None:
            raise TaskDied(died) from (None if died.cancelled() else died.exception())

    async def _trade(self) -> None:
        """The agent's day, once the owner's rules were looked at on the chain and sent where due: final first
        where it runs the day-ahead stage (which refuses rules that are not the chain's; at most one post's
        wait), else only in the pool (its first offer lands after them: `rules_poster.first_look`)."""
        assert self.agent is not None
        poster, market = self.rules_poster, self.settings.market
        if poster is not None:
            await (poster.start() if market is not None and market.dayahead else poster.first_look())
        await self.agent.run()

    def stop(self) -> None:
        self.stopping.set()
