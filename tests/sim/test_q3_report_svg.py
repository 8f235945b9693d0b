"""The bar chart's y tick values stand where a line chart's do: centred on the heights they name, inside the
plot's span, not drawn with their baseline on the picture's top edge (where the top one was cut off)."""

from __future__ import annotations

import re

from peergrid_sim.report_svg import PAD, TOP, H, bars, lines

GLYPH_PX = 10  # the ticks' font size: a value's glyphs reach this far above its baseline


def _y_ticks(svg: str) -> dict[str, float]:
    return {m[2]: float(m[1]) for m in re.finditer(r'<text x="2" y="([\d.-]+)" font-size="10">([^<]+)<', svg)}


def test_the_bar_charts_y_ticks_are_centred_on_their_heights_as_the_line_charts() -> None:
    chart = bars(["mg1", "mg2"], {"P2P": [3.0, -1.0], "conventional": [5.0, 2.0]})
    ticks = _y_ticks(chart)
    tallest = min(float(m[1]) for m in re.finditer(r'<rect x="[\d.]+" y="([\d.]+)"', chart))
    assert tallest == TOP  # the plot's top, as a line chart's
    assert ticks["5"] == tallest + 4  # centred on the tallest bar's top (the value 5)
    assert ticks["-1"] == H - PAD + 4  # and the lowest value on the plot's bottom
    assert all(y - GLYPH_PX > 0 for y in ticks.values())  # drawn inside the picture, not cut at its edge
    line_ticks = _y_ticks(lines({"cost": [(0, -1.0), (1, 5.0)]}, "mg", "currency"))
    assert line_ticks == ticks  # the same range, the same places


def test_a_flat_or_empty_bar_chart_still_draws_its_ticks_inside_the_picture() -> None:
    for chart in (bars([], {}), bars(["mg1"], {"P2P": [0.0]})):
        ticks = _y_ticks(chart)
        assert ticks and all(TOP <= y - 4 <= H - PAD for y in ticks.values()), ticks
