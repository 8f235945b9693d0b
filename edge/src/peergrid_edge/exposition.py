"""The daemon's Prometheus metrics: what an operator of a fleet of Pis needs to see at a glance.

Promises: `families(daemon)` renders poll latency (histogram), per-device errors, quarantines, quarantined and
stale flags, the number of stale devices, the malformed telemetry each MQTT device dropped, dispatch mode and
alarms, queued and submitted ledger transactions and ledger heights (when a replica reports them), and, given
the daemon's schedule intake, the schedules it ignored by reason (`schedules_ignored`), and for each device
whose config names its `meter_key` its polls by signed-reading result and its clock offset (`meter_watch`; no
such family without one). Reads daemon state only; never blocks, never raises.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from peergrid_edge.metrics import Family, render
from peergrid_edge.telemetry import MqttTelemetryDriver

if TYPE_CHECKING:
    from collections.abc import Iterable

    from peergrid_edge.daemon import EdgeDaemon
    from peergrid_edge.polling import DeviceState
    from peergrid_edge.schedule_intake import ScheduleIntake

P = "peergrid_edge_"


def schedules_ignored(intake: ScheduleIntake) -> Family:
    """The schedule messages the daemon ignored (`schedule_intake`), one sample per reason, zeros too: a rate
    query sees the series from the daemon's start."""
    name = P + "schedules_ignored_total"
    samples = [(name, {"reason": reason}, float(n)) for reason, n in sorted(intake.ignored.items())]
    return Family(name, "counter", "Schedule messages ignored (logged, not taken), by reason.", samples)


def meter_watch(states: Iterable[DeviceState]) -> list[Family]:
    """The watched signing meters (`meter_signed.MeterWatch`): polls by result, zeros too, and the last
    verified offset of the meter's clock (left out until a reading verified). Empty when none is watched."""
    watched = [(s.settings.name, s.watch) for s in states if s.watch is not None]
    if not watched:
        return []
    signed, offset = P + "meter_signed_total", P + "meter_clock_offset_seconds"
    return [
        Family(
            signed,
            "counter",
            "Good polls of a meter with meter_key, by its signed reading: ok, bad_signature, unsigned.",
            [(signed, {"device": d, "result": r}, float(n)) for d, w in watched for r, n in w.counts.items()],
        ),
        Family(
            offset,
            "gauge",
            "The meter's signed time minus the poll's time, last reading that verified (s).",
            [(offset, {"device": d}, w.offset_s) for d, w in watched if w.offset_s is not None],
        ),
    ]


def families(daemon: EdgeDaemon, schedules: ScheduleIntake | None = None) -> str:
    """`schedules`: the daemon's schedule intake (None: its family is left out)."""
    now = daemon.clock.monotonic()
    states = daemon.states.values()

    def per_device(fn) -> list[tuple[str, dict[str, str], float]]:  # type: ignore[no-untyped-def]
        return [("", {"device": s.settings.name}, float(fn(s))) for s in states]

    def named(
        name: str, samples: list[tuple[str, dict[str, str], float]]
    ) -> list[tuple[str, dict[str, str], float]]:
        return [(name, labels, value) for _, labels, value in samples]

    stale = [s for s in states if s.is_stale(now)]
    out = [
        Family(
            P + "poll_latency_seconds",
            "histogram",
            "Time for one device poll (all attempts).",
            daemon.latency.samples(P + "poll_latency_seconds"),
        ),
        Family(
            P + "device_polls_total",
            "counter",
            "Poll attempts per device.",
            named(P + "device_polls_total", per_device(lambda s: s.polls)),
        ),
        Family(
            P + "device_errors_total",
            "counter",
            "Failed polls per device.",
            named(P + "device_errors_total", per_device(lambda s: s.health.errors_total)),
        ),
        Family(
            P + "device_quarantines_total",
            "counter",
            "Times a device entered quarantine.",
            named(P + "device_quarantines_total", per_device(lambda s: s.health.quarantines_total)),
        ),
        Family(
            P + "device_quarantined",
            "gauge",
            "1 while a device is quarantined.",
            named(P + "device_quarantined", per_device(lambda s: s.health.quarantined(now))),
        ),
        Family(
            P + "device_stale",
            "gauge",
            "1 while a device's last good reading is too old.",
            named(P + "device_stale", per_device(lambda s: s.is_stale(now))),
        ),
        Family(
            P + "device_implausible_total",
            "counter",
            "Good reads whose values no device could produce (see quality.py).",
            named(P + "device_implausible_total", per_device(lambda s: s.implausible_total)),
        ),
        Family(
            P + "telemetry_malformed_total",
            "counter",
            "MQTT telemetry messages dropped as malformed, per MQTT device.",
            [
                (P + "telemetry_malformed_total", {"device": name}, float(driver.malformed))
                for name, driver in sorted(daemon.drivers.items())
                if isinstance(driver, MqttTelemetryDriver)
            ],
        ),
        Family(
            P + "stale_devices",
            "gauge",
            "Devices whose readings are stale.",
            [(P + "stale_devices", {}, len(stale))],
        ),
        Family(
            P + "dispatch_mode",
            "gauge",
            "1 for the active dispatch mode (schedule or safe).",
            [(P + "dispatch_mode", {"mode": m}, float(daemon.mode == m)) for m in ("schedule", "safe")],
        ),
        Family(
            P + "market_schedule_interval",
            "gauge",
            "Interval of the schedule in force (-1: none).",
            [
                (
                    P + "market_schedule_interval",
                    {},
                    float(daemon.schedule.interval if daemon.schedule else -1),
                )
            ],
        ),
        Family(
            P + "dispatch_writes_total",
            "counter",
            "Setpoint writes attempted.",
            [(P + "dispatch_writes_total", {}, daemon.actuator.writes_total)],
        ),
        Family(
            P + "dispatch_confirmed_total",
            "counter",
            "Setpoint writes confirmed by read-back.",
            [(P + "dispatch_confirmed_total", {}, daemon.actuator.confirmed_total)],
        ),
        Family(
            P + "dispatch_alarms_total",
            "counter",
            "Dispatch alarms per device.",
            [
                (P + "dispatch_alarms_total", {"device": d}, n)
                for d, n in sorted(daemon.actuator.alarms_total.items())
            ],
        ),
        Family(
            P + "ledger_queued_txs",
            "gauge",
            "Signed transactions queued on disk, not yet acknowledged.",
            [(P + "ledger_queued_txs", {}, daemon.store.queued())],
        ),
        Family(
            P + "ledger_submitted_txs",
            "counter",
            "Transactions the broker acknowledged.",
            [(P + "ledger_submitted_txs", {}, daemon.store.submitted)],
        ),
        Family(
            P + "ledger_height",
            "gauge",
            "Height of each chain's local replica.",
            [(P + "ledger_height", {"chain": c}, h) for c, h in sorted(daemon.ledger_heights.items())],
        ),
        Family(
            P + "broker_connected",
            "gauge",
            "1 while connected to the feeder's broker.",
            [(P + "broker_connected", {}, float(daemon.link.client.is_connected()))],
        ),
        Family(  # connected but deaf to a topic: the broker refused its subscription (the link logs which)
            P + "broker_subscriptions_refused_total",
            "counter",
            "SUBACKs from the broker refusing any of the link's topics.",
            [(P + "broker_subscriptions_refused_total", {}, daemon.link.subscribe_refused)],
        ),
    ]
    if schedules is not None:
        out.append(schedules_ignored(schedules))
    out.extend(meter_watch(states))
    return render(out)
