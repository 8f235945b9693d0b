"""U6: `peergrid-edge day` after the MGMC was down for part of the day (a restart mid-day, the lab's drill).

The records then have a hole: intervals between the day's first and last record that the daemon never traded.
The summary names each as a row of its own and in the day's line, leaves it out of the figures, and flags this
MG's trades the chain holds for it; and where the DSO settled a trade far from what this side stated (a sale
settled at 0 Wh because the restart left the MGMC's sealed meter readings a gap), the statement stands beside
the settled figure, so the owner sees that the 0 is the DSO's, not its own word.
"""

from __future__ import annotations

from test_e4_day_summary import DAY, ME, OTHER, SETTLED, SOLD, chain, interval, trade

from peergrid_edge.day_summary import ChainView, render, summarise

AFTER = "05" * 32


def test_an_interval_without_a_record_is_named_left_out_and_its_chain_trades_flagged() -> None:
    lines = [interval(50, [trade(SOLD, ME, OTHER)]), interval(53, [])]
    lost = bytes.fromhex("06" * 32)
    on_chain = {51: [(lost, {"seller": bytes.fromhex(ME), "buyer": bytes.fromhex(OTHER)})]}
    summary = summarise(lines, chain({SOLD: ChainView({}, SETTLED)}), lambda t: on_chain.get(t, []))
    assert [r["interval"] for r in summary["intervals"]] == [50, 51, 52, 53]
    assert [r.get("missing") is not None for r in summary["intervals"]] == [False, True, True, False]
    total = summary["day_total"]
    assert (
        total["intervals"] == 2 and total["failed_intervals"] == 0 and total["missing_intervals"] == [51, 52]
    )
    assert total["cost_p2p"] == -3.0  # two recorded intervals of -1.5 each: the holes add nothing
    text = render(summary)
    assert "interval 51: no record: this MGMC did not trade it (stopped or restarting)" in text
    assert "the day: 2 intervals (0 failed; 2 without a record: 51, 52)" in text
    assert any(
        "interval 51: trade 0606060606060606 is on the chain, not in the records" in f
        for f in summary["flags"]
    )


def test_a_day_without_holes_reads_as_before() -> None:
    summary = summarise([interval(44, []), interval(45, [])], chain({}), lambda t: [])
    assert summary["day_total"]["missing_intervals"] == []
    assert "the day: 2 intervals (0 failed), 0 trades" in render(summary)


def test_a_settlement_far_from_this_sides_statement_shows_the_statement() -> None:
    """The lab's mg5 after its restart: it stated 3844 Wh of a 30443-Wh sale, the DSO settled it 0 ('seller not
    metered': no readings around the window's start). A few Wh apart is the DSO sharing by the meters: no note."""
    zero = {"amount": 0, "delivered": 0, "txid": b"\x09" * 32, "basis": "dso"}
    near = {"amount": 399_800, "delivered": 1999, "txid": b"\x0a" * 32, "basis": "dso"}
    lines = [
        interval(53, [trade(SOLD, ME, OTHER, 30.443), trade(AFTER, ME, OTHER)]),
        {"interval": 53, "day": DAY, "settlement": {"trade": SOLD, "settled": False, "delivered": 3844}},
        {"interval": 53, "day": DAY, "settlement": {"trade": SOLD, "settled": True, "delivered": 3844}},
        {"interval": 53, "day": DAY, "settlement": {"trade": AFTER, "settled": True, "delivered": 2000}},
    ]
    views = {
        SOLD: ChainView({}, {**SETTLED, "settlement": zero}),
        AFTER: ChainView({}, {**SETTLED, "settlement": near}),
    }
    text = render(summarise(lines, chain(views), lambda t: []))
    assert "settled 0 Wh (dso) (this MG stated 3844 Wh), +0.000000" in text
    assert "settled 1999 Wh (dso), +0.399800" in text
