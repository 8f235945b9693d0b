"""H7 (session 18, review30 R30-6): a relay that answers every other interval is recorded on the DSO chain once,
not every interval.

Before, each read that differed from the chain's last record was recorded ('unreadable', then 'agree again',
...): 10 records in 10 intervals, 96 in a field day, for one marginal link; the read again that guards a change
is milliseconds later, so it filtered only sub-second flapping. Now a finding that says less than the last
record against the same open set (every relay agrees again, some do, or a relay recorded off is now merely
unreadable) is recorded only when the next check finds it too; a finding that says more is recorded at once,
and the alarm follows every read. Relays in memory (tests/dso/test_h5_relay_watch.py's field and chain).
"""

from __future__ import annotations

from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from peergrid_dso.services.switching_watch import RECEDING_CHECKS, WatchFinding

from .test_h5_relay_watch import check, watched
from .test_h9_relay_watch_unsettled import watched as watched_moving
from .test_switching import BASE

AGREE = "relay watch: every relay reads as the DSO holds it (open [33, 34, 35, 36, 37])"


def test_a_relay_that_answers_every_other_interval_is_recorded_once() -> None:
    relays, topology, chain, watch = watched()
    check(watch, topology)
    alarms = []
    for interval in range(10):  # R30's watch_flap.py: before, 10 records
        if interval % 2 == 0:
            relays.silent.add(14)
        else:
            relays.silent.discard(14)
        check(watch, topology)
        alarms.append(watch.alarm is not None)
    assert chain.actions == ["relay watch, not adopted: s14 unreadable"]
    assert alarms == [True, False] * 5  # the alarm still follows every read, at once
    relays.silent.discard(14)
    check(watch, topology)  # the relay answers two intervals running: agreeing again is recorded now
    assert chain.actions[1:] == [AGREE] and watch.alarm is None
    for _ in range(3):
        check(watch, topology)
    assert len(chain.actions) == 2 and relays.commands == 0


def test_a_tie_closed_by_hand_behind_a_marginal_link_is_recorded_once_and_its_loss_when_it_lasts() -> None:
    relays, topology, chain, watch = watched()
    relays.relays.closed[37] = True
    check(watch, topology)
    for _ in range(3):  # its link drops every other read: unreadable says less than 'closed'
        relays.silent.add(37)
        check(watch, topology)
        assert watch.alarm is not None and "branch 37 unreachable" in watch.alarm
        relays.silent.discard(37)
        check(watch, topology)
        assert watch.alarm is not None and "branch 37 reports closed" in watch.alarm
    assert chain.actions == ["relay watch, not adopted: s37 closed (held open)"]
    relays.silent.add(37)  # and then stays silent
    check(watch, topology)
    check(watch, topology)
    assert chain.actions[1:] == ["relay watch, not adopted: s37 unreadable"]


def test_a_finding_that_says_more_is_recorded_at_once_while_one_that_says_less_waits() -> None:
    relays, topology, chain, watch = watched()
    relays.relays.closed[37] = True
    relays.silent.add(5)
    check(watch, topology)
    assert chain.actions == ["relay watch, not adopted: s37 closed (held open), s5 unreadable"]
    relays.silent.discard(5)  # says less: waits
    check(watch, topology)
    assert len(chain.actions) == 1 and watch.finding is not None and watch.finding.unreadable == ()
    relays.relays.closed[36] = True  # a second tie closed: says more, recorded at the first check
    check(watch, topology)
    assert chain.actions[1:] == ["relay watch, not adopted: s36 closed (held open), s37 closed (held open)"]
    relays.relays.closed[36] = relays.relays.closed[37] = False
    check(watch, topology)
    relays.relays.closed[37] = True  # not two agreeing reads running: nothing recorded yet
    check(watch, topology)
    relays.relays.closed[37] = False
    check(watch, topology)
    assert len(chain.actions) == 2
    check(watch, topology)
    assert chain.actions[2:] == [AGREE]


def test_agreement_after_an_adoption_is_recorded_at_once() -> None:
    # the DSO now holds another open set: what the relays report is judged against it, and the record
    # of the old finding says nothing about it (test_h5's test_the_finding_follows_the_open_set_the_dso_holds)
    relays, topology, chain, watch = watched()
    relays.relays.closed.update({37: True, 7: False})
    check(watch, topology)
    topology.open_set = (7, 33, 34, 35, 36)
    check(watch, topology)
    assert len(chain.actions) == 2 and chain.actions[1].startswith("relay watch: every relay reads as")


def test_says_less_than() -> None:
    recorded = WatchFinding(BASE, ((37, "closed"),), ((5, "timeout"),)).key
    assert WatchFinding(BASE).says_less_than(recorded)
    assert WatchFinding(BASE, ((37, "closed"),)).says_less_than(recorded)
    assert WatchFinding(BASE, (), ((37, "no response"), (5, "other words"))).says_less_than(recorded)
    assert not WatchFinding(BASE, ((37, "closed"),), ((5, "x"),)).says_less_than(recorded)  # the same
    assert not WatchFinding(BASE, ((37, "operating"),)).says_less_than(recorded)  # reports otherwise
    assert not WatchFinding(BASE, ((5, "closed"),)).says_less_than(recorded)  # a position where none was
    assert not WatchFinding(BASE, (), ((9, "x"),)).says_less_than(recorded)  # another relay


STATES = [((), ()), ((37,), ()), ((), (5,)), ((37,), (5,)), ((), (37,)), ((36, 37), ())]  # (closed, silent)
STEP = st.tuples(st.sampled_from(range(len(STATES))), st.none() | st.sampled_from(range(len(STATES))))


def still(*states: int) -> list[tuple[int, int | None]]:
    """Checks whose field does not move between their two reads."""
    return [(state, None) for state in states]


@settings(max_examples=30, deadline=None)
@given(st.lists(STEP, min_size=1, max_size=12))
@example(
    still(5, 1, 4, 1, 4, 1, 4)
)  # review31 R31-5: 36 put right while 37 flaps: 36's repair must be recorded
@example(still(3, 0, 4, 1, 4, 4))  # a reading that lasts two checks just after a settled record is recorded
@example(
    [(0, None), (2, 1), (2, 1)]
)  # H9: 37 closed, read once at two checks running (the first read: 5 silent)
@example(
    [(1, None), (2, 0), (0, None)]
)  # H9: 37 put right, its first read 5 silent: recorded at the next check
@example(
    [(0, None), (1, 3), (3, 1), (1, 3), (3, 1)]
)  # R33: 37 closed in every read, 5 silent in the later read of one check and the first of the next
@example(
    [(0, None), (3, 5), (3, 1), (3, 5), (3, 1)]
)  # D1 (R33's residual): 37 closed in every read, 5 silent in each first read, 36 closed in every other later
@example([(2, None), (0, None), (0, 1)])  # D1: 5 answers again two checks running; 37 closed in one read
def test_the_chain_is_never_behind_a_reading_that_lasted_two_checks(
    steps: list[tuple[int, int | None]],
) -> None:
    # whatever the field does, a finding read at two checks running is what the chain says, the alarm is
    # the last read's, a check makes one record at most, a finding that adds to the record is recorded
    # at its first check, and (H8, review31 R31-5: before, two findings alternating kept 36's repair off
    # the chain for good) every relay the chain names was read so at one of the last RECEDING_CHECKS checks
    # at most, while a record made of several checks says less than the one before and nothing none read.
    # H9: the field may move between a check's two reads (`then`): the check's finding is the later read,
    # and what adds to the record waits until it has been read twice running, in one check or two (a check
    # that read it once counts for none of the rules after it, as a check that could not read). D1: judged
    # relay by relay (`judged`), no longer by whole readings, so R33's second liveness rule holds: a relay that
    # read the same in every read of the last 2 * RECEDING_CHECKS - 1 checks is what the chain says of it.
    relays, topology, chain, watch = watched_moving()
    previous, since = None, []  # the judged findings since the chain's last record
    previous_reads: tuple[Any, ...] = ()  # the keys of every read the last check took (R33)
    every_read: list[tuple[tuple[Any, ...], ...]] = []  # each check's reads
    for first, then in steps:
        relays.hands = [relays.put(*STATES[first])] + ([] if then is None else [relays.put(*STATES[then])])
        made, before = len(chain.actions), watch.recorded
        found = check(watch, topology)
        last = STATES[first if then is None or relays.hands else then]  # a hand left: no second read
        read_again = key(*STATES[first]) != before  # the product reads again what differs from the record
        reads = (key(*STATES[first]), key(*last)) if read_again else (key(*STATES[first]),)
        relays.hands.clear()
        every_read.append(reads)
        assert found is not None and found.key == key(*last) and watch.alarm == found.alarm()
        assert len(chain.actions) - made <= 1
        if previous == found.key:
            assert watch.recorded == found.key
        lately = every_read[-(2 * RECEDING_CHECKS - 1) :]
        if len(lately) == 2 * RECEDING_CHECKS - 1:
            for branch in (5, 36, 37):
                seen = {word(k, branch) for check_reads in lately for k in check_reads}
                if len(seen) == 1:
                    assert word(watch.recorded, branch) in seen, (branch, every_read)
        judged = (
            found.key
            if found.key == before
            else judged_key(found.key, (*previous_reads, *reads[:-1]), before)
        )
        previous, previous_reads = found.key, reads
        if judged != before and not as_finding(judged).says_less_than(before):
            assert watch.recorded == judged  # a relay's report unsaid before, read twice: at once
        elif judged == before and found.key != before:
            assert watch.recorded == before  # nothing new read twice: no check for the rules below
            continue
        since.append(judged)
        if len(chain.actions) > made and watch.recorded != judged:  # settled from several checks
            assert as_finding(watch.recorded).says_less_than(before)
            for branch in named(watch.recorded):
                assert any(word(k, branch) == word(watch.recorded, branch) for k in since[-RECEDING_CHECKS:])
        if len(chain.actions) > made:
            since = []
        if len(since) >= RECEDING_CHECKS:  # the chain is not behind: each relay it names, read so lately
            for branch in named(watch.recorded):
                window = since[-RECEDING_CHECKS:]
                assert any(word(k, branch) == word(watch.recorded, branch) for k in window), (branch, since)


def judged_key(
    found: tuple[Any, ...], earlier: tuple[Any, ...], recorded: tuple[Any, ...]
) -> tuple[Any, ...]:
    """What the chain may say after reading `found` (keys, the open set never moves here): each relay's word in
    `found` where an earlier read of this check or the last gave it too, or where it says less than the
    record's (agrees; unreadable where recorded off); the record's word where it says more, read once."""
    off, silent = [], []
    for branch in (5, 36, 37):
        now, was = word(found, branch), word(recorded, branch)
        more = now not in (None, was) and not (now == "" and was)
        kept = now if not more or now in {word(k, branch) for k in earlier} else was
        if kept:
            off.append((branch, kept))
        elif kept == "":
            silent.append(branch)
    return tuple(off), tuple(silent)


def key(closed: tuple[int, ...], silent: tuple[int, ...]) -> tuple[Any, ...]:
    """The key (`WatchFinding.key`) of a reading with ties `closed` and relays `silent`, against BASE."""
    return tuple((b, "closed") for b in closed), silent


def word(key: tuple[Any, ...], branch: int) -> str | None:
    """What a finding's key says of a relay: its report when off, "" when unreadable, None when it agrees."""
    off, unreadable = key
    return dict(off).get(branch) or ("" if branch in unreadable else None)


def named(key: tuple[Any, ...]) -> set[int]:
    return {b for b, _ in key[0]} | set(key[1])


def as_finding(key: tuple[Any, ...]) -> WatchFinding:
    return WatchFinding(BASE, key[0], tuple((b, "?") for b in key[1]))
