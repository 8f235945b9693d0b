"""`peergrid-market simulate --market dayahead` with faults: the chain computes the compensation, end to end.

The CLI's chain (venues.chain_venue, or `--settle both`) is made with `compensate`: simulate_dayahead tells it
each trade's own shortfalls, its settlements move the compensation and the simulation's figure is checked
against them, not posted. The seeded faulted day's JSON is then the off-chain one (`--settle first`: the
simulation's figure posted with `pay`) to the micro-unit but for the chain's transaction count; over the
lossy transport (`--loss`) it is the same day byte for byte, every MGMC transaction crossing it once; where the
chain's figure must differ (a silent MG that fell short too) the day stops with one line naming both.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from helpers_ctl import AllocationTape
from test_ctl_chain_venue_compensation import PINNED

from peergrid_controller import simulate as simulate_module
from peergrid_controller.chain_venue import ChainVenue
from peergrid_controller.cli import main
from peergrid_controller.market import Rejected
from peergrid_controller.netsim import LossyVenue
from peergrid_controller.settling import COMPENSATION_REF
from peergrid_controller.synth import synthetic_scenario
from peergrid_controller.uplift import Payment
from peergrid_controller.venues import MemoryMarket, metering_venue

# the brief's command: the default venue (the chain), 4 random faults
DAY = [
    "simulate",
    "--synthetic",
    "8",
    "--seed",
    "2",
    "--intervals",
    "48",
    "--no-central",
    "--market",
    "dayahead",
    "--random-faults",
    "4",
    "--fault-seed",
    "1",
    "--json",
]
TARIFFS = 8  # the DSO prices each MG's cover: its transactions, not an MGMC's
# every run here is the one seeded day on another venue, with other faults (which act after the allocation):
# its allocation is solved once and its moves played onto each later run's chain, every answer checked
TAPE = AllocationTape()


@pytest.fixture(autouse=True)
def taped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(simulate_module, "allocate", TAPE)


@pytest.fixture
def chains(monkeypatch: pytest.MonkeyPatch) -> list[ChainVenue]:
    """Every ChainVenue the CLI makes, in order (the CLI keeps it to itself)."""
    made: list[ChainVenue] = []
    real = ChainVenue.__init__

    def kept(self: ChainVenue, *args: Any, **kwargs: Any) -> None:
        real(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(ChainVenue, "__init__", kept)
    return made


def run(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[str, str]:
    assert main([*DAY, *extra]) == 0
    out, err = capsys.readouterr()
    return out, err


PLAIN: list[tuple[str, str, ChainVenue]] = []


def plain_day(capsys: pytest.CaptureFixture[str], chains: list[ChainVenue]) -> tuple[str, str, ChainVenue]:
    """DAY's stdout, stderr and its one chain venue, run once for the module: three tests set their day
    beside it (the CLI prints the same bytes each run: test_ctl_chain_venue_compensation, sealed_venue)."""
    if not PLAIN:
        assert not chains
        out, err = run(capsys)
        (venue,) = chains
        PLAIN.append((out, err, venue))
        chains.clear()  # the test's own runs' venues from here on, as if this one had come first
    return PLAIN[0]


def trades(doc: dict[str, Any]) -> int:
    return sum(len(interval["trades"]) for interval in doc["intervals"])


def test_the_faulted_day_on_the_computing_chain_is_the_off_chain_day_but_for_the_transaction_count(
    capsys: pytest.CaptureFixture[str], chains: list[ChainVenue]
) -> None:
    on_out, on_err, on_chain = plain_day(capsys, chains)
    off_out, off_err = run(capsys, "--settle", "first")
    (off_chain,) = chains
    assert on_chain.compensate and not off_chain.compensate
    on, off = json.loads(on_out), json.loads(off_out)
    assert on["total"]["dayahead"]["delivery"]["compensation"] == PINNED
    # what the chain moved is the day's figure, confirmed pair by pair, and nothing was posted for it
    moved = on_chain.compensation()
    assert moved and on_chain.settlement.confirmed == {(p.payer, p.payee) for p in moved}
    assert "(moved by the chain in the settlements)" in on_err and "moved by the chain" not in off_err
    n = trades(on)
    counts = on["total"].pop("chain"), off["total"].pop("chain")
    assert on == off  # to the micro-unit: every figure of the JSON but the chain's count
    # both: each trade's seller states too, the DSO's tariffs; no `pay` of the compensation (off: one per pair)
    assert counts[0]["transactions"] == counts[1]["transactions"] + n + TARIFFS - len(moved)


def transport(err: str) -> dict[str, int]:
    (line,) = [line for line in err.splitlines() if "transport (loss" in line]
    figures = re.search(r"(\d+) messages sent, (\d+) lost, (\d+) late, (\d+) moves left out", line)
    assert figures is not None, line
    return dict(zip(("sent", "lost", "late", "left_out"), map(int, figures.groups()), strict=True))


def test_over_a_lossy_transport_the_faulted_day_completes_the_same_and_every_transaction_crossed_once(
    capsys: pytest.CaptureFixture[str], chains: list[ChainVenue]
) -> None:
    plain, _, _ = plain_day(capsys, chains)
    lossy, err = run(capsys, "--loss", "0.3")
    assert lossy == plain  # byte for byte, the chain's count too: resent messages are not new transactions
    stats = transport(err)
    assert stats["lost"] > 0 and stats["late"] == stats["left_out"] == 0
    # each MGMC transaction crossed once it arrived; the day's compensation, checked, crossed nothing
    assert stats["sent"] - stats["lost"] == chains[-1].transactions - TARIFFS
    assert chains[-1].settlement.confirmed


def test_over_a_lossy_transport_disputes_and_a_silent_mg_settle_with_the_same_figures(
    capsys: pytest.CaptureFixture[str], chains: list[ChainVenue]
) -> None:
    plain, _, _ = plain_day(capsys, chains)
    # mg008 at fault under-reads (the DSO settles its disputes naming both shortfalls); mg002 has no fault
    lossy, err = run(capsys, "--loss", "0.3", "--meter-error", "mg008:-3", "--silent", "mg002")
    venue = chains[-1]
    assert venue.settled.get("dso", 0) > 0 and venue.settled.get("lapsed", 0) > 0
    stats = transport(err)
    assert stats["lost"] > 0 and stats["sent"] - stats["lost"] == venue.transactions - TARIFFS
    a, b = json.loads(lossy), json.loads(plain)
    a["total"].pop("chain"), b["total"].pop("chain")
    assert a == b and a["total"]["dayahead"]["delivery"]["compensation"] == PINNED


# mg001 sells to mg007 in interval 30 at a price below mg007's retail: mg001 fails all of it, mg007 half
# (or all) of its own side and is silent, so the chain presumes mg007 short by nothing (mg001 owns the gap)
SILENT_SHORT = ["--random-faults", "0", "--fault", "mg001:1.0:30", "--silent", "mg007"]


def test_a_silent_mg_that_fell_short_less_stops_the_day_naming_both_figures(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([*DAY, *SILENT_SHORT, "--fault", "mg007:0.5:30"]) == 3
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    figures = re.search(r"moved (\d+) micro-units of compensation from mg001 to mg007, not (\d+)", err)
    assert figures is not None, err
    chain, simulation = map(int, figures.groups())
    assert chain == 2 * simulation > 0  # the chain's: all of mg001's shortfall; the day's: half of it
    # the off-chain rule settles the same day: the simulation's figure posted
    assert main([*DAY, *SILENT_SHORT, "--fault", "mg007:0.5:30", "--settle", "first"]) == 0
    capsys.readouterr()


def test_a_silent_mg_that_fell_short_as_much_stops_the_day_on_the_chains_unconfirmed_compensation(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # equal shortfalls: the day owes nothing, the chain moved mg001's whole shortfall's price to mg007
    assert main([*DAY, *SILENT_SHORT, "--fault", "mg007:1.0:30"]) == 3
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert re.search(
        r"the MGMC chain's compensation differs: the settlements moved \d+ micro-units of compensation "
        r"from mg001 to mg007 that no payment of the simulation's compensation confirmed \(1 pairs\)",
        err,
    )


@pytest.mark.parametrize("loss", ["-0.1", "1", "1.5", "nan"])
def test_a_loss_outside_0_to_1_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], loss: str) -> None:
    assert main([*DAY, "--loss", loss]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "a probability in [0, 1) is needed" in err


def test_the_lossy_transport_hands_the_shortfalls_to_a_metering_venue_and_sends_no_check() -> None:
    scenario = synthetic_scenario(3, 8, seed=0)
    names = [mg.name for mg in scenario.microgrids]
    inner = ChainVenue(scenario, compensate=True)
    venue = LossyVenue(inner, seed=1, loss=0.5)
    assert metering_venue(inner) is inner and metering_venue(venue) is venue
    venue.metered({(2, names[0], names[1]): (40, 7)})
    assert inner.settlement.shortfalls == {(2, names[0], names[1]): (40, 7)}
    # the day's compensation is checked against the chain (nothing moved here), not sent
    verdict = venue.pay(Payment(names[0], names[1], 5), COMPENSATION_REF)
    assert isinstance(verdict, Rejected) and "moved 0 micro-units" in verdict.reason
    assert venue.stats.sent == 0 and inner.transactions == len(names)  # the DSO's tariffs only
    # a plain payment is a transaction an MGMC sends: it crosses
    assert not isinstance(venue.pay(Payment(names[0], names[1], 5), "uplift/day-0"), Rejected)
    assert venue.stats.sent >= 1 and inner.transactions == len(names) + 1
    # a venue that meters nothing: the transport has nothing to hand on
    memory = LossyVenue(MemoryMarket({mg.name: mg.rules for mg in scenario.microgrids}))
    memory.metered({(2, names[0], names[1]): (40, 7)})
    assert metering_venue(memory.inner) is None and memory.stats.sent == 0
