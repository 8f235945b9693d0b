"""The admission rules the engine acts on (`consensus.admission`), on hand-built height states: the proposer
rotation, the f + 1 round-change rule and the pruning of an author's old round changes. The engine's own tests
and the seeded simulation exercise them through whole networks."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from peergrid_ledger.consensus.admission import RC_ROUNDS_KEPT, proposer, prune_round_changes, round_to_join
from peergrid_ledger.consensus.messages import NO_ROUND, ROUND_CHANGE, ConsensusMessage, Vote, max_faulty
from peergrid_ledger.consensus.wal import HeightState

KEYS = [bytes([i]) * 32 for i in range(7)]


def _change(author: bytes, round_: int) -> ConsensusMessage:
    return ConsensusMessage(Vote(ROUND_CHANGE, 5, round_, b"", NO_ROUND, author, b""))


def test_the_proposer_rotates_from_the_height() -> None:
    s = HeightState(5, KEYS[:4])
    assert [proposer(s, r) for r in range(5)] == [KEYS[1], KEYS[2], KEYS[3], KEYS[0], KEYS[1]]


def test_f_plus_one_round_changes_beyond_ours_name_the_round_to_join() -> None:
    s = HeightState(5, KEYS[:4])  # n = 4, f = 1: two authorities moved on are one honest at least
    s.round = 1
    s.round_changes = {3: {KEYS[0]: _change(KEYS[0], 3)}, 1: {KEYS[1]: _change(KEYS[1], 1)}}
    assert round_to_join(s) is None  # one beyond ours (round 1 is not beyond it)
    s.round_changes[2] = {KEYS[2]: _change(KEYS[2], 2)}
    assert round_to_join(s) == 2  # the highest round both reached


@given(st.dictionaries(st.sampled_from(KEYS), st.integers(1, 9), max_size=7), st.integers(0, 9))
def test_the_round_to_join_is_one_that_f_plus_one_reached(highest: dict[bytes, int], ours: int) -> None:
    s = HeightState(5, KEYS)
    s.round = ours
    for author, round_ in highest.items():
        s.round_changes.setdefault(round_, {})[author] = _change(author, round_)
    target = round_to_join(s)
    beyond = [r for r in highest.values() if r > ours]
    f = max_faulty(len(KEYS))
    if len(beyond) <= f:
        assert target is None
    else:
        assert target is not None and target > ours
        assert sum(r >= target for r in beyond) >= f + 1  # at least f + 1 authorities are there or past it
        assert sum(r > target for r in beyond) < f + 1  # and no higher round has that many


def test_an_author_keeps_only_its_highest_round_changes() -> None:
    s = HeightState(5, KEYS[:4])
    for r in range(1, RC_ROUNDS_KEPT + 3):
        s.round_changes.setdefault(r, {})[KEYS[0]] = _change(KEYS[0], r)
        s.round_changes[r][KEYS[1]] = _change(KEYS[1], r)
    prune_round_changes(s, KEYS[0])
    kept = sorted(r for r, changes in s.round_changes.items() if KEYS[0] in changes)
    assert kept == list(range(3, RC_ROUNDS_KEPT + 3))
    assert all(KEYS[1] in changes for changes in s.round_changes.values())  # others untouched
