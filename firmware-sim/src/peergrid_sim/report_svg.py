"""Tiny inline-SVG charts for the testbed report: line charts and grouped bars, no JavaScript, no network.

Promises: `lines(series, xlabel, ylabel)` and `bars(labels, groups)` return an `<svg>` string that renders in
any browser; empty or flat data gives an empty chart with its axes, never an error. Pure.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#17becf")
W, H, PAD = 860, 300, 50
# the plot's top edge on a line chart: the y-axis title sits in the band above it (baseline 14), so the top
# tick value (drawn about its height, baseline TOP + 4) no longer lands on the title (U1: it did on every chart)
TOP = 30


def _scale(lo: float, hi: float, a: float, b: float) -> tuple[float, float]:
    if hi - lo < 1e-12:
        lo, hi = lo - 1, hi + 1
    k = (b - a) / (hi - lo)
    return k, a - lo * k


def lines(series: Mapping[str, Sequence[tuple[float, float]]], xlabel: str, ylabel: str) -> str:
    points = [p for s in series.values() for p in s]
    xs = [p[0] for p in points] or [0.0, 1.0]
    ys = [p[1] for p in points] or [0.0, 1.0]
    kx, cx = _scale(min(xs), max(xs), PAD, W - 10)
    ky, cy = _scale(min(ys), max(ys), H - PAD, TOP)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H + 20 * len(series)}">']
    out.append(f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - 10}" y2="{H - PAD}" stroke="black"/>')
    out.append(f'<line x1="{PAD}" y1="{TOP}" x2="{PAD}" y2="{H - PAD}" stroke="black"/>')
    out.append(f'<text x="{W / 2}" y="{H - 15}" font-size="12">{html.escape(xlabel)}</text>')
    out.append(f'<text x="5" y="14" font-size="12">{html.escape(ylabel)}</text>')
    for v in (min(ys), max(ys)):  # each tick value centred on its height
        out.append(f'<text x="2" y="{ky * v + cy + 4:.1f}" font-size="10">{v:.4g}</text>')
    # the last tick ends at the axis' end: drawn from there it ran past the chart's edge and was cut off
    for v, anchor in ((min(xs), "start"), (max(xs), "end")):
        out.append(
            f'<text x="{kx * v + cx:.1f}" y="{H - PAD + 14}" font-size="10" text-anchor="{anchor}">{v:.4g}</text>'
        )
    for i, (name, pts) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        path = " ".join(f"{kx * x + cx:.1f},{ky * y + cy:.1f}" for x, y in pts)
        if pts:
            out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{path}"/>')
        out.append(
            f'<text x="{PAD}" y="{H + 14 + 20 * i}" font-size="12" fill="{colour}">{html.escape(name)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def bars(labels: Sequence[str], groups: Mapping[str, Sequence[float]]) -> str:
    values = [v for vs in groups.values() for v in vs] or [0.0]
    lo, hi = min(0.0, *values), max(0.0, *values)
    # the plot spans TOP..H - PAD as a line chart's: its top tick no longer sits on the picture's top edge
    ky, cy = _scale(lo, hi, H - PAD, TOP)
    slot = (W - PAD - 10) / max(1, len(labels))
    width = slot * 0.8 / max(1, len(groups))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H + 20 * len(groups)}">']
    zero = ky * 0 + cy
    out.append(f'<line x1="{PAD}" y1="{zero:.1f}" x2="{W - 10}" y2="{zero:.1f}" stroke="black"/>')
    out.append(f'<line x1="{PAD}" y1="{TOP}" x2="{PAD}" y2="{H - PAD}" stroke="black"/>')
    for v in (lo, hi):  # each tick value centred on its height, as a line chart's (drawn on it, it sat above)
        out.append(f'<text x="2" y="{ky * v + cy + 4:.1f}" font-size="10">{v:.4g}</text>')
    for j, (name, vs) in enumerate(groups.items()):
        colour = COLOURS[j % len(COLOURS)]
        for i, v in enumerate(vs):
            x = PAD + i * slot + j * width
            y0, y1 = sorted((zero, ky * v + cy))
            out.append(
                f'<rect x="{x:.1f}" y="{y0:.1f}" width="{width:.1f}" height="{max(0.5, y1 - y0):.1f}" fill="{colour}"/>'
            )
        out.append(
            f'<text x="{PAD}" y="{H + 14 + 20 * j}" font-size="12" fill="{colour}">{html.escape(name)}</text>'
        )
    for i, label in enumerate(labels):
        out.append(
            f'<text x="{PAD + i * slot:.1f}" y="{H - PAD + 14}" font-size="11">{html.escape(label)}</text>'
        )
    out.append("</svg>")
    return "".join(out)
