"""The edge's intraday agent keeps its owner's individual rationality (`guard.py`): the edge analogue of the
controller's VanishingPeers test (tests/controller/test_ctl_allowance.py).

Independent trading agents (`MarketAgent.run_interval`, each with only its own MG model, trading key and
record file) trade a day on one real single-authority `EdgeLedger` (every offer, bid, move and trade a signed
transaction the real market contract judges; the DSO chain a stand-in that takes every injection, no DSO
verdict, the dispatch a stand-in that confirms). The day is planned on the market forecast (the chain's
latest agreed price), so each plan leans on its peers; from some interval on, some of the MGMCs stop (they
never join again), and what the others planned on them is left to the DSO. With `market.rationality`
strict, each MG's recorded day — its `cost_p2p` per interval and the stored energy it leaves valued by the
rest of the day — ends within its conventional counterfactual (the record's own) plus its allowance.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from test_edge_dayahead_session import free_day, ledger_for, run_on
from test_edge_forward import FakeDso, trading_agent, venue_keys

from peergrid_controller.model import Scenario
from peergrid_controller.moves import BargainingConfig
from peergrid_edge import debts
from peergrid_edge.dso_answers import DsoAnswers
from peergrid_edge.replicas import EdgeLedger
from peergrid_edge.resume import resumed_counterfactual
from peergrid_edge.resume_spend import recorded_spend
from peergrid_edge.trader import MarketAgent
from peergrid_ledger.contracts import market as contract
from peergrid_ledger.genesis import Params
from peergrid_ledger.keys import Keypair

TOLERANCE = 1e-4  # currency over a day: solver tolerance, never a licence to lose


def agent_for(
    ledger: EdgeLedger,
    key: Keypair,
    scenario: Scenario,
    name: str,
    record: Path,
    mode: str,
    allowance: float,
    adjust: dict[int, float] | None = None,
) -> MarketAgent:
    """A trading agent for MG `name` with the guard's settings, its DSO a stand-in (every injection lands; no
    verdict, or in the intervals of `adjust` a limit: its injection at least that many kW above what it
    submitted, met by `meet_limit`'s re-plan as the agent's own answer does) and its dispatch a stand-in that
    confirms."""
    mg = next(m for m in scenario.microgrids if m.name == name)
    agent = trading_agent(FakeDso(ledger), key, scenario, mg, record)
    settings: Any = agent.s
    settings.rationality, settings.forecast, settings.risk_allowance = mode, "market", allowance
    agent.cfg = BargainingConfig(max_rounds=30)

    async def no_verdict(t: int, sched: Any, _market: Any, answers: DsoAnswers) -> dict[str, Any] | None:
        if t not in (adjust or {}):
            return None
        limit = {"min_injection_w": round((answers.injection_kw + (adjust or {})[t]) * 1000)}
        answers.limit = limit
        adjustment = agent.meet_limit(t, sched, answers.p2p_net_kw, limit)
        answers.adjustments.append(adjustment)
        answers.plan, answers.injection_kw = adjustment.plan, adjustment.injection_kw
        return {"interval": t, "final": True, "secure": True}

    async def dispatched(*_args: Any) -> int:
        return 1

    agent._await_dso = no_verdict  # type: ignore[method-assign,assignment]
    agent._dispatch = dispatched  # type: ignore[method-assign,assignment]
    return agent


def play_day(
    tmp_path: Path,
    scenario: Scenario,
    mode: str,
    allowance: float = 0.0,
    vanish_at: int | None = None,
    vanishing: frozenset[str] = frozenset(),
    restart_at: dict[str, int] | None = None,
    adjust: dict[str, dict[int, float]] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Every MG's agent trades `scenario`'s day interval by interval, concurrently; from `vanish_at` on the
    MGs in `vanishing` no longer run. `restart_at`: an MG whose agent is replaced by a fresh one at that
    interval, starting as a restarted agent does (its budget from its records). `adjust`: the DSO's limits on
    an MG (`agent_for`). Returns each MG's records."""
    credit = Params(credit_limit=10**12)  # a buyer pays before any income of its own
    ledger, keys_ = ledger_for(tmp_path, scenario, key_of=venue_keys(scenario), params=credit)
    records = {mg.name: tmp_path / f"{mg.name}.jsonl" for mg in scenario.microgrids}

    def fresh(name: str) -> MarketAgent:
        return agent_for(ledger, keys_[name], scenario, name, records[name], mode, allowance,
                         (adjust or {}).get(name))  # fmt: skip

    agents = {mg.name: fresh(mg.name) for mg in scenario.microgrids}

    async def play() -> None:
        for t in range(scenario.intervals):
            for name, at in (restart_at or {}).items():
                if at == t:  # the restarted agent's start (`MarketAgent.run`): its budget from its records
                    old, new = agents[name], fresh(name)
                    new.state = old.state  # what its battery readings say
                    new.conv_state = resumed_counterfactual(
                        records[name], new.mg, new.dt, scenario.intervals, t, new.day
                    )
                    new.resumed = recorded_spend(records[name], t, new.day)  # its own day's lines
                    agents[name] = new
            running = [
                a for n, a in agents.items() if vanish_at is None or t < vanish_at or n not in vanishing
            ]
            await asyncio.wait_for(asyncio.gather(*(a.run_interval(t) for a in running)), 120)

    run_on(ledger, play)
    return {n: [json.loads(line) for line in p.read_text().splitlines()] for n, p in records.items()}


def day_costs(lines: list[dict[str, Any]]) -> tuple[float, float]:
    """(the MG's day on P2P, its conventional counterfactual's day), each its intervals' cost plus the stored
    energy it leaves valued by the rest of the day (the record's `cost_to_go` on the agent's last interval)."""
    last = lines[-1]["cost_to_go"]
    p2p = sum(r["cost_p2p"] for r in lines) + last["p2p"]
    conventional = sum(r["cost_conventional"] for r in lines) + last["conventional"]
    return p2p, conventional


SCENARIO = free_day(4, 8, seed=2)
VANISH_AT = 4


def vanishing(scenario: Scenario) -> frozenset[str]:
    return frozenset(mg.name for mg in scenario.microgrids[1::2])


@pytest.mark.parametrize("allowance", [0.0, 3.0])
def test_when_peers_stop_mid_day_no_strict_mg_ends_above_its_conventional_day_plus_its_allowance(
    tmp_path: Path, allowance: float
) -> None:
    days = play_day(tmp_path, SCENARIO, "strict", allowance, VANISH_AT, vanishing(SCENARIO))
    traded = acted = 0
    for name, lines in days.items():
        stayed = name not in vanishing(SCENARIO)
        assert [r["interval"] for r in lines] == list(range(SCENARIO.intervals if stayed else VANISH_AT))
        if not stayed:
            continue
        traded += sum(len(r["trades"]) for r in lines)
        p2p, conventional = day_costs(lines)
        print(f"{name}: p2p {p2p:.4f} conventional {conventional:.4f} (+{allowance})")
        assert p2p <= conventional + allowance + TOLERANCE, name
        assert all(r["risk_allowance"] == allowance and r["guard"]["mode"] == "strict" for r in lines)
        acted += sum(r["guard"]["dispatch"] in ("fallback", "mixed") for r in lines)
        # the budget the record carries is the bound: the day's start less what each interval cost
        assert lines[0]["budget_day"] == pytest.approx(conventional + allowance, abs=TOLERANCE)
        spent = 0.0
        for r in lines:
            spent += r["cost_p2p"]
            assert r["budget_left"] == pytest.approx(r["budget_day"] - spent)
        assert lines[-1]["budget_left"] >= lines[-1]["cost_to_go"]["p2p"] - TOLERANCE
    assert traded > 0  # positions were taken: the test is not vacuous
    assert acted > 0  # and the guard had to step in once the peers were gone


def test_the_same_day_unguarded_ends_above_the_conventional_day_for_an_mg_that_leaned_on_its_peers(
    tmp_path: Path,
) -> None:
    """What the guard keeps off: with rationality off the same plans, leaning on the same forecast, leave an
    MG above its conventional day once its peers stop (so the bound above is not one the day meets anyway)."""
    days = play_day(tmp_path, SCENARIO, "off", 0.0, VANISH_AT, vanishing(SCENARIO))
    above = {}
    for name, lines in days.items():
        if name not in vanishing(SCENARIO):
            p2p, conventional = day_costs(lines)
            above[name] = p2p - conventional
            assert all(r["guard"] == {"mode": "off", "dispatch": "unguarded"} for r in lines)
    print(above)
    assert max(above.values()) > 1.0


def test_an_agent_restarted_mid_day_goes_on_with_the_budget_its_records_left(tmp_path: Path) -> None:
    stays = sorted(set(m.name for m in SCENARIO.microgrids) - vanishing(SCENARIO))
    restarted = stays[0]
    at = VANISH_AT + 1
    days = play_day(tmp_path, SCENARIO, "strict", 3.0, VANISH_AT, vanishing(SCENARIO), {restarted: at})
    lines = days[restarted]
    assert [r["interval"] for r in lines] == list(range(SCENARIO.intervals))
    # the day's budget is the one it started the day with, and what the intervals before cost stays spent
    assert {r["budget_day"] for r in lines} == {lines[0]["budget_day"]}
    assert lines[at]["budget_left"] == pytest.approx(lines[at - 1]["budget_left"] - lines[at]["cost_p2p"])
    for name in stays:
        p2p, conventional = day_costs(days[name])
        assert p2p <= conventional + 3.0 + TOLERANCE, name


def test_a_dso_change_after_the_guard_chose_is_the_dsos_recorded_and_charged_as_dispatched(
    tmp_path: Path,
) -> None:
    """The DSO makes two MGs import less (their injection at least 5 kW above the plan the guard chose) in
    three intervals: each is re-planned towards the limit, the budget is charged with the re-planned interval's
    cost (what was dispatched and paid), and the record names the part that was not the guard's."""
    limits = {name: {2: 5.0, 3: 5.0, 5: 5.0} for name in ("mg001", "mg003")}
    days = play_day(tmp_path, SCENARIO, "strict", 0.0, adjust=limits)
    changed = 0
    for name, lines in days.items():
        spent = 0.0
        for r in lines:
            spent += r["cost_p2p"]
            assert r["budget_left"] == pytest.approx(r["budget_day"] - spent)
            entry = r["guard"]
            assert entry["dso_cost"] == pytest.approx(r["cost_p2p"] - entry["cost_p2p"])
            if r["interval"] in limits.get(name, {}):
                assert r["adjustments"] and r["final_injection_kw"] > r["injection_kw"] + 1.0
                changed += abs(entry["dso_cost"]) > 1e-6
            else:
                assert entry["dso_cost"] == pytest.approx(0.0, abs=1e-9)  # the guard's own choice stood
    assert changed >= 4  # the DSO's limits changed what those intervals cost


def test_an_owed_interval_buys_nothing_under_the_guard_and_every_day_stays_within_its_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mg004 (the day's big buyer in intervals 3 and 4) owes from interval 4 on (`debts.barring_debt`, the
    chain's rule, answered here for its key: the agent's own reading of it): it posts no purchase (`debts.py`),
    the guard needs nothing of its own for that, and every MG's day still ends within its bound."""
    keys_ = {mg.name: venue_keys(SCENARIO)(mg.name).public for mg in SCENARIO.microgrids}
    real = debts.barring_debt
    owing_from = 4

    def barring(state: Any, genesis: Any, key: bytes) -> int:
        interval = max(
            (t for t in range(SCENARIO.intervals) if contract.members(state, t, "buyers")), default=0
        )
        if key == keys_["mg004"] and interval >= owing_from:
            return 5_000_000
        return real(state, genesis, key)

    monkeypatch.setattr(debts, "barring_debt", barring)
    days = play_day(tmp_path, SCENARIO, "strict")
    owed = {r["interval"]: r for r in days["mg004"] if r["owed"]}
    assert owed and min(owed) == owing_from and all(r["net_p2p_kwh"] >= 0 for r in owed.values())
    for name, lines in days.items():
        p2p, conventional = day_costs(lines)
        assert p2p <= conventional + TOLERANCE, name
