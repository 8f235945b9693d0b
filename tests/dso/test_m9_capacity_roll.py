"""R38-2 at the DSO and the edge: a seller's PCC meter whose counter goes back is read as an acc32 roll-over only
within what the MG's own connection carries between the two readings: the capacity the DSO posted for its anonym
(`market.capacity`, Wh per interval) as a power (`counter_roll.posted_w`), which the DSO (`dispute_shares.
Meters`) and the seller's MGMC (`pcc_readings.MgMetering`, wired as `agent_settlement.metering_for` wires it)
read from the same chain state, so both find the same Wh. Before, the bound was 10 MW whatever the MG: a
meter reset 20 kWh below the top of its register read as 20 kWh delivered, hiding the seller's shortfall, on
both sides; with a 1 MW capacity posted it is refused on both (3.06 kWh over readings 10 s apart plus 10 s
slack: 5.6 kWh). Without a capacity posted the 10 MW bound stands, as before."""

from __future__ import annotations

from fractions import Fraction
from types import SimpleNamespace

import pytest

from peergrid_dso.disputes import Unresolved, Vouched, resolve
from peergrid_dso.tariff import capacity_wh
from peergrid_edge.pcc_readings import MgMetering, statement_wh
from peergrid_edge.settle_book import PendingSettle
from peergrid_ledger import query
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts.market_state import capacity
from peergrid_ledger.counter_roll import ACC32, posted_w, roll_bound_mwh
from peergrid_ledger.genesis import Account, Genesis, Params
from peergrid_ledger.keys import Keypair
from peergrid_ledger.metering import Unmetered

from .test_disputes import (
    CHAIN_CLOCK,
    CLOCK,
    END_MS,
    PRICE,
    START_MS,
    Market,
    T,
    chain_time,
    ramp,
    sealed_buckets,
)
from .test_m8_rollover_dispute import rolling, seller_leaves

MW_AT_60_S = capacity_wh(1_000.0, CLOCK.interval_ms / 60_000, "test")  # 1 MW as the DSO posts it: 16,667 Wh
# where the reset meter's register stood: within 10 MW's bound of its top, beyond 1 MW's
BELOW_TOP_WH = 20_000


def capped_market(readings: dict[str, list[tuple[float, float | None, float]]], posted: int | None) -> Market:
    """`test_disputes.market`'s one sale s -> b of 500 Wh, disputed (b states 300, s 500), both MGs' readings
    sealed in time; with `posted` the DSO's `market.capacity` for both anonyms (Wh per interval) from interval
    T, posted before they trade (after, the chain refuses it for T)."""
    dso, authority = Keypair.generate(), Keypair.generate()
    anonyms = {mg: Keypair.generate() for mg in ("b", "s")}
    nodes = {mg: Keypair.generate() for mg in ("b", "s")}
    genesis = Genesis(
        chain="mgmc", time=0, authorities=(authority.public,),
        accounts=(Account(dso.public, ("dso",)),
                  *(Account(anonyms[mg].public, ("anonym",), balance=10**9) for mg in anonyms),
                  *(Account(nodes[mg].public, ("mgmc",), balance=10**9) for mg in nodes)),
        contracts=("market", "payments"), params=Params(settle_by_both=1, **CHAIN_CLOCK),
    )  # fmt: skip
    m = Market(LocalChain(genesis, authority), dso, authority, anonyms, nodes)
    for mg in anonyms if posted is not None else ():
        m.do(dso, "market.capacity", {"account": anonyms[mg].public, "from_interval": T, "wh": posted})
    m.do(anonyms["s"], "offer", {"interval": T, "round": 1, "price": PRICE, "quantity": 500, "clean": True})
    m.do(anonyms["b"], "bid", {"interval": T, "round": 1, "demands": [{"seller": anonyms["s"].public,
                                                                      "quantity": 500}]})  # fmt: skip
    m.do(anonyms["b"], "trade", {"interval": T})
    for mg, r in readings.items():
        m.commit(mg, r, in_time=True)
    m.state("s", "b", 300, 500)
    return m


def reset_near_top(wh: float = 480.0) -> list[tuple[float, float | None, float]]:
    """The seller's readings every 10 s around the window (`ramp`'s export), its register (TotWh_SF 0) standing
    `BELOW_TOP_WH` below its top until its meter is reset mid-window and counts on from 0 (SunSpec's 0, "not
    accumulated", left out of the leaf as the edge leaves it)."""
    middle = (START_MS + END_MS) / 2000
    out: list[tuple[float, float | None, float]] = []
    for at, exported, imported in ramp(wh, export=True):
        moved = round(exported - 1e6)  # Wh from the window's start
        register = ACC32 - BELOW_TOP_WH + moved if at < middle else moved - round(wh / 2)
        out.append((at, float(register) or None, imported))
    return out


def edge_statement(m: Market, readings: list[tuple[float, float | None, float]]) -> int | None:
    """What the seller's MGMC states for the trade from its store (`MgMetering.statement`), the roll-over bound
    read from its replica as `agent_settlement.metering_for` reads it (`counter_roll.posted_w`)."""
    buckets = sealed_buckets(readings)
    store = SimpleNamespace(leaves=lambda c: buckets.get(c, []), is_sealed=lambda c: True)
    me = m.anonyms["s"].public
    metering = MgMetering(
        store, CLOCK.max_gap_ms / 3000, CLOCK.commit_ms / 1000, CLOCK.window,
        lambda t: query.trades(m.chain.state, t), me, m.nodes["s"].public, None,
        roll_w=lambda t: posted_w(m.chain.state, me, t, CLOCK.interval_ms),
    )  # fmt: skip
    return metering.statement(PendingSettle(T, m.trade_id("s", "b"), None, party="seller"))


def decided(m: Market) -> Vouched | Unresolved:
    decision = resolve(m.chain.state, m.trade_id("s", "b"), CLOCK, m.node_of(), m.sealed, chain_time(m))
    assert isinstance(decision, Vouched | Unresolved)
    return decision


def test_a_roll_over_within_the_posted_capacity_is_read_to_the_same_wh_at_the_dso_and_the_edge() -> None:
    readings = {"s": rolling(), "b": ramp(455.0, export=False)}
    m = capped_market(readings, MW_AT_60_S)
    assert capacity(m.chain.state, m.anonyms["s"].public, T) == 16_667
    decision = decided(m)
    assert isinstance(decision, Vouched) and decision.seller is not None
    assert decision.seller.energy_wh == Fraction(480)
    assert (decision.seller.share_wh, decision.buyer.share_wh, decision.delivered) == (480, 455, 455)
    assert edge_statement(m, readings["s"]) == decision.seller.share_wh == 480


def test_a_reset_near_the_top_is_refused_for_a_1_mw_mg_with_its_capacity_posted() -> None:
    """At 10 MW (30.6 kWh a second, 55.6 kWh over readings 10 s apart) the reset reads as a roll-over of ~20 kWh;
    at the MG's 1 MW (5.6 kWh) it cannot be one: the DSO leaves the trade unresolved and the edge states
    nothing, as for any reset."""
    assert roll_bound_mwh(10_000, 1_000_020) < BELOW_TOP_WH * 1000 < roll_bound_mwh(10_000)
    readings = {"s": reset_near_top(), "b": ramp(455.0, export=False)}
    m = capped_market(readings, MW_AT_60_S)
    decision = decided(m)
    assert isinstance(decision, Unresolved) and "energy_wh counter runs backwards" in decision.why
    assert edge_statement(m, readings["s"]) is None
    window = (START_MS, END_MS)
    most_w = posted_w(m.chain.state, m.anonyms["s"].public, T, CLOCK.interval_ms)
    assert most_w == 1_000_020  # 16,667 Wh a minute, rounded up
    with pytest.raises(Unmetered, match=r"runs backwards .* \(reset or replaced\)"):
        statement_wh(seller_leaves(m), window, "seller", 500, 500, CLOCK.max_gap_ms, most_w=most_w)


def test_without_a_capacity_posted_the_10_mw_bound_stands_on_both_sides() -> None:
    """The same reset where the DSO posted no capacity: read as a roll-over (the phantom ~19.8 kWh hides the
    seller's shortfall: it settles at the agreed 500 Wh), the same at the DSO and the edge, as before."""
    readings = {"s": reset_near_top(), "b": ramp(455.0, export=False)}
    m = capped_market(readings, None)
    assert capacity(m.chain.state, m.anonyms["s"].public, T) is None
    decision = decided(m)
    assert isinstance(decision, Vouched) and decision.seller is not None
    assert decision.seller.energy_wh > BELOW_TOP_WH - 500  # the reset counted as energy delivered
    assert edge_statement(m, readings["s"]) == decision.seller.share_wh == 500


def test_the_edge_reads_its_own_posted_capacity_as_metering_for_wires_it() -> None:
    """R40-4: the edge's bound as `agent_settlement.metering_for` builds it (its anonym's capacity in the trade's
    interval over its `interval_s`), not a copy of the wiring: the tests above hand `MgMetering` a lambda of
    their own, so a `metering_for` reading another key or the interval in seconds would pass them."""
    from peergrid_edge.agent_settlement import metering_for

    m = capped_market({}, MW_AT_60_S)
    meter = SimpleNamespace(settings=SimpleNamespace(poll_interval_s=CLOCK.max_gap_ms / 3000, nature="meter"))
    d = SimpleNamespace(
        states={"pcc": meter}, store=None, keypair=m.nodes["s"],
        settings=SimpleNamespace(ledger=SimpleNamespace(commit_interval_s=CLOCK.commit_ms / 1000)),
    )  # fmt: skip
    agent = SimpleNamespace(
        d=d, s=SimpleNamespace(dso_api_url=None, interval_s=CLOCK.interval_ms / 1000), anonym=m.anonyms["s"],
        ledger=SimpleNamespace(state=lambda chain: m.chain.state), recalled={}, _start_of=lambda t: 0.0,
    )  # fmt: skip
    metering = metering_for(agent)  # type: ignore[arg-type]
    assert metering.roll_w is not None
    assert (
        metering.roll_w(T)
        == posted_w(m.chain.state, m.anonyms["s"].public, T, CLOCK.interval_ms)
        == 1_000_020
    )
    assert metering.roll_w(T - 1) is None  # before the capacity's first interval: none posted, 10 MW
