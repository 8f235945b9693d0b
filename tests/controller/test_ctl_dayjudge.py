"""The owners' rules judged apart: each MG's own judgement (`OwnRules.judge`, private) and the public
`Coordination` (who is let back, which (interval, side)s close, whether anything changed), and the
judgement's chain form (`encode`/`decode`)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid_controller.dayexchange import DayAheadConfig, nano
from peergrid_controller.dayjudge import (
    SIDES,
    Cell,
    Coordination,
    Judgement,
    Outcome,
    OwnRules,
    binds,
    decode,
    demand_on_tick,
    due,
    enact,
    encode,
    judge_own,
)
from peergrid_controller.dayrounds import Exchange
from peergrid_controller.dayrules import chain_rules
from peergrid_controller.model import ContractRules, Scenario
from peergrid_controller.synth import synthetic_scenario


def ruled(floors: list[float], caps: list[float]) -> Scenario:
    """Three MGs over two 12-h intervals with the given floors and caps (no fee where floor <= feed-in and
    cap >= retail: so bans, not fees, judge them)."""
    scenario = synthetic_scenario(3, 2, seed=0, interval_hours=12.0)
    mgs = tuple(
        replace(mg, rules=ContractRules(floor_price=f, cap_price=c))
        for mg, f, c in zip(scenario.microgrids, floors, caps, strict=True)
    )
    return replace(scenario, microgrids=mgs)


def own(scenario: Scenario, i: int) -> OwnRules:
    return OwnRules(scenario.microgrids[i], scenario.interval_hours, scenario.intervals, 0.0, 0.01)


def judge(mg: OwnRules, prices: list[float], position: list[float]) -> Judgement:
    """`mg`'s judgement at `prices`, put in force at once (`Exchange.run` does it one round later)."""
    judged = mg.judge([nano(p) for p in prices], position)
    mg.apply(judged)
    return judged.public


def test_an_mg_bans_only_its_own_side_held_against_its_rule_and_asks_it_back_when_the_price_permits() -> None:
    scenario = ruled([0.0, 0.0, 0.0], [0.5, 0.5, 0.5])
    mg = own(scenario, 0)
    assert mg.base_fees == (None, None)  # a floor at 0 and a cap above retail: no fee, a ban judges them
    # selling at a negative price: its floor of 0 forbids it, and it holds the side; judging changes
    # nothing until the judgement is applied
    judged = mg.judge([nano(-0.01), nano(0.1)], [1.0, 1.0])
    assert judged.public == Judgement(banned=((0, "sell"),)) and mg.banned == set()
    mg.apply(judged)
    assert mg.bounds()[1][0] == 0.0 and mg.bounds()[1][1] > 0.0
    # still forbidden: nothing new; the price permits it again: it asks, and stays banned until let back
    assert judge(mg, [-0.01, 0.1], [0.0, 1.0]).empty
    assert judge(mg, [0.02, 0.1], [0.0, 1.0]) == Judgement(asks=((0, "sell"),))
    assert (0, "sell") in mg.banned
    mg.let_back((0, "sell"))
    assert mg.bounds()[1][0] > 0.0
    # banned again, it never asks back a second time
    assert judge(mg, [-0.01, 0.1], [1.0, 1.0]) == Judgement(banned=((0, "sell"),))
    assert judge(mg, [0.02, 0.1], [0.0, 1.0]).empty


def test_a_fee_change_is_the_mgs_own_and_only_flagged() -> None:
    scenario = synthetic_scenario(3, 2, seed=0, interval_hours=12.0, rules=True)
    first = scenario.microgrids[0]
    scenario = replace(
        scenario,
        microgrids=(replace(first, rules=replace(first.rules, floor_price=0.08)), *scenario.microgrids[1:]),
    )
    mg = own(scenario, 0)
    assert mg.has_fee(0, "sell")
    judged = mg.judge([nano(0.1), nano(0.1)], [1.0, 1.0])
    assert judged.public == Judgement(fees=True) and set(judged.dropped) >= {(0, "sell"), (1, "sell")}
    mg.apply(judged)
    assert mg.fee_off >= {(0, "sell"), (1, "sell")}
    fees = mg.fees()[0]
    assert fees is not None and fees[0] == 0.0
    # the price crosses the floor: the fee comes back for good
    assert judge(mg, [0.07, 0.1], [1.0, 1.0]).fees
    assert (0, "sell") in mg.fee_back and (0, "sell") not in mg.fee_off
    judge(mg, [0.1, 0.1], [1.0, 1.0])
    assert (0, "sell") not in mg.fee_off  # never dropped again


SALES = ((0, "sell"), (1, "sell"))


def tick(*micro_per_wh: int) -> list[int]:
    """Exchange prices (nano/kWh) at these prices on the tick (micro-units per Wh), one per interval."""
    return [m * 10**6 for m in micro_per_wh]


def test_the_coordination_lets_back_the_least_demanding_rule_first_one_per_interval_and_side() -> None:
    demands = {0: 30, 1: 10, 2: 10}  # floors on the tick; 1 and 2 tie: member order
    coordination = Coordination(lambda i, t, side: demands[i], 2)
    banned = Judgement(banned=SALES)
    assert coordination.settle([banned, banned, banned], tick(5, 5)) == Outcome((), True)
    asks = Judgement(asks=SALES)
    outcome = coordination.settle([asks, asks, asks], tick(30, 40))
    assert outcome.let_back == ((1, (0, "sell")), (1, (1, "sell"))) and outcome.changed
    # the next judgement: 1 was let back at both, so 2 is (it asks again); 0 waits
    outcome = coordination.settle([asks, Judgement(), asks], tick(30, 40))
    assert outcome.let_back == ((2, (0, "sell")), (2, (1, "sell")))
    # an MG asking for a side it already came back to is not let back twice
    assert coordination.settle([Judgement(), asks, Judgement()], tick(30, 40)) == Outcome((), False)


def test_a_ban_now_holds_the_let_back_and_a_member_let_back_then_banned_again_closes_only_its_own() -> None:
    caps = {0: 100, 1: 50}  # on the tick: at 70 member 0 may buy, member 1 may not
    coordination = Coordination(lambda i, t, side: -caps[i], 1)
    ban, ask = Judgement(banned=((0, "buy"),)), Judgement(asks=((0, "buy"),))
    coordination.settle([ban, Judgement()], tick(150))
    outcome = coordination.settle([ask, ban], tick(70))
    assert outcome.let_back == () and outcome.changed  # someone banned (0, buy) now: nobody back there
    assert coordination.settle([ask, Judgement()], tick(70)).let_back == ((0, (0, "buy")),)
    # member 0, let back, is banned again: its own return is closed, member 1's is not
    assert coordination.settle([ban, Judgement()], tick(150)).changed
    assert coordination.closed == {(0, 0, "buy")}
    assert coordination.settle([ask, ask], tick(30)).let_back == ((1, (0, "buy")),)
    assert coordination.settle([ask, Judgement()], tick(30)) == Outcome((), False)


def test_ban_ask_ban_by_one_member_does_not_close_the_side_to_the_others() -> None:
    # review9 F3: a member let back and banned again closed the (interval, side) to every other member's
    # return, for the rest of the session; here as its rule allows (the price crosses its floor twice)
    coordination = Coordination(lambda i, t, side: 0, 1)
    sale = (0, "sell")
    ban, ask = Judgement(banned=(sale,)), Judgement(asks=(sale,))
    coordination.settle([ban, ban], tick(-10))
    assert coordination.settle([ask, ask], tick(10)).let_back == ((0, sale),)  # ties: member order
    assert coordination.settle([ban, Judgement()], tick(-10)).changed
    assert coordination.settle([Judgement(), ask], tick(10)).let_back == ((1, sale),)
    assert coordination.closed == {(0, 0, "sell")} and coordination.standing == {(0, 0, "sell")}


def test_a_ban_or_ask_its_chain_rule_contradicts_at_the_judged_prices_is_ignored_whole() -> None:
    # review9 coord_close: a floor of 0 is let back first; its re-ban at a price its floor permits held the
    # honest member (floor 50) back; now the liar's judgement is ignored and said so
    floors = {0: 50, 1: 0}
    coordination = Coordination(lambda i, t, side: floors[i], 1)
    sale = (0, "sell")
    ban, ask = Judgement(banned=(sale,)), Judgement(asks=(sale,))
    coordination.settle([ban, ban], tick(-10))
    assert coordination.settle([ask, ask], tick(100)).let_back == ((1, sale),)
    outcome = coordination.settle([ask, Judgement(banned=(sale,), fees=True)], tick(100))
    assert outcome == Outcome(((0, sale),), True, (1,))
    assert coordination.standing == set() and coordination.closed == set()
    # an ask for a side its rule forbids, a ban of one it permits, a cell beyond the session: none counts,
    # not even the fees said with it
    fresh = Coordination(lambda i, t, side: floors[i], 1)
    assert fresh.settle([Judgement(banned=(sale,)), Judgement()], tick(10)) == Outcome((), True)
    assert fresh.settle([Judgement(asks=(sale,), fees=True)], tick(40)) == Outcome((), False, (0,))
    assert fresh.settle([Judgement(), Judgement(banned=(sale,))], tick(0)) == Outcome((), False, (1,))
    assert fresh.settle([Judgement(banned=((1, "sell"),), fees=True)], tick(10)) == Outcome((), False, (0,))
    assert fresh.standing == {(0, 0, "sell")}
    # the buy side: a cap forbids a price above it (demand -cap)
    capped = Coordination(lambda i, t, side: -60, 1)
    assert capped.settle([Judgement(banned=((0, "buy"),))], tick(60)).ignored == (0,)
    assert capped.settle([Judgement(banned=((0, "buy"),))], tick(61)) == Outcome((), True)


def test_nothing_changes_on_empty_judgements() -> None:
    assert not Coordination(lambda i, t, side: 0, 1).settle([Judgement(), Judgement()], tick(0)).changed


def test_a_lying_member_can_neither_hold_others_back_nor_keep_the_exchange_going() -> None:
    floors = {0: 0, 1: 50}  # the liar's floor forbids a sale at 30, the honest member's permits it
    coordination = Coordination(lambda i, t, side: floors[i] if side == "sell" else -(10**6), 2)
    # both ban their sale in interval 0 (a ban of one's own side is every member's right, once)
    coordination.settle([Judgement(banned=((0, "sell"),)), Judgement(banned=((0, "sell"),))], tick(-10, 30))
    liar = Judgement(banned=((0, "sell"),), fees=True)
    # the liar's ban said again is nothing new: the honest member asking at (0, sell) is let back
    outcome = coordination.settle([Judgement(asks=((0, "sell"),)), liar], tick(30, 30))
    assert outcome.let_back == ((0, (0, "sell")),)
    # asking back a side it never had banned brings it nothing
    assert coordination.settle([Judgement(), Judgement(asks=((1, "buy"),))], tick(30, 30)).let_back == ()
    # fees said changed round after round count as changes in one judgement per interval of the session
    # (2 here), all members together; then the exchange may stop
    said = [coordination.settle([Judgement(), Judgement(fees=True)], tick(30, 30)).changed for _ in range(4)]
    assert said == [True, False, False, False]  # the liar's first fees=True above was the first
    # bans of sides no one holds banned still count, but each only once per member
    assert coordination.settle([Judgement(), Judgement(banned=((1, "sell"),))], tick(30, 30)).changed
    assert not coordination.settle([Judgement(), Judgement(banned=((1, "sell"),))], tick(30, 30)).changed


def test_liars_taking_turns_at_fees_keep_the_exchange_going_one_judgement_per_interval_in_all() -> None:
    # review9 F5: the bound was per member (4 per interval each): three liars taking turns kept `changed`
    # for 1152 judgements of a 96-interval day, about `max_iterations`
    coordination = Coordination(lambda i, t, side: 0, 96)
    changed = 0
    for turn in range(3):
        for _ in range(4 * 96):
            said = [Judgement(fees=(i == turn)) for i in range(3)] + [Judgement()]
            changed += coordination.settle(said, tick(*[10] * 96)).changed
    assert changed == 96 and coordination.fees_counted == 96
    # fees said by many members in one judgement are one change; an ignored judgement's fees none
    again = Coordination(lambda i, t, side: 0, 2)
    assert again.settle([Judgement(fees=True), Judgement(fees=True)], tick(10, 10)).changed
    assert again.fees_counted == 1
    liar = Judgement(banned=((0, "sell"),), fees=True)  # a floor of 0 permits a sale at 10: a lie
    assert again.settle([liar, Judgement()], tick(10, 10)) == Outcome((), False, (0,))
    assert again.fees_counted == 1


def test_the_demand_is_the_rule_on_the_chains_tick_and_an_absent_cap_the_least_demanding() -> None:
    scenario = ruled([0.051, 0.0, 0.0], [0.25, float("inf"), 0.3])
    demand = [demand_on_tick(mg) for mg in scenario.microgrids]
    assert demand[0](0, "sell") == 51 and demand[0](0, "buy") == -250
    assert demand[1](0, "buy") < demand[2](0, "buy") < demand[0](0, "buy")


def test_the_exchange_judges_through_each_mgs_own_rules() -> None:
    scenario = ruled([0.0, 0.0, 0.0], [0.5, 0.5, 0.5])
    ex = Exchange(scenario, DayAheadConfig(), [-0.01, 0.1])
    ex.take([(1000, 0), (-500, 0), (-500, 0)])
    assert ex.judge_rules()
    assert ex.own_rules[0].banned == {(0, "sell")} and ex.bounds(0)[1][0] == 0.0
    assert not ex.judge_rules()  # nothing new at the same prices


cells = st.lists(st.tuples(st.integers(0, 671), st.sampled_from(SIDES)), unique=True, max_size=40)


@settings(max_examples=200, deadline=None)
@given(cells, cells, st.booleans())
def test_the_chain_form_round_trips_in_ascending_cells(
    banned: list[Cell], asks: list[Cell], fees: bool
) -> None:
    judgement = Judgement(tuple(banned), tuple(asks), fees)
    body = encode(judgement)
    for key in ("banned", "asks"):
        codes = body[key]
        assert isinstance(codes, list) and codes == sorted(set(codes))
    back = decode(body)
    assert sorted(back.banned) == sorted(banned) and sorted(back.asks) == sorted(asks) and back.fees is fees
    assert body["fees"] is fees


def test_a_rule_binds_on_the_chain_with_a_floor_above_0_or_a_cap_below_the_highest_price() -> None:
    free = chain_rules(ContractRules())
    assert not binds(free)
    assert binds(chain_rules(ContractRules(floor_price=0.001)))
    assert binds(chain_rules(ContractRules(cap_price=0.3)))
    # a floor under half a tick is no floor on the chain's tick
    assert not binds(chain_rules(ContractRules(floor_price=0.0004)))


def test_the_timing_near_convergence_in_force_at_once_on_a_value_stop_after_the_posts() -> None:
    scenario = ruled([0.0, 0.0, 0.0], [0.5, 0.5, 0.5])
    at = [nano(-0.01), nano(0.1)]
    # nothing to judge: not a judging day, or neither near nor its own verdict settled
    assert judge_own(own(scenario, 0), at, [1.0, 1.0], near=True, settled=True, judging=False) is None
    assert judge_own(own(scenario, 0), at, [1.0, 1.0], near=False, settled=False, judging=True) is None
    # near convergence: its ban is in force for its next answer already; enact changes nothing more
    near = own(scenario, 0)
    judged = judge_own(near, at, [1.0, 1.0], near=True, settled=False, judging=True)
    assert judged is not None and near.banned == {(0, "sell")}
    enact(near, 0, judged, True, Outcome((), True))
    assert near.banned == {(0, "sell")}
    # on its own verdict alone: posted, in force only once every verdict said settled (`due`) and enacted
    value = own(scenario, 0)
    judged = judge_own(value, at, [1.0, 1.0], near=False, settled=True, judging=True)
    assert judged is not None and value.banned == set()
    assert due(True, False, True) and not due(True, False, False) and not due(False, True, True)
    enact(value, 0, judged, False, Outcome((), True))
    assert value.banned == {(0, "sell")}
    # a let-back is enacted by the member let back only
    enact(value, 1, None, False, Outcome(((0, (0, "sell")),), True))
    assert value.banned == {(0, "sell")}
    enact(value, 0, None, False, Outcome(((0, (0, "sell")),), True))
    assert value.banned == set() and value.returned == {(0, "sell")}


def test_a_day_is_judged_where_a_rule_binds_a_price_is_negative_or_a_side_stands_banned() -> None:
    free = Coordination(lambda i, t, side: 0, 1, ruled=False)
    assert not free.judging([nano(0.1)]) and free.judging([nano(-0.001)])
    free.settle([Judgement(banned=((0, "sell"),))], [nano(-0.001)])
    assert free.judging([nano(0.1)])
    assert Coordination(lambda i, t, side: 0, 1).judging([nano(0.1)])
