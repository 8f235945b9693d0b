"""The exchange contract's accept rounds: their records, their status, their readers, and why a re-accept
obeys the rules it does (exchange_accept.py's `exchange.accept` applies them, with its `_next_round` and
`_reduce_only`; exchange_clearing.py's `exchange.clear` reads the status).

Promises:
  A member accepts again to re-check what the clear would give it: its next accept is its round k + 1,
  reduce-only against its round k (`_reduce_only`: each position 0 or of the same sign and no larger;
  `clean` unchanged; with `accept_rounds` 2 from round 6 on: unchanged or all zeros), and opens only once every member accepted (or the deadline passed) and every member
  still trading (latest accept not all zeros) posted round k — before that it is refused `duplicate`
  (`_next_round`), so that round k + 1 always answers a round k that can no longer change. A first accept
  made while a round R ≥ 2 runs (after the deadline; not with `accept_rounds` 2) joins round R as a change.
  Round 1 records keep the bytes they had before rounds (`{clean, positions}`, no summary); from round 2 on
  the record keeps the member's accept before (`before`) and the session keeps one summary (`rounds_key`),
  so the set each round left stays readable while the next runs.
  Readers, never writing: `accepted` (a member's latest accept with its round), `accepts_at` (the set a
  round left: what the next round re-checks), `rounds` (the rounds' status: settled or who holds them,
  given the chain's genesis `accept_rounds`, and with 2 the block time and `accept_wait_ms`) and `due`
  (the round a member should answer now, as the contract reads the others at that block time).
What the rounds give: a clear of settled rounds R ≥ 2 counts only accepts that every member still trading
posted, unchanged, after every other member's last change (round r + 1 opens only once every such member
posted round r, and a change in the last round needs another), so each could re-check its own share of the
pro-rata cut of exactly the accepts cleared (the controller's `forward.recheck`). A member that declined
(all zeros) can change nothing more and holds nobody. Genesis `accept_rounds` 1 (every chain before it):
round 1 clears at once once every member accepted, and after the deadline (or by the coordinator on a
session without one) a clear takes the latest accepts as they stand — old chains replay to the same state.
Genesis `accept_rounds` 2 (`_late`, `_stand`): no clear, before the deadline or after it, takes rounds that
are not settled at round 2 or later. Past the deadline (block time) a member that never accepted counts as
declined (`absent`; its first accept is refused `closed`) and the rounds go on among the members present;
a member still trading that lets a round stay open past genesis `accept_wait_ms` stands on its latest
accept as its post of that round, unchanged (`standing`; written as such, event `exchange_stood`, when
the next accept lands). A round's wait runs from when it opened (the round before complete: the summary's
`since`), never from before the deadline; a round is complete at its latest post (`last`), so a change
posted late, even after its poster's own wait, still gives everyone a whole wait to re-check it.
  Who can stall: before the deadline any member, by silence or by never accepting, holds the clear until
  the deadline (as before). Past it silence holds each round one wait: two waits after the deadline and
  the last accept, whoever is silent stands and the rounds are settled. Every change needs a round more,
  and reduce-only alone bounds the changes only by the accepted Wh (1-Wh cuts could go on for ever), so
  from round LAST_REDUCING_ROUND + 1 (6) on a re-accept may only keep its accept or decline (all zeros),
  as an honest MGMC does anyway (`forward.recheck` with `may_reduce` off after its four reductions):
  each changing round from then on removes a member, so at most 5 + members rounds are ever posted, each
  held at most a wait past the deadline. With `accept_rounds` 2 every session has one (`exchange.open`
  refuses a session without, where an absent or silent member would hold it for ever; with 1 it still may).
  A session never cleared loses only its forward trades: its intervals stay open and the members trade them
  intraday (safety over liveness).
  Who can force an early clear: nobody, the coordinator neither, takes a change that a member still
  trading neither re-checked in a later round nor had a whole wait (from the deadline at the earliest) to
  re-check. What remains: the coordinator picks the deadline, so a member slow to accept at all may be
  counted declined early (it then trades nothing forward, never more than it accepted) — with genesis
  `accept_window_ms` W never earlier than W after the close (`exchange.close` raises an earlier deadline to
  it; without W a deadline at or just after the close counts every member that could not accept by then
  declined, so only the coordinator and those it told in advance trade forward); a standing member
  is held to its own latest accept, never more, but the others' later cuts can shrink its share below what
  its accept passed with (its silence's price); and block time is the proposer's clock, which may run up
  to genesis `block_max_future_ms` ahead, shortening a wait by that much (`accept_wait_ms` ≫ it), and lag
  behind as far as the previous block (validators bound a block's time only from above): a proposer that is
  also the coordinator can date its close back to just after the block before it, shortening the window by
  that gap — a chain with a steady block cadence keeps that gap to one block period.
  What an honest MGMC does: accept (round 1) before the deadline; then at each final block ask `due`
  (with the block time now and the chain's `accept_rounds` and `accept_wait_ms`) and, whenever it names k,
  post its re-check of `accepts_at(k)` as round k + 1 well within a wait; never stop while `due` names a
  round; clear once `rounds` (at the block time) says settled.
On a clean session every rule here reads both books: a re-accept is reduce-only per book, a member trades
while either book's accept is nonzero (`trading`), and `clean_accepts_at` gives the clean book's set.
Everything here stays importable from exchange_clearing.py. Pure; no I/O.
"""

from __future__ import annotations

from typing import Any

from ..state import StateReader, read_obj
from .exchange_clean import trading
from .exchange_state import members_key, session_key

# with genesis `accept_rounds` 2 the last round in which a re-accept may reduce (rounds 2 … 5: the four
# reductions `forward.commit` and the edge make before an MG that still fails declines); from round 6 on a
# re-accept keeps its accept or declines, so every changing round then removes a member and the rounds end
LAST_REDUCING_ROUND = 5
# genesis `accept_wait_ms`'s default (with `accept_rounds` 2): five minutes a round after the deadline, room
# for an MGMC on a Pi to re-solve its day (seconds to a minute) and for its accept to reach a final block
ACCEPT_WAIT_MS = 300_000


def accept_key(member: bytes, name: str) -> bytes:
    return b"xch/accept/" + member + name.encode()


def rounds_key(name: str) -> bytes:
    """The accept rounds' summary: `{members: [[round, trading, changed], ...]}` in the session's member
    order (round 0: not accepted); written from the first re-accept on, so that an accept reads one record,
    not every member's (absent while nobody accepted twice: one-accept chains keep their bytes). With
    genesis `accept_rounds` 2 also `last`, the latest accept's block time, and `since`, when the latest
    complete round completed (once one from round 2 on has): the clocks of the waits past the deadline."""
    return b"xch/rounds/" + name.encode()


def accepted(state: StateReader, name: str, member: bytes) -> dict[str, Any] | None:
    """`{before, changed, clean, positions, round}` of the member's latest accept, or None if it did not
    accept (or is no member): `round` its round (a first accept: 1, or the round it joined late), `before`
    its accept of the round before (zeros if it had none), `changed` whether `positions` differ from it.
    On a clean session also `clean_positions` and `clean_before`, the clean book's, and `changed` covers
    both books."""
    value: dict[str, Any] | None = read_obj(state, accept_key(member, name))
    if value is None:
        return None
    zeros = [0] * len(value["positions"])
    # round-1 records keep the bytes they had before rounds: {clean, positions}
    before = value.get("before", zeros)
    out = {"round": 1, **value, "before": before, "changed": value["positions"] != before}
    if "clean_positions" in value:  # a clean session's accept: its clean book too
        clean_before = value.get("clean_before", zeros)
        out["clean_before"] = clean_before
        out["changed"] = out["changed"] or value["clean_positions"] != clean_before
    return out


def accepts_at(state: StateReader, name: str, round_: int) -> dict[bytes, list[int]] | None:
    """Every member's accept as it stood when round `round_` was complete, by member key (the members that
    had not accepted by then left out): what each member re-checks when it posts round `round_` + 1. None if
    no such session or a member is already past round `round_` + 1 (its accept then is no longer kept).
    On a clean session these are the general book's positions (`clean_accepts_at` the clean book's)."""
    return _accepts_at(state, name, round_, "positions", "before")


def clean_accepts_at(state: StateReader, name: str, round_: int) -> dict[bytes, list[int]] | None:
    """`accepts_at` for a clean session's clean book: each member's `clean_positions` as they stood when round
    `round_` was complete. None as `accepts_at`, and for a session opened without `clean_prices`."""
    record = read_obj(state, session_key(name))
    if record is None or not record.get("clean"):
        return None
    return _accepts_at(state, name, round_, "clean_positions", "clean_before")


def _accepts_at(
    state: StateReader, name: str, round_: int, book: str, book_before: str
) -> dict[bytes, list[int]] | None:
    if read_obj(state, session_key(name)) is None:
        return None
    out: dict[bytes, list[int]] = {}
    for member, value in _standing(state, name, list(read_obj(state, members_key(name)))).items():
        if value["round"] > round_ + 1:
            return None
        if value["round"] <= round_:
            out[member] = value[book]
        # its accept of round `round_` (zeros in both books: a late first accept, none then; a declined
        # member posts no more, so a re-accept's is never)
        elif any(value["before"]) or any(value.get("clean_before", ())):
            out[member] = value[book_before]
    return out


def _standing(state: StateReader, name: str, members: list[bytes]) -> dict[bytes, dict[str, Any]]:
    """The latest accept of every member that accepted, in the session's member order."""
    taken: dict[bytes, dict[str, Any]] = {}
    for member in members:
        value = accepted(state, name, member)
        if value is not None:
            taken[member] = value
    return taken


def _entries(
    state: StateReader, name: str, members: list[bytes], taken: dict[bytes, dict[str, Any]] | None = None
) -> list[list[Any]]:
    """[round, trading, changed] per member in the session's order (round 0: not accepted): the rounds'
    summary once rounds started, else from every member's accept (`taken` if read already; all of them
    round 1 or none)."""
    summary = read_obj(state, rounds_key(name))
    if summary is not None:
        entries: list[list[Any]] = summary["members"]
        return entries
    taken = _standing(state, name, members) if taken is None else taken
    return [
        [a["round"], trading(a), a["changed"]] if (a := taken.get(m)) is not None else [0, False, False]
        for m in members
    ]


def _round_status(
    members: list[bytes], entries: list[list[Any]], need: int = 1, late: bool = False
) -> dict[str, Any]:
    """`rounds`' status of the members' entries; `need`: the chain's genesis `accept_rounds`, the round a
    settled status needs reached (unless nobody trades any more: nobody can post another round then);
    `late`: past the deadline with `accept_rounds` 2, where a member that never accepted is `absent` and
    counts as declined instead of `waiting`."""
    top = max((r for r, _, _ in entries), default=1) or 1
    never = [m for m, (r, _, _) in zip(members, entries, strict=True) if r == 0]
    waiting, absent = ([], never) if late else (never, [])
    # a member whose latest accept is all zeros can only post zeros again: it has nothing left to re-check
    behind = [m for m, (r, trading, _) in zip(members, entries, strict=True) if 0 < r < top and trading]
    # a change asks every member still trading to re-check it; with none left (all declined) nobody need
    anyone = any(trading for r, trading, _ in entries if r > 0)
    changed = [
        m for m, (r, _, c) in zip(members, entries, strict=True) if anyone and top > 1 and r == top and c
    ]
    settled = not waiting and not behind and not changed and (top >= need or not anyone)
    status = {"round": top, "waiting": waiting, "behind": behind, "changed": changed, "settled": settled}
    return {**status, "absent": absent, "standing": []}


def _late(record: dict[str, Any], accept_rounds: int, time_ms: int | None) -> bool:
    """Whether the after-the-deadline rule of genesis `accept_rounds` 2 governs at block time `time_ms`."""
    deadline = record.get("deadline")
    return accept_rounds >= 2 and deadline is not None and time_ms is not None and time_ms > deadline


def _stand(
    members: list[bytes],
    entries: list[list[Any]],
    since: int,
    last: int,
    wait_ms: int,
    time_ms: int,
    poster: bytes | None = None,
    need: int = 2,
) -> tuple[list[list[Any]], int, dict[int, int]]:
    """The entries once every member still trading that let a round stay open past its wait stands on its
    latest accept as its post of that round, unchanged (late only: `since` is at least the deadline).
    A round open since `since` (the previous round complete then) stands its silent members at
    `since` + `wait_ms`, and is complete then: if someone changed in it (or it is below `need`), the next
    round opens then and stands everyone silent in it `wait_ms` later — later than that if the latest
    accept (block time `last`) came after: a round is complete at its last post. `poster`, the member whose accept
    is being applied, never stands (its post is its answer). Returns the entries, the time the last
    complete round completed, and {member index: round it stands in}."""
    entries = [list(e) for e in entries]
    stood: dict[int, int] = {}
    for _ in range(
        3
    ):  # the round open (its silent members), then the next if the first changed: then settled
        if time_ms <= since + wait_ms:
            break
        top = max((r for r, _, _ in entries), default=1) or 1
        trading = [i for i, (r, t, _) in enumerate(entries) if r > 0 and t]
        behind = [i for i in trading if entries[i][0] < top]
        silent = [i for i in behind if members[i] != poster]
        moved = top > 1 and any(c for r, _, c in entries if r == top)  # a decline is a change too
        at = top  # the round open: its silent members stand in it
        if not behind and (moved or top < need):
            at = top + 1  # round top complete with a change (or below need): nobody posted the next yet
            silent = [i for i in trading if members[i] != poster]
        if not silent:
            break
        for i in silent:
            entries[i] = [at, True, False]
            stood[i] = at
        # the round they stand in is complete then, or at its latest real post if that came later (a post
        # made after the wait, a change perhaps, still gives everyone a whole wait to re-check it)
        since = max(since + wait_ms, last)
    return entries, since, stood


def _since(record: dict[str, Any], summary: dict[str, Any] | None) -> int:
    """When the round open now opened, for its wait after the deadline: the block time the round before it
    completed (`since` in the rounds' summary), never before the deadline (round 2 opens by it)."""
    deadline: int = record["deadline"]
    since: int = (summary or {}).get("since", deadline)
    return max(deadline, since)


def rounds(
    state: StateReader,
    name: str,
    accept_rounds: int = 1,
    time_ms: int | None = None,
    wait_ms: int = ACCEPT_WAIT_MS,
) -> dict[str, Any] | None:
    """The session's accept rounds, or None if no such session: `{round, waiting, behind, changed,
    settled, absent, standing}` — `round` the highest round any member posted (1 before anyone accepted
    twice), `waiting` the members that never accepted, `behind` those still trading below `round`, `changed`
    those whose accept in `round` (≥ 2) differs from their round before, `settled` whether the clear may
    come at once (every member accepted, none behind, none changed, and `round` at least `accept_rounds`,
    the chain's genesis parameter, unless nobody trades: what `exchange.clear` requires). With
    `accept_rounds` 2 and block time `time_ms` past the session's deadline, as the contract reads it then:
    the members that never accepted are `absent` (declined, not waiting), and those that let a round stay
    open past its wait (`wait_ms`, genesis `accept_wait_ms`) are `standing` on their latest accept as
    their post of it, unchanged; `absent` and `standing` are empty otherwise."""
    record = read_obj(state, session_key(name))
    if record is None:
        return None
    members: list[bytes] = list(read_obj(state, members_key(name)))
    return _status(state, record, name, members, accept_rounds, time_ms, wait_ms)[0]


def _status(
    state: StateReader,
    record: dict[str, Any],
    name: str,
    members: list[bytes],
    accept_rounds: int,
    time_ms: int | None,
    wait_ms: int,
    poster: bytes | None = None,
    taken: dict[bytes, dict[str, Any]] | None = None,
) -> tuple[dict[str, Any], list[list[Any]], dict[int, int], int | None]:
    """The rounds' status at block time `time_ms` (None: as if before any deadline), the entries it reads
    (with the members standing, when late), who stands in which round (`_stand`), and since when the round
    open now has been open (the summary's `since`, or when the last round stood complete; None if never
    recorded)."""
    entries = _entries(state, name, members, taken)
    summary = read_obj(state, rounds_key(name))
    since: int | None = None if summary is None else summary.get("since")
    late = _late(record, accept_rounds, time_ms)
    stood: dict[int, int] = {}
    if late:
        assert time_ms is not None
        start = _since(record, summary)
        last: int = (summary or {}).get("last", start)
        entries, after, stood = _stand(members, entries, start, last, wait_ms, time_ms, poster, accept_rounds)
        since = after if stood else start
    status = _round_status(members, entries, accept_rounds, late)
    status["standing"] = [members[i] for i in sorted(stood)]
    return status, entries, stood, since


def due(
    state: StateReader,
    name: str,
    member: bytes,
    time_ms: int,
    accept_rounds: int = 1,
    wait_ms: int = ACCEPT_WAIT_MS,
) -> int | None:
    """The round k whose accepts (`accepts_at(k)`) `member` should re-check now and answer with its round
    k + 1 (what an honest member does: the contract opens that round now), or None when it has nothing to
    post: no such session or member, it never accepted or it declined (all zeros), round k is not complete
    (a member still trading has not posted it; before the deadline `time_ms`, block time, also a member that
    never accepted), or the rounds are settled (round k ≥ 2 changed nobody's accept, or nobody trades).
    `accept_rounds` and `wait_ms`: the chain's genesis `accept_rounds` and `accept_wait_ms`; with 2, past
    the deadline, as the contract then reads the others: a member that never accepted declined, and one
    silent past a round's wait stands in it unchanged (so round k may be complete although it did not post;
    the member itself is never stood here: it may always still answer, until the clear)."""
    record = read_obj(state, session_key(name))
    mine = accepted(state, name, member)
    if record is None or mine is None or not trading(mine):
        return None
    members: list[bytes] = list(read_obj(state, members_key(name)))
    status = _status(state, record, name, members, accept_rounds, time_ms, wait_ms, poster=member)[0]
    k: int = mine["round"]
    top: int = status["round"]
    if top == k + 1:
        return k  # the next round started: answer the set round k left, as the others did
    early = record.get("deadline") is None or time_ms <= record["deadline"]
    if top != k or status["behind"] or (status["waiting"] and early):
        return None
    return k if k == 1 or status["changed"] else None


def _short(keys: list[bytes]) -> str:
    return ", ".join(k.hex()[:16] + "…" for k in keys)
