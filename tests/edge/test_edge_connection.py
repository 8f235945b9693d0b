"""The connection capacity the DSO posted, applied to what the MGMC posts (edge `connection.py`): the helpers
on a real MGMC chain state (the DSO's `market.capacity` posts through the market contract), their examples,
and a Hypothesis property of the cut: every cut interval's net within its capacity, reduce-only against its
input (each book keeps its sign and does not grow), the input itself where it was within. Where nothing is
posted every helper gives back its input (the rules and bounds the very object)."""

from __future__ import annotations

import dataclasses
import hashlib
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peergrid_controller.model import ContractRules
from peergrid_edge.connection import capacity_row, connected_bounds, connected_rules, within_capacity
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.genesis import Account, Genesis
from peergrid_ledger.keys import Keypair

AUTHORITY = Keypair.from_seed(hashlib.sha256(b"edge-connection/authority").digest())
DSO = Keypair.from_seed(hashlib.sha256(b"edge-connection/dso").digest())
MG = Keypair.from_seed(hashlib.sha256(b"edge-connection/mg").digest())
OTHER = Keypair.from_seed(hashlib.sha256(b"edge-connection/other").digest())
FIRST = 10
CAPS = [None, 500, 500, 800]  # Wh in chain intervals 10..13 as posted by `posted()`


def chain(*posts: tuple[int, int]) -> Any:
    """An MGMC chain state where the DSO posted MG's capacity (from_interval, wh) for each of `posts`."""
    genesis = Genesis(
        chain="edge-connection", time=0, authorities=(AUTHORITY.public,),
        accounts=(Account(AUTHORITY.public, ("mgmc",)), Account(DSO.public, ("dso",), "dso"),
                  Account(MG.public, ("anonym",), "mg"), Account(OTHER.public, ("anonym",), "other")),
        contracts=("market",),
    )  # fmt: skip
    local = LocalChain(genesis, AUTHORITY)
    for start, wh in posts:
        body = {"account": MG.public, "from_interval": start, "wh": wh}
        result = local.sign_and_submit(DSO, "market.capacity", body)
        assert result.ok, result
    local.seal()
    return local.state


def posted() -> Any:
    return chain((FIRST + 1, 500), (FIRST + 3, 800))


def test_the_row_reads_each_intervals_standing_capacity_and_none_before_the_first_post() -> None:
    state = posted()
    assert capacity_row(state, MG.public, FIRST, 4) == CAPS
    assert capacity_row(state, MG.public, FIRST + 3, 3) == [800, 800, 800]  # the last post stands on
    assert capacity_row(state, OTHER.public, FIRST, 4) == [None] * 4  # posted for MG's key alone
    assert capacity_row(chain(), MG.public, FIRST, 4) == [None] * 4


def test_the_rules_are_cut_to_the_intervals_capacity_and_are_the_same_object_where_it_does_not_bind() -> None:
    state, own = posted(), ContractRules(floor_price=0.1, max_quantity_kwh=0.7)
    assert connected_rules(own, state, MG.public, FIRST) is own  # nothing stands yet
    assert connected_rules(own, state, MG.public, FIRST + 3) is own  # 0.8 kWh: its own 0.7 is tighter
    cut = connected_rules(own, state, MG.public, FIRST + 1)
    assert cut == dataclasses.replace(own, max_quantity_kwh=0.5)  # only the maximum moves
    unlimited = ContractRules()
    assert connected_rules(unlimited, state, MG.public, FIRST + 2).max_quantity_kwh == 0.5
    assert connected_rules(unlimited, state, OTHER.public, FIRST + 2) is unlimited
    assert math.isinf(connected_rules(unlimited, chain(), MG.public, FIRST + 2).max_quantity_kwh)


def test_the_day_ahead_bounds_are_cut_to_plus_minus_the_capacity_in_kw() -> None:
    bounds = ([-3.0, -3.0, -0.5, -3.0], [3.0, 0.2, 3.0, 3.0])
    # half-hour intervals: 500 Wh is 1 kW, 800 Wh 1.6 kW
    assert connected_bounds(bounds, CAPS, 0.5) == ([-3.0, -1.0, -0.5, -1.6], [3.0, 0.2, 1.0, 1.6])
    assert connected_bounds(bounds, [None] * 4, 0.5) is bounds


def test_a_row_is_cut_per_interval_toward_zero_and_kept_where_within() -> None:
    assert within_capacity((1000, 200, -700, 900), CAPS) == (1000, 200, -500, 800)
    assert within_capacity((1000, 200, -700, 900), [None] * 4) == (1000, 200, -700, 900)
    # kWh (the forward accept's anchor): scale 1000
    assert within_capacity((1.0, 0.6, -0.2, 0.8), CAPS, scale=1000) == pytest.approx((1.0, 0.5, -0.2, 0.8))


def test_a_clean_sessions_row_is_cut_on_its_net_general_book_first() -> None:
    general, clean = (1000, 200, 300, 700), (0, 400, 0, 300)
    # interval 11: net 600 > 500: the general 200 gives 100; interval 13: net 1000 > 800: the general 200
    assert within_capacity(general + clean, CAPS) == (1000, 100, 300, 500, 0, 400, 0, 300)
    # a general book too small to take the whole excess: the clean book gives the rest
    assert within_capacity((0, 50, 0, 0, 0, 600, 0, 0), CAPS) == (0, 0, 0, 0, 0, 500, 0, 0)
    # a clean-only buyer (general 0, clean negative)
    assert within_capacity((0, 0, 0, 0, 0, -900, 0, 0), CAPS) == (0, 0, 0, 0, 0, -500, 0, 0)


def test_a_row_of_neither_one_book_nor_two_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="a row of 3 positions for 4 intervals"):
        within_capacity((1, 2, 3), CAPS)


CAP = st.one_of(st.none(), st.integers(1, 5000))
WH = st.integers(-8000, 8000)


@given(st.data())
def test_every_cut_is_within_the_capacity_reduce_only_and_the_identity_where_within(data: Any) -> None:
    n = data.draw(st.integers(1, 6))
    caps = data.draw(st.lists(CAP, min_size=n, max_size=n))
    two = data.draw(st.booleans())
    row = tuple(data.draw(st.lists(WH, min_size=n * (2 if two else 1), max_size=n * (2 if two else 1))))
    cut = within_capacity(row, caps)
    assert len(cut) == len(row) and all(type(v) is int for v in cut)
    for before, after in zip(row, cut, strict=True):  # reduce-only, book by book
        assert after * before >= 0 and abs(after) <= abs(before)
    for t, cap in enumerate(caps):
        places = (t, n + t) if two else (t,)
        net_before, net_after = sum(row[i] for i in places), sum(cut[i] for i in places)
        if cap is None or abs(net_before) <= cap:
            assert all(cut[i] == row[i] for i in places)  # within (or no capacity): untouched
        else:
            assert abs(net_after) == cap  # cut to the capacity, no further
        assert net_after * net_before >= 0  # the net keeps its side
    assert within_capacity(cut, caps) == cut  # a cut row is within: cutting again changes nothing
