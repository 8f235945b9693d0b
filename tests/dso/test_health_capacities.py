"""`/api/health` says which MGs' configured connection capacities stand final on the MGMC chain (L10): in its
loop section `capacities`, per MG whose `loop.mgs` entry names `capacity_kw`, the first interval from which
that figure stands for good (`start_postings.standing_from`), null while it does not; no such key where the
node posts none (no MG names one, or an MGMC chain without the uplift contract).

Over a real market/exchange/uplift chain (`LocalChain`) whose capacities the real `CapacityPoster` posts,
`start_postings.readiness` of a node made of it and a real DSO chain; a capacity posted after the MG's first position
stands only from the interval after it, and the figure says so; `EmbeddedLoop.readiness` on a running event
loop and the route carry it. Hypothesis: `standing_from` against the per-interval rule of `market.capacity`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from peergrid_dso.start_postings import readiness, standing_from
from peergrid_dso.tariff import CapacityPoster
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts.market_state import standing_capacity
from peergrid_ledger.genesis import Account, Genesis
from peergrid_ledger.keys import Keypair

from .test_capacity_poster import NOW_MS, Lab, run
from .test_health_readiness import embedded
from .test_health_readiness import running_loop as running_loop  # a fixture: the node's loop

FIRST = 36


class Node:
    """What `start_postings.readiness` reads of a `DsoNode`: its config's MGs (`capacity_kw` as given), its DSO-chain
    replica (nothing enrolled: an empty DSO chain), its loop's pricer (none) and capacity poster (the real
    one, built from the config as `DsoLoop` builds it: None when no MG names a capacity)."""

    def __init__(
        self, kw: dict[str, float | None], contracts: tuple[str, ...] = ("market", "exchange", "uplift")
    ) -> None:
        self.lab = Lab(contracts)
        dso = Keypair.generate()
        genesis = Genesis(
            chain="dso-test", time=0, authorities=(dso.public,), accounts=(Account(dso.public, ("dso",)),)
        )
        self.settings = self.lab.settings(kw, FIRST)
        self.replica = SimpleNamespace(app=SimpleNamespace(state=LocalChain(genesis, dso).state))
        poster = CapacityPoster.from_settings(self.settings, self.lab.adapter, self.lab.dso)
        self.loop = SimpleNamespace(pricer=None, capacity=poster, current=None)

    def post(self) -> None:
        assert self.loop.capacity is not None
        self.lab.adapter._app.state = self.lab.chain.state
        run(self.loop.capacity)

    def offer(self, mg: str, interval: int) -> None:
        """A position of `mg` in `interval` (its last traded interval from then on)."""
        body = {"interval": interval, "round": 1, "price": 100, "quantity": 10, "clean": True}
        assert self.lab.chain.sign_and_submit(self.lab.anonyms[mg], "offer", body, NOW_MS).ok
        self.lab.chain.seal(NOW_MS)
        self.lab.adapter._app.state = self.lab.chain.state


def test_capacities_say_where_each_configured_figure_stands_and_null_until_it_does() -> None:
    node = Node({"mg1": 5.0, "mg2": 3.0})
    found = readiness(node)  # type: ignore[arg-type]
    assert found == {"enrolled": [], "pricing": False, "tariffs_through": None,
                     "capacities": {"mg1": None, "mg2": None}}  # fmt: skip
    node.post()
    assert readiness(node)["capacities"] == {"mg1": FIRST, "mg2": FIRST}  # type: ignore[arg-type]
    # the config changes mg2's figure: until the new one is posted, the chain's is not the configured one
    node.settings.mgs["mg2"] = node.settings.mgs["mg2"].model_copy(update={"capacity_kw": 2.0})
    node.loop.capacity = CapacityPoster.from_settings(node.settings, node.lab.adapter, node.lab.dso)
    assert readiness(node)["capacities"] == {"mg1": FIRST, "mg2": None}  # type: ignore[arg-type]
    node.post()
    assert readiness(node)["capacities"] == {"mg1": FIRST, "mg2": FIRST}  # type: ignore[arg-type]


def test_a_capacity_that_landed_after_the_mgs_first_position_stands_only_from_the_interval_after_it() -> None:
    node = Node({"mg1": 5.0, "mg2": 3.0})
    node.offer("mg1", 40)  # mg1 traded interval 40 before the DSO's capacity landed: its bound is none there
    node.post()
    assert readiness(node)["capacities"] == {"mg1": 41, "mg2": FIRST}  # type: ignore[arg-type]


def test_only_the_mgs_that_name_a_capacity_and_none_where_the_node_posts_none() -> None:
    assert readiness(Node({"mg1": 5.0}))["capacities"] == {"mg1": None}  # type: ignore[arg-type]
    none_named = Node({})
    assert none_named.loop.capacity is None and "capacities" not in readiness(none_named)  # type: ignore[arg-type]
    no_uplift = Node({"mg1": 5.0}, contracts=("market",))  # the poster posts nothing on this chain
    assert no_uplift.loop.capacity is not None and "capacities" not in readiness(no_uplift)  # type: ignore[arg-type]


def test_the_embedded_loop_and_the_route_carry_them(
    tmp_path: Path, running_loop: asyncio.AbstractEventLoop
) -> None:
    from peergrid_dso.app import create_app
    from peergrid_dso.config import DsoSettings

    node = Node({"mg1": 5.0, "mg2": 3.0})
    node.offer("mg2", 37)
    node.post()
    live = embedded(node, running_loop)  # type: ignore[arg-type]
    assert live.readiness() == {"enrolled": [], "pricing": False, "tariffs_through": None,
                                "capacities": {"mg1": FIRST, "mg2": 38}}  # fmt: skip
    settings = DsoSettings.model_validate(
        {"console": {"users_file": str(tmp_path / "users.json"), "lab_market": False, "lab_drift": False}}
    )
    with TestClient(create_app(settings, listen=False), base_url="http://127.0.0.1:8080") as client:
        client.app.state.loop = live  # type: ignore[attr-defined]
        loop_section: dict[str, Any] = client.get("/api/health").json()["loop"]
        assert loop_section["capacities"] == {
            "mg1": FIRST,
            "mg2": 38,
        }  # JSON: names and intervals as they are
        client.app.state.loop = None  # type: ignore[attr-defined]


ENTRIES = st.lists(st.tuples(st.integers(0, 60), st.sampled_from([500, 1250, 2000])), max_size=6).map(
    lambda raw: tuple(
        sorted(dict(raw).items())
    )  # one entry per from_interval, oldest first (as the chain keeps)
)


@given(ENTRIES, st.sampled_from([500, 1250, 2000]))
def test_standing_from_is_where_the_figure_stands_for_good(
    entries: tuple[tuple[int, int], ...], wh: int
) -> None:
    start = standing_from(entries, wh)
    last = entries[-1][0] if entries else 0
    if start is None:  # not standing at the end: none posted, or the latest entry is another figure
        assert standing_capacity(entries, last + 2) != wh
        return
    assert all(standing_capacity(entries, t) == wh for t in range(start, last + 3))  # from it on, for good
    assert start == 0 or standing_capacity(entries, start - 1) != wh  # and not in the interval before it
