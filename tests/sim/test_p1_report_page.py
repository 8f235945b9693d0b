"""The report page's rough edges U1 found running the README's example, each drawn as it should be now: the
y-axis title clear of the top tick value, welfare as costs with the bench's share of the achievable gain,
one line (no empty table) where no day-ahead session claimed a make-whole, the end-of-run quiesce as plain
fields (no JSON), and sellers and buyers by MG where report.json names their anonyms."""

from __future__ import annotations

import re
from typing import Any

import pytest

from peergrid_sim.report_html import NO_UPLIFT, html, share_of_gain
from peergrid_sim.report_svg import lines

SELLER = "64c3c4a54146dac3d65d112b0401553f06c5a8059e9ae753920c09e3b737be61"
BUYER = "5b73f35990acb2b00ad639821110f031ea4e16f7ebb0b70a1a12cca561c43f08"
HEAD = "b355c594041476af8cce37cec9921055219d7fa0f4d3c8ccd83b026323cdd41c"
# U1's run of the README's example (24 intervals): costs 481.30 P2P, 846.24 conventional, 433.82 central
U1_WELFARE = {"p2p": -481.29657375, "conventional": -846.2420946229362, "central": -433.82349450000004,
              "p2p_over_central": 1.1094294796198503}  # fmt: skip


def _doc(**sections: Any) -> dict[str, Any]:
    return {
        "scenario": "ieee33.yaml", "intervals": [36], "interval_s": 6.0, "checks": {}, "voltages": [],
        "prices_per_round": {"36": [{"round": 1, "prices": {SELLER[:8]: 0.135}}]},
        "mg_cost_p2p": {"mg1": 1.0}, "mg_cost_conventional": {"mg1": 2.0}, "welfare": U1_WELFARE, "ledger": {},
        "trades": [{"interval": 36, "seller": SELLER, "buyer": BUYER, "quantity_kwh": 6.782, "price": 0.178}],
        "switch_operations": [], "pacing": [], "device_faults": None, **sections,
    }  # fmt: skip


def _text(page: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))


def test_the_y_axis_title_sits_above_the_top_tick_value() -> None:
    svg = lines({"price": [(0, 0.135), (47, 0.22)]}, "round", "price / kWh")
    title_y = float(re.search(r'<text x="5" y="([\d.]+)" font-size="12">price / kWh', svg).group(1))  # type: ignore[union-attr]
    top_tick = float(re.search(r'<text x="2" y="([\d.]+)" font-size="10">0.22<', svg).group(1))  # type: ignore[union-attr]
    assert title_y < top_tick - 10  # the tick value's glyphs (10 px) start below the title's baseline


def test_the_end_of_run_is_plain_fields_not_json() -> None:
    quiesce = {"ok": True, "waited_s": 6.93, "halt_s": 4.92, "halt": {"dso-ieee33": 126, "mgmc-ieee33": 368},
               "pending_at_halt": 0, "pending": 0,
               "heads": {"dso-ieee33": {"dso": [126, HEAD], "mgmc-mg1": [126, HEAD]},
                         "mgmc-ieee33": {"dso": [368, "605bfc7d" + "0" * 56], "mgmc-mg1": [367, "<b>"]}}}  # fmt: skip
    page = html(_doc(quiesce=quiesce))
    assert '{"ok"' not in page and "&quot;ok&quot;" not in page
    text = _text(page)
    assert "every replica of both chains on the halt height with the same head yes" in text
    assert "waited for the halt (s) 6.93" in text and "halt heights dso-ieee33 126, mgmc-ieee33 368" in text
    assert "transactions pending at the halt / at the end 0 / 0" in text
    assert "heads on dso-ieee33 all 2 replicas at 126 (b355c594)" in text
    assert "heads on mgmc-ieee33 dso at 368 (605bfc7d); mgmc-mg1 at 367 (&lt;b&gt;)" in text  # escaped
    assert "No end-of-run record" in html(_doc(quiesce=None))


def test_no_day_ahead_session_is_one_line_not_an_empty_table() -> None:
    for uplift in ({"sessions": [], "capacities": {"mg1": [[36, 96750]]}}, None):  # None: from before it
        page = html(_doc(uplift=uplift))
        assert NO_UPLIFT in page and "<th>session</th>" not in page
    page = html(_doc(uplift={"sessions": [], "error": "no MGMC chain store in the lab's nodes"}))
    assert (
        "no MGMC chain store in the lab&#x27;s nodes" in page and NO_UPLIFT not in page
    )  # the error says it


def test_sellers_and_buyers_are_named_by_mg_where_the_report_knows_their_anonyms() -> None:
    page = html(_doc(anonyms={SELLER: "mg1", BUYER: "mg5"}))
    assert ">mg1 (64c3c4a5)</text>" in page  # the price chart's legend
    assert "<td>mg1 (64c3c4a5)</td><td>mg5 (5b73f359)</td>" in page  # the trades table
    assert "names no MG" not in page
    page = html(_doc())  # a report.json without `anonyms`: by anonym, and the page says why
    assert ">64c3c4a5</text>" in page and "<td>64c3c4a5</td><td>5b73f359</td>" in page
    assert "names no MG" in page


def test_welfare_is_shown_as_costs_and_the_share_of_the_achievable_gain() -> None:
    assert share_of_gain(-481.29657375, -846.2420946229362, -433.82349450000004) == pytest.approx(
        0.885, abs=5e-4
    )
    assert share_of_gain(-2.0, -2.0, -1.0) == 0.0 and share_of_gain(-1.0, -2.0, -1.0) == 1.0
    assert share_of_gain(-1.0, -2.0, None) is None and share_of_gain(-1.0, -2.0, -2.0) is None
    # an optimum within an LP's tolerance of the conventional market, or worse than it: no share (R36)
    assert (
        share_of_gain(-440.0, -441.85, -441.8499995) is None
        and share_of_gain(-441.0, -441.85, -441.86) is None
    )
    text = _text(html(_doc()))  # a report.json from before `share_of_gain`: the page works it out
    assert "captured 88.5% of the achievable gain" in text
    assert "P2P market 481.30 conventional market 846.24 centralised optimum 433.82" in text
    assert "1.1094" not in text and "-481.30" not in text  # no ratio of two costs, no negative cost
    text = _text(html(_doc(welfare=U1_WELFARE | {"share_of_gain": 0.5})))  # report.json's own figure
    assert "captured 50.0% of the achievable gain" in text
    text = _text(html(_doc(welfare=U1_WELFARE | {"central": None, "share_of_gain": None})))
    assert "no centralised optimum to compare with" in text and "centralised optimum not computed" in text
