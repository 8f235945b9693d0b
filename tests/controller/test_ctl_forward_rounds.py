"""Forward accepts re-checked after the clear's cut (forward.recheck, forward.provisional): each MG's next accept
from public data and its own model, as the exchange contract's accept rounds let each MGMC post it; `commit` is
rounds of the same function.

The chain's rounds are played here in-process (`chain_rounds`: the functions the MGMCs and the contract run,
no chain): round 1 each MG's one-shot `accept_alone`, then every MG's `recheck` of the accepts standing, until a
round changes no accept (the contract's settled round) — with a member that never accepts left out.
`python tests/controller/test_ctl_forward_rounds.py` measures the absent-member cases of
tests/edge/test_edge_forward.py's `__main__`: MGs above their conventional day, one-shot against rounds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from helpers_ctl import load_only, pv_site
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid_controller import baselines, forward_accept
from peergrid_controller.chain_venue import key_for
from peergrid_controller.dayahead import Allocation, allocate
from peergrid_controller.dayexchange import DayAheadConfig
from peergrid_controller.forward import _judge, accept_alone, commit, provisional, recheck
from peergrid_controller.market import MAX_REQUESTS, Trade, wh
from peergrid_controller.matching import accepted_wh, closing_price, match, net_by_interval
from peergrid_controller.model import Scenario
from peergrid_controller.synth import synthetic_scenario
from peergrid_ledger.contracts.pairing import forward_trades

DT = 0.25
KWH_STOPS = DayAheadConfig(value_per_kwh=0.0)  # test_edge_forward's set-up (the edge session's kWh stops)


def free_day(n: int, intervals: int, seed: int) -> Scenario:
    """test_edge_dayahead_session's day: synthetic, without gensets or owner rules."""
    sc = synthetic_scenario(n, intervals, seed=seed, interval_hours=24 / intervals)
    return Scenario(
        sc.name, sc.interval_hours, tuple(dataclasses.replace(m, gensets=()) for m in sc.microgrids)
    )


def hexes(scenario: Scenario) -> dict[str, str]:
    """Each MG's id on the chain: its chain venue key in hex (what `recheck` reads there)."""
    return {mg.name: key_for(scenario.name, mg.name).public.hex() for mg in scenario.microgrids}


def by_name(trades: Sequence[Sequence[Trade]], ids: dict[str, str]) -> set[tuple[int, str, str, int, float]]:
    names = {h: n for n, h in ids.items()}
    return {
        (
            tr.interval,
            names.get(tr.seller, tr.seller),
            names.get(tr.buyer, tr.buyer),
            wh(tr.quantity_kwh),
            tr.price,
        )
        for day in trades
        for tr in day
    }


@dataclass(frozen=True)
class Played:
    rounds: int  # accept rounds posted (1: the one-shot accept alone)
    accepts: dict[str, tuple[int, ...]]  # by chain id (hex key), the standing ones at the clear
    trades: tuple[tuple[Trade, ...], ...]  # the clear's, by chain id
    changed: list[int]  # how many accepts changed in each round from 2 on


def chain_rounds(
    scenario: Scenario,
    allocation: Allocation,
    absent: Sequence[str] = (),
    rounds: bool = True,
    reductions: int = 4,
) -> Played:
    """The chain's forward stage in-process: every MG but `absent` accepts alone (round 1); with `rounds`,
    every MG re-checks the accepts standing (`recheck`, chain ids, no names) until a round changes none.
    An MG may reduce in rounds 2 … reductions + 1 (commit's first `reductions` re-checks), then declines."""
    dt, ids = scenario.interval_hours, hexes(scenario)
    conv = baselines.conventional(scenario)
    mgs = [mg for mg in scenario.microgrids if mg.name not in absent]
    accepts = {
        ids[mg.name]: accept_alone(mg, dt, allocation.prices, allocation.positions[mg.name]).positions
        for mg in mgs
    }
    changed: list[int] = []
    while rounds:
        nxt = {
            ids[mg.name]: recheck(
                mg, dt, allocation.prices, accepts, ids[mg.name], conv.per_interval[mg.name],
                may_reduce=len(changed) < reductions,
            ).positions
            for mg in mgs
        }  # fmt: skip
        changed.append(sum(nxt[i] != accepts[i] for i in accepts))
        accepts = nxt
        if not changed[-1]:
            break
    return Played(1 + len(changed), accepts, provisional(accepts, allocation.prices), changed)


def above(scenario: Scenario, trades: Sequence[Sequence[Trade]], ids: dict[str, str]) -> dict[str, float]:
    """Each MG's day cost with its cleared trades fixed, less its conventional day cost, where positive."""
    conv = baselines.conventional(scenario)
    out = {}
    for mg in scenario.microgrids:
        kwh, money = net_by_interval(trades, ids[mg.name])
        day, passes = _judge(mg, scenario.interval_hours, kwh, money, conv.per_interval[mg.name])
        if not passes:
            assert day is not None
            out[mg.name] = day.cost - sum(money) - sum(conv.per_interval[mg.name])
    return out


# ---------------------------------------------------------------------------------------------- provisional


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.binary(min_size=32, max_size=32),
        st.lists(st.integers(-5000, 5000), min_size=3, max_size=3),
        max_size=8,
    ),
    st.lists(st.integers(0, 300_000_000), min_size=3, max_size=3),
)
def test_provisional_is_the_contracts_forward_trades(
    accepts: dict[bytes, list[int]], nano: list[int]
) -> None:
    prices = [p / 1e9 for p in nano]
    rows = {k.hex(): row for k, row in accepts.items()}
    trades = provisional(rows, prices)
    for t in range(3):
        sells = {k: row[t] for k, row in accepts.items() if row[t] > 0}
        buys = {k: -row[t] for k, row in accepts.items() if row[t] < 0}
        want = {(s.hex(), b.hex(), q) for s, b, q in forward_trades(sells, buys, MAX_REQUESTS)}
        assert {(tr.seller, tr.buyer, wh(tr.quantity_kwh)) for tr in trades[t]} == want
        assert all(tr.price == closing_price(prices[t]) / 1000 and tr.interval == t for tr in trades[t])


def test_provisional_of_the_whole_positions_is_match_by_name_or_by_chain_key() -> None:
    scenario = free_day(5, 4, 1)
    allocation = allocate(scenario, KWH_STOPS)
    ids = hexes(scenario)
    rows = accepted_wh(scenario, allocation)
    keys = {name: bytes.fromhex(h) for name, h in ids.items()}
    assert provisional(rows, allocation.prices, keys) == match(scenario, allocation)
    on_chain = provisional({ids[n]: row for n, row in rows.items()}, allocation.prices)
    assert by_name(on_chain, ids) == by_name(match(scenario, allocation), ids)


# ---------------------------------------------------------------------------------------------- recheck


def declining() -> tuple[Scenario, Allocation]:
    """test_ctl_dayahead_forward's day: d buys 2.5 kWh at 0.20 only to feed its own PV in at 0.05."""
    scenario = Scenario(
        "decline",
        DT,
        (pv_site("a", 40.0, 10.0, n=2), load_only("b", 20.0, n=2), pv_site("d", 30.0, 10.0, n=2)),
    )
    allocation = Allocation(
        (0.2, 0.2), {"a": (7.5, 7.5), "b": (-5.0, -5.0), "d": (-2.5, -2.5)}, 1, 0.0, 0.0, True, 3, 0
    )
    return scenario, allocation


def test_recheck_keeps_what_pays_declines_what_does_not_and_solves_nothing_without_trades() -> None:
    scenario, allocation = declining()
    conv = baselines.conventional(scenario)
    rows = accepted_wh(scenario, allocation)
    keys = {mg.name: key_for(scenario.name, mg.name).public for mg in scenario.microgrids}
    a, b, d = scenario.microgrids
    for mg in (a, b):
        kept = recheck(mg, DT, allocation.prices, rows, mg.name, conv.per_interval[mg.name], keys)
        assert (
            kept.decision == "kept" and kept.passes and kept.positions == rows[mg.name] and kept.checks == 1
        )
    gone = recheck(d, DT, allocation.prices, rows, "d", conv.per_interval["d"], keys)
    assert gone.decision == "declined" and not gone.passes and gone.positions == (0, 0)
    assert gone.kwh == (-2.5, -2.5)  # what it would have got: the buyers' side is short, it is not cut
    again = recheck(d, DT, allocation.prices, rows, "d", conv.per_interval["d"], keys, may_reduce=False)
    assert again.decision == "declined" and again.checks == 1  # no reduction tried
    alone = recheck(a, DT, allocation.prices, {"a": rows["a"]}, "a", conv.per_interval["a"], {"a": keys["a"]})
    assert alone.decision == "kept" and alone.checks == 0 and alone.day is None and not any(alone.kwh)


def test_an_mg_whose_reduction_gives_back_its_accept_declines(monkeypatch: pytest.MonkeyPatch) -> None:
    # posted again unchanged, a failing accept would end the chain's rounds (nobody changed) with the MG above
    # its conventional day: it declines instead, so that a round without a change is one everybody passed
    scenario, allocation = declining()
    conv = baselines.conventional(scenario)
    rows = accepted_wh(scenario, allocation)
    keys = {mg.name: key_for(scenario.name, mg.name).public for mg in scenario.microgrids}
    monkeypatch.setattr(forward_accept, "_reduce", lambda mg, dt, prices, kwh, budget: tuple(kwh))
    d = scenario.microgrids[2]
    same = recheck(d, DT, allocation.prices, rows, "d", conv.per_interval["d"], keys)
    assert same.decision == "declined" and same.positions == (0, 0) and same.checks == 2


def test_a_partly_filled_battery_mg_reduces_within_what_it_got_and_ends_within_its_conventional_day() -> None:
    # the edge's documented gap (tests/edge/test_edge_forward.py): on the 5 x 4 day (seed 1) with mg005
    # absent, mg002 (buying in intervals 0 and 2, selling in 1 and 3) keeps its purchases but loses part of
    # its sales to the cut, and its whole accept, checked alone, no longer pays
    scenario = free_day(5, 4, 1)
    allocation = allocate(scenario, KWH_STOPS)
    ids = hexes(scenario)
    one_shot = chain_rounds(scenario, allocation, absent=["mg005"], rounds=False)
    assert set(above(scenario, one_shot.trades, ids)) == {"mg002"}
    mg002 = scenario.microgrids[1]
    conv = baselines.conventional(scenario).per_interval["mg002"]
    first = recheck(mg002, scenario.interval_hours, allocation.prices, one_shot.accepts, ids["mg002"], conv)
    assert first.decision == "reduced" and not first.passes and first.checks == 2
    own = one_shot.accepts[ids["mg002"]]
    for q, got, before in zip(first.positions, first.kwh, own, strict=True):
        assert q == 0 or (q * got > 0 and abs(q) <= wh(abs(got)) and abs(q) <= abs(before))
    played = chain_rounds(scenario, allocation, absent=["mg005"])
    assert above(scenario, played.trades, ids) == {}  # nobody above its conventional day
    assert played.changed[-1] == 0 and played.rounds == 1 + len(played.changed)


@pytest.mark.parametrize("absent", ["mg001", "mg005"])
def test_rounds_of_recheck_on_the_chain_end_on_commits_trades(absent: str) -> None:
    # the same rule, each MG alone from chain data, against commit's central loop on the same accepts (the
    # absent member's position zeroed): the same trades to the Wh, the same declines
    scenario = free_day(5, 4, 1)
    allocation = allocate(scenario, KWH_STOPS)
    ids = hexes(scenario)
    played = chain_rounds(scenario, allocation, absent=[absent])
    cut = dataclasses.replace(allocation, positions={**allocation.positions, absent: (0.0,) * 4})
    committed = commit(scenario, cut, baselines.conventional(scenario))
    assert by_name(played.trades, ids) == by_name(committed.trades, ids)
    declined = {n for n, h in ids.items() if h in played.accepts and not any(played.accepts[h])}
    assert declined == set(committed.declined)


def measure() -> None:
    """The absent-member cases of test_edge_forward's measurement: its six free days, each member absent in
    turn (35 cases); MGs above their conventional day with the one-shot accept and with rounds, the rounds
    posted, and whether the rounds' trades equal `commit`'s on the same accepts."""
    import time

    started = time.perf_counter()
    total = {"cases": 0, "one_shot_above": 0, "rounds_above": 0, "same_as_commit": 0}
    for n, k, seed in [(4, 8, 0), (5, 4, 1), (4, 4, 2), (6, 24, 1), (6, 24, 2), (10, 24, 3)]:
        scenario = free_day(n, k, seed)
        allocation = allocate(scenario, KWH_STOPS)
        ids = hexes(scenario)
        for mg in scenario.microgrids:
            one = chain_rounds(scenario, allocation, absent=[mg.name], rounds=False)
            played = chain_rounds(scenario, allocation, absent=[mg.name])
            cut = dataclasses.replace(allocation, positions={**allocation.positions, mg.name: (0.0,) * k})
            committed = commit(scenario, cut, baselines.conventional(scenario))
            same = by_name(played.trades, ids) == by_name(committed.trades, ids)
            before, after = above(scenario, one.trades, ids), above(scenario, played.trades, ids)
            total["cases"] += 1
            total["one_shot_above"] += len(before)
            total["rounds_above"] += len(after)
            total["same_as_commit"] += same
            print(
                f"{n}x{k} s{seed} {mg.name} absent: one-shot above {_fmt(before)}; rounds {played.rounds} "
                f"(changed {played.changed}) above {_fmt(after)}; trades == commit's: {same}",
                flush=True,
            )
    print(total, f"{time.perf_counter() - started:.1f} s")


def measure_present() -> None:
    """Every member present, on the 14 days of test_edge_forward's measurement (with and without gensets):
    the rounds the chain needs, MGs above their conventional day one-shot and with rounds, and whether the
    rounds' trades equal `commit`'s (from the whole positions: the edge's round 1 may already reduce)."""
    import time

    started = time.perf_counter()
    days = [(4, 8, 0), (5, 4, 1), (4, 4, 2), (6, 24, 1), (6, 24, 2), (10, 24, 3), (20, 96, 1)]
    for (n, k, seed), gensets in ((day, g) for day in days for g in (False, True)):
        scenario = (
            synthetic_scenario(n, k, seed=seed, interval_hours=24 / k) if gensets else free_day(n, k, seed)
        )
        allocation = allocate(scenario, KWH_STOPS)
        ids = hexes(scenario)
        one = chain_rounds(scenario, allocation, rounds=False)
        played = chain_rounds(scenario, allocation)
        committed = commit(scenario, allocation, baselines.conventional(scenario))
        same = by_name(played.trades, ids) == by_name(committed.trades, ids)
        before, after = above(scenario, one.trades, ids), above(scenario, played.trades, ids)
        label = f"{n}x{k}{'g' if gensets else ''} s{seed}"
        print(
            f"{label}: one-shot above {_fmt(before)}; rounds {played.rounds} (changed {played.changed}) "
            f"above {_fmt(after)}; trades == commit's: {same}",
            flush=True,
        )
    print(f"{time.perf_counter() - started:.1f} s")


def _fmt(over: dict[str, float]) -> str:
    return "{" + ", ".join(f"{n} +{v:.4f}" for n, v in over.items()) + "}"


if __name__ == "__main__":  # python tests/controller/test_ctl_forward_rounds.py [absent|present]
    import sys

    if "present" not in sys.argv[1:]:
        measure()
    if "absent" not in sys.argv[1:]:
        measure_present()
