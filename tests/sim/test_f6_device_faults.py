"""F6: a fault drilled during a lab run leaves its trace in the report's `device_faults`, and `firmware-sim fault`
says in one line what it did.

U6's drill 1 black-holed mg2/bess1 (`no_response`) in interval 42 and cleared it in 47; its MGMC left the battery
out of intervals 45-47. The report's `device_faults` (only what was still on at the end) was `[]`. No lab here:
the control API is driven in-process and the report's inputs are built by hand.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from peergrid_sim import cli
from peergrid_sim.clock import SimClock
from peergrid_sim.control import ControlApi, HttpError
from peergrid_sim.faults import FaultLog
from peergrid_sim.report_faults import device_faults, interval_at
from peergrid_sim.runtime import Simulation
from peergrid_sim.scenario import Scenario

# the lab's accelerated clock: interval 40 starts at wall 1000, one interval every 8 s (U6's --interval-s 8)
TIMING = SimpleNamespace(t0=1000.0, interval_s=8.0, first_interval=40)


def at(interval: int, into_s: float = 1.0) -> float:
    return TIMING.t0 + (interval - TIMING.first_interval) * TIMING.interval_s + into_s


def api(all_kinds) -> ControlApi:
    scenario = Scenario.model_validate(all_kinds)
    return ControlApi(SimpleNamespace(sim=Simulation(scenario, SimClock(scenario.start_epoch(), 0.0))))


def route(control: ControlApi, method: str, path: str, body: dict | None = None):
    return control.route(method, path, json.dumps(body).encode() if body is not None else b"")


def test_the_control_api_keeps_every_fault_injected_and_when_it_was_cleared(all_kinds):
    control = api(all_kinds)
    route(control, "POST", "/faults", {"device": "mg1/bess1", "fault": "no_response"})
    route(control, "POST", "/faults", {"device": "mg1/pv1", "fault": "delay", "seconds": 2})
    route(control, "POST", "/faults/clear", {"device": "mg1/bess1", "fault": "no_response"})
    with pytest.raises(ValueError):  # refused: changes nothing, logs nothing
        route(control, "POST", "/faults", {"device": "mg1/pv1", "fault": "melt"})
    log = route(control, "GET", "/faults")["log"]
    assert [(e["device"], e["fault"], e["params"]) for e in log] == [
        ("mg1/bess1", "no_response", {}),
        ("mg1/pv1", "delay", {"seconds": 2}),
    ]
    assert log[0]["to"] is not None and log[0]["to"] >= log[0]["from"]
    assert log[1]["to"] is None  # still on
    with pytest.raises(HttpError):
        route(control, "PUT", "/faults")


def test_a_stuck_point_shows_among_the_device_faults(all_kinds):
    control = api(all_kinds)
    described = route(control, "POST", "/faults", {"device": "mg1/pv1", "fault": "stuck", "point": "ac_w"})
    assert described["faults"] == {"forced": ["ac_w"]}
    assert route(control, "POST", "/faults/clear", {"device": "mg1/pv1"})["faults"] == {}


def test_the_fault_log_ends_episodes_by_kind_all_at_once_and_a_reboot_by_itself():
    log = FaultLog()
    log.injected("mg1/pv1", {"device": "mg1/pv1", "fault": "delay", "seconds": 1}, 10.0)
    log.injected("mg1/pv1", {"device": "mg1/pv1", "fault": "delay", "seconds": 3}, 20.0)  # a new episode
    log.injected("mg1/pv1", {"device": "mg1/pv1", "fault": "bad_crc"}, 25.0)
    log.injected("mg1/bess1", {"device": "mg1/bess1", "fault": "reboot", "seconds": 5}, 30.0)
    log.cleared("mg1/pv1", None, 40.0)
    assert [(e["fault"], e["from"], e["to"]) for e in log.episodes] == [
        ("delay", 10.0, 20.0),
        ("delay", 20.0, 40.0),
        ("bad_crc", 25.0, 40.0),
        ("reboot", 30.0, 35.0),
    ]


def test_a_drill_cleared_before_the_end_is_in_device_faults_with_its_intervals():
    saved = {
        "active": [],  # nothing on at the end: before F6 the report's device_faults was [] here
        "log": [
            {"device": "mg2/bess1", "fault": "no_response", "params": {}, "from": at(42), "to": at(47, 3.0)}
        ],
    }
    edges = {
        "mg2": [
            {"interval": t, "trades": [], "uncounted": {"bess1": "quarantined"} if 45 <= t <= 47 else {}}
            for t in range(40, 52)
        ]
    }
    assert device_faults(saved, edges, TIMING) == [
        {
            "device": "mg2/bess1",
            "mg": "mg2",
            "faults": {},
            "injected": [{"kind": "no_response", "params": {}, "from_interval": 42, "to_interval": 47}],
            "left_out": [{"from_interval": 45, "to_interval": 47, "why": "quarantined"}],
        }
    ]


def test_device_faults_keeps_what_was_on_at_the_end_and_what_an_mgmc_left_out_alone():
    saved = {
        "active": [
            {"device": "mg4/pv1", "faults": {"no_response": True}},
            {"device": "sw1", "faults": {"x": 1}},
        ],
        "log": [{"device": "mg4/pv1", "fault": "no_response", "params": {}, "from": at(39, 7.5), "to": None}],
    }
    edges = {  # mg6's PV stale twice (a settlement line between records is not an interval record)
        "mg6": [
            {"interval": 40, "trades": [], "uncounted": {"pv1": "stale"}},
            {"interval": 40, "settlement": {}},
            {"interval": 41, "trades": [], "uncounted": {}},
            {"interval": 42, "trades": [], "uncounted": {"pv1": "stale"}},
        ]
    }
    out = {d["device"]: d for d in device_faults(saved, edges, TIMING)}
    assert list(out) == ["mg4/pv1", "mg6/pv1", "sw1"]
    assert out["mg4/pv1"]["faults"] == {"no_response": True}
    assert out["mg4/pv1"]["injected"][0] == {
        "kind": "no_response", "params": {}, "from_interval": 39, "to_interval": None,
    }  # fmt: skip
    assert out["mg6/pv1"]["left_out"] == [
        {"from_interval": 40, "to_interval": 40, "why": "stale"},
        {"from_interval": 42, "to_interval": 42, "why": "stale"},
    ]
    assert out["sw1"]["mg"] is None
    # a lab from before the log (a list), one not collected (None) or unreadable: the MGMCs' view still shows
    assert [d["device"] for d in device_faults(saved["active"], {}, TIMING)] == ["mg4/pv1", "sw1"]
    for unread in (None, {"error": "URLError: refused"}):
        assert [d["device"] for d in device_faults(unread, edges, None)] == ["mg6/pv1"]
    assert interval_at(None, at(42)) is None


def test_fault_prints_one_line_and_the_registers_only_with_verbose(monkeypatch, capsys):
    reply = {"name": "bess1", "faults": {"no_response": True}, "points": {f"p{i}": i for i in range(200)}}
    monkeypatch.setattr(cli, "post", lambda control, path, body: (200, reply))
    assert cli.main(["fault", "--control", "127.0.0.1:1", "mg2/bess1", "no_response"]) == 0
    assert capsys.readouterr().out == (
        'mg2/bess1: fault no_response injected; its faults now: {"no_response": true}\n'
    )
    assert (
        cli.main(["fault", "--control", "127.0.0.1:1", "mg2/bess1", "delay", "seconds=2", "--verbose"]) == 0
    )
    assert json.loads(capsys.readouterr().out) == reply
    monkeypatch.setattr(cli, "post", lambda control, path, body: (200, {"faults": {}}))
    assert cli.main(["clear", "--control", "127.0.0.1:1", "mg2/bess1"]) == 0
    assert capsys.readouterr().out == "mg2/bess1: every fault cleared; it has no fault now\n"
    monkeypatch.setattr(cli, "post", lambda control, path, body: (400, {"error": "unknown fault 'melt'"}))
    assert cli.main(["fault", "--control", "127.0.0.1:1", "mg2/bess1", "melt"]) == 1
    assert "unknown fault 'melt'" in capsys.readouterr().out


def test_the_log_ends_what_a_clear_takes_off_and_keeps_each_forced_point(all_kinds):
    """R45: `clear(device, "stuck")` takes every forced point off (a `value` too), and `ignore_setpoints` them with
    it, but the log ended only the kind named, so a value fault read as still on at the end beside a device
    with no fault; and a second stuck point ended the first's episode though both stayed stuck."""
    control = api(all_kinds)
    route(control, "POST", "/faults", {"device": "mg1/pv1", "fault": "value", "point": "ac_w", "value": 5})
    route(control, "POST", "/faults", {"device": "mg1/pv1", "fault": "stuck", "point": "103.W"})
    # stuck on ac_w ends ac_w's value, never 103.W's stuck
    route(control, "POST", "/faults", {"device": "mg1/pv1", "fault": "stuck", "point": "ac_w"})
    log = route(control, "GET", "/faults")["log"]
    on = [(e["fault"], e["params"]["point"]) for e in log if e["to"] is None]
    assert on == [("stuck", "103.W"), ("stuck", "ac_w")]  # before: 103.W's ended by ac_w's
    route(control, "POST", "/faults/clear", {"device": "mg1/pv1", "fault": "stuck"})
    assert "forced" not in route(control, "GET", "/devices/mg1/pv1")["faults"]  # the device: nothing forced
    assert all(e["to"] is not None for e in route(control, "GET", "/faults")["log"])
    route(control, "POST", "/faults", {"device": "mg1/bess1", "fault": "value", "point": "ac_w", "value": 1})
    route(control, "POST", "/faults", {"device": "mg1/bess1", "fault": "ignore_setpoints"})
    route(control, "POST", "/faults/clear", {"device": "mg1/bess1", "fault": "ignore_setpoints"})
    assert all(e["to"] is not None for e in route(control, "GET", "/faults")["log"])
