"""R36 (on 11aea61/3bb8a1b): an interval reopened and re-bargaining is not `closed`: its superseded trades are gone
from the interval's record, so the Market view would title it 'no agreement' while its MGs bargain again."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any


def test_a_reopened_interval_bargaining_again_is_not_closed(monkeypatch: Any) -> None:
    from peergrid_dso.console.live_market import LiveMarket
    from peergrid_ledger import query
    from peergrid_ledger.contracts import market_state

    a, dso = b"\x0a" * 32, b"\xdd" * 32

    def tx(kind: str, sender: bytes, **body: Any) -> Any:
        return SimpleNamespace(kind=kind, sender=sender, body=body)

    blocks = [
        [tx("offer", a, interval=40, round=1, price=150, quantity=20_000, clean=True)],
        [tx("move", a, interval=40, round=2, price=160, quantity=20_000), tx("trade", a, interval=40)],
        [tx("market.reopen", dso, interval=40, iteration=1, until=0)],
        [tx("move", a, interval=40, round=3, price=170, quantity=20_000)],
    ]  # fmt: skip
    store = SimpleNamespace(
        head_height=lambda: len(blocks), block=lambda h: SimpleNamespace(txs=blocks[h - 1])
    )
    monkeypatch.setattr(query, "trades", lambda state, t: [])  # the reopening deleted the interval's record
    monkeypatch.setattr(market_state, "reopening", lambda state, t: {"round": 2, "reopens": 1})
    genesis = SimpleNamespace(params=SimpleNamespace(max_rounds=0))
    replica = SimpleNamespace(store=store, app=SimpleNamespace(state=None, genesis=genesis))
    (iv,) = LiveMarket(replica, lambda fn: fn(), {a.hex(): "mg1"}, 0.25).report()["intervals"]
    assert iv["trades"] == [] and iv["reopened_at"] == 2
    assert not iv["closed"], iv  # market.js: closed -> 'no agreement (3 rounds of offers)'
