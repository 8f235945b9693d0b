"""The engine's state for the height being decided, and its write-ahead record.

Promises: `save_height_state` captures everything an authority has said in this height (its votes, its own
proposal, what it prepared) as canonical bytes; `load_height_state` gives it back for the same chain and
height, or None for anything else (another height, another chain, unreadable bytes), so a restarted engine
resumes its round instead of starting over and never contradicts a vote it already sent.
Must never do I/O itself (the engine's injected `ConsensusWal` does).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from functools import lru_cache

from .. import codec
from ..codec import DecodeError
from .messages import NO_ROUND, ConsensusMessage, Vote, _vote_from_value, quorum


class HeightState:
    """Everything the engine knows about one height; thrown away when the height is committed."""

    def __init__(self, height: int, validators: Sequence[bytes] = ()) -> None:
        self.height = height
        self.validators = list(validators)
        self.round = 0
        self.started_at = 0
        self.decided = False
        self.proposals: dict[int, bytes] = {}
        self.blocks: dict[bytes, bytes] = {}
        self.valid: set[bytes] = set()
        self.invalid: set[bytes] = set()
        self.prepares: dict[tuple[int, bytes], dict[bytes, Vote]] = {}
        self.commits: dict[tuple[int, bytes], dict[bytes, Vote]] = {}
        self.round_changes: dict[int, dict[bytes, ConsensusMessage]] = {}
        self.seen: dict[tuple[str, int, bytes], Vote] = {}
        self.reported: set[tuple[str, int, bytes]] = set()
        self.amnesia_round = NO_ROUND
        """After a restart: the highest round we may have prepared in without the WAL saying what."""
        self.pending_noted = False
        self.sent: dict[tuple[str, int], Vote] = {}
        self.commit_rounds: set[int] = set()
        self.prepared_round = NO_ROUND
        self.prepared_digest = b""
        self.prepared_block: bytes | None = None
        self.prepared_cert: tuple[Vote, ...] = ()
        self.own_proposal: bytes | None = None
        self.own_justification: tuple[Vote, ...] = ()
        self.own_prepares: tuple[Vote, ...] = ()

    @property
    def validators(self) -> list[bytes]:
        return self._validators

    @validators.setter
    def validators(self, value: list[bytes]) -> None:
        self._validators = value
        self.vset = frozenset(value)
        self.quorum = quorum(len(value))


def save_height_state(s: HeightState, chain_id: str) -> bytes:
    """`codec.encode` of the record's map, byte for byte (pinned by a property test), built from the
    encodings of its fields: the engine writes the record after every event that moved a vote, and each
    vote in it (sent, prepared, justifying) is encoded once and remembered, not once per write."""
    fields = {
        "c": codec.encode(chain_id),
        "h": codec.encode(s.height),
        "r": codec.encode(s.round),
        "pr": codec.encode(s.prepared_round),
        "pd": codec.encode(s.prepared_digest),
        "pb": codec.encode(s.prepared_block),
        "pp": _encoded_votes(s.prepared_cert),
        "s": _encoded_votes(s.sent.values()),
        "ob": codec.encode(s.own_proposal),
        "oj": _encoded_votes(s.own_justification),
        "op": _encoded_votes(s.own_prepares),
    }
    out = [_RECORD_HEAD]
    for encoded_key, key in _RECORD_KEYS:
        out += (encoded_key, fields[key])
    return b"".join(out)


_RECORD_KEYS = sorted(
    (codec.encode(k), k) for k in ("c", "h", "r", "pr", "pd", "pb", "pp", "s", "ob", "oj", "op")
)
"""The record's keys in canonical order (by their encodings, as `codec.encode` orders a map's keys)."""
_RECORD_HEAD = codec.head(5, len(_RECORD_KEYS))


def _encoded_votes(votes: Collection[Vote]) -> bytes:
    return b"".join([codec.head(4, len(votes)), *map(_encoded_vote, votes)])


@lru_cache(maxsize=4096)
def _encoded_vote(vote: Vote) -> bytes:
    return codec.encode(vote.value())


def _votes(value: object) -> tuple[Vote, ...]:
    return tuple(_vote_from_value(v) for v in codec.expect_list(value, "votes", 4096))


def _block(value: object) -> bytes | None:
    return None if value is None else codec.expect_bytes(value, "block")


def load_height_state(record: bytes | None, height: int, chain_id: str) -> HeightState | None:
    if record is None:
        return None
    try:
        fields = codec.expect_map(
            codec.decode(record), "wal", ["c", "h", "r", "pr", "pd", "pb", "pp", "s", "ob", "oj", "op"]
        )
        if fields["c"] != chain_id or fields["h"] != height:
            return None
        s = HeightState(height)
        s.round = codec.expect_int(fields["r"], "round")
        s.prepared_round = codec.expect_int(fields["pr"], "prepared round", NO_ROUND)
        s.prepared_digest = codec.expect_bytes(fields["pd"], "prepared digest")
        s.prepared_block = _block(fields["pb"])
        s.prepared_cert = _votes(fields["pp"])
        s.own_proposal = _block(fields["ob"])
        s.own_justification = _votes(fields["oj"])
        s.own_prepares = _votes(fields["op"])
        sent = _votes(fields["s"])
    except DecodeError:
        return None
    for vote in sent:
        s.sent[(vote.kind, vote.round)] = vote
    proposals = [v for v in sent if v.kind == "proposal"]
    if proposals and s.own_proposal is not None:  # the block kept is that of the latest own proposal
        latest = max(proposals, key=lambda v: v.round)
        s.blocks[latest.digest] = s.own_proposal
        s.valid.add(latest.digest)
    if s.prepared_block is not None:
        s.blocks[s.prepared_digest] = s.prepared_block
        s.valid.add(s.prepared_digest)
    return s
