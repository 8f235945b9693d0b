"""The live market view lists the intervals a day-ahead exchange session's clear closed (U3, session 23).

In a `--dayahead` lab the clear closes the whole day at once (window [36, 95]) and no interval is bargained
intraday, so the view, which listed only intervals with an `offer` or `move`, said "waiting for the first
interval's bargaining on the MGMC chain…" all day while the summary lines showed 5 forward trades an interval.
A real market and exchange contract on a LocalChain: a two-member session over intervals 10 and 11 whose clear
trades 900 Wh in 10 and nothing in 11, beside interval 9 bargained intraday.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from peergrid_dso.console.live_market import LiveMarket
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.genesis import Account, Genesis, Params
from peergrid_ledger.keys import Keypair

NOW_MS = 10**12


def test_a_cleared_interval_is_listed_with_its_session_beside_a_bargained_one() -> None:
    authority, coordinator, seller, buyer = (Keypair.generate() for _ in range(4))
    genesis = Genesis(
        chain="mgmc", time=0, authorities=(authority.public,),
        accounts=(Account(coordinator.public, ("dso",)), Account(seller.public, ("anonym",), balance=10**9),
                  Account(buyer.public, ("anonym",), balance=10**9)),
        contracts=("market", "exchange"), params=Params(),
    )  # fmt: skip
    chain = LocalChain(genesis, authority)
    replica = SimpleNamespace(
        store=SimpleNamespace(head_height=lambda: chain.height, block=chain.block),
        app=SimpleNamespace(state=chain.state, genesis=chain.genesis),
    )
    view = LiveMarket(replica, lambda fn: fn(), {seller.public.hex(): "mg1", buyer.public.hex(): "mg2"}, 0.25)

    def post(who: Keypair, kind: str, body: dict[str, Any]) -> None:
        result = chain.sign_and_submit(who, kind, body, NOW_MS)
        assert result.ok, (kind, result)
        chain.seal(NOW_MS)

    session, positions = "day-1", {seller: [900, 0], buyer: [-900, 0]}
    post(coordinator, "exchange.open", {"session": session, "first_interval": 10, "rho": 5_000_000,
         "members": [seller.public, buyer.public], "prices": [50_000_000, 50_000_000]})  # fmt: skip
    for m, q in positions.items():
        post(m, "exchange.position", {"session": session, "iteration": 0, "positions": q})
    post(coordinator, "exchange.step", {"session": session, "iteration": 0, "rho": 5_000_000})
    post(coordinator, "exchange.close", {"session": session, "iteration": 1})
    for m, q in positions.items():
        post(m, "exchange.accept", {"session": session, "positions": q, "clean": False})
    assert view.report()["waiting"]  # nothing closed yet
    post(coordinator, "exchange.clear", {"session": session})
    post(seller, "offer", {"interval": 9, "round": 1, "price": 200, "quantity": 900, "clean": True})
    post(buyer, "bid", {"interval": 9, "round": 1, "demands": [{"seller": seller.public, "quantity": 500}]})
    post(buyer, "trade", {"interval": 9})

    market = view.report()
    assert market["status"] == "ready"
    bargained, forward = market["intervals"]  # 11: no trade, left open by the clear, not listed
    assert (bargained["interval"], bargained["forward"], bargained["rounds"]) == (9, None, 1)
    assert (forward["interval"], forward["forward"], forward["closed"]) == (10, "day-1", True)
    assert forward["rounds"] == 0 and forward["prices"] == []
    assert forward["trades"] == [{"seller": "mg1", "buyer": "mg2", "quantity_kwh": 0.9, "price": 0.05}]
