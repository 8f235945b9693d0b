"""The testbed report's owner bound (`report_bound.owner_bound`): each MG's P2P day against its conventional
day plus the risk allowance its edge records carry (K2's guard fields), the `rationality` section beside the
check, records from before the guard (no allowance: today's check), and a guard field that is not a number
named rather than raised. (Each MG's `dso_limited` and `cause`: tests/sim/test_d4_report_cause.py.)"""

from __future__ import annotations

from typing import Any

from peergrid_sim.report_bound import owner_bound

# the bound's own fields (beside them the section names each MG's DSO limits and cause: test_d4_report_cause)
BOUND = (
    "risk_allowance",
    "guard_mode",
    "dso_cost",
    "budget_day",
    "budget_left",
    "bound",
    "cost_p2p",
    "within",
)


def _bound(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: entry[k] for k in BOUND if k in entry}


def _record(interval: int, allowance: float | None, dso_cost: float | None = None, mode: str = "strict",
            left: float = 0.0) -> dict[str, Any]:  # fmt: skip
    doc: dict[str, Any] = {"interval": interval, "trades": [], "cost_p2p": 1.0, "cost_conventional": 1.0}
    if allowance is not None:  # an edge from K2 on: the guard's fields
        guard: dict[str, Any] = {"mode": mode, "dispatch": "plan"}
        if dso_cost is not None:
            guard |= {"cost_p2p": 1.0, "dso_cost": dso_cost}
        doc |= {
            "risk_allowance": allowance,
            "budget_day": 10.0 + allowance,
            "budget_left": left,
            "guard": guard,
        }
    return doc


def test_an_allowance_raises_the_bound_by_just_that_much() -> None:
    edges = {
        "mg1": [{"uplift_claim": {}}, _record(36, 3.0, 0.0, left=5.0), _record(37, 3.0, 0.25, left=2.5)],
        "mg2": [_record(36, 0.0, left=1.0), _record(37, 0.0, left=0.5)],
    }
    conv = {"mg1": 10.0, "mg2": 10.0}
    ok, section = owner_bound(edges, {"mg1": 12.9, "mg2": 10.0}, conv)
    assert ok and section["errors"] == []
    assert _bound(section["mgs"]["mg1"]) == {
        "risk_allowance": 3.0, "guard_mode": "strict", "dso_cost": 0.25, "budget_day": 13.0, "budget_left": 2.5,
        "bound": 13.0, "cost_p2p": 12.9, "within": True,
    }  # fmt: skip
    assert section["mgs"]["mg2"]["bound"] == 10.0 and section["mgs"]["mg2"]["within"]
    # past conventional + X: the check fails and the section names the MG
    ok, section = owner_bound(edges, {"mg1": 13.01, "mg2": 10.0}, conv)
    assert not ok and not section["mgs"]["mg1"]["within"] and section["mgs"]["mg2"]["within"]
    # mg2 has no allowance: a cent above its conventional day breaks it, whatever mg1's is
    ok, section = owner_bound(edges, {"mg1": 12.0, "mg2": 10.01}, conv)
    assert not ok and not section["mgs"]["mg2"]["within"]


def test_records_without_an_allowance_keep_the_conventional_bound() -> None:
    # an edge from before the guard (no risk_allowance, guard, budget fields): the check is the old one
    edges = {"mg1": [_record(36, None), _record(37, None)]}
    ok, section = owner_bound(edges, {"mg1": 10.0 + 5e-7}, {"mg1": 10.0})
    assert ok  # within the float sums' slack
    assert _bound(section["mgs"]["mg1"]) == {
        "risk_allowance": 0.0, "guard_mode": None, "dso_cost": None, "budget_day": None, "budget_left": None,
        "bound": 10.0, "cost_p2p": 10.0 + 5e-7, "within": True,
    }  # fmt: skip
    # no guard, no DSO part recorded: unknown, not 0 (D4)
    assert (
        section["mgs"]["mg1"]["dso_cost_unknown"]
        == "no guard fields (an edge from before the guard) in intervals 36, 37"
    )
    ok, _ = owner_bound(edges, {"mg1": 10.01}, {"mg1": 10.0})
    assert not ok
    # rationality off (the lab's default): allowance 0, the guard's mode recorded
    edges = {"mg1": [_record(36, 0.0, mode="off")]}
    ok, section = owner_bound(edges, {"mg1": 10.01}, {"mg1": 10.0})
    assert not ok and section["mgs"]["mg1"]["guard_mode"] == "off"


def test_a_guard_field_that_is_not_a_number_is_named_and_counted_as_zero() -> None:
    bad = _record(36, 3.0, 0.0)
    bad["risk_allowance"] = "3"
    worse = _record(37, 3.0)
    worse["guard"]["dso_cost"] = float("nan")
    edges = {"mg1": [bad, worse], "mg2": []}  # mg2: an MGMC that recorded nothing
    ok, section = owner_bound(edges, {"mg1": 12.0}, {"mg1": 10.0})
    # the last traded record's allowance (3.0) stands; the bad one is named, nothing raised
    assert ok and section["mgs"]["mg1"]["risk_allowance"] == 3.0 and section["mgs"]["mg1"]["dso_cost"] == 0.0
    assert section["errors"] == [
        "mg1: risk_allowance is not a number: '3'",
        "mg1: guard.dso_cost is not a number: nan",
    ]
    assert "bound" not in section["mgs"]["mg2"] and section["mgs"]["mg2"]["risk_allowance"] == 0.0
    # the last record's allowance unreadable: counted as 0, so the bound is the conventional day
    edges = {"mg1": [worse, bad]}
    ok, section = owner_bound(edges, {"mg1": 12.0}, {"mg1": 10.0})
    assert not ok and section["mgs"]["mg1"]["bound"] == 10.0 and len(section["errors"]) == 2
