"""L3 at the edge: an MGMC whose PCC meter's export counter jumps forward by more than its connection carries
between two polls (here the meter's TotWh_SF raised 0 -> 1 while its count stays, read through the daemon's own
SunSpec path: the leaf then reads ten times the Wh) states nothing for its sales of that interval, says so once
in the log at WARNING (not at every try, nor per trade), and never states the jump as delivered. The bound is
the one the DSO settles by (`metering.samples_of` with `counter_roll.counted_forward`): its anonym's posted
connection capacity as `MgMetering.roll_w` reads it, else 10 MW. Before, the phantom was stated: the
interval's 500 + 300 Wh of sales, stated at their agreed figures from a meter that exported 300 Wh."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest
from test_sunspec_decode import block

from peergrid_edge import natures
from peergrid_edge.commitments import reading_leaf
from peergrid_edge.pcc_readings import MgMetering
from peergrid_edge.settle_book import PendingSettle
from peergrid_edge.sunspec import decode_model

WINDOW = (60_000, 120_000)  # interval 1, 60 s; the PCC meter polled every 2 s (gaps up to 6 s measure)
POSTED_1_MW = 1_000_020  # 16,667 Wh a minute as the DSO posts 1 MW, as `counter_roll.posted_w` reads it
ME, PEER = b"m" * 32, b"p" * 32
TRADES: list[tuple[bytes, dict[str, Any]]] = [
    (b"a" * 32, {"seller": ME, "buyer": PEER, "quantity": 500}),
    (b"b" * 32, {"seller": ME, "buyer": PEER, "quantity": 300}),
]


def pcc_leaf(at_ms: int, count: int, sf: int) -> bytes:
    """One PCC poll as the daemon stores it: a SunSpec 203 block whose TotWhExp `count` is in 10^`sf` Wh,
    decoded (`decode_model`), its nature reading (`natures.reading`) and the leaf of it (`reading_leaf`)."""
    registers = block(203, {"W": 18_000, "W_SF": 0, "TotWh_SF": sf & 0xFFFF, "TotWhExp": count,
                            "TotWhImp": 5_000})  # fmt: skip
    reading = natures.reading("meter", {"203": decode_model(203, registers)})
    return reading_leaf("pcc", "meter", at_ms / 1000, reading)


def exporting(start_wh: int, raised_at_ms: int | None) -> dict[int, list[bytes]]:
    """Polls every 2 s from 56 s to 124 s of a meter exporting 18 kW (10 Wh a poll) from `start_wh`, per
    commitment interval (60 s); from `raised_at_ms` its TotWh_SF is 1 over the count it had, counting on in
    tens of Wh (a firmware that raised the factor without rescaling the count: the leaf reads 10x)."""
    buckets: dict[int, list[bytes]] = {}
    count, sf = start_wh, 0
    for k, at in enumerate(range(56_000, 124_001, 2_000)):
        if k:
            count += 1 if sf else 10  # the 10 Wh since the last poll, in counts of 10^sf Wh
        if raised_at_ms is not None and at >= raised_at_ms:
            sf = 1
        buckets.setdefault(at // 60_000, []).append(pcc_leaf(at, count, sf))
    return buckets


def metering(buckets: dict[int, list[bytes]], posted_w: int | None) -> MgMetering:
    """The seller's metering as the agent wires it, `roll_w` its posted connection (None: none posted)."""
    store = SimpleNamespace(leaves=lambda c: buckets.get(c, []), is_sealed=lambda c: True)
    return MgMetering(store, 2.0, 60.0, lambda t: WINDOW, lambda t: TRADES, ME, b"n" * 32, None,
                      roll_w=lambda t: posted_w)  # fmt: skip


def statements(m: MgMetering) -> list[int | None]:
    return [m.statement(PendingSettle(1, tid, None, party="seller")) for tid, _ in TRADES]


@pytest.mark.parametrize("posted_w", [POSTED_1_MW, None])
def test_an_honest_meter_states_its_share_of_what_it_exported(posted_w: int | None) -> None:
    assert statements(metering(exporting(1_000_000, None), posted_w)) == [187, 112]  # 300 Wh over 800 sold


@pytest.mark.parametrize("posted_w", [POSTED_1_MW, None])
def test_a_raised_scale_factor_is_not_stated_and_said_once(
    posted_w: int | None, caplog: pytest.LogCaptureFixture
) -> None:
    """A count of ~1 MWh read as ~10 MWh between two polls 2 s apart: 9 MWh, where 1 MW carries 3.3 kWh in
    2 s and 10 s of slack (10 MW: 33.3 kWh). Before: [500, 300] (the agreed figures, the phantom's share)."""
    m = metering(exporting(1_000_000, 90_000), posted_w)
    with caplog.at_level(logging.INFO, "peergrid.edge.trader"):
        for _ in range(3):
            assert statements(m) == [None, None]
    said = [r for r in caplog.records if "jumps forward" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.WARNING
    line = said[0].getMessage()
    assert line.startswith("interval 1: ") and "between 88000 and 90000 ms" in line
    assert "unmetered" in line and "seller" in line
    assert not any("not metered yet" in r.getMessage() for r in caplog.records)  # not 'wait and see'


def test_a_small_counters_jump_is_refused_at_the_posted_1_mw_and_read_at_10_mw() -> None:
    """A count of ~2.2 kWh read as ~22 kWh: 19.5 kWh in 2 s is beyond the MG's posted 1 MW (3.3 kWh) and within
    10 MW (33.3 kWh), the bound where no capacity is posted (no MG peergrid serves carries that): the MGMC reads
    it as the DSO does, by the same rule."""
    assert statements(metering(exporting(2_000, 90_000), POSTED_1_MW)) == [None, None]
    assert statements(metering(exporting(2_000, 90_000), None)) == [500, 300]


def buyer_polls(last_ms: int, export_jumps: bool, import_jumps: bool) -> dict[int, list[bytes]]:
    """A buyer's PCC meter polled every 2 s from 56 s to `last_ms`, importing 10 Wh a poll from 2,000 Wh; from
    90 s its export or import count (or both) reads ten times over (a raised TotWh_SF)."""
    buckets: dict[int, list[bytes]] = {}
    for k, at in enumerate(range(56_000, last_ms + 1, 2_000)):
        imported, exported = 2_000 + 10 * k, 50_000
        raised = at >= 90_000
        reading = {
            "energy_wh": 10.0 * exported if raised and export_jumps else float(exported),
            "import_wh": 10.0 * imported if raised and import_jumps else float(imported),
            "power_w": -18_000.0,
        }
        buckets.setdefault(at // 60_000, []).append(reading_leaf("pcc", "meter", at / 1000, reading))
    return buckets


def test_a_buyers_import_counter_that_jumps_is_not_stated_and_its_export_counters_jump_is_not_its_import(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """As the buyer the same rule on its import counter; a jump of its export counter, which a buyer does not
    state from, neither stops its statement nor is said as its own: before the window is read to its end it
    waits ('not metered yet'), after it states its import (300 Wh over 800 bought: 187 and 112)."""
    trades = [(tid, {**t, "seller": PEER, "buyer": ME}) for tid, t in TRADES]

    def buying(buckets: dict[int, list[bytes]]) -> list[int | None]:
        store = SimpleNamespace(leaves=lambda c: buckets.get(c, []), is_sealed=lambda c: True)
        m = MgMetering(store, 2.0, 60.0, lambda t: WINDOW, lambda t: trades, ME, b"n" * 32, None,
                       roll_w=lambda t: POSTED_1_MW)  # fmt: skip
        return [m.statement(PendingSettle(1, tid, None, party="buyer")) for tid, _ in trades]

    with caplog.at_level(logging.INFO, "peergrid.edge.trader"):
        assert buying(buyer_polls(124_000, False, True)) == [None, None]
        assert buying(buyer_polls(110_000, True, False)) == [None, None]  # not read to its end yet
        assert buying(buyer_polls(124_000, True, False)) == [187, 112]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "as the buyer" in warned[0] and "import_wh counter jumps forward" in warned[0]
    assert sum("not metered yet" in r.getMessage() for r in caplog.records) == 2
