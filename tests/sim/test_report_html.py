"""The report page (`report_html.html`) draws each MG's bound and the day-ahead make-whole from report.json's
`rationality` and `uplift` sections (escaped; micro-units as currency), and still draws a document from before
them."""

from __future__ import annotations

from typing import Any

from peergrid_sim.report_html import html


def _doc(**sections: Any) -> dict[str, Any]:
    return {
        "scenario": "ieee33.yaml", "intervals": [36], "interval_s": 6.0, "checks": {"p2p_not_dearer": True},
        "prices_per_round": {}, "voltages": [], "mg_cost_p2p": {"mg1": 1.0}, "mg_cost_conventional": {"mg1": 2.0},
        "welfare": {"p2p": -1.0, "conventional": -2.0, "central": None, "p2p_over_central": None},
        "ledger": {}, "trades": [], "switch_operations": [], "pacing": [], "device_faults": None, **sections,
    }  # fmt: skip


def test_the_page_shows_each_mgs_bound_and_the_make_whole() -> None:
    rationality = {
        "mgs": {"mg1": {"risk_allowance": 3.0, "guard_mode": "strict", "dso_cost": 0.25, "budget_day": 13.0,
                        "budget_left": 2.5, "bound": 13.0, "cost_p2p": 12.9, "within": True}},
        "errors": ["mg2: risk_allowance is not a number: '<b>'"],
    }  # fmt: skip
    uplift = {"sessions": [{
        "session": "o/dayahead/<1>/36", "claims": {"mg1": {"gain": 40_000, "surplus": 0}, "mg2": {"gain": 0, "surplus": 5}},
        "settled": True, "funded": True, "owed": 40_000, "surplus": 40_000, "credits": {"mg1": 40_000},
        "charges": {"mg2": 40_000}, "moved": {"mg1": 40_000, "mg2": -40_000}, "balances_match": True,
    }]}  # fmt: skip
    page = html(_doc(rationality=rationality, uplift=uplift))
    assert (
        "<td>mg1</td><td>3.00</td><td>13.00</td><td>12.90</td><td>True</td><td>strict</td><td>0.25</td><td>2.50</td>"
        in page
    )
    assert "&#x27;&lt;b&gt;&#x27;" in page and "'<b>'" not in page  # a record's bad field, escaped
    assert "<td>o/dayahead/&lt;1&gt;/36</td><td>True</td><td>True</td><td>0.040000</td>" in page
    assert (
        "<td>mg1 0.040000</td><td>mg1 0.040000</td><td>mg2 0.040000</td><td>mg1 0.040000, mg2 -0.040000</td>"
        in page
    )
    page = html(_doc(uplift={"sessions": [], "error": "no MGMC chain store in the lab's nodes"}))
    assert "no MGMC chain store in the lab&#x27;s nodes" in page


def test_a_report_from_before_the_sections_is_still_drawn() -> None:
    page = html(_doc())
    # the bound's table, empty; no day-ahead session: one line, no make-whole table (test_p1_report_page)
    assert "Each MG's bound" in page and "<th>session</th>" not in page
    assert "<td>mg1</td><td>" not in page and "<td>o/" not in page
