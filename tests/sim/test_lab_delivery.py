"""The lab's devices deliver in the market's slots: firmware-sim's accelerated clock reads the first interval's
start at the loop's t0 on the wall clock, however late the process comes up (its start-up no longer shifts the
simulated day against the slots the MGMCs plan, meter and settle in). /work/notes/l4_lab_delivery.md has the
lab figures this comes from."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from peergrid_sim.app import FirmwareSim
from peergrid_sim.clock import start_at
from peergrid_sim.scenario import Scenario, load_scenario
from peergrid_sim.testbed import build_parser, lab_loop

SCENARIO = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"


def test_start_at_runs_the_start_on_from_its_wall_time() -> None:
    assert start_at(1000.0, 150.0, None, 5.0) == 1000.0  # no wall anchor: the start itself, as before
    assert start_at(1000.0, 150.0, 10.0, 10.0) == 1000.0
    assert start_at(1000.0, 150.0, 10.0, 12.5) == 1000.0 + 2.5 * 150  # started 2.5 s late: 375 s on
    assert start_at(1000.0, 0.0, 10.0, 99.0) == 1000.0  # a frozen clock stays where it was told


def test_a_scenario_without_a_wall_anchor_is_read_as_before() -> None:
    scenario = Scenario(name="x")
    assert scenario.start_wall is None
    with pytest.raises(ValueError):
        Scenario(name="x", start_wall=-1.0)


def test_the_devices_first_interval_starts_at_t0_though_firmware_sim_starts_late(tmp_path: Path) -> None:
    args = build_parser().parse_args(["--scenario", str(SCENARIO), "--intervals", "2"])
    loop = lab_loop(args, tmp_path, load_scenario(SCENARIO))
    assert loop is not None and loop.t0 is not None
    bed = SimpleNamespace(scenario_path=SCENARIO, workdir=tmp_path, speed=1.0)
    path = loop.sim_scenario(bed)
    raw = yaml.safe_load(path.read_text())
    time.sleep(0.4)  # firmware-sim imports and builds its devices (seconds under load)
    sim = FirmwareSim(Scenario.model_validate(raw), bed.speed)
    before = time.time()
    now_sim = sim.clock.now()
    after = time.time()
    start = dt.datetime.fromisoformat(str(raw["start"]).replace("Z", "+00:00"))
    first = start.replace(hour=0, minute=0, second=0, microsecond=0) + dt.timedelta(
        minutes=loop.first_interval * loop.interval_min
    )
    # the devices' clock at the wall time t0, bracketed by the instants around the reading (no tolerance a
    # loaded machine could miss; the sleep alone put it 0.4 s x 150 = 60 simulated s late before)
    at_t0_low = now_sim + (loop.t0 - after) * bed.speed
    at_t0_high = now_sim + (loop.t0 - before) * bed.speed
    slack = 0.02 * bed.speed  # the scenario's writing and its reading, a few ms apart
    assert at_t0_low - slack <= first.timestamp() <= at_t0_high + slack, (at_t0_low, first.timestamp())


def test_the_reports_delivery_names_each_mgs_shortfall_and_its_dispatch_in_the_slot() -> None:
    from peergrid_sim.delivery import delivery

    def trade(tid: str, kwh: float) -> dict[str, Any]:
        return {"id": tid, "quantity_kwh": kwh, "seller": "s", "buyer": "b", "price": 0.18}

    edges = {
        "mg5": [
            {"interval": 36, "mg": "mg5", "role": "seller", "trades": [trade("a", 10.745), trade("b", 6.782)],
             "times": {"start": 100.0, "dso_done": 105.7}},
            {"interval": 36, "settlement": {"trade": "a", "settled": True, "party": "seller", "delivered": 4743,
                                            "short": 6002}},
            {"interval": 36, "settlement": {"trade": "b", "settled": False, "party": "seller", "delivered": 6782}},
            {"interval": 37, "mg": "mg5", "role": "seller", "trades": [trade("c", 8.0)],
             "times": {"start": 106.0, "dispatched": 107.5, "dso_done": 110.2}},  # dispatched before the verdict
            {"interval": 37, "settlement": {"trade": "c", "settled": True, "reason": ""}},  # no statement
            {"interval": 37, "error": "failed; see the log"},  # a failed interval: no trading record
        ],
        "mg2": [{"interval": 36, "mg": "mg2", "role": "buyer", "trades": [], "times": {"start": 100.0}}],
    }  # fmt: skip
    rows = delivery(edges, lambda t: 100.0 + (t - 36) * 6.0)
    assert [(r["interval"], r["mg"]) for r in rows] == [(36, "mg2"), (36, "mg5"), (37, "mg5")]
    mg2, mg5, later = rows
    assert mg2["agreed_kwh"] == 0 and mg2["stated_kwh"] is None and mg2["dispatched_s"] is None
    assert mg5["agreed_kwh"] == pytest.approx(17.527) and mg5["stated_kwh"] == pytest.approx(11.525)
    assert (mg5["statements"], mg5["short_statements"], mg5["short_kwh"]) == (2, 1, pytest.approx(6.002))
    assert mg5["dispatched_s"] == pytest.approx(
        5.7
    )  # late in its 6-s slot: most of it ran before the dispatch
    assert (
        later["stated_kwh"] is None
        and later["statements"] == 0
        and later["dispatched_s"] == pytest.approx(1.5)
    )
    assert delivery(edges)[1]["dispatched_s"] is None  # no loop timing: no slot to measure against
