"""What the testbed prints while it follows the closed loop (`closedloop_follow`, through `ClosedLoop`'s methods):
one line per interval the DSO finished and every MGMC recorded, nothing for one still being settled, every
finished one when forced, the progress bar, and `finished` false until every interval is recorded. Written on
hand-made records; it passes the same before and after the follower left closedloop_run.py (H4's split)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from peergrid_sim.closedloop import LoopTiming
from peergrid_sim.closedloop_run import ClosedLoop


def _write(path: Path, docs: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")


def test_the_follower_prints_one_line_per_interval_every_mgmc_recorded(tmp_path: Path) -> None:
    loop = ClosedLoop(intervals=2, interval_s=6.0, first_interval=36)
    loop.chains = SimpleNamespace(mgs=("mg1", "mg2"))  # type: ignore[assignment]
    bed = SimpleNamespace(workdir=tmp_path)
    records = loop.records_dir(bed)
    now = time.time()
    dso = [
        {"interval": 36, "times": {"end": now}, "secure": True, "height": 12, "before": {"vmin_pu": 0.941},
         "after": {"vmin_pu": 0.952, "open": [33, 34]}, "plan": {"operations": [1, 2]},
         "rebargain": [{}], "adjustments": [{"mg": "mg5"}, {"mg": "mg4"}, {"mg": "mg5"}]},
        {"interval": 37, "error": "no injections", "times": {"end": now}},
    ]  # fmt: skip
    _write(records / "dso.jsonl", dso)
    trade = {"id": "t1", "quantity_kwh": 2.0, "price": 0.1}
    other = {"id": "t2", "quantity_kwh": 6.0, "price": 0.2}
    _write(records / "mgmc-mg1.jsonl", [{"interval": 36, "trades": [trade, other], "rounds": [1, 2, 3]}])
    _write(records / "mgmc-mg2.jsonl", [{"interval": 35, "trades": []}])  # not interval 36 yet
    assert loop.poll(bed) == [] and loop.progress_bar(10) == "[..........] 0/2 intervals"
    assert loop.day_traded() is None
    assert not loop.finished(bed)  # mg2 has not recorded the last interval (and no grace passed)
    _write(records / "mgmc-mg2.jsonl", [{"interval": 36, "trades": [trade]}])
    lines = loop.poll(bed)
    assert lines == [
        "interval  36 09:00 |  2 trades     8.0 kWh @ 0.175 | rounds 3 | vmin 0.941->0.952 | open [33, 34] | "
        "switch ops 2 | rebargained x1 (mg5 mg4) | secure | dso height 12 | "
    ]
    assert loop.progress_bar(10) == "[#####.....] 1/2 intervals"
    assert loop.poll(bed, force=True) == ["interval 37: DSO failed (no injections)"]
    assert loop.poll(bed, force=True) == [] and loop.progress_bar(10) == "[##########] 2/2 intervals"
    assert loop.day_traded() == (
        "the day is traded (interval 37 was its last); the broker, devices, MGMCs, DSO server and console stay "
        "up, the MGMCs' devices in their safe state, until Ctrl-C"
    )


def test_the_summary_says_how_the_interval_kept_its_slot(tmp_path: Path) -> None:
    loop = ClosedLoop(intervals=1, interval_s=6.0, first_interval=36)
    loop.timing = LoopTiming(t0=1000.0, interval_s=6.0, first_interval=36, intervals=1)
    loop.interval_min = 15.0
    records = tmp_path / "records"
    records.mkdir()
    _write(records / "mgmc-mg1.jsonl", [{"interval": 36, "times": {"start": 1000.5}}])
    line = loop.summary({"interval": 36, "times": {"switched": 1007.0}, "secure": False}, records)
    assert line.endswith("| INSECURE | dso height None | late +0.5 s, switched at +7.0 s, OVERRAN +1.0 s")
    assert line.startswith("interval  36 09:00 |  0 trades     0.0 kWh @ 0.000 | rounds 0 |")


def test_an_interval_the_dso_missed_is_a_line_saying_so(tmp_path: Path) -> None:
    """R45: D8's missed record has no `times` (nor before, after, height): the summary raised KeyError 'times'
    out of the testbed's follow loop, and without a timing read it as 'INSECURE | dso height None'."""
    from peergrid_dso import interval_missed

    loop = ClosedLoop(intervals=2, interval_s=6.0, first_interval=36)
    loop.timing = LoopTiming(t0=1000.0, interval_s=6.0, first_interval=36, intervals=2)
    loop.interval_min = 15.0
    bed = SimpleNamespace(workdir=tmp_path)
    records = loop.records_dir(bed)
    _write(records / "dso.jsonl", [interval_missed.missed_record(36, 1006.0, 1013.0)])
    assert loop.poll(bed, force=True) == [
        f"interval 36: missed, {interval_missed.DOWN}: not checked, no contract, no switching"
    ]
