"""review16 C1: the DSO picks a party's commitment intervals by the MGMC's stamps but counts a signing meter's
readings at the meter's time, so a meter clock about a commitment interval off left a window end unmeasured
and an honest seller was paid 0. Now, where the readings counted leave a window end unmeasured and the meter's
clock is off, the DSO reads the commitment intervals that far further (`sealed_readings._read_for_clock`),
at most `CLOCK_REACH_COMMITS` each way; those readings are sealed whole, in time, and counted at the meter's
time like the others. A window the readings measure reads nothing more (record bytes as before). On a real
MGMC chain (tests/dso's market), leaves as the edge makes them, the meter polled every 10 s all along."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from peergrid_dso import sealed_readings
from peergrid_dso.disputes import Unresolved, Vouched, resolve
from peergrid_edge.commitments import reading_leaf
from peergrid_ledger.meter_signing import CLOCK_REACH_COMMITS, sign_reading
from peergrid_ledger.state import StateReader

from .test_disputes import CLOCK, START_MS, T, chain_time
from .test_disputes_readings import METER, WAIT_MS, dispute

BASE = list(CLOCK.commitments(T))  # 16, 17, 18: the window [1010, 1070) s +- max_gap 15 s
CAP_S = CLOCK_REACH_COMMITS * CLOCK.commit_ms / 1000  # 180 s


def meter_polls(clock_off_s: float, stamps: Sequence[float] | None = None) -> list[bytes]:
    """The seller's PCC meter polled every 10 s from 200 s before the window to 200 s after (MGMC stamps, s),
    exporting 5 Wh/s (300 over any 60 s), its meter's clock `clock_off_s` ahead of the MGMC's (negative:
    behind): each reading signed at the meter's time with the counter of the moment it was read."""
    leaves = []
    for at_s in range(START_MS // 1000 - 200, START_MS // 1000 + 261, 10) if stamps is None else stamps:
        export = 1_000_000 + 5 * (at_s - START_MS // 1000)
        signed = sign_reading(METER, "s-pcc", round((at_s + clock_off_s) * 1000), round(export), 500_000)
        quantities = {"power_w": 0.0, "energy_wh": float(export), "import_wh": 5e5}
        leaves.append(reading_leaf("pcc", "meter", at_s, quantities, signed))
    return leaves


def reads_of(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The commitment intervals `sealed_leaves` checks against the chain for the seller, from here on."""
    asked: list[int] = []
    verified = sealed_readings.verified_leaves

    def recording(
        state: StateReader, node: bytes, commitment: int, sealed: Mapping[tuple[bytes, int], Sequence[bytes]]
    ) -> Sequence[bytes]:
        asked.append(commitment)
        return verified(state, node, commitment, sealed)

    monkeypatch.setattr(sealed_readings, "verified_leaves", recording)
    return asked


@pytest.mark.parametrize("clock_off_s", [30.0, -30.0, 55.0, -65.0, 100.0, -150.0, 170.0])
def test_a_meter_clock_off_by_commitment_intervals_still_settles_what_was_delivered(
    monkeypatch: pytest.MonkeyPatch, clock_off_s: float
) -> None:
    """Settled by both meters at the 300 Wh the seller delivered, on the first pass, with its meter's clock
    up to nearly the cap off. The window's own intervals hold stamps [960, 1140) s: at the meter's time
    they reach its start for a meter up to 50 s ahead and its end for one up to 60 s behind (R16's +-30 s
    rows were paid 0 only because its polls began 20 s before the window); past that, paid 0 before, the
    intervals read beyond are those the offset needs, on its side only (a meter ahead: earlier stamps)."""
    m, tid, signing = dispute(meter_polls(clock_off_s))
    asked = reads_of(monkeypatch)
    decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m), signing=signing)
    assert isinstance(decision, Vouched), decision
    assert (decision.rule, decision.delivered) == ("both metered", 300)
    extra = sorted({c for c in asked if c not in BASE})
    assert bool(extra) is (not -60 <= clock_off_s <= 50)
    assert all((c < BASE[0]) is (clock_off_s > 0) for c in extra) and len(extra) <= CLOCK_REACH_COMMITS
    seller = decision.readings["seller"]
    assert seller is not None and seller.signed >= 18 and "counted at the meter's time" in seller.off_clock


def test_a_window_the_readings_measure_reads_nothing_more(monkeypatch: pytest.MonkeyPatch) -> None:
    """A meter 14 s ahead (noted, not far enough to leave the window unmeasured): only the window's own
    commitment intervals are read, and the tally is what it was: their 18 readings."""
    m, tid, signing = dispute(meter_polls(14.0))
    asked = reads_of(monkeypatch)
    decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m), signing=signing)
    assert isinstance(decision, Vouched) and decision.delivered == 300
    assert set(asked) == set(BASE)
    seller = decision.readings["seller"]
    assert seller is not None and (seller.signed, seller.unsigned, seller.refused) == (18, 0, ())


def test_a_meter_clock_past_the_cap_is_unmetered_saying_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """A meter 240 s ahead: the DSO reads three commitment intervals further and no more, the seller stays
    unmetered (0 past the deadline) and the reason says first, plainly, how far off the meter's clock is."""
    m, tid, signing = dispute(meter_polls(240.0, stamps=range(700, 1_271, 10)))
    asked = reads_of(monkeypatch)
    first = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m), signing=signing)
    assert isinstance(first, Unresolved)
    assert sorted(set(asked)) == list(range(BASE[0] - CLOCK_REACH_COMMITS, BASE[-1] + 1))
    m.pass_time(m.chain.tip.time + WAIT_MS)
    decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m), signing=signing)
    assert isinstance(decision, Vouched) and (decision.rule, decision.delivered) == ("seller not metered", 0)
    why = decision.unmetered["seller"]
    plainly = (
        f"(the meter's clock is 240.0 s ahead of the MGMC's stamps, more than the {CAP_S:.0f} s "
        f"({CLOCK_REACH_COMMITS} commitment intervals) the DSO reads beyond a window for a meter's clock: set "
        "the meter's clock; "
    )
    assert why.startswith("no meter readings at most 15000 ms apart around 1010000 ms " + plainly), why


def test_the_cap_bounds_the_reads_whatever_offset_the_readings_claim(monkeypatch: pytest.MonkeyPatch) -> None:
    """Readings signed a day off the stamps (a reset RTC, or old readings sealed again): the DSO reads at most
    `CLOCK_REACH_COMMITS` commitment intervals beyond the window's, not a day of them."""
    m, tid, signing = dispute(meter_polls(86_400.0))
    asked = reads_of(monkeypatch)
    decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m), signing=signing)
    assert isinstance(decision, Unresolved)
    assert sorted(set(asked)) == list(range(BASE[0] - CLOCK_REACH_COMMITS, BASE[-1] + 1))
    assert set(asked) <= set(CLOCK.reachable(T))
    assert "the meter's clock is 86400.0 s ahead of the MGMC's stamps" in decision.why


def test_readings_read_for_the_clock_that_are_not_at_the_dso_are_asked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The intervals read for a meter 100 s ahead were never handed to the DSO: unresolved with a reason the
    edge posts again on ("are not at the DSO"), naming why they were read; given them, it settles at 300."""
    m, tid, signing = dispute(meter_polls(100.0))
    node = m.nodes["s"].public
    held = {key: m.sealed.pop(key) for key in list(m.sealed) if key[0] == node and key[1] < BASE[0]}
    first = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m), signing=signing)
    assert isinstance(first, Unresolved)
    assert "readings are not at the DSO (commitment intervals 14, 15 read as the meter's clock is 100.0 s " \
           "ahead of the MGMC's stamps)" in first.why  # fmt: skip
    m.sealed.update(held)
    decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m), signing=signing)
    assert isinstance(decision, Vouched) and decision.delivered == 300
