"""What the console's header is told of the DSO server's broker connections (`console.broker_link`), pure: the
health listener's and the loop node's ledger transport's states as `/api/health` reads them, with stand-ins."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from peergrid_dso.console.broker_link import broker_link, told_again


def listener(state: str, connected: bool, down_since: float | None = None, now: float = 100.0) -> Any:
    return SimpleNamespace(
        health=lambda: {"state": state, "connected": connected},
        outage=SimpleNamespace(down_since=down_since),
        clock=lambda: now,
    )


def loop(state: str, connected: bool, down_s: float | None = None) -> Any:
    return SimpleNamespace(ledger=lambda: {"state": state, "connected": connected, "down_s": down_s})


def test_both_connected_is_connected_and_nothing_held_is_nothing_to_tell() -> None:
    assert broker_link(listener("listening", True), loop("connected", True)) == {
        "connected": True, "lost": [], "down_s": None,
    }  # fmt: skip
    assert broker_link(None, None) == {"connected": None, "lost": [], "down_s": None}
    assert broker_link(None, SimpleNamespace())["connected"] is None  # a loop without a ledger link: none


def test_a_lost_connection_is_named_with_the_longest_time_down() -> None:
    link = broker_link(listener("disconnected", False, down_since=88.0), loop("connecting", False, 4.04))
    assert link == {"connected": False, "lost": ["ledger link", "health listener"], "down_s": 12.0}
    link = broker_link(listener("listening", True), loop("disconnected", False, 11.26))
    assert link == {"connected": False, "lost": ["ledger link"], "down_s": 11.3}


def test_starting_is_not_lost_and_dead_is_even_when_the_transport_kept_its_flag() -> None:
    assert broker_link(listener("starting", False), loop("starting", False, 0.5))["connected"] is True
    dead = broker_link(listener("dead", False), loop("dead", True, None))
    assert dead == {"connected": False, "lost": ["ledger link", "health listener"], "down_s": None}
    # a listener before its first refused attempt told: off, since when it cannot say (not lost)
    assert broker_link(listener("disconnected", False), None)["connected"] is True


def test_told_at_the_first_reading_and_when_the_state_moves_not_as_time_passes() -> None:
    up = {"connected": True, "lost": [], "down_s": None}
    down = {"connected": False, "lost": ["ledger link"], "down_s": 1.0}
    assert told_again(None, up) and told_again(up, down) and told_again(down, up)
    assert not told_again(down, down | {"down_s": 9.0})
    assert told_again(down, down | {"lost": ["ledger link", "health listener"]})
    assert not told_again(None, {"connected": None, "lost": [], "down_s": None})
