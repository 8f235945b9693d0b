"""The live Feeder view draws finished intervals only, and its closed-loop line says how the MGMCs answered (D2).

U3-2 (session 23, `--dso-vmin 0.91`): mid-interval the view painted buses 30-33 red with 'bus 30: voltage 0.9099
pu below 0.91' from the console's power flow on an iteration's injections (the node keeps each iteration's
where the view read them) while the interval ended secure at 0.912: an operator read a passing interval as a
voltage violation. Now the diagram, the MG injections and the power flow's alarms are those the latest finished
interval ended with (its record's), and the view says so. U3 run 3 (`--dayahead --dso-vmin 0.93`): every
forward-traded interval read 'rebargained x1' though the contract refuses to reopen one; the line says the MGMCs
re-planned and what they kept.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from peergrid_dso.console.settings import ConsoleSettings
from peergrid_dso.console.state import ConsoleState, build_console
from peergrid_dso.services.container import build_dso_services

MID_INTERVAL = {"mg4": (-0.9, 0.0), "mg5": (-0.6, 0.0)}  # MW: the first iteration's, far below the floor


def live(users_file: Path) -> tuple[ConsoleState, Any]:
    dso = build_dso_services({"mg4": 30, "mg5": 32})
    loop = SimpleNamespace(lock=threading.RLock(), listeners=[], node=SimpleNamespace(loop=None),
                           replica=lambda role: None)  # fmt: skip
    return build_console(ConsoleSettings(users_file=users_file, lab_market=False), dso, loop), dso


def record(t: int, **extra: Any) -> dict[str, Any]:
    return {"interval": t, "secure": True, "height": 50 + t, "before": {"vmin_pu": 0.9043},
            "after": {"open": [33, 34, 35, 36, 37], "vmin_pu": 0.912, "violations": []}, **extra}  # fmt: skip


def low_buses(state: ConsoleState) -> list[Any]:
    snap = state.grid.snapshot()
    return [b["id"] for b in snap["buses"] if b["status"] == "low"] + [
        a for a in snap["alarms"] if "below" in a
    ]


def test_an_interval_being_checked_paints_no_bus_and_raises_no_alarm(users_file: Path) -> None:
    state, dso = live(users_file)
    dso.injections[40] = dict(MID_INTERVAL)  # the node's iteration figures, mid-interval
    state.tick()
    assert low_buses(state) == []  # before: buses 13-18 and 30-33 low, one alarm each
    state.on_interval(record(40, injections_kw={"mg4": 300.0, "mg5": 300.0}))  # what it ended with
    dso.injections[41] = dict(MID_INTERVAL)  # the next interval's check begins
    state.tick()
    snap = state.grid.snapshot()
    assert low_buses(state) == [] and {m["mg"]: m["p_kw"] for m in snap["mgs"]} == {
        "mg4": 300.0,
        "mg5": 300.0,
    }
    assert (snap["interval"]["interval"], snap["interval"]["drawn"]) == (40, 40)
    state.on_interval(
        {"interval": 41, "error": "failed; see the DSO node log"}
    )  # nothing to draw: 40's stays
    assert state.grid.snapshot()["interval"]["drawn"] == 40 and low_buses(state) == []
    state.on_interval(
        record(41, injections_kw={"mg4": -900.0, "mg5": -600.0})
    )  # an outcome that is low: shown
    state.tick()
    assert low_buses(state)


def test_the_line_says_the_mgmcs_replanned_a_forward_traded_interval(users_file: Path) -> None:
    state, _ = live(users_file)
    forward = "forward-traded by exchange session 'day-1'"
    state.on_interval(
        record(
            44,
            rebargain=[
                {
                    "iteration": 1,
                    "reopened": None,
                    "not_reopened": forward,
                    "answer": "re-planned, forward trades kept",
                }
            ],
        )
    )
    line = state.grid.snapshot()["interval"]
    assert (line["rebargained"], line["replanned"], line["replanned_kept"]) == (0, 1, "forward trades kept")
    state.on_interval(
        record(
            45,
            rebargain=[
                {"iteration": 1, "reopened": 1, "answer": "re-bargained"},
                {"iteration": 2, "reopened": None, "not_reopened": "not closed"},
            ],
        )
    )
    line = state.grid.snapshot()["interval"]  # the second from before `answer`: what any re-plan keeps
    assert (line["rebargained"], line["replanned"], line["replanned_kept"]) == (1, 1, "trades kept")
