"""D9: the console's live Market view says an interval the DSO node missed is missed, and why.

D8's record of an interval that ended while the DSO node was down (`interval_missed.missed_record`) shows as missed
on the Feeder view since C5 (adf6ec1); the Market view (`console.live_market`), which reads the MGMC chain, said
nothing of it: an interval the MGMCs traded with no network check read as any other, and one nobody bargained in
was not listed at all. Now its record carries `missed` (why) and it is listed either way. A real market contract
on a LocalChain stands in for the DSO's MGMC-chain replica; the lab server's console shows it, handed the node's
records as the live node hands them (`ConsoleState.on_interval`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from console.helpers import PASSWORD, USERS, fast_hasher
from console.lab_client import lab_client
from console.test_console_api import login
from fastapi.testclient import TestClient

from peergrid_dso.auth.users import UserStore
from peergrid_dso.console.live_market import LiveMarket
from peergrid_dso.interval_missed import DOWN, missed_record
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.genesis import Account, Genesis, Params
from peergrid_ledger.keys import Keypair

NOW_MS = 10**12


class Market:
    """A market contract on a LocalChain and the live view of it (mg1 sells to mg2)."""

    def __init__(self) -> None:
        authority, self.seller, self.buyer = (Keypair.generate() for _ in range(3))
        genesis = Genesis(
            chain="mgmc", time=0, authorities=(authority.public,),
            accounts=(Account(self.seller.public, ("anonym",), balance=10**9),
                      Account(self.buyer.public, ("anonym",), balance=10**9)),
            contracts=("market",), params=Params(),
        )  # fmt: skip
        self.chain = LocalChain(genesis, authority)
        replica = SimpleNamespace(
            store=SimpleNamespace(head_height=lambda: self.chain.height, block=self.chain.block),
            app=SimpleNamespace(state=self.chain.state, genesis=self.chain.genesis),
        )
        names = {self.seller.public.hex(): "mg1", self.buyer.public.hex(): "mg2"}
        self.view = LiveMarket(replica, lambda fn: fn(), names, 0.25)

    def bargain(self, t: int) -> None:
        """One round in interval t: mg1 offers 900 Wh, mg2 takes 500, and the trade closes it."""
        for who, kind, body in (
            (self.seller, "offer", {"interval": t, "round": 1, "price": 200, "quantity": 900, "clean": True}),
            (self.buyer, "bid", {"interval": t, "round": 1, "demands": [{"seller": self.seller.public, "quantity": 500}]}),
            (self.buyer, "trade", {"interval": t}),
        ):  # fmt: skip
            result = self.chain.sign_and_submit(who, kind, body, NOW_MS)
            assert result.ok, (kind, result)
            self.chain.seal(NOW_MS)


def users_at(folder: Path) -> Path:
    path = folder / "users.json"
    store = UserStore(path, hasher=fast_hasher())
    for name, role in USERS.items():
        store.add(name, role, PASSWORD)
    return path


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[TestClient, Any, Market]]:
    """The lab server's console showing a live market: (client, console state, market)."""
    market = Market()
    with lab_client(users_at(tmp_path)) as client:
        state = client.app.state.console  # type: ignore[attr-defined]
        state.live_market = market.view
        login(client, "vera")
        yield client, state, market


def intervals(client: TestClient) -> dict[int, dict[str, Any]]:
    view = client.get("/console/api/market").json()
    assert view["status"] == "ready", view
    return {iv["interval"]: iv for iv in view["intervals"]}


def test_an_interval_nobody_bargained_in_while_the_node_was_down_is_listed_missed_with_why(
    live: tuple[TestClient, Any, Market],
) -> None:
    client, state, market = live
    market.bargain(12)
    state.on_interval({"interval": 12, "secure": True, "height": 40, "injections_kw": {"mg1": 80.0}})
    assert list(intervals(client)) == [12]  # the report of this head is kept: a missed record adds no block
    state.on_interval(missed_record(13, ended=1_000.0, now=1_200.0))
    shown = intervals(client)
    assert list(shown) == [12, 13]  # before: 13 not listed at all
    assert shown[13]["missed"] == DOWN and shown[13]["trades"] == [] and shown[13]["rounds"] == 0
    assert shown[12]["missed"] is None and len(shown[12]["trades"]) == 1


def test_an_interval_traded_without_the_network_check_says_missed_beside_its_trades(
    live: tuple[TestClient, Any, Market],
) -> None:
    client, state, market = live
    market.bargain(14)  # the MGMCs traded it; the DSO node was down when it ended
    state.on_interval(missed_record(14, ended=1_000.0, now=1_200.0))
    (shown,) = intervals(client).values()
    assert shown["missed"] == DOWN  # before: no word of it, its trades read as checked ones
    assert shown["trades"] == [{"seller": "mg1", "buyer": "mg2", "quantity_kwh": 0.5, "price": 0.2}]
