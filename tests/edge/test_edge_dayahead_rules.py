"""Owner-rules days on the edge: each MGMC judges its own floors and caps (`dayjudge.OwnRules`), posts its
judgement with its next position, and computes who is let back from the chain alone (`dayjudge.Coordination`
on the rules `market_state.rules_for` holds), as `dayrounds.Exchange` does with every MG in one process.
Independent agents on one real replica end on `allocate`'s prices and positions on the chain venue, to the
nano and the Wh, with every judgement the same on both chains; a day that bans a side and lets it back too;
a member's forged judgement is refused by the chain (a cell outside the session) or counts for nothing (an
ask for a side it never banned)."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_edge_dayahead_session import SESSION, ledger_for, run_session, run_together, session_play, simulated

from peergrid_controller.chain_venue import ChainVenue
from peergrid_controller.dayahead import allocate
from peergrid_controller.dayexchange import DayAheadConfig
from peergrid_controller.dayjudge import Judgement, OwnJudgement, decode
from peergrid_controller.daymodel import DayModel
from peergrid_controller.dayrounds import Exchange
from peergrid_controller.model import ContractRules, Scenario
from peergrid_controller.synth import synthetic_scenario
from peergrid_edge.dayahead_agent import DayAheadAgent
from peergrid_edge.dayahead_rules import SessionRules
from peergrid_edge.dayahead_state import Checkpoint, CheckpointError, load, save
from peergrid_edge.exchange_io import SessionOutcome
from peergrid_ledger.contracts import exchange as contract

VALUE = DayAheadConfig()  # the value stop (the default)
KWH = DayAheadConfig(value_per_kwh=0.0)


def rules_day(n: int = 4, seed: int = 0) -> Scenario:
    """A synthetic owner-rules day (floors, caps, clean-only, maximum quantities: `synthetic_scenario`'s
    `rules`) without gensets, as the controller's members test runs it."""
    scenario = synthetic_scenario(n, 8, seed=seed, interval_hours=3.0, rules=True)
    return dataclasses.replace(
        scenario, microgrids=tuple(dataclasses.replace(mg, gensets=()) for mg in scenario.microgrids)
    )


def judged_by_name(txs: Sequence[tuple[str, str, dict[str, Any]]]) -> dict[str, list[tuple[int, Any]]]:
    """Per MG, the (iteration, judged) of each of its posts that carried a judgement."""
    out: dict[str, list[tuple[int, Any]]] = {}
    for kind, name, body in txs:
        if kind == "exchange.position" and "judged" in body:
            out.setdefault(name, []).append((body["iteration"], body["judged"]))
    return out


def exchange_txs(blocks: Sequence[Any], names: dict[bytes, str]) -> list[tuple[str, str, dict[str, Any]]]:
    """The exchange moves of `blocks`: (kind, sender's MG, body less the session's name, which differs)."""
    return [(tx.kind, names[tx.sender], {k: v for k, v in tx.body.items() if k != "session"})
            for block in blocks for tx in block.txs if tx.kind.startswith("exchange.")]  # fmt: skip


def edge_txs(tmp_path: Path, scenario: Scenario, keys_: dict[str, Any]) -> list[tuple[str, str, Any]]:
    ledger, _ = ledger_for(tmp_path, scenario)
    try:
        store = ledger.stores[0]
        blocks = [store.block(h) for h in range(1, ledger.height("mgmc") + 1)]
        return exchange_txs(blocks, {keys_[name].public: name for name in keys_})
    finally:
        ledger.close()


def venue_txs(venue: ChainVenue) -> list[tuple[str, str, Any]]:
    blocks = [venue.chain.block(h) for h in range(1, venue.chain.height + 1)]
    return exchange_txs(blocks, {key.public: name for name, key in venue.keys.items()})


def moves(txs: Sequence[tuple[str, str, dict[str, Any]]], kind: str) -> list[tuple[str, int, dict[str, Any]]]:
    """The moves of one kind, by iteration (positions: per MG; the coordinator's by iteration alone: it is
    another MG where the keys order apart)."""
    return sorted(
        (
            (name if kind == "exchange.position" else "", body["iteration"], body)
            for k, name, body in txs
            if k == kind
        ),
        key=lambda move: move[:2],
    )


def assert_allocates(
    outcomes: dict[str, SessionOutcome], scenario: Scenario, cfg: DayAheadConfig, venue_record: Any
) -> None:
    allocation, record, positions = venue_record
    for name, outcome in outcomes.items():
        assert outcome.completed, (name, outcome.reason)
        assert outcome.stop == allocation.stop
        assert outcome.prices == record["prices"]  # to the nano
        assert list(outcome.positions) == positions[name]  # to the Wh
        assert outcome.positions == tuple(round(q * 1000) for q in allocation.positions[name])


def test_a_rules_day_on_the_edge_is_allocates_on_the_chain_venue_with_every_judgement(tmp_path: Path) -> None:
    scenario = rules_day()
    for cfg, label in ((VALUE, "value"), (KWH, "kwh")):
        where = tmp_path / label
        ledger, keys_ = ledger_for(where, scenario)
        started = time.perf_counter()
        outcomes = run_session(ledger, keys_, scenario, config=cfg)
        wall = time.perf_counter() - started
        venue = ChainVenue(scenario)
        started = time.perf_counter()
        allocation = allocate(scenario, cfg, recorder=venue.exchange)
        simulated_wall = time.perf_counter() - started
        assert_allocates(outcomes, scenario, cfg, simulated(scenario, cfg))
        edge, chain = edge_txs(where, scenario, keys_), venue_txs(venue)
        judged = judged_by_name(edge)
        assert judged and judged == judged_by_name(chain)  # the same judgements, by the same MGs, at k
        # the same moves: every member's posts (positions, verdicts, judgements), the steps and the close
        for kind in ("exchange.position", "exchange.step", "exchange.close"):
            assert moves(edge, kind) == moves(chain, kind), kind
        print(f"\n{label}: {len(outcomes)} agents, stop {allocation.stop} after {allocation.iterations} rounds "
              f"(allocate), edge {wall:.2f} s wall, allocate on the chain venue {simulated_wall:.2f} s")  # fmt: skip


# --- a day that bans a side and lets it back ------------------------------------------------------------

BAN_OPENING = [-0.01, -0.005]  # below 0: the seller's floor of 0 forbids its sale there


def ban_day(cap: float = 0.5) -> Scenario:
    """The controller's ban test day: three MGs, two 12-h intervals, a floor of 0 (under every feed-in: no
    fee, a ban judges it) and a cap above retail (`cap` inf: no rule at all, a day judged only because a
    price is below 0); with `ban_models` the first sells 1 kWh whatever the price, the others buy 0.5
    each (no gensets: the models stand in for the MGs' days)."""
    scenario = synthetic_scenario(3, 2, seed=0, interval_hours=12.0)
    rules = ContractRules(floor_price=0.0, cap_price=cap)
    return dataclasses.replace(
        scenario,
        microgrids=tuple(dataclasses.replace(mg, rules=rules, gensets=()) for mg in scenario.microgrids),
    )


class Bounded:
    """A stand-in MG model answering the same net export (kWh) every interval, within its bounds (kW over
    12-h intervals: a bound of 0 is 0 kWh, and none binds otherwise)."""

    def __init__(self, kwh: float, n: int) -> None:
        self.kwh = kwh
        self.lo: Sequence[float] = [-1e9] * n
        self.hi: Sequence[float] = [1e9] * n

    def trade(self, prices: object, lo: Sequence[float], hi: Sequence[float], *fees: object) -> None:
        self.lo, self.hi = lo, hi

    def proximal(self, *args: object, **kwargs: object) -> None: ...

    def solve(self) -> tuple[float, ...]:
        return tuple(
            min(max(self.kwh, lo * 12.0), hi * 12.0) for lo, hi in zip(self.lo, self.hi, strict=True)
        )


def ban_models() -> list[Bounded]:
    return [Bounded(1.0, 2), Bounded(-0.5, 2), Bounded(-0.5, 2)]


def with_model(model: Bounded, cls: type[DayAheadAgent] = DayAheadAgent) -> Any:
    """An agent factory (run_session's `make`) whose MG answers with a stand-in model, at the ban day's
    opening prices."""

    class Standing(cls):  # type: ignore[valid-type, misc]
        def _first_model(self) -> DayModel:
            return model  # type: ignore[return-value]

    def make(*args: Any, **kwargs: Any) -> DayAheadAgent:
        return Standing(*args[:7], BAN_OPENING, *args[8:], **kwargs)  # type: ignore[no-any-return]

    return make


@pytest.mark.parametrize("cap", [0.5, math.inf])
def test_a_ban_and_its_let_back_on_the_edge_are_the_coordinators_to_the_nano(
    tmp_path: Path, cap: float
) -> None:
    # with no rule in force (cap inf) the day is judged while a price is below 0 (a floor of 0 forbids a
    # sale there: what the edge refused before, the coordinator's judgement) and while a side stands banned
    scenario = ban_day(cap)
    ledger, keys_ = ledger_for(tmp_path, scenario)
    make = {mg.name: with_model(m) for mg, m in zip(scenario.microgrids, ban_models(), strict=True)}
    outcomes = run_session(ledger, keys_, scenario, config=KWH, make=make)
    venue = ChainVenue(scenario)
    ex = Exchange(scenario, KWH, BAN_OPENING, venue.exchange)
    models = ban_models()
    ex.open()
    ex.first_responses(models)  # type: ignore[arg-type]
    assert ex.run(models, KWH.max_iterations, KWH.tolerance_kwh)  # type: ignore[arg-type]
    ex.close(models)  # type: ignore[arg-type]
    record = contract.session(venue.chain.view, venue.exchange.session)
    assert record is not None
    for mg, qi in zip(scenario.microgrids, ex.q_wh, strict=True):
        outcome = outcomes[mg.name]
        assert outcome.completed, (mg.name, outcome.reason)
        assert outcome.prices == record["prices"] == tuple(ex.prices)
        assert list(outcome.positions) == list(qi)
    edge, chain = edge_txs(tmp_path, scenario, keys_), venue_txs(venue)
    judged = judged_by_name(edge)
    assert judged == judged_by_name(chain)
    seller = scenario.microgrids[0].name
    assert [j["banned"] for _, j in judged[seller] if j["banned"]] == [[0, 2]]  # both its sales, banned
    assert any(j["asks"] for _, j in judged[seller])  # ... and asked back
    assert ex.coordination.returned == {(0, 0, "sell"), (0, 1, "sell")}  # both let back


# --- forged judgements ------------------------------------------------------------------------------------


class Forger(DayAheadAgent):
    """A member that posts `forged` as its judgement from iteration `at` on whenever it has none of its
    own (and remembers it as posted, so that only the others can tell)."""

    forged: dict[str, object] = {}
    at = 2

    def _judged(self) -> dict[str, object] | None:
        honest = super()._judged()
        if honest is None and self.iteration >= self.at:
            self.rules.posted = decode(dict(self.forged))
            return dict(self.forged)
        return honest


def forger(body: dict[str, object]) -> type[DayAheadAgent]:
    return type("Forged", (Forger,), {"forged": body})


def test_an_ask_for_a_side_never_banned_counts_for_nothing(tmp_path: Path) -> None:
    # every member computes the coordination from the posts: the forged ask is no ask of a banned side, so
    # nobody is let back for it and nothing changes: the day is the honest one's to the nano and the Wh
    scenario = rules_day()
    liar = scenario.microgrids[1].name
    ledger, keys_ = ledger_for(tmp_path, scenario)
    forged = {"banned": [], "asks": [0, 3], "fees": False}
    outcomes = run_session(ledger, keys_, scenario, config=KWH, make={liar: forger(forged)})
    assert_allocates(outcomes, scenario, KWH, simulated(scenario, KWH))
    asked = [j for _, j in judged_by_name(edge_txs(tmp_path, scenario, keys_))[liar] if j == forged]
    assert asked  # it did post them


def test_a_judgement_naming_a_cell_outside_the_session_is_refused_and_the_stage_fails(tmp_path: Path) -> None:
    scenario = rules_day()
    liar = scenario.microgrids[1].name
    ledger, keys_ = ledger_for(tmp_path, scenario)
    outside = {"banned": [2 * scenario.intervals], "asks": [], "fees": False}
    outcomes = run_session(ledger, keys_, scenario, config=KWH, timeout_s=1.0, make={liar: forger(outside)})
    reason = outcomes[liar].reason
    assert (
        reason.startswith("the chain refused this MGMC's exchange.position of iteration")
        and ": invalid" in reason
    )
    assert not any(o.completed for o in outcomes.values())
    coordinator = min(keys_, key=lambda name: keys_[name].public)
    assert f"{keys_[liar].public.hex()[:16]}… did not post iteration" in outcomes[coordinator].reason
    ledger2, _ = ledger_for(tmp_path, scenario)
    try:
        session = contract.session(ledger2.state("mgmc"), SESSION)
    finally:
        ledger2.close()
    assert session is not None and session["closed"]


def test_a_five_mg_day_with_a_clean_only_buyer_and_a_genset_day_with_the_phases_are_allocates_too(
    tmp_path: Path,
) -> None:
    # seed 2's third MG is clean-only (it never buys: the contract checks each post against it); the genset
    # day runs `allocate`'s three phases with the kWh stops (the value stop ends the relaxed phase one
    # iteration later on the edge, free days or not: not `allocate`'s to the Wh, test_edge_dayahead_value.py)
    clean = rules_day(5, seed=2)
    assert any(mg.rules.clean_only for mg in clean.microgrids)
    genset = synthetic_scenario(4, 4, seed=2, interval_hours=6.0, rules=True)
    assert any(mg.gensets for mg in genset.microgrids)
    for label, scenario, cfg, phases in (("clean", clean, VALUE, False), ("genset", genset, KWH, True)):
        ledger, keys_ = ledger_for(tmp_path / label, scenario)
        outcomes = run_session(ledger, keys_, scenario, config=cfg, phases=phases)
        assert_allocates(outcomes, scenario, cfg, simulated(scenario, cfg))
        venue = ChainVenue(scenario)
        allocate(scenario, cfg, recorder=venue.exchange)
        edge, chain = edge_txs(tmp_path / label, scenario, keys_), venue_txs(venue)
        assert judged_by_name(edge) and judged_by_name(edge) == judged_by_name(chain)
        assert moves(edge, "exchange.position") == moves(chain, "exchange.position")


class NeverStops(DayAheadAgent):
    """A coordinator that steps on where the coordination of the posts says the session stops."""

    def _stop_at(self, k: int, until: int, relaxed: bool) -> str:
        stop = super()._stop_at(k, until, relaxed)
        return "" if self.is_coordinator else stop


def test_members_stop_following_a_coordinator_that_steps_past_the_stop(tmp_path: Path) -> None:
    scenario = rules_day()
    ledger, keys_ = ledger_for(tmp_path, scenario)
    coordinator = min(keys_, key=lambda name: keys_[name].public)
    outcomes = run_session(
        ledger, keys_, scenario, config=VALUE, timeout_s=1.0, make={coordinator: NeverStops}
    )
    for name, outcome in outcomes.items():
        assert not outcome.completed
        if name != coordinator:
            assert (
                "where this MGMC's coordination of the posts says the session stops there (value stop)"
                in (outcome.reason)
            )
    assert "did not post iteration" in outcomes[coordinator].reason


def test_a_floor_on_the_chain_other_than_the_mgmcs_own_is_refused_up_front(tmp_path: Path) -> None:
    scenario = rules_day()
    other = scenario.microgrids[1]
    override = {other.name: dataclasses.replace(other.rules, floor_price=other.rules.floor_price + 0.01)}
    ledger, keys_ = ledger_for(tmp_path, scenario, override)
    outcomes = run_session(ledger, keys_, scenario, config=KWH, timeout_s=1.0)
    reason = outcomes[other.name].reason
    assert reason.startswith(f"refused up front: {other.name}'s floor_price is") and "on the chain" in reason
    assert not any(o.completed for o in outcomes.values())


def test_a_rejoin_past_iteration_one_of_a_day_where_rules_bind_is_refused() -> None:
    # its bans, dropped fees and the coordination's record are in its checkpoint alone, not on the chain
    scenario = rules_day()
    mg = scenario.microgrids[0]
    rules = SessionRules(mg, scenario.interval_hours, KWH)
    assert not rules.restarted(5)  # not joined yet: nothing binds as far as it knows
    rules.coordination.ruled = True
    assert rules.restarted(1) == "" and "without a usable checkpoint" in rules.restarted(2)


class Unbounded(Bounded):
    """A stand-in that answers its net export whatever bounds it is given (its ban is a lie)."""

    def trade(self, prices: object, lo: Sequence[float], hi: Sequence[float], *fees: object) -> None:
        return None


def test_a_member_that_bans_a_side_and_trades_it_anyway_is_not_followed(tmp_path: Path) -> None:
    # the ban day's seller bans its sales below its floor of 0 (a judgement its rule allows) and posts them
    # anyway: every member sees a position on a side its poster stands banned from, and the stage fails
    scenario = ban_day()
    ledger, keys_ = ledger_for(tmp_path, scenario)
    models = [Unbounded(1.0, 2), *ban_models()[1:]]
    make = {mg.name: with_model(m) for mg, m in zip(scenario.microgrids, models, strict=True)}
    outcomes = run_session(ledger, keys_, scenario, config=KWH, timeout_s=1.0, make=make)
    seller = keys_[scenario.microgrids[0].name].public.hex()[:16]
    for outcome in outcomes.values():
        assert not outcome.completed
        assert f"member {seller}… posts 1000 Wh in interval 0" in outcome.reason
        assert "on the side (sell) it stands banned from by its own judgement" in outcome.reason


# --- restarts ---------------------------------------------------------------------------------------------


def test_a_restart_with_its_checkpoint_resumes_the_judgement_exactly(tmp_path: Path) -> None:
    # the checkpoint keeps the MG's bans and fees, the coordination and its pending judgement (and whether
    # the last step was the kWh stop): a member dying at its post of an iteration after a judgement, or of
    # the final round (the kWh stop pending), ends on `allocate`'s day to the nano and the Wh; dying at the
    # posts right after this day's first fee changes (iteration 9: every MG drops fees) the same stop,
    # iterations and Wh but prices up to 1,250 nano/kWh off: the restarted MG's day model is a fresh LP
    # (solved once at the book's prices), and after a fee drop its answer is not unique (HiGHS then gives
    # a vertex that depends on the warm start; the roundtrip of the rules' state itself is exact)
    from test_edge_dayahead_restart import dies_at

    scenario = rules_day()
    allocation, record, positions = reference = simulated(scenario, KWH)
    final = allocation.iterations  # the final round's iteration (posted, abandoned by the close)
    names = [mg.name for mg in scenario.microgrids]
    cases = ((0, 10, False, False), (1, 10, True, False), (2, final, True, True), (3, 20, True, True))
    runs = []
    for case, (victim, iteration, after, _) in enumerate(cases):
        where = tmp_path / f"case{case}"
        ledger, keys_ = ledger_for(where, scenario)
        coordinator = min(keys_, key=lambda name: keys_[name].public)
        name = coordinator if victim == 0 else names[victim]
        dies = dies_at(iteration, after, 0.2, where / "checkpoint.json")
        runs.append((ledger, session_play(ledger, keys_, scenario, config=KWH, make={name: dies})))
    # the four days at once, each on its own chain (they waited for blocks one after another: 29 s in ci17c)
    for (*_, exact), outcomes in zip(cases, run_together(runs), strict=True):
        if exact:
            assert_allocates(outcomes, scenario, KWH, reference)
            continue
        for mg, outcome in outcomes.items():
            assert outcome.completed and outcome.stop == "kwh" and outcome.iterations == final - 1
            assert max(abs(a - b) for a, b in zip(outcome.prices, record["prices"], strict=True)) <= 2_500
            assert max(abs(a - b) for a, b in zip(outcome.positions, positions[mg], strict=True)) <= 1


def test_a_member_down_through_the_close_of_a_judged_kwh_stop_finds_it_a_stop(tmp_path: Path) -> None:
    # it posted the final round and died; the coordinator closed while it was down: the chain alone cannot
    # tell that close from a failure (the posts the kWh stop was computed from are gone), its checkpoint can
    from test_edge_dayahead_restart import dies_at

    scenario = rules_day()
    reference = simulated(scenario, KWH)
    ledger, keys_ = ledger_for(tmp_path, scenario)
    member = max(keys_, key=lambda name: keys_[name].public)
    dies = dies_at(reference[0].iterations, True, 1.0, tmp_path / "checkpoint.json")
    outcomes = run_session(ledger, keys_, scenario, config=KWH, make={member: dies})
    assert_allocates(outcomes, scenario, KWH, reference)


def test_a_restart_without_a_checkpoint_on_a_rules_day_fails_the_stage_saying_why(tmp_path: Path) -> None:
    from test_edge_dayahead_restart import dies_at

    scenario = rules_day()
    ledger, keys_ = ledger_for(tmp_path, scenario)
    member = max(keys_, key=lambda name: keys_[name].public)
    outcomes = run_session(
        ledger, keys_, scenario, config=KWH, timeout_s=1.0, make={member: dies_at(10, True, 0.2)}
    )
    assert "floors or caps in force without a usable checkpoint" in outcomes[member].reason
    assert not any(o.completed for o in outcomes.values())


# --- the rules' state in the checkpoint -------------------------------------------------------------------


def joined_rules(scenario: Scenario, tmp_path: Path) -> SessionRules:
    ledger, keys_ = ledger_for(tmp_path, scenario)
    try:
        mg = scenario.microgrids[0]
        rules = SessionRules(mg, scenario.interval_hours, KWH)
        members = [keys_[m.name].public for m in scenario.microgrids]
        rules.join(ledger.state("mgmc"), members, members[0], 0)
    finally:
        ledger.close()
    return rules


cell = st.tuples(st.integers(0, 7), st.sampled_from(["sell", "buy"]))
cells = st.sets(cell, max_size=6)
member_cell = st.tuples(st.integers(0, 3), st.integers(0, 7), st.sampled_from(["sell", "buy"]))


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    own=st.tuples(cells, cells, cells, cells),
    returned=st.sets(member_cell, max_size=4),
    standing=st.sets(member_cell, max_size=4),
    counted=st.integers(0, 8),
    mine=st.none() | st.tuples(cells, cells, st.booleans(), cells, cells),
    flags=st.tuples(st.booleans(), st.booleans()),
)
def test_the_rules_state_goes_through_the_checkpoint_file_unchanged(
    tmp_path: Path, own: Any, returned: Any, standing: Any, counted: int, mine: Any, flags: Any
) -> None:
    scenario = rules_day()
    rules = joined_rules(scenario, tmp_path / "chain")
    rules.own.banned, rules.own.returned, rules.own.fee_off, rules.own.fee_back = (set(c) for c in own)
    rules.coordination.returned, rules.coordination.standing = set(returned), set(standing)
    rules.coordination.fees_counted = counted
    if mine is not None:
        banned, asks, fees, dropped, restored = mine
        public = Judgement(tuple(sorted(banned)), tuple(sorted(asks - banned)), fees)
        rules.mine = OwnJudgement(public, tuple(sorted(dropped)), tuple(sorted(restored)))
    rules.near, rules.judging = flags
    rules.prices = tuple(range(8))
    path = tmp_path / "checkpoint.json"
    saved = Checkpoint("s", 3, (0.0,) * 8, (0,) * 8, False, False, 1, None, (0,) * 8, 1, ((0,) * 8,) * 4,
                       rules.snapshot(), True)  # fmt: skip
    save(path, saved)
    loaded = load(path, "s")
    assert loaded is not None and loaded.kwh and loaded.rules is not None
    again = joined_rules(scenario, tmp_path / "chain2")
    again.restore(loaded.rules)
    assert again.snapshot() == rules.snapshot()
    assert again.own.bounds() == rules.own.bounds() and again.own.fees() == rules.own.fees()
    assert (again.mine is None) == (rules.mine is None)


@pytest.mark.parametrize(
    ("path", "value", "error"),
    [
        (("own", "banned"), [[8, "sell"]], ValueError),  # a cell outside the session
        (("own", "fee_off"), [[0, "both"]], ValueError),
        (("standing",), [[4, 0, "sell"]], ValueError),  # a member outside it
        (("returned",), [["0", 0, "buy"]], TypeError),
        (("fees_counted",), -1, ValueError),
        (("near",), 1, TypeError),
        (
            ("mine",),
            {"public": {"banned": [], "asks": [], "fees": "yes"}, "dropped": [], "restored": []},
            TypeError,
        ),
        (("prices",), [0.5], TypeError),
        (
            ("mine",),
            {"public": {"banned": [16], "asks": [], "fees": False}, "dropped": [], "restored": []},
            ValueError,
        ),  # a cell outside the session
    ],
)
def test_a_malformed_rules_state_is_an_error_never_a_guess(
    tmp_path: Path, path: tuple[str, ...], value: Any, error: type[Exception]
) -> None:
    rules = joined_rules(rules_day(), tmp_path)
    rules.own.banned = {(1, "sell")}  # a state that a failed restore must leave as it was
    before = rules.snapshot()
    snapshot = json.loads(json.dumps(rules.snapshot()))
    snapshot["own"]["banned"] = [[2, "buy"]]
    target = snapshot
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(error):
        rules.restore(snapshot)
    assert rules.snapshot() == before
    del snapshot["own"]
    with pytest.raises(KeyError):
        rules.restore(snapshot)


def test_a_checkpoint_from_before_rules_days_loads_with_none_and_one_with_rules_not_an_object_is_refused(
    tmp_path: Path,
) -> None:
    path = tmp_path / "checkpoint.json"
    saved = Checkpoint("s", 0, (0.0,), (0,), False, False, 1, None, (0,), 1, ())
    save(path, saved)
    doc = json.loads(path.read_text())
    del doc["rules"], doc["kwh"]
    path.write_text(json.dumps(doc))
    loaded = load(path, "s")
    assert loaded is not None and loaded.rules is None and not loaded.kwh
    path.write_text(json.dumps({**doc, "rules": [1]}))
    with pytest.raises(CheckpointError, match="rules"):
        load(path, "s")


def test_the_forward_stage_after_an_edge_rules_day_clears_the_simulations_trades(tmp_path: Path) -> None:
    # each MG accepts alone (its floor and cap checked by `exchange.accept` at the closing price): the
    # cleared trades are `commit` + `clear`'s on the chain venue, pair, Wh and price
    from test_edge_dayahead_session import run_on
    from test_edge_forward import on_chain, session_then_forward, venue_keys
    from test_edge_forward import simulated as forward_simulated

    scenario = rules_day()
    ledger, keys_ = ledger_for(tmp_path, scenario, key_of=venue_keys(scenario))
    sessions, forward = run_on(ledger, lambda: session_then_forward(ledger, keys_, scenario))
    assert all(o.completed for o in sessions)
    expected, accepted = forward_simulated(scenario)  # the kWh stops, as session_then_forward runs
    assert len(expected) > 10
    ledger, _ = ledger_for(tmp_path, scenario, key_of=venue_keys(scenario))
    try:
        assert on_chain(ledger, keys_, scenario.intervals) == expected
    finally:
        ledger.close()
    for name, outcome in forward.items():
        assert outcome.cleared and outcome.decision == "whole" and outcome.accepted == accepted[name]
