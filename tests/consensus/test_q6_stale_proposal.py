"""A proposal of a round this replica has left is ordinary gossip timing, counted as `stale_proposal` and not
logged; one from an authority whose turn it is not stays `dropped_proposal`, logged (U2: every lab's dso.log
opened with 'WARNING mgmc-ieee33: dropped_proposal refused (from ...; 1 so far)' on each chain, the replicas
starting apart: a user's first warning for nothing to act on)."""

from __future__ import annotations

from peergrid_ledger.consensus.admission import proposer, refuse_proposal
from peergrid_ledger.consensus.messages import NO_ROUND, PROPOSAL, ConsensusMessage, Vote
from peergrid_ledger.consensus.node import ENGINE_REFUSALS
from peergrid_ledger.consensus.wal import HeightState

KEYS = [bytes([i]) * 32 for i in range(4)]


def _proposal(author: bytes, round_: int) -> ConsensusMessage:
    return ConsensusMessage(Vote(PROPOSAL, 5, round_, b"\x01" * 32, NO_ROUND, author, b""))


def _refused(s: HeightState, message: ConsensusMessage) -> str | None:
    return refuse_proposal(None, s, message, 1000, 0, lambda _vote: True)  # type: ignore[arg-type]


def test_a_proposal_of_a_round_left_is_stale_and_not_told() -> None:
    s = HeightState(5, KEYS)
    s.round = 2
    assert _refused(s, _proposal(proposer(s, 1), 1)) == "stale_proposal"
    assert "stale_proposal" not in ENGINE_REFUSALS  # counted only, as `stale` and `duplicates`


def test_a_proposal_already_held_is_stale_and_another_block_for_its_round_is_told() -> None:
    s = HeightState(5, KEYS)
    s.proposals[0] = b"\x01" * 32  # the block of `_proposal`
    assert _refused(s, _proposal(proposer(s, 0), 0)) == "stale_proposal"
    s.proposals[0] = b"\x02" * 32  # the proposer sent another block for the round: equivocation
    assert _refused(s, _proposal(proposer(s, 0), 0)) == "dropped_proposal"


def test_a_proposal_out_of_its_authors_turn_is_still_dropped_and_told() -> None:
    s = HeightState(5, KEYS)
    s.round = 2
    other = next(k for k in KEYS if k != proposer(s, 1))
    assert _refused(s, _proposal(other, 1)) == "dropped_proposal"
    assert _refused(s, _proposal(next(k for k in KEYS if k != proposer(s, 2)), 2)) == "dropped_proposal"
    assert "dropped_proposal" in ENGINE_REFUSALS
