"""The edge's closer waits for the chain's close rule (genesis close_on_clock / close_after_ms, review13
F1b): `earliest_close_ms` is the first block time the contract takes a `trade` of the interval."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ledger"))

from ledger_fixtures import T0, Keys, make_genesis

from peergrid_edge.chain_closing import earliest_close_ms
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.genesis import Account, Params

INTERVAL, WINDOW = 60_000, 15_000


def _chain(**params: int) -> LocalChain:
    accounts = (
        Account(Keys.dso.public, ("dso",), "dso"),
        Account(Keys.p1.public, ("anonym",), "seller"),
        Account(Keys.p3.public, ("anonym",), "buyer", balance=10**9),
    )
    both = Params(settle_by_both=1, settle_epoch_ms=T0, settle_interval_ms=INTERVAL, max_reopens=1, **params)
    return LocalChain(make_genesis(accounts=accounts, params=both), Keys.authority)


def test_no_rule_no_wait() -> None:
    c = _chain()
    assert earliest_close_ms(c.view, c.genesis, 3) is None


def test_the_interval_start_plus_the_window_and_a_reopening_restarts_it() -> None:
    c = _chain(close_on_clock=1, close_after_ms=WINDOW)
    assert earliest_close_ms(c.view, c.genesis, 3) == T0 + 3 * INTERVAL + WINDOW
    now = T0 + 3 * INTERVAL + WINDOW
    offer = {"interval": 3, "round": 1, "price": 100, "quantity": 10, "clean": False}
    assert c.sign_and_submit(Keys.p1, "offer", offer, time_ms=now).ok
    bid = {"interval": 3, "round": 0, "demands": [{"seller": Keys.p1.public, "quantity": 10}]}
    assert c.sign_and_submit(Keys.p3, "bid", bid, time_ms=now).ok
    c.seal(now)
    assert c.sign_and_submit(Keys.p1, "trade", {"interval": 3}, time_ms=now + 1).ok
    c.seal(now + 1)
    reopen = {"interval": 3, "iteration": 1, "ref": b"\x03" * 32, "until": now + 10 * INTERVAL}
    assert c.sign_and_submit(Keys.dso, "market.reopen", reopen, time_ms=now + 2).ok
    c.seal(now + 2)
    assert earliest_close_ms(c.view, c.genesis, 3) == now + 2 + WINDOW
