"""H5 (session 18): the DSO's two MQTT connections reconnect with a bounded back-off, set as the edge's is
(`broker.reconnect_max_s`, T9): the health listener's (paho: 1 s, doubling up to 30 s, hard-coded before; then
up to the bound, 10 s unless configured, the edge's; now 0.1 s up to 2 s unless configured, the ledger
transport's: C3) and the node's ledger transport's (0.1 s up to 2 s, not
configurable before; now the bound where configured). A bound below 1 s, NaN or infinite is refused naming
`reconnect_max_s`. paho's own waits under that bound are T9's test (tests/edge/test_edge_link_reconnect.py)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from peergrid_dso.live_reconnect import (
    LEDGER_RECONNECT_MAX_S,
    LEDGER_RECONNECT_MIN_S,
    ledger_reconnect,
    loop_setting,
)
from peergrid_dso.services.health import MqttHealthListener, NodeBoard
from peergrid_ledger.consensus.mqtt_transport import MqttTransport


def delays(client: object) -> tuple[float, float]:
    return client._reconnect_min_delay, client._reconnect_max_delay  # type: ignore[attr-defined]


def test_the_health_listener_backs_off_as_the_ledger_transport_or_to_the_configured_bound() -> None:
    board = NodeBoard("feeder1")
    unset = MqttHealthListener(board, "127.0.0.1", 9, "dso-health").client
    assert delays(unset) == (LEDGER_RECONNECT_MIN_S, LEDGER_RECONNECT_MAX_S) == (0.1, 2.0)
    bounded = MqttHealthListener(board, "127.0.0.1", 9, "dso-health", reconnect_max_s=2.5)
    assert delays(bounded.client) == (LEDGER_RECONNECT_MIN_S, 2.5) and bounded.reconnect_max_s == 2.5
    for bad in (0.5, 0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="reconnect_max_s"):
            MqttHealthListener(board, "127.0.0.1", 9, "dso-health", reconnect_max_s=bad)


def test_the_nodes_ledger_transport_takes_the_configured_bound_and_keeps_its_own_without_one() -> None:
    def transport() -> MqttTransport:
        return MqttTransport("127.0.0.1", 9, "feeder1", b"\x01" * 32, ["dso"], lambda *_: None)

    unset = transport()
    assert ledger_reconnect(unset, None) == 2.0
    assert delays(unset.client) == (LEDGER_RECONNECT_MIN_S, 2.0)  # as MqttTransport has it
    bounded = transport()
    assert ledger_reconnect(bounded, 7.5) == 7.5 and delays(bounded.client) == (LEDGER_RECONNECT_MIN_S, 7.5)
    for bad in (0.2, math.nan, math.inf):
        with pytest.raises(ValueError, match="reconnect_max_s"):
            ledger_reconnect(transport(), bad)


def test_the_server_configs_bound_reaches_the_loops_node_settings_where_it_is_set() -> None:
    assert loop_setting(SimpleNamespace(reconnect_max_s=4.0)) == {"broker_reconnect_max_s": 4.0}
    assert loop_setting(SimpleNamespace(reconnect_max_s=None)) == {}  # unset: each keeps its own
    assert loop_setting(SimpleNamespace()) == {}
