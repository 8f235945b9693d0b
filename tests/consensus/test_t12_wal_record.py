"""The WAL record built from its fields' encodings is `codec.encode` of the record's map, byte for byte (T12).

`save_height_state` splices remembered vote encodings instead of encoding the whole map at every write; a
restarted engine reads records written before that change, so the bytes must not move.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid_ledger import codec
from peergrid_ledger.consensus.messages import COMMIT, NO_ROUND, PREPARE, PROPOSAL, ROUND_CHANGE, Vote
from peergrid_ledger.consensus.wal import HeightState, save_height_state


def _reference(s: HeightState, chain_id: str) -> bytes:
    """The record as it was written before T12: one `codec.encode` of the whole map."""
    return codec.encode(
        {
            "c": chain_id,
            "h": s.height,
            "r": s.round,
            "pr": s.prepared_round,
            "pd": s.prepared_digest,
            "pb": s.prepared_block,
            "pp": [v.value() for v in s.prepared_cert],
            "s": [v.value() for v in s.sent.values()],
            "ob": s.own_proposal,
            "oj": [v.value() for v in s.own_justification],
            "op": [v.value() for v in s.own_prepares],
        }
    )


HEIGHT = 7
votes = st.builds(
    Vote,
    kind=st.sampled_from([PROPOSAL, PREPARE, COMMIT, ROUND_CHANGE]),
    height=st.just(HEIGHT),
    round=st.integers(0, 2**31),
    digest=st.binary(min_size=32, max_size=32),
    prepared_round=st.integers(NO_ROUND, 2**31),
    author=st.binary(min_size=32, max_size=32),
    signature=st.binary(min_size=64, max_size=64),
)
blocks = st.none() | st.binary(max_size=300)


@settings(max_examples=150, deadline=None)
@given(
    chain_id=st.text(max_size=20),
    round_=st.integers(0, 2**40),
    prepared_round=st.integers(NO_ROUND, 2**31),
    prepared_digest=st.binary(max_size=32),
    prepared_block=blocks,
    own_proposal=blocks,
    sent=st.lists(votes, max_size=8),
    prepared_cert=st.lists(votes, max_size=8),
    justification=st.lists(votes, max_size=5),
    prepares=st.lists(votes, max_size=5),
)
def test_record_is_the_maps_canonical_encoding(
    chain_id: str,
    round_: int,
    prepared_round: int,
    prepared_digest: bytes,
    prepared_block: bytes | None,
    own_proposal: bytes | None,
    sent: list[Vote],
    prepared_cert: list[Vote],
    justification: list[Vote],
    prepares: list[Vote],
) -> None:
    s = HeightState(HEIGHT)
    s.round, s.prepared_round, s.prepared_digest = round_, prepared_round, prepared_digest
    s.prepared_block, s.own_proposal = prepared_block, own_proposal
    s.sent = {(v.kind, v.round): v for v in sent}
    s.prepared_cert, s.own_justification, s.own_prepares = (
        tuple(prepared_cert),
        tuple(justification),
        tuple(prepares),
    )
    record = save_height_state(s, chain_id)
    assert record == _reference(s, chain_id)
    assert save_height_state(s, chain_id) == record  # the remembered encodings give the same bytes again
