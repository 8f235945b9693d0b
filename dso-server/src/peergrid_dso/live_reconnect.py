"""How the DSO's MQTT connections come back after a lost connection: bounded, and configured as the edge's.

Promises: paho waits a first delay after a lost connection and doubles it up to a bound, so a broker back after
an outage is found within that bound. The bound is the config's `broker.reconnect_max_s` (the edge's key,
T9) for both of the DSO's connections - the health listener's (first wait `RECONNECT_MIN_S`, else bound
`LISTENER_RECONNECT_MAX_S`, the edge's; it was 30 s, hard-coded) and the node's ledger transport's (first
wait `LEDGER_RECONNECT_MIN_S`, else bound `LEDGER_RECONNECT_MAX_S`, as `MqttTransport` has it). A bound below
`RECONNECT_MIN_S`, NaN or infinite is refused with a `ValueError` naming `reconnect_max_s` (the config's
field refuses it first). Holds no connection; sets paho's back-off on the client it is given.
"""

from __future__ import annotations

from typing import Any

RECONNECT_MIN_S = 1.0  # the health listener's first wait, as the edge link's; no bound below it
LISTENER_RECONNECT_MAX_S = 10.0  # the health listener's bound unless the config sets one
LEDGER_RECONNECT_MIN_S = 0.1  # the ledger transport's first wait (MqttTransport's)
LEDGER_RECONNECT_MAX_S = 2.0  # the ledger transport's bound unless the config sets one (as before)


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
