"""While a PV inverter is quarantined or its readings are stale, the trader neither plans nor offers its output
(`quality.untrusted_share`, `interval_plan.counted`, `interval_offer.counted_for`); it says so once at WARNING
when it leaves the PV out and once when it counts it again, and each interval's record names what it left out.

U4 F9 (an MG owner's day on the lab): during pv1's Modbus outage mg5 went on selling its cap (15 kWh) every
interval on its forecast PV, which it could neither read nor curtail; `plan_confirmed` false was the only sign.
The market test plays real agents (`MarketAgent.run_interval`) of a synthetic four-MG day on one real
single-authority chain (test_edge_capacity's `Chain`, test_edge_guard's `agent_for`), mg001 the seller.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from test_edge_capacity import INTRADAY, Chain, T
from test_edge_guard import agent_for

from peergrid_controller.model import Microgrid, PvArray, Tariff
from peergrid_edge import interval_plan
from peergrid_edge.config import ControlSettings, DeviceSettings
from peergrid_edge.drivers import Snapshot
from peergrid_edge.polling import DeviceHealth, DeviceState
from peergrid_edge.quality import untrusted_share

NOW = 1_000.0  # the daemon's monotonic clock in these tests


def device(name: str, how: str, rating_w: float | None = None, nature: str = "pv") -> DeviceState:
    """A device whose last good reading (rating `rating_w`) is fresh ("fresh"), older than its stale_after
    ("stale"), or which is in quarantine ("quarantined": its last good reading as old)."""
    control = ControlSettings(max_w=rating_w) if rating_w is not None and how == "control" else None
    settings = DeviceSettings(name=name, nature=nature, port=1, stale_after_s=5.0, control=control)
    state = DeviceState(settings, DeviceHealth.for_device(settings))
    reading = {} if rating_w is None or control is not None else {"rating_w": rating_w}
    state.last_good = Snapshot(name, nature, True, 0.0, reading=reading)
    state.last_good_mono = NOW - 1.0 if how in ("fresh", "control") else NOW - 60.0
    if how == "quarantined":
        state.health.quarantined_until = NOW + 10.0
    return state


def test_the_untrusted_pv_and_the_share_the_others_hold() -> None:
    fresh, stale, out = (
        device("pv1", "fresh", 100e3),
        device("pv2", "stale", 20e3),
        device("pv3", "quarantined"),
    )
    assert untrusted_share({"pv1": fresh}, NOW, "pv") == ({}, 1.0)
    assert untrusted_share({}, NOW, "pv") == ({}, 1.0)  # no PV polled: nothing to doubt
    assert untrusted_share({"pv3": out}, NOW, "pv") == ({"pv3": "quarantined"}, 0.0)
    # weighed by rating: pv2's 20 kW of 120 kW out
    assert untrusted_share({"pv1": fresh, "pv2": stale}, NOW, "pv") == (
        {"pv2": "stale"},
        pytest.approx(100 / 120),
    )
    # a rating from the control's max_w where the reading has none
    by_control = {"pv1": device("pv1", "control", 60e3), "pv2": stale}
    assert untrusted_share(by_control, NOW, "pv")[1] == pytest.approx(60 / 80)
    # one rating unknown (pv3's): all weigh alike
    assert untrusted_share({"pv1": fresh, "pv3": out}, NOW, "pv")[1] == pytest.approx(0.5)
    # never read yet: stale; a stale battery is not a PV
    never = device("pv4", "fresh")
    never.last_good, never.last_good_mono = None, None
    assert untrusted_share({"pv4": never, "b": device("b", "stale", nature="battery")}, NOW, "pv") == (
        {"pv4": "stale"},
        0.0,
    )


def test_counted_cuts_the_interval_only() -> None:
    tariff = Tariff((0.2,) * 3, (0.05,) * 3)
    mg = Microgrid("mg", tariff, pv=(PvArray("a", (10.0, 20.0, 30.0)), PvArray("b", (1.0, 2.0, 3.0))))
    assert interval_plan.counted(mg, 1, 1.0) is mg
    cut = interval_plan.counted(mg, 1, 0.25)
    assert [p.available_kw for p in cut.pv] == [(10.0, 5.0, 30.0), (1.0, 0.5, 3.0)]
    assert [p.available_kw for p in interval_plan.counted(mg, 2, 0.0).pv] == [
        (10.0, 20.0, 0.0),
        (1.0, 2.0, 0.0),
    ]


def play(
    tmp_path: Path,
    hows: list[str],
    mg: str = "mg001",
    nature: str = "pv",
    rating_w: float = 257e3,
    rationality: str = "off",
) -> tuple[Chain, list[Any], list[dict[str, Any]]]:
    """Intervals T, T + 1, ... of the four MGs (their guard's `rationality`), MG `mg`'s one device of `nature`
    (named after it, rated `rating_w`) in state `hows[k]` in interval T + k ("fresh", "stale" or
    "quarantined"); returns the chain, the plans `mg` dispatched and its records."""
    chain = Chain(tmp_path, INTRADAY)
    agents = {
        m.name: agent_for(chain.ledger, chain.keys[m.name], INTRADAY, m.name, tmp_path / f"{m.name}.jsonl",
                          rationality, 0.0)
        for m in INTRADAY.microgrids
    }  # fmt: skip
    watched = agents[mg]
    watched.d.clock = SimpleNamespace(monotonic=lambda: NOW)  # type: ignore[attr-defined]
    plans: list[Any] = []

    async def dispatched(_t: int, plan: Any, *_args: Any) -> int:
        plans.append(plan)
        return 1

    watched._dispatch = dispatched  # type: ignore[method-assign,assignment]

    async def day() -> None:
        for k, how in enumerate(hows):
            watched.d.states = {nature: device(nature, how, rating_w, nature)}  # type: ignore[attr-defined]
            await asyncio.wait_for(asyncio.gather(*(a.run_interval(T + k) for a in agents.values())), 120)

    chain.run(day)
    records = [json.loads(line) for line in (tmp_path / f"{mg}.jsonl").read_text().splitlines()]
    return chain, plans, records


def test_a_seller_whose_pv_is_out_offers_none_of_its_output_and_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    healthy, plans, records = play(tmp_path / "healthy", ["fresh"])
    sold_healthy = healthy.traded("mg001", T)[0]
    assert plans[0].pv_used_kw[0] > 0 and sold_healthy > 0 and records[0]["uncounted"] == {}

    caplog.set_level(logging.INFO, logger="peergrid.edge.trader")
    chain, plans, records = play(tmp_path / "out", ["quarantined", "stale", "fresh"])
    # T and T + 1: planned without the PV, it sells nothing (it sold 87 kWh with it): it buys its load, as it
    # would need to were the PV tripped (if the PV runs on, its surplus goes to the DSO at feed-in)
    for k in (0, 1):
        assert plans[k].pv_used_kw[0] == 0.0
        assert chain.traded("mg001", T + k)[0] == 0 and records[k]["role"] == "buyer"
    assert [r["uncounted"] for r in records] == [{"pv": "quarantined"}, {"pv": "stale"}, {}]
    assert plans[2].pv_used_kw[0] > 0 and chain.traded("mg001", T + 2)[0] > 0  # counted again: it sells
    said = [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "pv " in r.getMessage()
    ]
    assert said == [
        f"pv quarantined: not offering its output until it answers (interval {T} planned without it)",
        f"pv answers again: its output is counted from interval {T + 2}",
    ]
