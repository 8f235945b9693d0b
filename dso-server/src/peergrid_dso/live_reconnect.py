"""How the DSO's MQTT connections come back after a lost connection: bounded, and configured as the edge's.

Promises: paho waits a first delay after a lost connection and doubles it up to a bound, so a broker back after
an outage is found within that bound. The bound is the config's `broker.reconnect_max_s` (the edge's key,
T9) for both of the DSO's connections, and both wait the same without it: first `LEDGER_RECONNECT_MIN_S`
(0.1 s), bound `LEDGER_RECONNECT_MAX_S` (2 s), as `MqttTransport` has it - the health listener's
(`LISTENER_RECONNECT_MIN_S`, `LISTENER_RECONNECT_MAX_S`) too, since the console says the broker is back only
once both connections are (C3: with the edge's 1 s doubling to 10 s, a 15-s outage had the listener back 9.9 s
after the broker, the ledger transport 0.06 s; it was 30 s, hard-coded, before that). A bound below
`RECONNECT_MIN_S`, NaN or infinite is refused with a `ValueError` naming `reconnect_max_s` (the config's
field refuses it first). `ledger_reconnect` holds no connection: it sets paho's back-off on the client given.
Whether the node's ledger transport came back is `LedgerLink`'s to say, for `/api/health`'s `loop.ledger`
(`ledger_health`, pure): `alive` (paho's network thread runs), `connected` (the transport's `connected`: the
broker granted its subscriptions on this connection), `down_s` (how long it has not been, since its start or
the loss of its last connection; null while connected), `down_after_s` (the bound: the config's
`loop.ledger_down_after_s`, `LEDGER_DOWN_AFTER_S` unless set), `disconnects`, `subscribe_refused` (SUBACKs that
refused its topics; the reason names it while the present connection's were refused: on the broker but deaf), and `state` - `connected`,
`starting` (not started yet), `connecting` (down, within the bound), `disconnected` (down past it) or `dead`
(the thread ended: nothing is sent or heard again, and `connected` is left as it was) - with `ok` false and a
`reason` for the last two. Time is injected (`clock`, monotonic s).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

RECONNECT_MIN_S = 1.0  # no configured bound below it (the edge link's first wait; the config's `ge`)
LEDGER_RECONNECT_MIN_S = 0.1  # the ledger transport's first wait (MqttTransport's)
LEDGER_RECONNECT_MAX_S = 2.0  # the ledger transport's bound unless the config sets one (as before)
# the health listener's: the ledger transport's, so the two are back as one (see the module's contract)
LISTENER_RECONNECT_MIN_S = LEDGER_RECONNECT_MIN_S
LISTENER_RECONNECT_MAX_S = LEDGER_RECONNECT_MAX_S
# how long the node's ledger transport may be down before /api/health says degraded (the config's
# `loop.ledger_down_after_s` by default): five of its reconnect bound's waits (2 s), and a few of the chain's
# block periods (1-2 s) missed. Its own setting, not the health listener's `silent_after_s`: that one is how long
# the feeder may be silent, which a pilot reporting once an interval sets to minutes (review34 R34-2)
LEDGER_DOWN_AFTER_S = 10.0


def reconnect_bound(bound: float | None, default: float) -> float:
    """`default` for None, else `bound` when it is at least `RECONNECT_MIN_S` and finite."""
    if bound is None:
        return default
    if not RECONNECT_MIN_S <= bound < float("inf"):  # NaN fails too
        raise ValueError(f"reconnect_max_s {bound} is not a bound of at least {RECONNECT_MIN_S} s")
    return float(bound)


def ledger_reconnect(transport: Any, bound: float | None) -> float:
    """Hand the bound (None: `LEDGER_RECONNECT_MAX_S`) to the node's ledger transport; returns it."""
    chosen = reconnect_bound(bound, LEDGER_RECONNECT_MAX_S)
    # paho annotates int seconds but only compares, doubles and sleeps them: a float bound works as given
    transport.client.reconnect_delay_set(min_delay=LEDGER_RECONNECT_MIN_S, max_delay=chosen)
    return chosen


def loop_setting(broker: Any) -> dict[str, Any]:
    """The server config's `broker.reconnect_max_s` for the loop's node settings, where it sets one."""
    bound = getattr(broker, "reconnect_max_s", None)
    return {} if bound is None else {"broker_reconnect_max_s": bound}


def ledger_health(
    *,
    started: bool,
    alive: bool,
    connected: bool,
    down_s: float | None,
    down_after_s: float,
    disconnects: int,
    subscribe_refused: int = 0,
    refused_now: bool = False,
) -> dict[str, Any]:
    """The node's ledger transport's section of `/api/health` (see the module's contract)."""
    reason = None
    if not started:
        state = "starting"
    elif not alive:
        state = "dead"
        reason = "the ledger transport's network thread ended: the node no longer hears or sends the chain"
    elif connected:
        state = "connected"
    elif down_s is not None and down_s > down_after_s:
        state = "disconnected"
        reason = (
            f"the ledger transport has been off the broker for {down_s:.1f} s (more than {down_after_s:g} s)"
            if not refused_now  # on the broker, this connection's subscriptions refused: deaf
            else f"the ledger transport has not heard the chain for {down_s:.1f} s (more than {down_after_s:g} s):"
            f" the broker refused its subscriptions {subscribe_refused} time(s) (its log names the topics)"
        )
    else:
        state = "connecting"
    return {
        "state": state, "ok": reason is None, "alive": alive, "connected": connected,
        "down_s": None if connected or down_s is None else round(down_s, 3), "down_after_s": down_after_s,
        "disconnects": disconnects, "subscribe_refused": subscribe_refused, "reason": reason,
    }  # fmt: skip


class LedgerLink:
    """Starts the node's ledger transport (`MqttTransport`) and says whether it still reaches the broker."""

    def __init__(self, transport: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self.transport, self.clock = transport, clock
        self._started = False
        self._thread: Any = None  # paho's network thread, once started
        self._down_since: float | None = None  # since the start, or since the last connection was lost
        client = transport.client
        lost = client.on_disconnect  # the transport's own: it clears `connected`

        def on_disconnect(*args: Any) -> None:  # on paho's thread, before `connected` is cleared
            if transport.connected.is_set():  # a connection that could hear the chain: down from now
                self._down_since = self.clock()
            lost(*args)

        client.on_disconnect = on_disconnect

    def start(self) -> None:
        self._down_since = self.clock()
        self.transport.start()
        # paho keeps no public handle on the thread loop_start made, and sets its `_thread` to None once that
        # thread ends: kept here, it tells a thread that died from one not started (None: it ended at once)
        self._thread = getattr(self.transport.client, "_thread", None)
        self._started = True

    def health(self, down_after_s: float) -> dict[str, Any]:
        # `connected` before `_down_since`: paho's thread moves `_down_since` before it clears `connected`, so a
        # cleared `connected` is read with its own loss's time, never the one before (the start's: hours "down")
        connected = self.transport.connected.is_set()
        thread, since = self._thread, self._down_since
        return ledger_health(
            started=self._started, alive=thread is not None and thread.is_alive(), connected=connected,
            down_s=None if since is None else max(0.0, self.clock() - since), down_after_s=down_after_s,
            disconnects=int(self.transport.stats.get("disconnects", 0)),
            subscribe_refused=int(self.transport.stats.get("subscribe_refused", 0)),
            refused_now=bool(getattr(self.transport, "refused", False)),
        )  # fmt: skip
