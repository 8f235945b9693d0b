"""The DSO node (`DsoLoop`) makes a `tariff.CapacityPoster` from its settings where an MG names `capacity_kw`
and an MGMC chain is followed, and runs it beside the pricer; none otherwise (U6, /work/notes/U6_interval_node.patch)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from peergrid_dso.tariff import CapacityPoster

from .test_capacity_poster import Lab
from .test_tariff import dso_loop, settings


def test_the_node_makes_a_poster_only_where_an_mg_names_a_capacity(tmp_path: Path) -> None:
    s = settings(tmp_path, None)
    assert dso_loop(s, SimpleNamespace(chain="mgmc")).capacity is None
    mg = sorted(s.mgs)[0]
    named = s.model_copy(update={"mgs": {**s.mgs, mg: s.mgs[mg].model_copy(update={"capacity_kw": 4.0})}})
    loop = dso_loop(named, SimpleNamespace(chain="mgmc"))
    assert isinstance(loop.capacity, CapacityPoster) and loop.capacity.capacities == {mg: 1000}
    assert dso_loop(named, None).capacity is None  # no MGMC chain: nothing to post on


def test_the_node_runs_the_poster_beside_the_enrolment() -> None:
    lab = Lab()
    poster = lab.poster({"mg1": 5.0})
    loop: Any = SimpleNamespace(
        pricer=None, capacity=poster, settings=SimpleNamespace(first_interval=0, intervals=0)
    )

    async def enrol() -> None:
        await asyncio.sleep(0.05)  # the poster's first pass runs meanwhile

    loop.enrol = enrol
    from peergrid_dso.interval_node import DsoLoop

    loop.start_records = ()  # relays in memory: nothing adopted at start to record (6fb311b)
    loop.record_start = lambda: DsoLoop.record_start(loop)

    asyncio.run(DsoLoop.run(loop, asyncio.Event()))
    assert lab.standing("mg1", 36) == 1250
