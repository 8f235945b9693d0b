"""A PCC counter that never counted: what each side states (the day-ahead settle-by-both lab's mg2 and mg6).

In `peergrid-testbed --dayahead --settle-by-both` mg2 and mg6 sell forward trades while their PCCs import on
net, so their meters never export. SunSpec says an accumulator's 0 as "not accumulated": the edge's decoder
reads TotWhExp 0 as None and the reading leaf leaves `energy_wh` out. Their meters were polled every 1.5 s
(gaps of 1.50-1.56 s at every interval boundary in the lab's stores), yet as sellers they found no export
sample at all, so `metered` said "no meter readings at most 4500 ms apart" and they answered "not metered
yet" at every try until the trading day ended (9 trades unsettled). The rule now (`pcc_readings.
counting_leaves`): a seller reads the missing export counter of a PCC meter reading as 0 (it states 0 left:
the least it can state); a buyer reads a missing import counter as 0 only where some
reading shows the counter (it is implemented), and states nothing when its meter never counted an import.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_edge_settle_late_meter import Store
from test_sunspec_decode import block

from peergrid_edge import natures
from peergrid_edge.commitments import reading_leaf
from peergrid_edge.pcc_readings import MgMetering, Unprovable, counting_leaves, provable_wh, statement_wh
from peergrid_edge.settle_book import PendingSettle
from peergrid_edge.sunspec import decode_model
from peergrid_ledger.metering import Unmetered, metered

GAP = 4_500
WINDOW = (60_000, 66_000)  # the lab's 6 s interval, polled every 1.5 s


def pcc_leaf(at_ms: int, exported_wh: int, imported_wh: int) -> bytes:
    """One PCC meter poll as the edge stores it: a SunSpec 203 block decoded (`decode_model`), its nature
    reading (`natures.reading`) and the leaf of it (`reading_leaf`), exactly the daemon's path."""
    registers = block(203, {"W": 30_000, "W_SF": 0, "TotWh_SF": 0, "TotWhExp": exported_wh,
                            "TotWhImp": imported_wh})  # fmt: skip
    reading = natures.reading("meter", {"203": decode_model(203, registers)})
    return reading_leaf("meter", "meter", at_ms / 1000, reading)


def polls(
    exported: int, imported: int, per_poll: tuple[int, int], first: int = 57_000, last: int = 69_000
) -> list[bytes]:
    """Polls every 1.5 s from `first` to `last` ms, the counters growing by `per_poll` (export, import) Wh."""
    out = []
    for k, at in enumerate(range(first, last + 1, 1_500)):
        out.append(pcc_leaf(at, exported + k * per_poll[0], imported + k * per_poll[1]))
    return out


def test_an_export_counter_at_zero_is_left_out_of_the_leaf() -> None:
    """The cause: a net importer's PCC leaf has no export counter, although it was read every poll."""
    leaf = pcc_leaf(60_000, 0, 75_161)
    importer = polls(0, 75_000, (0, 2_500))
    with pytest.raises(Unmetered, match="no PCC meter reading carries the energy_wh counter"):
        metered(importer, WINDOW, "energy_wh", GAP)  # the shared rule sees no export sample at all
    assert metered(importer, WINDOW, "import_wh", GAP) == 10_000  # the same polls meter the import side
    assert b"energy_wh" not in leaf and b"import_wh" in leaf


def test_a_seller_whose_pcc_never_exported_states_zero() -> None:
    importer = polls(0, 75_000, (0, 2_500))
    assert provable_wh(importer, WINDOW, "seller", GAP) == 0  # before: Unmetered, "not metered yet" for ever
    assert statement_wh(importer, WINDOW, "seller", 18_546, 18_546, GAP) == 0
    # not read to its end yet: still waits, as any statement does
    early = [leaf for leaf, at in zip(importer, range(57_000, 69_001, 1_500), strict=True) if at < 66_000]
    with pytest.raises(Unmetered) as raised:
        provable_wh(early, WINDOW, "seller", GAP)
    assert not isinstance(raised.value, Unprovable)


def test_a_buyer_whose_pcc_never_imported_states_nothing() -> None:
    exporter = polls(100_000, 0, (2_500, 0))
    with pytest.raises(Unprovable, match="as the buyer it states nothing"):
        provable_wh(exporter, WINDOW, "buyer", GAP)  # before: Unmetered for ever
    assert provable_wh(exporter, WINDOW, "seller", GAP) == 10_000  # its own export is metered as before


def test_a_counter_that_starts_counting_in_the_window_counts_from_zero() -> None:
    """Export 0 (left out) until 61.5 s, then 400 Wh per poll: the counter was 0 at the start, for either
    side (the buyer's import counter shows it is implemented, so its absence was a 0 too)."""
    ats = list(range(57_000, 69_001, 1_500))
    leaves = [pcc_leaf(at, max(0, (at - 60_000) // 1_500) * 400, 10 + max(0, (at - 60_000) // 1_500) * 30)
              for at in ats]  # fmt: skip
    assert provable_wh(leaves, WINDOW, "seller", GAP) == 1_600  # 0 at 60 s -> 1600 at 66 s
    assert provable_wh(leaves, WINDOW, "buyer", GAP) == Fraction(120)  # 10 -> 130


def test_what_is_read_as_zero_is_never_in_the_sides_favour() -> None:
    """A buyer whose meter shows no import counter anywhere is left as it is (0 would pay for nothing); only
    PCC meter readings are ever given a counter; a reading that does not decode is refused, not counted."""
    exporter = polls(100_000, 0, (2_500, 0))
    assert counting_leaves(exporter, "buyer") == exporter
    not_meter = [reading_leaf("pv1", "pv", 60.0, {"power_w": 1.0})]
    assert counting_leaves(not_meter, "seller") == not_meter
    with pytest.raises(Unmetered, match="does not decode"):
        counting_leaves([b"\xff\x00junk"], "seller")
    # a meter that counted nothing either way yet (both counters left out): the seller states 0 left
    idle = [
        reading_leaf("meter", "meter", at / 1000, {"power_w": 0.0}) for at in range(57_000, 69_001, 1_500)
    ]
    assert provable_wh(idle, WINDOW, "seller", GAP) == 0
    with pytest.raises(Unprovable):
        provable_wh(idle, WINDOW, "buyer", GAP)


@given(
    exports=st.lists(st.integers(0, 3_000), min_size=9, max_size=9),
    imports=st.lists(st.integers(0, 3_000), min_size=9, max_size=9),
    party=st.sampled_from(["seller", "buyer"]),
)
def test_what_is_stated_is_what_the_explicit_counters_meter(
    exports: list[int], imports: list[int], party: str
) -> None:
    """The meter's counters as SunSpec gives them (a 0 left out of the leaf) are stated exactly as the same
    counters written out in full are metered, or not at all by a buyer whose meter never counted."""
    ats = list(range(57_000, 69_001, 1_500))
    exp = [sum(exports[: k + 1]) - exports[0] for k in range(9)]  # the counters start at 0 for a while
    imp = [sum(imports[: k + 1]) - imports[0] for k in range(9)]
    sunspec = [pcc_leaf(at, e, i) for at, e, i in zip(ats, exp, imp, strict=True)]
    explicit = [reading_leaf("meter", "meter", at / 1000, {"energy_wh": e, "import_wh": i, "power_w": 0.0})
                for at, e, i in zip(ats, exp, imp, strict=True)]  # fmt: skip
    counter = {"seller": "energy_wh", "buyer": "import_wh"}[party]
    truth = metered(explicit, WINDOW, counter, GAP)
    if party == "buyer" and not any(imp):
        with pytest.raises(Unprovable):
            provable_wh(sunspec, WINDOW, party, GAP)
        return
    assert provable_wh(sunspec, WINDOW, party, GAP) == truth


def test_the_agent_states_zero_as_the_seller_and_says_why_it_is_silent_as_the_buyer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    me, peer = b"m" * 32, b"p" * 32
    trades: list[tuple[bytes, dict[str, Any]]] = [
        (b"s" * 32, {"seller": me, "buyer": peer, "quantity": 18_546}),
        (b"b" * 32, {"seller": peer, "buyer": me, "quantity": 2_000}),
    ]
    importer = MgMetering(Store(polls(0, 75_000, (0, 2_500))), 1.5, 60.0, lambda t: WINDOW, lambda t: trades,
                          me, b"n" * 32, None)  # fmt: skip
    assert importer.max_gap_ms == GAP
    assert importer.statement(PendingSettle(36, b"s" * 32, None, party="seller")) == 0
    exporter = MgMetering(Store(polls(100_000, 0, (2_500, 0))), 1.5, 60.0, lambda t: WINDOW, lambda t: trades,
                          me, b"n" * 32, None)  # fmt: skip
    with caplog.at_level(logging.INFO, "peergrid.edge.trader"):
        for _ in range(3):
            assert exporter.statement(PendingSettle(36, b"b" * 32, None, party="buyer")) is None
    said = [r.getMessage() for r in caplog.records]
    assert sum("cannot prove its side" in m for m in said) == 1  # once, not at every try
    assert not any("not metered yet" in m for m in said)
