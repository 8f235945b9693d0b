"""A record line holding an integer no float can hold (10**400: Python's json reads it exactly) is damage, named and
refused like NaN, never a crash: `resume.finite` called math.isfinite on it, which raised OverflowError, so a damaged
record file crashed the MGMC's restart (E5's premium resume) and `peergrid-edge day` (RR2)."""

from __future__ import annotations

import json

from peergrid_edge.day_summary import read_records
from peergrid_edge.resume import finite


def test_an_integer_beyond_a_float_is_not_finite() -> None:
    assert finite(10**300) and finite(-(10**300)) and finite(0) and finite(1.5)
    assert not finite(10**400) and not finite(-(10**400)) and not finite(True) and not finite(float("nan"))


def test_the_day_summary_names_such_a_line() -> None:
    good = {"interval": 3, "trades": [], "p2p_money": 0.0, "cost_p2p": 1.0, "cost_conventional": 2.0}
    lines = [json.dumps(good), json.dumps({**good, "interval": 4, "cost_p2p": 10**400})]
    records, damaged = read_records(lines, "market.jsonl")
    assert [r["interval"] for r in records] == [3]
    assert damaged == ["market.jsonl:2: its cost_p2p is not a number"], damaged
