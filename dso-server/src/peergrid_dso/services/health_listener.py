"""The DSO's health listener: the MQTT shell that feeds a `NodeBoard`, and whether it still hears the feeder.

Promises: `MqttHealthListener` subscribes to every node's `peergrid/<feeder>/health/+` and hands each message to
the board; a report that makes `ingest` raise (a bug) is logged and counted, never allowed to end the network
loop - one node's message must not stop the DSO hearing every other node. It runs paho's network loop on a
thread of its own, so it knows when that loop ended and why. `health()` says whether it still hears
(`listener_health`, pure): `alive` (its network loop runs), `connected` (to the broker), `subscribed` (the
broker granted the health subscription on this connection), the age of the last message it received
(`last_message_age_s`; none yet: null), how long it has heard nothing (`silent_s`: since that message or
the subscription on this connection, whichever is later), the board's `taken`, `malformed` and `dropped`
counts, and `state` - `listening` only when all of that holds and, where the config sets `silent_after_s`,
`silent_s` is within it; else `starting`, `dead`, `disconnected`, `unsubscribed` or `silent`. `/api/health` is not ok unless `listening`: while the listener is dead, cut off or deaf, the
console's node views are stale, and the DSO must not say it is well. Time is injected (`clock`, monotonic s).
After a lost connection paho waits 0.1 s, doubling up to `reconnect_max_s` (the config's
`broker.reconnect_max_s`, else 2 s), as the node's ledger transport does (`live_reconnect`), so a broker back
after an outage is heard within it, as soon as the chains are (before: 1 s doubling to 10 s, the edge's, and
the console's 'back' came up to 10 s after the broker; 30 s, hard-coded, before that). An outage is told once at WARNING (lost, or not reached at
start, with paho's word on the socket where it gave one) and once, at WARNING too, when it is back (`BrokerOutage`);
paho's own lines reach `peergrid_dso.health.paho` at their level, except the ERROR it writes after every
refused reconnect attempt ('Client is not connected', paho 2.2), which the outage's two lines replace.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, LogLevel
from pydantic import Field

from peergrid_dso.live_reconnect import (
    LISTENER_RECONNECT_MAX_S,
    LISTENER_RECONNECT_MIN_S,
    reconnect_bound,
)
from peergrid_ledger.consensus.mqtt_transport import BrokerOutage
from peergrid_ledger.settings import StrictSettings

log = logging.getLogger("peergrid_dso.health")
paho_log = logging.getLogger("peergrid_dso.health.paho")
# paho's lines on a lost socket (once per lost connection): the reason the outage's WARNING gives
SOCKET_LOSS = ("failed to receive on socket", "timeout on socket")


class HealthListenerSettings(StrictSettings):
    """The server config's `health_listener` section (`DsoSettings.health_listener`): `silent_after_s`, how
    long the listener may hear no health message at all before `/api/health` says it is not ok (the MGMCs
    report every `health_period_s`, 1 s by default; None: silence is shown, never judged - a lab console with
    no MGMC hears nothing)."""

    silent_after_s: float | None = Field(None, gt=0)


@dataclass(frozen=True)
class ListenerState:
    """What the listener knows of itself at one moment (monotonic s)."""

    started: bool = False
    alive: bool = False  # its network loop runs
    error: str | None = None  # why that loop ended, when it raised
    connected: bool = False
    subscribed: bool = False
    subscribed_at: float | None = None  # when the broker granted the subscription on this connection
    last_message_at: float | None = None  # any message on the health topic, taken or not


def listener_health(
    state: ListenerState, counts: dict[str, int], silent_after_s: float | None, now: float
) -> dict[str, Any]:
    """The listener's section of `/api/health` (see the module's contract); `ok` is whether it is `listening`."""
    # silence counts from the later of the last message and this connection's subscription: a listener back
    # from an outage longer than the bound is not silent for the reports it could not hear while away
    heard = max((t for t in (state.last_message_at, state.subscribed_at) if t is not None), default=None)
    quiet = None if heard is None else max(0.0, now - heard)
    if not state.started:
        status = "starting"
    elif not state.alive:
        status = "dead"
    elif not state.connected:
        status = "disconnected"
    elif not state.subscribed:
        status = "unsubscribed"
    elif silent_after_s is not None and quiet is not None and quiet > silent_after_s:
        status = "silent"
    else:
        status = "listening"
    age = None if state.last_message_at is None else round(max(0.0, now - state.last_message_at), 3)
    doc: dict[str, Any] = {
        "state": status, "ok": status == "listening", "alive": state.alive, "connected": state.connected,
        "subscribed": state.subscribed, "last_message_age_s": age,
        "silent_s": None if quiet is None else round(quiet, 3), "silent_after_s": silent_after_s,
    }  # fmt: skip
    doc |= {k: counts.get(k, 0) for k in ("taken", "malformed", "dropped")}
    if state.error is not None:
        doc["error"] = state.error
    return doc


class MqttHealthListener:
    """Subscribes to every node's health topic on the feeder's broker and feeds a NodeBoard."""

    def __init__(
        self, board: Any, host: str, port: int, client_id: str, *, silent_after_s: float | None = None,
        clock: Callable[[], float] = time.monotonic, reconnect_max_s: float | None = None,
    ) -> None:  # fmt: skip
        self.board = board  # health.NodeBoard
        self.silent_after_s, self.clock = silent_after_s, clock
        self.reconnect_max_s = reconnect_bound(reconnect_max_s, LISTENER_RECONNECT_MAX_S)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_log = self._on_paho_log
        # paho annotates int seconds but only compares, doubles and sleeps them: a float bound works as given
        self.client.reconnect_delay_set(min_delay=LISTENER_RECONNECT_MIN_S, max_delay=self.reconnect_max_s)  # type: ignore[arg-type]
        # paho re-raises a callback's exception out of its network loop, which then ends for good (the board
        # keeps its last reports forever). `_on_message` catches its own; this keeps any other callback's from
        # doing the same (paho then logs it: `_on_paho_log`). Should the loop end all the same, `health`
        # says so.
        self.client.suppress_exceptions = True
        self.host, self.port = host, port
        self.outage = BrokerOutage(log, f"the feeder's broker {host}:{port}", clock)
        self._socket_loss: str | None = None  # paho's word on the last lost socket, for the outage's line
        self._lock = threading.Lock()
        self._state = ListenerState()
        self._subscription: int | None = None  # the mid of the SUBSCRIBE sent on this connection
        self._thread: threading.Thread | None = None

    def _set(self, **changes: Any) -> None:
        with self._lock:
            self._state = replace(self._state, **changes)

    @property
    def state(self) -> ListenerState:
        with self._lock:
            return self._state

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._set(last_message_at=self.clock())
        try:
            self.board.ingest(msg.topic, bytes(msg.payload))
        except Exception:
            self.board.drop()
            log.exception(
                "health report on %s (%d bytes) dropped: ingest raised", msg.topic, len(msg.payload)
            )

    def _on_paho_log(self, _client: mqtt.Client, _u: object, level: int, line: str) -> None:
        """paho's line at its level, but for the outage's: see the module's contract."""
        if line.startswith("Client is not connected"):
            return
        if line.startswith(SOCKET_LOSS):
            self._socket_loss = line
            return
        paho_log.log(mqtt.LOGGING_LEVEL[LogLevel(level)], "%s", line)

    def _on_connect(
        self, client: mqtt.Client, _u: object, _f: object, reason: Any, _p: object = None
    ) -> None:
        if reason.is_failure:
            self.outage.attempt_failed(reason)
            return
        self.outage.connected()
        self._set(connected=True, subscribed=False, subscribed_at=None)
        _rc, mid = client.subscribe(f"peergrid/{self.board.feeder}/health/+", qos=0)
        with self._lock:
            self._subscription = mid

    def _on_subscribe(
        self, _client: mqtt.Client, _u: object, mid: int, reasons: list[Any], _p: object = None
    ) -> None:
        """The broker's SUBACK: granted (a QoS), or refused (an ACL: the listener would hear nothing)."""
        with self._lock:
            ours = mid == self._subscription
        if not ours:
            return
        granted = bool(reasons) and not any(r.is_failure for r in reasons)
        if not granted:
            log.error("the broker refused the health subscription: %s", [str(r) for r in reasons])
        self._set(subscribed=granted, subscribed_at=self.clock() if granted else None)

    def _on_connect_fail(self, _client: mqtt.Client, _u: object) -> None:
        self.outage.attempt_failed("the connect attempt failed")

    def _on_disconnect(
        self, _client: mqtt.Client, _u: object, _f: object, reason: Any, _p: object = None
    ) -> None:
        self._set(connected=False, subscribed=False, subscribed_at=None)
        if reason.is_failure:  # not our own disconnect()
            self.outage.lost(self._socket_loss or reason)
        self._socket_loss = None

    def _run(self) -> None:
        error = None
        try:
            self.client.loop_forever(retry_first_connection=True)
        except BaseException as exc:  # the loop is over either way; health must say why
            error = f"{type(exc).__name__}: {exc}"
            log.exception("the health listener's network loop ended")
        finally:
            self._set(alive=False, connected=False, subscribed=False, subscribed_at=None, error=error)

    def start(self) -> None:
        self.client.connect_async(self.host, self.port, keepalive=30)
        self._set(started=True, alive=True)
        self._thread = threading.Thread(target=self._run, name="dso-health-listener", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.client.disconnect()  # ends loop_forever, also while it waits to reconnect
        if self._thread is not None:
            self._thread.join(timeout)

    def health(self) -> dict[str, Any]:
        """Whether it still hears the feeder (`listener_health`) with the board's counts, now."""
        return listener_health(self.state, self.board.counts(), self.silent_after_s, self.clock())
