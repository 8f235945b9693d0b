"""A failed (or passed) per-MG `p2p_not_dearer` names its cause (D4): per MG the intervals where a DSO limit bound
it, the forward trades it held there and the cost against its conventional day those intervals account for; a
`dso_cost` that is unknown (guard off) is unknown, not 0.0, in report.json's `rationality` and on the page.

The records are the 0.93 lab's (`peergrid-testbed --scenario firmware-sim/scenarios/ieee33.yaml --dayahead
--dso-vmin 0.93 --intervals 2`, D3's /tmp/d3_lab at 267533d; ids and anonyms cut to 16 hex, fields the report does
not read left out): mg4 bought 115.158 and 117.410 kWh forward at 0.22, the DSO's contract cut its draw to
-310.37 / -307.11 kW and it sold the rest back at feed-in, +13.29 above its conventional day; mg5 sold forward
and could not reach its limit either; mg2 traded forward with no limit. Before D4 the report said
`p2p_not_dearer: False` and `dso_cost` 0.0 for every MG, and nothing of why."""

from __future__ import annotations

import json
from typing import Any

import pytest

from peergrid_sim.report_bound import owner_bound
from peergrid_sim.report_html import html

LAB_093 = """
{"day": "1796644281/36", "uplift_claim": {"session": "064b2cf7d5e21043/dayahead/1796644281/36", "posted": true, "gain": 0, "day_cost": 200.47298219837484, "conventional": 200.4729821983748}}
{"interval": 36, "mg": "mg2", "anonym": "064b2cf7d5e21043", "role": "buyer", "forward": "064b2cf7d5e21043/dayahead/1796644281/36", "trades": [{"seller": "4731516ac491944d", "buyer": "064b2cf7d5e21043", "price": 0.22, "quantity_kwh": 5.074, "id": "7740e1ee62bb0b00"}], "cost_p2p": 1.6930154999999996, "cost_conventional": 1.6930155, "cost_to_go": {}, "p2p_money": -1.11628, "injection_kw": -30.782099999999993, "final_injection_kw": -30.782099999999993, "limits": [], "adjustments": [], "guard": {"mode": "off", "dispatch": "unguarded"}, "risk_allowance": 0.0, "budget_day": 125.58895951092852, "budget_left": 123.89594401092852, "secure": false, "settled": 1}
{"interval": 37, "mg": "mg2", "anonym": "064b2cf7d5e21043", "role": "buyer", "forward": "064b2cf7d5e21043/dayahead/1796644281/36", "trades": [{"seller": "4731516ac491944d", "buyer": "064b2cf7d5e21043", "price": 0.22, "quantity_kwh": 3.627, "id": "9d0a4290836dc509"}, {"seller": "6ca6f1a6499c9128", "buyer": "064b2cf7d5e21043", "price": 0.22, "quantity_kwh": 2.388, "id": "3382acee3e802d97"}], "cost_p2p": 1.4490520000000002, "cost_conventional": 1.4490520000000002, "cost_to_go": {"p2p": 122.44689201092852, "conventional": 122.44689201092852}, "p2p_money": -1.3233000000000001, "injection_kw": -26.3464, "final_injection_kw": -26.3464, "limits": [], "adjustments": [], "guard": {"mode": "off", "dispatch": "unguarded"}, "risk_allowance": 0.0, "budget_day": 125.58895951092852, "budget_left": 122.44689201092852, "secure": false, "settled": 2}
{"day": "1796644281/36", "uplift_claim": {"session": "064b2cf7d5e21043/dayahead/1796644281/36", "posted": true, "gain": 0, "day_cost": 1999.3908285000002, "conventional": 1999.3908285000002}}
{"interval": 36, "mg": "mg4", "anonym": "86ecb30c6bebd00e", "role": "buyer", "forward": "064b2cf7d5e21043/dayahead/1796644281/36", "trades": [{"seller": "4680f655b67fbcf8", "buyer": "86ecb30c6bebd00e", "price": 0.22, "quantity_kwh": 65.973, "id": "71efcf0768581347"}, {"seller": "4731516ac491944d", "buyer": "86ecb30c6bebd00e", "price": 0.22, "quantity_kwh": 49.185, "id": "55216c05abe5a189"}], "cost_p2p": 90.90350248428342, "cost_conventional": 84.51738672393797, "cost_to_go": {}, "p2p_money": -25.334760000000003, "injection_kw": -580.1585, "final_injection_kw": -310.370452697754, "limits": [{"interval": 36, "iteration": 1, "max_injection_w": null, "mg": "mg4", "min_injection_w": -280158, "reason": "bus 32 voltage 0.9044 pu vs limit 0.9300 pu"}], "adjustments": [{"met": false, "injection_kw": -310.370452697754, "reason": "cannot inject at least -280.16 kW with its agreed P2P trades (-460.63 kW): the most it can inject is -310.37 kW (sheddable load shed, storage and gensets at their limits); it offers that instead"}], "guard": {"mode": "off", "dispatch": "unguarded"}, "risk_allowance": 0.0, "budget_day": 1506.1936865, "budget_left": 1415.2901840157165, "secure": false, "settled": 2}
{"interval": 37, "mg": "mg4", "anonym": "86ecb30c6bebd00e", "role": "buyer", "forward": "064b2cf7d5e21043/dayahead/1796644281/36", "trades": [{"seller": "4680f655b67fbcf8", "buyer": "86ecb30c6bebd00e", "price": 0.22, "quantity_kwh": 68.887, "id": "355c4d0cf5d38b33"}, {"seller": "4731516ac491944d", "buyer": "86ecb30c6bebd00e", "price": 0.22, "quantity_kwh": 48.523, "id": "7067735577f2d916"}], "cost_p2p": 91.1393873472214, "cost_conventional": 84.23196303245544, "cost_to_go": {"p2p": 1442.5788165, "conventional": 1442.5788165}, "p2p_money": -25.830199999999998, "injection_kw": -576.4755, "final_injection_kw": -307.11236906433106, "limits": [{"interval": 37, "iteration": 1, "max_injection_w": null, "mg": "mg4", "min_injection_w": -277809, "reason": "bus 32 voltage 0.9052 pu vs limit 0.9300 pu"}], "adjustments": [{"met": false, "injection_kw": -307.11236906433106, "reason": "cannot inject at least -277.81 kW with its agreed P2P trades (-469.64 kW): the most it can inject is -307.11 kW (sheddable load shed, storage and gensets at their limits); it offers that instead"}], "guard": {"mode": "off", "dispatch": "unguarded"}, "risk_allowance": 0.0, "budget_day": 1506.1936865, "budget_left": 1324.150796668495, "secure": false, "settled": 2}
{"day": "1796644281/36", "uplift_claim": {"session": "064b2cf7d5e21043/dayahead/1796644281/36", "posted": true, "gain": 0, "day_cost": 30.668461521055438, "conventional": 45.939781323687}}
{"interval": 36, "mg": "mg5", "anonym": "4680f655b67fbcf8", "role": "seller", "forward": "064b2cf7d5e21043/dayahead/1796644281/36", "trades": [{"seller": "4680f655b67fbcf8", "buyer": "86ecb30c6bebd00e", "price": 0.22, "quantity_kwh": 65.973, "id": "71efcf0768581347"}], "cost_p2p": -0.11552855645751059, "cost_conventional": 9.596204630012497, "cost_to_go": {}, "p2p_money": 14.51406, "injection_kw": 179.20080000000002, "final_injection_kw": 228.5111356079102, "limits": [{"interval": 36, "iteration": 1, "max_injection_w": null, "mg": "mg5", "min_injection_w": 479201, "reason": "bus 32 voltage 0.9044 pu vs limit 0.9300 pu"}], "adjustments": [{"met": false, "injection_kw": 228.5111356079102, "reason": "cannot inject at least 479.20 kW with its agreed P2P trades (+263.89 kW): the most it can inject is 228.51 kW (sheddable load shed, storage and gensets at their limits); it offers that instead"}], "guard": {"mode": "off", "dispatch": "unguarded"}, "risk_allowance": 0.0, "budget_day": 2.405043799766599, "budget_left": 2.52057235622411, "secure": false, "settled": 0}
{"interval": 37, "mg": "mg5", "anonym": "4680f655b67fbcf8", "role": "seller", "forward": "064b2cf7d5e21043/dayahead/1796644281/36", "trades": [{"seller": "4680f655b67fbcf8", "buyer": "86ecb30c6bebd00e", "price": 0.22, "quantity_kwh": 68.887, "id": "355c4d0cf5d38b33"}], "cost_p2p": -0.7333263356170665, "cost_conventional": 9.382565410327896, "cost_to_go": {"p2p": 7.140416497135023, "conventional": 7.140416497135023}, "p2p_money": 15.15514, "injection_kw": 189.10270000000003, "final_injection_kw": 238.03768545837403, "limits": [{"interval": 37, "iteration": 1, "max_injection_w": null, "mg": "mg5", "min_injection_w": 489103, "reason": "bus 32 voltage 0.9052 pu vs limit 0.9300 pu"}], "adjustments": [{"met": false, "injection_kw": 238.03768545837403, "reason": "cannot inject at least 489.10 kW with its agreed P2P trades (+275.55 kW): the most it can inject is 238.04 kW (sheddable load shed, storage and gensets at their limits); it offers that instead"}], "guard": {"mode": "off", "dispatch": "unguarded"}, "risk_allowance": 0.0, "budget_day": 2.405043799766599, "budget_left": 3.2538986918411763, "secure": false, "settled": 0}
"""
SESSION = "064b2cf7d5e21043/dayahead/1796644281/36"


def _edges(text: str = LAB_093) -> dict[str, list[dict[str, Any]]]:
    edges: dict[str, list[dict[str, Any]]] = {"mg2": [], "mg4": [], "mg5": []}
    mg = "mg2"
    for line in text.strip().splitlines():
        record = json.loads(line)
        mg = record.get("mg", mg)  # a day line (the uplift claim) comes before its MG's interval records
        edges[mg].append(record)
    return edges


def _days(edges: dict[str, list[dict[str, Any]]]) -> tuple[dict[str, float], dict[str, float]]:
    """Each MG's P2P and conventional day as `report.write_report` adds them: the intervals plus cost to go."""
    p2p: dict[str, float] = {}
    conv: dict[str, float] = {}
    for mg, recs in edges.items():
        for r in recs:
            if "trades" in r:
                to_go = r.get("cost_to_go") or {}
                p2p[mg] = p2p.get(mg, 0.0) + r["cost_p2p"] + to_go.get("p2p", 0.0)
                conv[mg] = conv.get(mg, 0.0) + r["cost_conventional"] + to_go.get("conventional", 0.0)
    return p2p, conv


def test_the_093_labs_failed_check_names_the_dso_limit_on_mg4s_forward_purchase() -> None:
    edges = _edges()
    ok, section = owner_bound(edges, *_days(edges), window={36, 37})
    assert not ok and section["errors"] == []
    mg4 = section["mgs"]["mg4"]
    assert not mg4["within"] and mg4["above_conventional"] == pytest.approx(13.2935, abs=1e-4)
    # the guard was off: its DSO part is unknown, not 0.0
    assert mg4["dso_cost"] is None and mg4["dso_cost_unknown"] == "guard off in intervals 36, 37"
    limited = mg4["dso_limited"]
    assert [t["interval"] for t in limited] == [36, 37] and [t["met"] for t in limited] == [False, False]
    assert limited[0]["limits"] == [{"iteration": 1, "min_injection_w": -280158, "max_injection_w": None,
                                     "reason": "bus 32 voltage 0.9044 pu vs limit 0.9300 pu"}]  # fmt: skip
    assert (limited[0]["injection_kw"], limited[0]["final_injection_kw"]) == (
        -580.1585,
        pytest.approx(-310.3705),
    )
    assert limited[0]["forward"] == SESSION
    assert limited[0]["forward_trades"] == [
        {"id": "71efcf0768581347", "side": "bought", "quantity_kwh": 65.973, "price": 0.22},
        {"id": "55216c05abe5a189", "side": "bought", "quantity_kwh": 49.185, "price": 0.22},
    ]
    assert [t["forward_kwh"] for t in limited] == [
        {"bought": 115.158, "sold": 0},
        {"bought": 117.41, "sold": 0},
    ]
    # D3's figures: 37.57 kWh x (0.22 - 0.05) = 6.386 and 40.63 kWh x 0.17 = 6.907, the whole gap
    assert [t["above_conventional"] for t in limited] == [pytest.approx(6.3861, abs=1e-4),
                                                          pytest.approx(6.9074, abs=1e-4)]  # fmt: skip
    assert mg4["dso_limited_above"] == pytest.approx(mg4["above_conventional"], abs=1e-9)
    assert section["dearer"] == {"mg4": mg4["cause"]}
    assert mg4["cause"] == (
        "13.29 above its bound (its conventional day + allowance 0.00). A DSO limit bound it in intervals 36, 37"
        " (not met: it could not reach its limit), where it held forward trades (bought 232.568 kWh; day-ahead"
        f" session {SESSION}): those intervals account for +13.29 against its conventional day, the rest of its"
        " day (other intervals, the batteries' cost to go) +0.00."
    )
    # a passed check names its cause too: mg5 sold forward under the same limits and gained by it
    mg5 = section["mgs"]["mg5"]
    assert mg5["within"] and [t["forward_kwh"]["sold"] for t in mg5["dso_limited"]] == [65.973, 68.887]
    assert mg5["cause"].startswith("within its bound by 19.83 (") and "account for -19.83" in mg5["cause"]
    # mg2 traded forward with no limit: nothing to list, and it says so
    mg2 = section["mgs"]["mg2"]
    assert mg2["dso_limited"] == [] and mg2["dso_limited_above"] == 0
    assert (
        mg2["cause"].endswith("; no DSO limit bound it in the run's intervals.")
        and "-0.00" not in mg2["cause"]
    )


def _page(edges: dict[str, list[dict[str, Any]]]) -> str:
    ok, section = owner_bound(edges, *_days(edges), window={36, 37})
    p2p, conv = _days(edges)
    return html({
        "scenario": "ieee33.yaml", "intervals": [36, 37], "interval_s": 6.0, "checks": {"p2p_not_dearer": ok},
        "prices_per_round": {}, "voltages": [], "mg_cost_p2p": p2p, "mg_cost_conventional": conv,
        "welfare": {"p2p": -1.0, "conventional": -2.0, "central": None, "p2p_over_central": None},
        "ledger": {}, "trades": [], "switch_operations": [], "pacing": [], "device_faults": None,
        "rationality": section,
    })  # fmt: skip


def test_the_page_names_the_cause_beside_the_check_and_shows_an_unknown_dso_cost_as_unknown() -> None:
    page = _page(_edges())
    assert "<li><b>p2p_not_dearer</b>: False<br>mg4: 13.29 above its bound" in page
    assert "<td>mg4</td><td>0.00</td><td>1611.33</td><td>1624.62</td><td>False</td><td>off</td>" in page
    assert (
        "<td>unknown (guard off in intervals 36, 37)</td>" in page
        and "<td>0.00</td><td>1324.15</td>" not in page
    )
    assert (
        "<tr><td>mg4</td><td>36</td><td>≥ -280.16 kW (bus 32 voltage 0.9044 pu vs limit 0.9300 pu)</td><td>no</td>"
        f"<td>-580.16</td><td>-310.37</td><td>bought 115.158 kWh ({SESSION})</td><td>90.90</td><td>84.52</td>"
        "<td>+6.39</td></tr>"
    ) in page
    # a passed check: nothing after it, and each MG's own line still says why
    passed = _page({"mg2": _edges()["mg2"]})
    assert "<li><b>p2p_not_dearer</b>: True</li>" in passed
    assert "No DSO limit bound any MG in the run's intervals." in passed


def _guarded(
    interval: int, dispatch: str, dso_cost: float | None, met: bool, forward: str | None = None
) -> dict[str, Any]:
    """An interval record of a strict guard's MG that met (or not) a DSO cap, bargained intraday or forward."""
    guard: dict[str, Any] = {"mode": "strict", "dispatch": dispatch}
    if dso_cost is not None:
        guard |= {"cost_p2p": 1.0, "dso_cost": dso_cost}
    return {
        "interval": interval, "mg": "mg1", "anonym": "aa", "forward": forward,
        "trades": [{"seller": "aa", "buyer": "bb", "price": 0.2, "quantity_kwh": 10.0, "id": f"t{interval}"}],
        "cost_p2p": 2.0, "cost_conventional": 1.5, "risk_allowance": 1.0, "guard": guard,
        "limits": [{"interval": interval, "iteration": 1, "mg": "mg1", "min_injection_w": None,
                    "max_injection_w": 40000, "reason": "line 7 loading"}],
        "adjustments": [{"met": met, "injection_kw": 40.0, "reason": "capped"}],
    }  # fmt: skip


def test_a_known_dso_cost_a_partly_known_one_a_met_limit_and_the_window() -> None:
    recs = [_guarded(40, "plan", 0.25, met=True), _guarded(41, "plan", 0.5, met=True)]
    ok, section = owner_bound({"mg1": recs}, {"mg1": 4.0}, {"mg1": 3.0}, window={40, 41})
    mg1 = section["mgs"]["mg1"]
    assert ok and mg1["dso_cost"] == 0.75 and mg1["dso_cost_unknown"] is None
    assert [t["met"] for t in mg1["dso_limited"]] == [True, True]
    assert mg1["dso_limited"][0]["forward_trades"] == [] and mg1["dso_limited"][0]["forward"] is None
    assert (
        "(met by re-planning), where it held no forward trade: those intervals account for +1.00"
        in mg1["cause"]
    )
    assert section["dearer"] == {}
    # a forward interval the strict guard does not book: the sum is of the others, and it says so
    recs.append(_guarded(42, "forward", None, met=False, forward="s/dayahead/1/42"))
    ok, section = owner_bound({"mg1": recs}, {"mg1": 6.0}, {"mg1": 4.5}, window={40, 41, 42})
    mg1 = section["mgs"]["mg1"]
    assert mg1["dso_cost"] == 0.75
    assert (
        mg1["dso_cost_unknown"]
        == "dispatch 'forward' not booked by the guard in interval 42; the sum is of the others"
    )
    assert (
        "(not met in 42)" in mg1["cause"]
        and "sold 10.000 kWh; day-ahead session s/dayahead/1/42" in mg1["cause"]
    )
    # beyond the run's window (some MGMCs' only): neither listed nor summed
    ok, section = owner_bound({"mg1": recs}, {"mg1": 4.0}, {"mg1": 3.0}, window={40, 41})
    assert [t["interval"] for t in section["mgs"]["mg1"]["dso_limited"]] == [40, 41]
    assert section["mgs"]["mg1"]["dso_cost"] == 0.75 and section["mgs"]["mg1"]["dso_cost_unknown"] is None


def test_a_limited_record_with_a_bad_cost_is_named_not_raised() -> None:
    bad = _guarded(40, "plan", 0.0, met=False)
    bad["cost_conventional"] = "1.5"
    _, section = owner_bound({"mg1": [bad]}, {"mg1": 2.0}, {"mg1": 1.5})
    assert section["errors"] == ["mg1: interval 40: cost_conventional is not a number: '1.5'"]
    assert section["mgs"]["mg1"]["dso_limited"][0]["above_conventional"] is None
    assert section["mgs"]["mg1"]["dso_limited_above"] == 0
