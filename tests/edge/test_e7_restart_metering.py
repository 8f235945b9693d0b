"""A restarted MGMC states no delivery the DSO will call unmetered, and knows before it offers that its meter
did not see an interval's start (E7).

U6's drill 3: mg5 killed in interval 50 and back 5 s into interval 53's window (the lab's market ran behind the
wall clock after the kill), traded and stated 53 (3844, 706, 64 and 1003 Wh) from its first reading in the
window, and the DSO settled all four "seller not metered": 'no meter readings at most 6000 ms apart around
<window start>', 0 Wh for 44.5 kWh agreed. The edge's `provable_wh` let a seller state a bound where the
ledger's `metering.metered`, which the DSO settles by (dso-server `sealed_readings`), measures nothing. Now the
edge states exactly where `metered` measures, and `start_unseen` says beforehand that it will not.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_edge_settle_both import meter_leaves

from peergrid_edge.pcc_readings import MgMetering, Unprovable, provable_wh, start_unseen
from peergrid_ledger.metering import Unmetered, metered

WINDOW = (60_000, 66_000)
GAP = 6_000  # three 2-s polls, as the lab gives the edge and the DSO alike
POLLS = [(a, 1000.0 + (a - 58_000) * 0.05, 50.0) for a in range(58_000, 70_001, 2_000)]
RESTARTED = [p for p in POLLS if p[0] > 61_000]  # back in the window: its first reading at 62 s


def test_a_seller_back_in_the_window_states_nothing_as_the_dso_meters_nothing() -> None:
    with pytest.raises(Unmetered, match="around 60000 ms"):
        metered(meter_leaves(RESTARTED), WINDOW, "energy_wh", GAP)  # the DSO's rule: seller not metered
    for party in ("seller", "buyer"):
        with pytest.raises(Unprovable, match=f"as the {party}"):  # before: the seller stated 200 Wh
            provable_wh(meter_leaves(RESTARTED), WINDOW, party, GAP)
    # an outage at the end, read again after it: nothing either (before: the seller's last reading bounded it)
    ended = [p for p in POLLS if p[0] < 64_000] + [(75_000, 1900.0, 60.0)]
    with pytest.raises(Unprovable, match="around 66000 ms"):
        provable_wh(meter_leaves(ended), WINDOW, "seller", GAP)
    # read from before the start: stated, the very figure the DSO measures
    assert provable_wh(meter_leaves(POLLS), WINDOW, "seller", GAP) == metered(
        meter_leaves(POLLS), WINDOW, "energy_wh", GAP
    )


@given(
    steps=st.lists(st.integers(0, 50_000), min_size=12, max_size=12),
    started=st.integers(0, 10),
    stopped=st.integers(1, 11),
    offset=st.integers(0, 1_999),
    party=st.sampled_from(["seller", "buyer"]),
)
def test_the_edge_states_a_figure_exactly_where_the_ledger_meters_one(
    steps: list[int], started: int, stopped: int, offset: int, party: str
) -> None:
    """Polls every 2 s, the MGMC holding those from poll `started` (back late) to before `stopped` (down)
    and the last one (back again): the edge states `metered`'s figure where the DSO's rule measures the
    window, and nothing (`Unmetered`: waiting or for good) where it does not."""
    at = [50_000 + offset + 2_000 * k for k in range(12)]
    counter = [sum(steps[: k + 1]) / 1000 for k in range(12)]
    polls = [(a, c, c / 2) for a, c in zip(at, counter, strict=True)]
    kept = meter_leaves([*polls[started:stopped], polls[-1]])
    window = (at[0] + 4_000 + offset // 2, at[0] + 10_000 + offset // 2)
    counter_name = "energy_wh" if party == "seller" else "import_wh"
    try:
        measured = metered(kept, window, counter_name, GAP)
    except Unmetered:
        with pytest.raises(Unmetered):
            provable_wh(kept, window, party, GAP)
        return
    assert provable_wh(kept, window, party, GAP) == measured


def test_start_unseen_after_a_restart_in_the_window() -> None:
    start = WINDOW[0]
    leaves = meter_leaves(RESTARTED)
    why = start_unseen(leaves, start, 63_000, GAP)
    assert why is not None and "around 60000 ms" in why and "first reading after it at 62000 ms" in why
    assert start_unseen(leaves, start, 59_000, GAP) is None  # not started yet: it may still read it
    assert start_unseen(meter_leaves(POLLS), start, 70_000, GAP) is None  # bracketed
    # its last reading before the start at 58 s: one after it may still come until 64 s, not after
    before = meter_leaves(POLLS[:1])
    assert start_unseen(before, start, 61_000, GAP) is None
    later = start_unseen(before, start, 64_500, GAP)
    assert later is not None and "at most 6000 ms apart" in later
    assert start_unseen([], start, 61_000, GAP) is not None  # no reading at all: the MGMC was down


class Store:
    def __init__(self, leaves: list[bytes]) -> None:
        self._leaves = leaves

    def leaves(self, interval: int) -> list[bytes]:
        return self._leaves if interval == 1 else []  # readings from 54 s on: commitment interval [60, 120) s

    def is_sealed(self, interval: int) -> bool:
        return True


def test_the_agents_metering_says_it_before_the_offer() -> None:
    def metering(leaves: list[bytes], poll_s: float = 2.0) -> MgMetering:
        return MgMetering(
            Store(leaves), poll_s, 60.0, lambda t: WINDOW, lambda t: [], b"m" * 32, b"n" * 32, None
        )

    assert metering(meter_leaves(RESTARTED)).start_unseen(1, 63_000) is not None
    assert metering(meter_leaves(POLLS)).start_unseen(1, 63_000) is None
    assert metering([], poll_s=0).start_unseen(1, 63_000) is None  # no PCC meter: states from its read-back
