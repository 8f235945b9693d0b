"""Accept rounds (exchange_clearing.py): a member accepts again, reduce-only, to re-check its share of the
clear's pro-rata cut; the clear waits until every member still trading re-checked the last change.

A round k + 1 opens once every member accepted (or the deadline passed) and every member still trading
posted round k; a clear before the deadline needs the rounds settled: nobody accepted twice (round 1, the
rule from before rounds; not with genesis `accept_rounds` 2), or every member still trading is at the
highest round R and nobody changed in it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from unittest import mock

import test_exchange_clear
from hypothesis import event, given, settings
from hypothesis import strategies as st
from ledger_fixtures import T0, Keys, make_genesis
from test_exchange_clear import (
    ALL,
    FIRST,
    P1,
    P2,
    P3,
    P4,
    accept_body,
    closed_session,
    refused,
    scripted_root,
    submit,
)

from peergrid_ledger import query
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts import exchange_clearing, market
from peergrid_ledger.contracts.exchange_clearing import (
    accept_key,
    accepted,
    accepts_at,
    cleared,
    due,
    rounds,
    rounds_key,
)
from peergrid_ledger.contracts.exchange_rounds import LAST_REDUCING_ROUND
from peergrid_ledger.contracts.pairing import forward_trades
from peergrid_ledger.genesis import Genesis
from peergrid_ledger.keys import Keypair
from peergrid_ledger.results import Accepted, Reason
from peergrid_ledger.state import read_obj

CLEAR = {"session": "day-1"}
DEADLINE = T0 + 600_000  # block time, ms: the chain's blocks here are T0 + a few ms
# P1 and P2 sell, P3 and P4 buy, in two intervals (a third the price leaves at −10: nobody trades it)
FINALS = {P1: [3000, 1000, 0], P2: [1000, 1000, 0], P3: [-2000, -1500, 0], P4: [-1000, -100, 0]}
FAR = T0 + 10**12  # a deadline no block here reaches
NONE = {"absent": [], "standing": []}  # nobody absent or standing: before the deadline, or accept_rounds 1


def session(
    finals: dict[Keypair, list[int]],
    accept_rounds: int,
    deadline: int | None = None,
    prices: list[int] | None = None,
    wait_ms: int | None = None,
) -> LocalChain:
    """test_exchange_clear's closed session, on a genesis with `accept_rounds` (1: its own genesis) and,
    with 2, `accept_wait_ms` `wait_ms` (None: the default)."""
    if accept_rounds == 1:
        return closed_session(finals, prices=prices, deadline=deadline)
    waits = {} if wait_ms is None else {"accept_wait_ms": wait_ms}

    def genesis(**fields: Any) -> Genesis:
        params = replace(fields["params"], accept_rounds=accept_rounds, **waits)
        return make_genesis(**{**fields, "params": params})

    with mock.patch.object(test_exchange_clear, "make_genesis", genesis):
        chain = closed_session(finals, prices=prices, deadline=deadline)
    assert chain.genesis.params.accept_rounds == accept_rounds
    return chain


def short(who: Keypair) -> str:
    return who.public.hex()[:16]


def accept_all(chain: LocalChain, positions: dict[Keypair, list[int]]) -> None:
    for m, q in positions.items():
        submit(chain, m, "exchange.accept", accept_body(q))


def trades_of(chain: LocalChain) -> set[tuple[int, bytes, bytes, int]]:
    return {
        (t, tr["seller"], tr["buyer"], tr["quantity"])
        for t in range(FIRST, FIRST + 3)
        for _, tr in query.trades(chain.view, t)
    }


def want(positions: dict[Keypair, list[int]]) -> set[tuple[int, bytes, bytes, int]]:
    """`pairing.forward_trades` on the given (final) accepts, interval by interval."""
    out = set()
    for t in range(3):
        sells = {m.public: q[t] for m, q in positions.items() if q[t] > 0}
        buys = {m.public: -q[t] for m, q in positions.items() if q[t] < 0}
        out |= {(FIRST + t, s, b, q) for s, b, q in forward_trades(sells, buys, market.MAX_DEMANDS)}
    return out


def test_a_one_round_session_keeps_its_bytes_and_its_state_root() -> None:
    # the whole session of test_exchange_clear (one accept per member, then the clear), state root computed
    # at a9dcce8, before rounds existed: chains from before them replay to the same state
    root = "70b877c85b146f52685d1cc7038eb60b71c582d3eaf6fac82fde92c87f45b1a6"
    assert scripted_root().startswith(root + " ")
    chain = closed_session(FINALS)
    accept_all(chain, {m: q for m, q in FINALS.items()})
    raw = read_obj(chain.view, accept_key(P1.public, "day-1"))
    assert raw == {"clean": False, "positions": FINALS[P1]}  # no round written in round 1
    assert read_obj(chain.view, rounds_key("day-1")) is None  # nor the rounds' summary
    assert accepted(chain.view, "day-1", P1.public) == {
        **raw,
        "round": 1,
        "before": [0, 0, 0],
        "changed": True,
    }
    status = rounds(chain.view, "day-1")
    assert status == {"round": 1, "waiting": [], "behind": [], "changed": [], "settled": True, **NONE}
    assert rounds(chain.view, "nope") is None and accepts_at(chain.view, "nope", 1) is None


def test_round_two_opens_only_once_every_member_accepted_and_is_reduce_only() -> None:
    chain = closed_session(FINALS)
    submit(chain, P1, "exchange.accept", accept_body(FINALS[P1]))
    why, text = refused(chain, P1, "exchange.accept", accept_body([2000, 1000, 0]))
    assert why is Reason.DUPLICATE and "round 2 opens once every member accepted (3 have not)" in text
    accept_all(chain, {m: FINALS[m] for m in (P2, P3, P4)})
    # a raise, a sign change, a position where round 1 had none, another clean flag: all refused
    why, text = refused(chain, P1, "exchange.accept", accept_body([3001, 1000, 0]))
    assert why is Reason.RULE_VIOLATION and "larger than its round-1 accept 3000 (reduce only)" in text
    why, text = refused(chain, P3, "exchange.accept", accept_body([2000, -1500, 0]))
    assert why is Reason.RULE_VIOLATION and "not of the sign of its round-1 accept -2000" in text
    submit(chain, P2, "exchange.accept", accept_body([0, 500, 0]))  # P2 withdraws interval 100
    why, text = refused(chain, P2, "exchange.accept", accept_body([0, 500, 0]))
    assert why is Reason.DUPLICATE and "round 3 opens once every member still trading posted round 2" in text
    assert short(P1) in text and short(P2) not in text
    why, text = refused(chain, P4, "exchange.accept", accept_body(FINALS[P4], clean=True))
    assert why is Reason.RULE_VIOLATION and "clean True differs from round 1's" in text
    record = accepted(chain.view, "day-1", P2.public)
    want = {"clean": False, "positions": [0, 500, 0], "round": 2, "before": FINALS[P2], "changed": True}
    assert record == want
    raw = read_obj(chain.view, accept_key(P2.public, "day-1"))
    assert raw == {"before": FINALS[P2], "clean": False, "positions": [0, 500, 0], "round": 2}


def test_a_round_that_reduces_needs_another_and_the_clear_names_who_is_behind() -> None:
    chain = closed_session(FINALS, deadline=DEADLINE)
    accept_all(chain, FINALS)
    assert rounds(chain.view, "day-1")["settled"]  # type: ignore[index]  # round 1: today's rule
    # P3 re-checks its share of the cut and reduces: nobody may clear until everyone has re-checked that
    submit(chain, P3, "exchange.accept", accept_body([-1500, -1500, 0]))
    for who in (Keys.dso, P1):
        why, text = refused(chain, who, "exchange.clear", CLEAR)
        assert why is Reason.RULE_VIOLATION and "accept round 2 is not settled" in text
        assert all(short(m) in text for m in (P1, P2, P4)) and "behind in round 2" in text
        assert f"the deadline {DEADLINE} has not passed" in text
    accept_all(chain, {m: FINALS[m] for m in (P1, P2, P4)})  # they pass unchanged
    why, text = refused(chain, P1, "exchange.clear", CLEAR)
    assert why is Reason.RULE_VIOLATION and f"changed in round 2: {short(P3)}" in text
    assert "re-checks in round 3" in text
    final = {**FINALS, P3: [-1500, -1500, 0]}
    round2 = {m.public: q for m, q in final.items()}
    assert accepts_at(chain.view, "day-1", 1) == {m.public: q for m, q in FINALS.items()}
    assert accepts_at(chain.view, "day-1", 2) == round2
    submit(chain, P1, "exchange.accept", accept_body([2500, 1000, 0]))  # P1 reduces in round 3
    # what the others re-check in round 3 is still round 2's set, P1's own round-2 accept included
    assert accepts_at(chain.view, "day-1", 2) == round2 and accepts_at(chain.view, "day-1", 1) is None
    accept_all(chain, {m: final[m] for m in (P2, P3, P4)})
    why, text = refused(chain, P4, "exchange.clear", CLEAR)
    assert why is Reason.RULE_VIOLATION and f"changed in round 3: {short(P1)}" in text
    final[P1] = [2500, 1000, 0]
    accept_all(chain, final)  # round 4: nobody changes
    status = rounds(chain.view, "day-1")
    assert status == {"round": 4, "waiting": [], "behind": [], "changed": [], "settled": True, **NONE}
    submit(chain, P4, "exchange.clear", CLEAR)  # any member, before the deadline
    assert trades_of(chain) == want(final) and want(final)
    summary = cleared(chain.view, "day-1")
    assert summary is not None and summary["accepted"] == 4


def test_without_a_deadline_only_the_coordinator_clears_an_unsettled_round() -> None:
    chain = closed_session(FINALS)
    accept_all(chain, FINALS)
    submit(chain, P1, "exchange.accept", accept_body([1000, 1000, 0]))
    why, text = refused(chain, P2, "exchange.clear", CLEAR)
    assert why is Reason.FORBIDDEN and "only the coordinator may clear now" in text
    assert "behind in round 2" in text and short(P2) in text
    # the coordinator's rule from before deadlines: it clears what stands, P1's reduction included
    submit(chain, Keys.dso, "exchange.clear", CLEAR)
    assert trades_of(chain) == want({**FINALS, P1: [1000, 1000, 0]})


def test_due_names_the_round_a_member_answers_now() -> None:
    chain = closed_session(FINALS, deadline=DEADLINE)
    assert due(chain.view, "day-1", P1.public, 0) is None  # it has not accepted
    accept_all(chain, {m: FINALS[m] for m in (P1, P2, P3)})
    assert due(chain.view, "day-1", P1.public, 0) is None  # round 1 is not complete: P4 may still come
    assert due(chain.view, "day-1", P1.public, DEADLINE + 1) == 1  # after the deadline it is
    submit(chain, P4, "exchange.accept", accept_body([0, 0, 0]))  # P4 declines: it answers nothing more
    assert [due(chain.view, "day-1", m.public, 0) for m in ALL] == [1, 1, 1, None]
    submit(chain, P3, "exchange.accept", accept_body([-1000, -1500, 0]))  # P3 reduces in round 2
    assert [due(chain.view, "day-1", m.public, 0) for m in ALL] == [1, 1, None, None]
    accept_all(chain, {m: FINALS[m] for m in (P1, P2)})
    assert [due(chain.view, "day-1", m.public, 0) for m in ALL] == [2, 2, 2, None]  # P3 changed
    accept_all(chain, {P1: FINALS[P1], P2: FINALS[P2], P3: [-1000, -1500, 0]})
    assert [due(chain.view, "day-1", m.public, 0) for m in ALL] == [None] * 4  # settled in round 3
    assert rounds(chain.view, "day-1")["settled"]  # type: ignore[index]
    assert due(chain.view, "nope", P1.public, 0) is None


def test_a_silent_member_holds_the_clear_until_the_deadline_then_what_stands_clears() -> None:
    chain = closed_session(FINALS, deadline=DEADLINE)
    accept_all(chain, FINALS)
    submit(chain, P1, "exchange.accept", accept_body([2000, 1000, 0]))
    accept_all(chain, {m: FINALS[m] for m in (P2, P3)})  # P4 never re-checks
    why, text = refused(chain, P2, "exchange.clear", CLEAR)
    assert why is Reason.RULE_VIOLATION and f"behind in round 2: {short(P4)}" in text
    # round 3 waits for P4 too: nobody races ahead of a round that is still open
    why, text = refused(chain, P2, "exchange.accept", accept_body(FINALS[P2]))
    assert why is Reason.DUPLICATE and short(P4) in text
    chain.seal()  # before the clock jumps: the accepts would be too old for a block after the deadline
    result = chain.sign_and_submit(P2, "exchange.clear", CLEAR, time_ms=DEADLINE + 1)
    assert isinstance(result, Accepted), result
    chain.seal()
    assert trades_of(chain) == want({**FINALS, P1: [2000, 1000, 0]})  # P4's round-1 accept stands
    assert chain.dropped == []


def test_a_member_that_declines_to_zeros_is_waited_for_no_more() -> None:
    chain = closed_session(FINALS, deadline=DEADLINE)
    accept_all(chain, {**FINALS, P4: [0, 0, 0]})  # P4 declines in round 1
    submit(chain, P2, "exchange.accept", accept_body([0, 0, 0]))  # P2 declines in round 2: a change
    accept_all(chain, {m: FINALS[m] for m in (P1, P3)})
    why, text = refused(chain, P1, "exchange.clear", CLEAR)
    assert f"changed in round 2: {short(P2)}" in text and short(P4) not in text
    why, text = refused(chain, P2, "exchange.accept", accept_body([0, 0, 0]))
    assert why is Reason.DUPLICATE and "already declined (all zeros in round 2)" in text
    accept_all(chain, {m: FINALS[m] for m in (P1, P3)})  # round 3: P1 and P3 re-check without P2
    status = rounds(chain.view, "day-1")
    assert status is not None and status["settled"] and status["round"] == 3
    submit(chain, P3, "exchange.clear", CLEAR)
    assert trades_of(chain) == want({P1: FINALS[P1], P3: FINALS[P3]})


def test_when_every_member_declined_nobody_is_left_to_re_check() -> None:
    chain = closed_session({P1: [1000, 0, 0], P2: [-1000, 0, 0]}, deadline=DEADLINE)
    accept_all(chain, {P1: [1000, 0, 0], P2: [-1000, 0, 0]})
    accept_all(chain, {P1: [0, 0, 0], P2: [0, 0, 0]})  # both decline in round 2: neither may post again
    status = rounds(chain.view, "day-1")
    assert status == {"round": 2, "waiting": [], "behind": [], "changed": [], "settled": True, **NONE}
    submit(chain, P2, "exchange.clear", CLEAR)
    assert trades_of(chain) == set()


def test_after_the_deadline_the_members_present_go_on_and_a_late_first_accept_is_a_change() -> None:
    chain = closed_session(FINALS, deadline=DEADLINE)
    accept_all(chain, {m: FINALS[m] for m in (P1, P2, P3)})  # P4 is absent
    why, _ = refused(chain, P1, "exchange.accept", accept_body([2000, 1000, 0]))
    assert why is Reason.DUPLICATE  # round 2 waits for P4 until the deadline
    chain.seal()
    late = DEADLINE + 1
    for m, q in ((P1, [2000, 1000, 0]), (P2, FINALS[P2]), (P3, FINALS[P3])):
        assert chain.sign_and_submit(m, "exchange.accept", accept_body(q), time_ms=late).ok
    status = rounds(chain.view, "day-1")
    assert status is not None and status["waiting"] == [P4.public] and status["changed"] == [P1.public]
    # P4 arrives after all: its first accept joins round 2 as a change, so everyone re-checks in round 3
    assert chain.sign_and_submit(P4, "exchange.accept", accept_body(FINALS[P4]), time_ms=late).ok
    record = accepted(chain.view, "day-1", P4.public)
    assert record is not None and (record["round"], record["changed"]) == (2, True)
    assert P4.public not in accepts_at(chain.view, "day-1", 1)  # type: ignore[operator]  # it had none
    assert accepts_at(chain.view, "day-1", 2)[P4.public] == FINALS[P4]  # type: ignore[index]
    status = rounds(chain.view, "day-1")
    assert status is not None and status["changed"] == [P1.public, P4.public] and not status["settled"]
    for m, q in ((P1, [2000, 1000, 0]), (P2, FINALS[P2]), (P3, FINALS[P3]), (P4, FINALS[P4])):
        assert chain.sign_and_submit(m, "exchange.accept", accept_body(q), time_ms=late).ok
    status = rounds(chain.view, "day-1")
    assert status is not None and status["settled"] and status["round"] == 3
    assert chain.sign_and_submit(P3, "exchange.clear", CLEAR, time_ms=late).ok
    chain.seal(late)
    assert trades_of(chain) == want({**FINALS, P1: [2000, 1000, 0]})
    assert chain.dropped == []


def test_accepts_are_final_once_a_clear_in_parts_began(monkeypatch: Any) -> None:
    monkeypatch.setattr(exchange_clearing, "MAX_CLEAR_CELLS", 4)  # 4 members: one interval per part
    chain = closed_session(FINALS)
    accept_all(chain, FINALS)
    submit(chain, P1, "exchange.clear", CLEAR)  # round 1, settled: the first part
    why, text = refused(chain, P3, "exchange.accept", accept_body([-1000, -1500, 0]))
    assert why is Reason.CLOSED and "its accepts are final" in text


# ------------------------------------------------------------------------------- genesis accept_rounds 2


def test_with_accept_rounds_2_a_round_one_clear_is_refused_until_everyone_re_checked() -> None:
    chain = session(FINALS, 2, deadline=DEADLINE)
    accept_all(chain, FINALS)
    assert rounds(chain.view, "day-1")["settled"]  # type: ignore[index]  # by the old rule it would be
    status = rounds(chain.view, "day-1", accept_rounds=2)
    assert status == {"round": 1, "waiting": [], "behind": [], "changed": [], "settled": False, **NONE}
    for who in (P1, Keys.dso):  # neither a member nor the coordinator forces the one-shot outcome
        why, text = refused(chain, who, "exchange.clear", CLEAR)
        assert why is Reason.RULE_VIOLATION
        assert "accept round 1 is not settled (the chain's genesis accept_rounds 2" in text
        assert "re-checks in round 2" in text and f"the deadline {DEADLINE} has not passed" in text
    assert [due(chain.view, "day-1", m.public, 0) for m in ALL] == [1, 1, 1, 1]
    accept_all(chain, {m: FINALS[m] for m in (P1, P2, P3)})
    why, text = refused(chain, P2, "exchange.clear", CLEAR)  # round 2 runs, P4 has not re-checked
    assert why is Reason.RULE_VIOLATION and f"behind in round 2: {short(P4)}" in text
    submit(chain, P4, "exchange.accept", accept_body(FINALS[P4]))  # round 2 changed nothing: settled
    assert rounds(chain.view, "day-1", accept_rounds=2)["settled"]  # type: ignore[index]
    assert [due(chain.view, "day-1", m.public, 0) for m in ALL] == [None] * 4
    submit(chain, P2, "exchange.clear", CLEAR)
    assert trades_of(chain) == want(FINALS) and want(FINALS)


def test_with_accept_rounds_2_declined_members_hold_nobody_and_nobody_trading_clears_at_once() -> None:
    chain = session(FINALS, 2, deadline=DEADLINE)
    accept_all(chain, {**FINALS, P2: [0, 0, 0], P4: [0, 0, 0]})  # P2 and P4 decline in round 1
    why, text = refused(chain, P1, "exchange.clear", CLEAR)
    assert why is Reason.RULE_VIOLATION and "accept round 1 is not settled" in text
    accept_all(chain, {m: FINALS[m] for m in (P1, P3)})  # the two still trading confirm in round 2
    submit(chain, P3, "exchange.clear", CLEAR)
    assert trades_of(chain) == want({P1: FINALS[P1], P3: FINALS[P3]})
    # every member declined at once: nobody can post round 2, and nothing is left to re-check
    chain = session({P1: [1000, 0, 0], P2: [-1000, 0, 0]}, 2, deadline=DEADLINE)
    accept_all(chain, {P1: [0, 0, 0], P2: [0, 0, 0]})
    assert rounds(chain.view, "day-1", accept_rounds=2)["settled"]  # type: ignore[index]
    submit(chain, P2, "exchange.clear", CLEAR)
    assert trades_of(chain) == set()


# ---------------------------------------------------------------------------------------------- property

# Each member's move per interval on its previous accept (its final stepped position before its first): kept,
# cut by a quarter, zeroed, or raised by a quarter (refused). A wave: the members in some order, each either
# silent or accepting with its moves (an unchanged accept most often), then a member may try to clear. The
# coordinator, who may clear at any time on a session without a deadline (accept_rounds 1), clears after the
# last wave; with accept_rounds 2 (whose open needs a deadline) the deadline is never reached here, so that
# only settled rounds clear. On a genesis with accept_rounds 1 or 2 (with times past the deadline:
# test_exchange_accept_rounds_late.py).
MOVES = {"keep": (1, 1), "cut": (3, 4), "zero": (0, 1), "raise": (5, 4)}
same = st.just(("keep", "keep", "keep"))
changed = st.tuples(*[st.sampled_from(["keep", "keep", "cut", "zero", "raise"])] * 3)
member_move = st.one_of(same, same, same, changed, st.none())  # None: silent this wave
# a third of the waves every member posts its accept unchanged: so that rounds settle past round 1 often
every_move = st.one_of(st.tuples(*[member_move] * 4), st.tuples(*[member_move] * 4), st.tuples(*[same] * 4))
wave = st.tuples(st.permutations(range(4)), every_move, st.none() | st.integers(0, 3))
Wave = tuple[list[int], tuple[tuple[str, str, str] | None, ...], int | None]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.lists(st.integers(-3000, 3000), min_size=4, max_size=4), min_size=3, max_size=3),
    st.lists(wave, min_size=1, max_size=8),
    st.sampled_from([1, 2]),
)
def test_whatever_the_accepts_the_clear_gives_no_member_more_than_it_last_accepted(
    columns: list[list[int]], waves: list[Wave], accept_rounds: int
) -> None:
    finals = {m: [col[i] for col in columns] for i, m in enumerate(ALL)}
    chain = session(
        finals, accept_rounds, prices=[50_000_000] * 3, deadline=FAR if accept_rounds == 2 else None
    )
    posts: dict[Keypair, list[list[int]]] = {m: [] for m in ALL}  # each member's accepts the chain took
    by = "the coordinator"
    for order, moves, clearer in waves:
        for i in order:
            m, move = ALL[i], moves[i]
            if move is None:
                continue
            mine = posts[m]
            base = mine[-1] if mine else finals[m]
            positions = [
                q * MOVES[x][0] // MOVES[x][1] if q > 0 else -(-q * MOVES[x][0] // MOVES[x][1])
                for q, x in zip(base, move, strict=True)
            ]
            others = [len(p) for n, p in posts.items() if n is not m and p and any(p[-1])]
            answer = due(chain.view, "day-1", m.public, 0)
            if not chain.sign_and_submit(m, "exchange.accept", accept_body(positions)).ok:
                # a round `due` names is open: only a raise (or a sign change) is refused then, and with
                # accept_rounds 2 from round 6 on a change that does not decline
                capped = accept_rounds == 2 and len(mine) >= LAST_REDUCING_ROUND and any(positions)
                assert answer is None or "raise" in move or (capped and positions != mine[-1])
                continue
            if answer is not None:
                assert answer == len(mine) and accepts_at(chain.view, "day-1", answer) is not None
            if mine:  # a later round: every member accepted, each still trading at least at this round
                assert all(posts.values()) and all(n >= len(mine) for n in others) and any(mine[-1])
                for q, before in zip(positions, mine[-1], strict=True):
                    assert q == 0 or ((q > 0) == (before > 0) and abs(q) <= abs(before))
            mine.append(positions)
        summary = read_obj(chain.view, rounds_key("day-1"))  # the contract's summary, once rounds started
        records = [accepted(chain.view, "day-1", m.public) for m in ALL]
        if summary is None:
            assert all(a is None or a["round"] == 1 for a in records)
        else:
            assert summary["members"] == [
                [0, False, False] if a is None else [a["round"], any(a["positions"]), a["changed"]]
                for a in records
            ]
        top = max(len(p) for p in posts.values())
        for r in range(1, top + 1):  # the set each round left, as `accepts_at` reads it back
            got = accepts_at(chain.view, "day-1", r)
            if any(len(p) > r + 1 for p in posts.values()):
                assert got is None
            else:
                assert got == {m.public: p[min(r, len(p)) - 1] for m, p in posts.items() if p}
        status = rounds(chain.view, "day-1", accept_rounds)
        assert status is not None
        if clearer is None:
            continue
        ok = chain.sign_and_submit(ALL[clearer], "exchange.clear", CLEAR).ok
        assert ok == status["settled"]  # before any deadline: a member clears exactly the settled rounds
        if ok:
            # each still trading re-checked the last round, and nobody changed in it (unless nobody trades
            # any more); with accept_rounds 2 that round is a re-check, never the one-shot accepts
            assert all(posts.values())
            top = max(len(p) for p in posts.values())
            trading = any(any(p[-1]) for p in posts.values())
            for p in posts.values():
                assert len(p) == top or not any(p[-1])
                assert top == 1 or not trading or len(p) < top or p[-1] == p[-2]
            assert top >= accept_rounds or not trading
            by = "a member"
            break
    else:
        status = rounds(chain.view, "day-1", accept_rounds)
        assert status is not None
        ok = chain.sign_and_submit(Keys.dso, "exchange.clear", CLEAR).ok
        # accept_rounds 1, no deadline: the coordinator clears what stands; 2, before it: only settled rounds
        assert ok == (accept_rounds == 1 or status["settled"])
        if not ok:  # a stalled session is never cleared: the members trade intraday instead
            assert trades_of(chain) == set() and cleared(chain.view, "day-1") is None
            event(f"accept_rounds {accept_rounds}: not cleared")
            return
    event(f"accept_rounds {accept_rounds}: cleared by {by} at round {max(map(len, posts.values()))}")
    latest = {m: p[-1] for m, p in posts.items() if p}
    traded = trades_of(chain)
    assert traded == want(latest)  # the pro-rata arithmetic on the final accepts, nothing else
    for m, row in latest.items():
        for t in range(3):
            net = sum(x for i, s, _, x in traded if i == FIRST + t and s == m.public)
            net -= sum(x for i, _, b, x in traded if i == FIRST + t and b == m.public)
            assert net == 0 or ((net > 0) == (row[t] > 0) and abs(net) <= abs(row[t]))
