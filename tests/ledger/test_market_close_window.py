"""review13 F1b: with genesis `close_on_clock` (on the interval clock) no `trade` closes an interval before it starts (plus the
genesis' bargaining window `close_after_ms`), so no key pre-closes a future interval with a 1-Wh offer; with
the window set, a `market.reopen` restarts it, so nobody closes a reopened interval before anyone could
re-bargain (`market_closing._bargained`)."""

from __future__ import annotations

from typing import Any

import pytest
from ledger_fixtures import T0, Keys, make_genesis, reason
from test_settle_both import BUYER, SELLER, Clock, both_chain

from peergrid_ledger import query
from peergrid_ledger.contracts import market
from peergrid_ledger.genesis import Genesis, GenesisError, Params
from peergrid_ledger.results import Reason

INTERVAL = 60_000
WINDOW = 20_000
OFFER = {"interval": 3, "round": 0, "price": 200, "quantity": 1, "clean": False}
BID = {"interval": 3, "round": 0, "demands": [{"seller": SELLER.public, "quantity": 1}]}


def _chain(**more: int) -> Any:
    return both_chain(settle_epoch_ms=T0, settle_interval_ms=INTERVAL, close_on_clock=1, **more)


def test_a_future_interval_cannot_be_pre_closed() -> None:
    c = _chain()
    clock = Clock(c, T0 + 2 * INTERVAL)  # during interval 2
    assert clock.send(SELLER, OFFER, "offer").ok
    early = clock.send(SELLER, {"interval": 3}, "trade")
    assert reason(early) is Reason.RULE_VIOLATION and f"starts at {T0 + 3 * INTERVAL}" in str(early)
    assert not market.closed(c.state, 3)
    assert clock.send(BUYER, BID, "bid").ok  # the interval stays open to everyone
    clock.now = T0 + 3 * INTERVAL - 1  # sent at the start
    assert clock.send(SELLER, {"interval": 3}, "trade").ok
    assert len(query.trades(c.state, 3)) == 1


def test_the_window_holds_the_close_after_the_start() -> None:
    c = _chain(close_after_ms=WINDOW)
    clock = Clock(c, T0 + 3 * INTERVAL)
    assert clock.send(SELLER, OFFER, "offer").ok
    assert clock.send(BUYER, BID, "bid").ok
    clock.now = T0 + 3 * INTERVAL + WINDOW - 2
    assert reason(clock.send(SELLER, {"interval": 3}, "trade")) is Reason.RULE_VIOLATION
    assert clock.send(BUYER, {"interval": 3}, "trade").ok  # block time start + window


@pytest.mark.parametrize("window", [0, WINDOW])
def test_a_reopening_restarts_the_window(window: int) -> None:
    c = _chain(close_after_ms=window, max_reopens=2) if window else _chain(max_reopens=2)
    clock = Clock(c, T0 + 3 * INTERVAL + window)
    assert clock.send(SELLER, OFFER, "offer").ok
    assert clock.send(BUYER, BID, "bid").ok
    assert clock.send(SELLER, {"interval": 3}, "trade").ok
    reopen = {"interval": 3, "iteration": 1, "ref": b"\x01" * 32, "until": T0 + 10 * INTERVAL}
    assert clock.send(Keys.dso, reopen, "market.reopen").ok
    at = clock.now
    record = market.reopening(c.state, 3)
    assert record is not None and record["at"] == at
    instant = clock.send(SELLER, {"interval": 3}, "trade")
    if window:
        assert reason(instant) is Reason.RULE_VIOLATION and f"reopened at {at}" in str(instant)
        clock.now = at + window - 1
        assert clock.send(SELLER, {"interval": 3}, "trade").ok
    else:
        assert instant.ok


def test_the_rule_and_window_are_late_settle_params() -> None:
    plain = make_genesis(params=Params(settle_by_both=1, settle_interval_ms=INTERVAL))
    encoded = plain.to_value()["params"]
    assert "close_on_clock" not in encoded and "close_after_ms" not in encoded  # defaults: old hashes stand
    with pytest.raises(GenesisError, match="close_on_clock: only with settle_by_both"):
        Params(close_on_clock=1)
    with pytest.raises(GenesisError, match="close_on_clock: expected 0 or 1"):
        Params(settle_by_both=1, settle_interval_ms=INTERVAL, close_on_clock=2)
    with pytest.raises(GenesisError, match="close_after_ms: only with close_on_clock"):
        Params(settle_by_both=1, settle_interval_ms=INTERVAL, close_after_ms=WINDOW)
    with pytest.raises(GenesisError, match="close_after_ms: expected 0 to"):
        Params(settle_by_both=1, settle_interval_ms=INTERVAL, close_on_clock=1, close_after_ms=10**12)
    set_ = Params(settle_by_both=1, settle_interval_ms=INTERVAL, close_on_clock=1, close_after_ms=WINDOW)
    assert Params.from_value(set_.to_value()) == set_
    assert Genesis.decode(make_genesis(params=set_).encode()).params.close_after_ms == WINDOW


def test_without_the_flag_trade_has_no_time_rule() -> None:
    c = both_chain(settle_epoch_ms=T0, settle_interval_ms=INTERVAL)
    clock = Clock(c, T0 + 2 * INTERVAL)
    assert clock.send(SELLER, OFFER, "offer").ok
    assert clock.send(SELLER, {"interval": 3}, "trade").ok  # the old rule: any time
    assert clock.send(BUYER, BID, "bid").ok is False  # closed: pre-closed, as review13 F1b showed
    assert make_genesis(params=Params()).params.interval_start(3) is None


def test_the_lab_closes_on_the_clock() -> None:
    """The lab's MGMC genesis sets the rule: its edges bargain interval t from the lab's start of t."""
    from peergrid_sim.lab_chains import SettleByBoth

    lab = SettleByBoth.for_lab(6.0, 36, 1000.5).params()
    assert lab["close_on_clock"] == 1
    params = Params(**lab)
    assert params.interval_start(36) == 1_000_500 and params.close_after_ms == 0
