"""Accept rounds under genesis `accept_rounds` 2 after the session's deadline (exchange_rounds.py): past
the deadline a member that never accepted counts as declined and the rounds go on among the members present; a clear needs them settled at round 2 or later, a member still trading that
lets a round stay open past genesis `accept_wait_ms` standing on its latest accept as its post of it,
unchanged. An open without a deadline is refused there (test_exchange_accept_window.py).
"""

from __future__ import annotations

from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st
from ledger_fixtures import Keys
from test_exchange_accept_rounds import CLEAR, FINALS, short, trades_of, want
from test_exchange_accept_rounds import session as _session
from test_exchange_clear import ALL, P1, P2, P3, P4, accept_body, refused, submit

from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts.exchange_clearing import accepted, cleared, due, rounds, rounds_key
from peergrid_ledger.contracts.exchange_rounds import LAST_REDUCING_ROUND
from peergrid_ledger.keys import Keypair
from peergrid_ledger.results import Accepted, Reason, Rejected, Result
from peergrid_ledger.state import read_obj

DEADLINE = 1_767_225_600_000 + 600_000  # block time, ms (the blocks before it: the fixtures' T0 + a few ms)
WAIT = 10_000  # genesis accept_wait_ms here


def session(
    finals: dict[Keypair, list[int]] = FINALS,
    deadline: int = DEADLINE,
    prices: list[int] | None = None,
) -> LocalChain:
    return _session(finals, 2, deadline=deadline, prices=prices, wait_ms=WAIT)


def at(chain: LocalChain, when: int, who: Keypair, kind: str, body: dict[str, Any]) -> Result:
    """`kind` signed and sealed alone in a block at block time `when`; its result there."""
    if chain.pending:
        chain.seal()  # whatever is pending first, at its own time
    result = chain.sign_and_submit(who, kind, body, time_ms=when)
    if isinstance(result, Accepted):
        chain.seal(when)
        assert chain.dropped == []
    return result


def accept_at(chain: LocalChain, when: int, who: Keypair, positions: list[int]) -> None:
    result = at(chain, when, who, "exchange.accept", accept_body(positions))
    assert isinstance(result, Accepted), result


def status_at(chain: LocalChain, when: int) -> dict[str, Any]:
    status = rounds(chain.view, "day-1", 2, when, WAIT)
    assert status is not None
    return status


def test_a_member_absent_past_the_deadline_counts_as_declined_and_the_others_re_check() -> None:
    chain = session()
    for m in (P1, P2, P3):
        submit(chain, m, "exchange.accept", accept_body(FINALS[m]))  # P4 is absent
    why, text = refused(chain, P1, "exchange.clear", CLEAR)
    assert why is Reason.RULE_VIOLATION and "1 of 4 members have not accepted" in text
    late = DEADLINE + 1
    result = at(chain, late, P4, "exchange.accept", accept_body(FINALS[P4]))
    assert isinstance(result, Rejected) and result.reason is Reason.CLOSED
    assert f"the deadline {DEADLINE} passed before this member's first accept" in result.detail
    # a clear right after the deadline would take the present members' unchecked round-1 accepts: refused
    result = at(chain, late, P2, "exchange.clear", CLEAR)
    assert isinstance(result, Rejected) and result.reason is Reason.RULE_VIOLATION
    assert "accept round 1 is not settled" in result.detail and "past the deadline" in result.detail
    status = status_at(chain, late)
    assert status["absent"] == [P4.public] and status["waiting"] == [] and not status["settled"]
    assert [due(chain.view, "day-1", m.public, late, 2, WAIT) for m in ALL] == [1, 1, 1, None]
    assert [due(chain.view, "day-1", m.public, late) for m in ALL] == [1, 1, 1, None]  # rounds 1: the same
    accept_at(chain, late + 1, P3, [-1500, -1500, 0])  # P3 re-checks the cut without P4 and reduces
    accept_at(chain, late + 2, P1, FINALS[P1])
    result = at(chain, late + 3, P1, "exchange.clear", CLEAR)  # P2 has not re-checked, P3 changed
    assert isinstance(result, Rejected) and result.reason is Reason.RULE_VIOLATION
    assert f"behind in round 2: {short(P2)}" in result.detail and f"changed in round 2: {short(P3)}"
    assert f"after block time {DEADLINE + WAIT}" in result.detail  # when P2 would stand
    accept_at(chain, late + 3, P2, FINALS[P2])
    final = {P1: FINALS[P1], P2: FINALS[P2], P3: [-1500, -1500, 0]}
    for i, m in enumerate((P1, P2, P3)):  # round 3: everyone re-checks P3's reduction, nobody changes
        assert due(chain.view, "day-1", m.public, late + 4, 2, WAIT) == 2
        accept_at(chain, late + 4 + i, m, final[m])
    status = status_at(chain, late + 7)
    assert status["settled"] and status["round"] == 3 and status["standing"] == []
    assert isinstance(at(chain, late + 7, P1, "exchange.clear", CLEAR), Accepted)  # long before any wait
    assert trades_of(chain) == want(final) and want(final)
    summary = cleared(chain.view, "day-1")
    assert summary is not None and summary["accepted"] == 3


def test_a_present_member_that_stops_answering_stands_on_its_latest_accept_after_the_wait() -> None:
    chain = session()
    for m, q in FINALS.items():
        submit(chain, m, "exchange.accept", accept_body(q))
    late = DEADLINE + 1
    accept_at(chain, late, P1, FINALS[P1])
    accept_at(chain, late, P2, FINALS[P2])
    accept_at(chain, late, P3, [-1500, -1500, 0])  # P3 reduces; P4 goes silent for good
    result = at(chain, late + 1, P2, "exchange.clear", CLEAR)
    assert isinstance(result, Rejected) and f"behind in round 2: {short(P4)}" in result.detail
    assert f"after block time {DEADLINE + WAIT}" in result.detail
    assert status_at(chain, DEADLINE + WAIT)["behind"] == [P4.public]  # its wait: to the millisecond
    status = status_at(chain, DEADLINE + WAIT + 1)
    assert status["standing"] == [P4.public] and status["changed"] == [P3.public] and not status["settled"]
    after = DEADLINE + WAIT + 1
    assert due(chain.view, "day-1", P1.public, after, 2, WAIT) == 2  # round 3 is open: P4 stands in 2
    assert due(chain.view, "day-1", P4.public, after, 2, WAIT) == 1  # P4 itself may still answer round 2
    result = at(chain, after, P1, "exchange.accept", accept_body(FINALS[P1]))  # round 3
    assert isinstance(result, Accepted)
    assert ("exchange_stood", {"session": "day-1", "member": P4.public, "round": 2}) in result.events
    record = accepted(chain.view, "day-1", P4.public)  # its round-1 accept, now its round-2 post
    assert record is not None and (record["round"], record["changed"]) == (2, False)
    assert record["positions"] == FINALS[P4]
    summary = read_obj(chain.view, rounds_key("day-1"))
    assert summary["since"] == DEADLINE + WAIT  # round 2 complete when P4 stood: round 3's wait runs from it
    accept_at(chain, after + 1, P2, FINALS[P2])
    accept_at(chain, after + 2, P3, [-1500, -1500, 0])
    result = at(chain, after + 3, P3, "exchange.clear", CLEAR)
    assert isinstance(result, Rejected) and f"behind in round 3: {short(P4)}" in result.detail
    assert f"after block time {DEADLINE + 2 * WAIT}" in result.detail
    result = at(chain, DEADLINE + 2 * WAIT + 1, P3, "exchange.clear", CLEAR)
    assert isinstance(result, Accepted), result  # P4 stands in round 3 too: settled
    assert trades_of(chain) == want({**FINALS, P3: [-1500, -1500, 0]})


def test_a_change_posted_late_gives_the_others_a_whole_wait_to_re_check_it() -> None:
    # P4 stays silent past its wait and then reduces: its post is its answer, but a clear may not take it
    # before every other member had a whole wait to re-check it, however long P4 itself kept round 2 open
    chain = session()
    for m, q in FINALS.items():
        submit(chain, m, "exchange.accept", accept_body(q))
    late = DEADLINE + 1
    for m in (P1, P2, P3):
        accept_at(chain, late, m, FINALS[m])
    assert status_at(chain, DEADLINE + WAIT + 1)["settled"]  # P4 standing unchanged: round 2 settled
    when = DEADLINE + WAIT + 5
    accept_at(chain, when, P4, [-1000, 0, 0])  # round 2, late, a change
    assert read_obj(chain.view, rounds_key("day-1"))["since"] == when  # round 2 complete only now
    for t in (when + 1, DEADLINE + 2 * WAIT + 1, when + WAIT):
        result = at(chain, t, P1, "exchange.clear", CLEAR)
        assert isinstance(result, Rejected) and f"changed in round 2: {short(P4)}" in result.detail
        assert f"after block time {when + WAIT}" in result.detail
    assert [due(chain.view, "day-1", m.public, when + 1, 2, WAIT) for m in ALL] == [2] * 4
    result = at(chain, when + WAIT + 1, P1, "exchange.clear", CLEAR)  # nobody re-checked: all stand in 3
    assert isinstance(result, Accepted), result
    assert trades_of(chain) == want({**FINALS, P4: [-1000, 0, 0]})


def test_before_the_deadline_nobody_stands_and_a_member_that_declined_is_never_stood() -> None:
    chain = session()
    accept_all = {**FINALS, P2: [0, 0, 0]}  # P2 declines in round 1
    for m, q in accept_all.items():
        submit(chain, m, "exchange.accept", accept_body(q))
    accept_at(chain, DEADLINE - 5 * WAIT, P1, FINALS[P1])
    status = status_at(chain, DEADLINE)  # round 2 open for 5 waits, but before the deadline: P3, P4 behind
    assert status["behind"] == [P3.public, P4.public] and status["standing"] == []
    status = status_at(chain, DEADLINE + WAIT + 1)  # the wait counts from the deadline at the earliest
    assert status["standing"] == [P3.public, P4.public] and status["settled"]


def test_from_round_6_a_re_accept_keeps_its_accept_or_declines_so_the_rounds_end() -> None:
    # reduce-only alone let a member cut 1 Wh every round and hold the clear for ever; from round 6 on (the
    # four reductions an honest MGMC makes are rounds 2 to 5) a change must decline
    chain = session()
    cuts = {**FINALS, P1: list(FINALS[P1])}
    for m, q in FINALS.items():
        submit(chain, m, "exchange.accept", accept_body(q))
    for _ in range(4):  # rounds 2 to 5: P1 cuts 1 Wh in interval 100 each round, the others re-check
        cuts[P1][0] -= 1
        for m in ALL:
            submit(chain, m, "exchange.accept", accept_body(cuts[m]))
    assert accepted(chain.view, "day-1", P1.public)["round"] == 5  # type: ignore[index]
    why, text = refused(chain, P1, "exchange.accept", accept_body([cuts[P1][0] - 1, *cuts[P1][1:]]))
    assert why is Reason.RULE_VIOLATION
    assert "round 6: from round 6 on a re-accept keeps its round-5 accept or declines (all zeros)" in text
    submit(chain, P1, "exchange.accept", accept_body(cuts[P1]))  # keeping it is an answer
    submit(chain, P2, "exchange.accept", accept_body([0, 0, 0]))  # and declining
    for m in (P3, P4):
        submit(chain, m, "exchange.accept", accept_body(cuts[m]))
    for m in (P1, P3, P4):  # round 7 re-checks P2's decline: nobody changes
        submit(chain, m, "exchange.accept", accept_body(cuts[m]))
    assert status_at(chain, 0)["settled"]
    submit(chain, P4, "exchange.clear", CLEAR)
    assert trades_of(chain) == want({P1: cuts[P1], P3: FINALS[P3], P4: FINALS[P4]})


# ---------------------------------------------------------------------------------------------- property

# Each wave moves the clock (a little, past one more wait, or past the deadline and a wait) and then lets
# the members in some order keep, cut or zero their accepts or stay silent, then maybe one tries to clear.
# A member absent before the deadline may try its first accept after it. Not cleared by the last wave, the
# session clears two waits past the deadline and the last post (liveness).
MOVES = {"keep": (1, 1), "cut": (3, 4), "zero": (0, 1)}
same = st.just(("keep", "keep", "keep"))
changed = st.tuples(*[st.sampled_from(["keep", "keep", "cut", "zero"])] * 3)
member_move = st.one_of(same, same, changed, st.none())
step = st.sampled_from([1, 1, WAIT // 2, WAIT + 1, 3 * WAIT])
wave = st.tuples(
    step, st.permutations(range(4)), st.tuples(*[member_move] * 4), st.none() | st.integers(0, 4)
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.lists(st.integers(-3000, 3000), min_size=4, max_size=4), min_size=3, max_size=3),
    st.lists(wave, min_size=1, max_size=10),
    st.integers(0, 3),
)
def test_a_clear_never_takes_a_change_before_every_member_trading_re_checked_it_or_had_a_wait(
    columns: list[list[int]], waves: list[Any], before: int
) -> None:
    finals = {m: [col[i] for col in columns] for i, m in enumerate(ALL)}
    chain = session(finals, prices=[50_000_000] * 3)
    now = DEADLINE - 2 * WAIT
    # each member's accepts the chain took: (round, block time, positions)
    posts: dict[Keypair, list[tuple[int, int, list[int]]]] = {m: [] for m in ALL}
    for i, m in enumerate(ALL[:before]):  # some accept before the deadline; the rest may never
        accept_at(chain, now + i, m, finals[m])
        posts[m].append((1, now + i, finals[m]))
    now += 10
    for gap, order, moves, clearer in waves:
        now += gap
        for i in order:
            m, move = ALL[i], moves[i]
            if move is None:
                continue
            base = posts[m][-1][2] if posts[m] else finals[m]
            positions = [
                q * MOVES[x][0] // MOVES[x][1] if q > 0 else -(-q * MOVES[x][0] // MOVES[x][1])
                for q, x in zip(base, move, strict=True)
            ]
            now = max(now, chain.tip.time + 1)  # the block time it lands at (one block each)
            answer = due(chain.view, "day-1", m.public, now, 2, WAIT)
            mine = accepted(chain.view, "day-1", m.public)  # its round: a stand may have moved it on
            result = at(chain, now, m, "exchange.accept", accept_body(positions))
            if not posts[m]:
                assert isinstance(result, Accepted) == (now <= DEADLINE), result  # late: declined
            elif answer is not None:  # the round `due` names is open: a reduction is refused only from
                # round 6 on, where a re-accept keeps its accept or declines
                assert mine is not None
                capped = mine["round"] >= LAST_REDUCING_ROUND and any(positions) and positions != base
                assert isinstance(result, Accepted) != capped, result
            if isinstance(result, Accepted):
                record = accepted(chain.view, "day-1", m.public)
                assert record is not None and chain.tip.time == now
                posts[m].append((record["round"], now, positions))
        if clearer is None:
            continue
        now = max(now, chain.tip.time + 1)
        status = status_at(chain, now)
        who = Keys.dso if clearer == 4 else ALL[clearer]
        result = at(chain, now, who, "exchange.clear", CLEAR)
        assert isinstance(result, Accepted) == status["settled"], (result, status)
        if isinstance(result, Accepted):
            break
    else:  # liveness: two waits past the deadline and the last post, every silent member stands
        now = max(now, DEADLINE, chain.tip.time) + 2 * WAIT + 1
        assert status_at(chain, now)["settled"]
        result = at(chain, now, ALL[0], "exchange.clear", CLEAR)
        assert isinstance(result, Accepted), result
        event("cleared after the waves")
    # the clear took the latest accepts: each the last a member really posted (a stand changes nothing)
    latest = {m: p[-1][2] for m, p in posts.items() if p}
    assert trades_of(chain) == want(latest)
    # no change reaches the clear unchecked: the last change (a first accept counts as one) was re-checked
    # in a later round by every member still trading, or each of them had a whole wait (from the deadline
    # at the earliest) to do so
    changes = [(t, r) for p in posts.values() for j, (r, t, q) in enumerate(p) if j == 0 or q != p[j - 1][2]]
    if changes and any(any(q) for q in latest.values()):
        t_change, r_change = max(changes)
        waited = now > max(t_change, DEADLINE) + WAIT
        rechecked = all(p[-1][0] > r_change for p in posts.values() if p and any(p[-1][2]))
        assert waited or rechecked, (now, t_change, r_change, posts)
        event("cleared after a wait" if not rechecked else "cleared re-checked")
    assert now > DEADLINE or all(posts.values())  # before the deadline only with every member in
