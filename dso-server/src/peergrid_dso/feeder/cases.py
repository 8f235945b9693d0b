"""Named feeders and feeder data files: case33bw with ratings and MG buses, tie-line files.

Promises: `case33bw()` is the Baran & Wu 33-bus feeder (from pandapower) with branches 33–37 as open ties
and realistic thermal ratings (the source has none); `load_ties` appends tie branches (open) from a CSV file
`from_bus,to_bus,r_ohm,x_ohm[,rating_ka]`, raising `FeederDataError` with the line number on bad rows.
"""

from __future__ import annotations

import csv
import functools
import math
from importlib import resources
from pathlib import Path

from peergrid_dso.feeder.model import Branch, Feeder, FeederDataError, build_feeder, ka_to_mva

# Overhead 12.66 kV conductors: the trunk out of the substation is heavier than the laterals.
# Base-case loading with these ratings peaks at about 70 % (branch 1), leaving room for reconfiguration.
CASE33BW_RATINGS_KA: dict[int, float] = {
    **{n: 0.30 for n in range(1, 6)},
    **{n: 0.20 for n in (*range(6, 11), 18, 22, 23, 24, 25, 26, 27, 28)},
    **{n: 0.15 for n in (*range(11, 18), *range(19, 22), *range(29, 33))},
    **{n: 0.20 for n in range(33, 38)},  # ties
}

CASE69_TIES = "case69_ties.csv"


def case33bw(mg_buses: dict[str, int] | None = None) -> Feeder:
    """`mg_buses`: MG id -> bus number (1-based, as in the paper)."""
    feeder = _case33bw_base()
    return feeder.with_mg_buses(mg_buses) if mg_buses else feeder


@functools.cache
def _case33bw_base() -> Feeder:  # a frozen Feeder: safe to share
    import pandapower.networks as pn  # heavy import kept out of module import

    net = pn.case33bw()
    kv = float(net.bus.vn_kv.iloc[0])
    zbase = kv**2 / net.sn_mva
    branches = []
    for k, row in enumerate(net.line.itertuples(), start=1):
        r = row.r_ohm_per_km * row.length_km / zbase
        x = row.x_ohm_per_km * row.length_km / zbase
        rating = ka_to_mva(CASE33BW_RATINGS_KA[k], kv)
        branches.append(Branch(k, int(row.from_bus), int(row.to_bus), r, x, rating, bool(row.in_service)))
    p = [0.0] * len(net.bus)
    q = [0.0] * len(net.bus)
    for row in net.load.itertuples():
        p[int(row.bus)] += float(row.p_mw)
        q[int(row.bus)] += float(row.q_mvar)
    return build_feeder(
        name="case33bw",
        base_mva=float(net.sn_mva),
        base_kv=kv,
        bus_ids=tuple(range(1, len(net.bus) + 1)),
        load_p_mw=tuple(p),
        load_q_mvar=tuple(q),
        root=int(net.ext_grid.bus.iloc[0]),
        branches=tuple(branches),
    )


def packaged_data(name: str) -> Path:
    return Path(str(resources.files("peergrid_dso.data").joinpath(name)))


def load_ties(feeder: Feeder, path: str | Path) -> Feeder:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FeederDataError(f"{path}: cannot read ties file: {exc.strerror or exc}") from None
    zbase = feeder.base_kv**2 / feeder.base_mva
    rows = [
        (n, line)
        for n, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.startswith("#")
    ]
    if not rows or not rows[0][1].replace(" ", "").startswith("from_bus,to_bus,r_ohm,x_ohm"):
        raise FeederDataError(f"{path}: expected a header 'from_bus,to_bus,r_ohm,x_ohm[,rating_ka]'")
    ties = []
    number = len(feeder.branches)
    for lineno, fields in ((n, next(csv.reader([line]))) for n, line in rows[1:]):
        try:
            fb, tb = feeder.bus_index(int(fields[0])), feeder.bus_index(int(fields[1]))
            r, x = float(fields[2]), float(fields[3])
            rating = (
                ka_to_mva(float(fields[4]), feeder.base_kv)
                if len(fields) > 4 and fields[4].strip()
                else math.inf
            )
        except (ValueError, IndexError, FeederDataError) as exc:
            raise FeederDataError(f"{path}:{lineno}: bad tie row ({exc})") from None
        number += 1
        ties.append(Branch(number, fb, tb, r / zbase, x / zbase, rating, closed=False))
    return feeder.with_branches(ties)
