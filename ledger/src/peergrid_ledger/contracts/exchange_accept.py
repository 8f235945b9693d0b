"""The exchange contract's accepts: a member's accepted net positions of a closed session, checked by the
chain before the clear computes any trade from them (`exchange_clearing.clear`).

Promises: `accept` (the `exchange.accept` handler of `exchange.KINDS`; the rule in full is in
exchange_clearing.py's docstring) records a member's accepted positions only while the session is closed
and not cleared nor being cleared in parts (`_closed_session`, also the clear's guard), each of the same sign
as its final stepped position and no larger, within its owner rules at the session's closing price on the
market contract's tick (`_check_accept`, and the clean book's `exchange_clean.check_accept`) and its posted
connection capacity, a stated trading window once, with its first accept (`_stated_window`), and a re-accept
only once its round opens (`_next_round`) and reduce-only against the round before (`_reduce_only`: the
rules a re-accept obeys, exchange_rounds.py's docstring says why; the rounds' status is read there); it freezes the member's rules up to the last interval it
accepts or its window ends, as a market position does. Anything else is refused with a `RuleError` naming it.
Split from exchange_clearing.py, which re-exports `accept`. Pure; no I/O.
"""

from __future__ import annotations

from typing import Any

from .. import keyspace as ks
from ..machine import BlockContext, require
from ..results import Event, Reason, RuleError
from ..state import Overlay, read_obj
from ..tx import Tx
from . import exchange as xch
from . import exchange_clean as clean_book
from .exchange_clean import trading, within
from .exchange_rounds import LAST_REDUCING_ROUND, _late, _short, _status, accept_key, accepted, rounds_key
from .exchange_state import clean_prices_key, cleared_key, clearing_key, trading_window, window_key
from .funds import refuse_debtor
from .market_capacity import within_capacity
from .market_state import last_interval_key, require_anonym, rules_for


def _closed_session(view: Overlay, name: str) -> dict[str, Any]:
    """The session's record, refused unless it is closed and not cleared (a clear in parts: not complete)."""
    record: dict[str, Any] | None = read_obj(view, xch.session_key(name))
    require(record is not None, Reason.NOT_FOUND, f"no exchange session {name!r}")
    assert record is not None
    require(record["closed"], Reason.RULE_VIOLATION, f"exchange session {name!r} is not closed yet")
    require(view.get(cleared_key(name)) is None, Reason.CLOSED, f"exchange session {name!r} is cleared")
    return record


def _check_accept(
    view: Overlay, member: bytes, interval: int, q: int, final: int, price: int, clean: int = 0
) -> None:
    """An accepted general position q (its clean one `clean` on a clean session) against its final stepped
    `final` and the member's rules at the closing price `price` on the tick; |q + clean| ≤ max_quantity."""
    where = f"position {q} Wh in interval {interval}"
    within(q, final, where, "final stepped")
    rules = rules_for(view, member, interval)
    if abs(q + clean) > rules["max_quantity"]:
        net = f" (net with its clean position {clean}: {q + clean})" if clean else ""
        raise RuleError(Reason.RULE_VIOLATION, f"{where}{net}: beyond the maximum {rules['max_quantity']}")
    if q > 0 and price < rules["floor_price"]:
        raise RuleError(
            Reason.RULE_VIOLATION, f"{where}: a sale at {price} below the floor {rules['floor_price']}"
        )
    if q < 0 and rules["clean_only"]:
        raise RuleError(Reason.RULE_VIOLATION, f"{where}: a clean-only member never buys")
    if q < 0 and price < 0:
        raise RuleError(Reason.RULE_VIOLATION, f"{where}: the market contract has no price {price} < 0")
    if q < 0 and price > rules["cap_price"]:
        raise RuleError(
            Reason.RULE_VIOLATION, f"{where}: a purchase at {price} above the cap {rules['cap_price']}"
        )


def _stated_window(
    view: Overlay, record: dict[str, Any], tx: Tx, books: list[list[int]], again: bool
) -> range | None:
    """The accept's trading window (`window` [first, last], chain intervals) as a range, or None when it states
    none: two intervals, the first not after the last, both within the session, every nonzero position of
    `books` (the accept's) inside it; stated once, with the member's first accept (`again`: a re-accept,
    which may only repeat it): a window stated later could widen its make-whole bound (`uplift.gain_bound`)."""
    stated, name = tx.body.get("window"), tx.body["session"]
    if stated is None:
        return None
    require(len(stated) == 2, Reason.MALFORMED, f"window {stated}: a window is [first, last], two intervals")
    low, high = stated
    require(low <= high, Reason.INVALID, f"window {stated}: its first interval is after its last")
    first, last = record["first_interval"], record["first_interval"] + record["intervals"] - 1
    require(
        first <= low and high <= last,
        Reason.INVALID,
        f"window {stated}: outside the session's chain intervals {first}..{last}",
    )
    window = range(low, high + 1)
    require(
        not again or trading_window(view, name, tx.sender) == window,
        Reason.RULE_VIOLATION,
        f"window {stated}: a member states its trading window once, with its first accept (a re-accept may "
        "only repeat it): a later one could widen its make-whole bound",
    )
    outside = [first + t for t, held in enumerate(zip(*books, strict=True)) if any(held)]
    outside = [interval for interval in outside if interval not in window]
    if outside:
        raise RuleError(
            Reason.RULE_VIOLATION,
            f"a position accepted in interval {outside[0]}, outside its window {stated}: a member trades "
            "only within the window it states",
        )
    return window


def accept(view: Overlay, tx: Tx, ctx: BlockContext, sender: ks.AccountRecord) -> list[Event]:
    require(sender.authorised, Reason.NOT_AUTHORISED, f"{tx.kind}: sender is not authorised")
    params, who = ctx.genesis.params, f"{tx.sender.hex()[:16]}…"
    require_anonym(params.settle_by_both, sender.roles, who, tx.kind, anonyms_only=params.anonyms_only)
    name, positions = tx.body["session"], tx.body["positions"]
    record = _closed_session(view, name)
    final = xch.stepped(view, name, tx.sender)
    require(final is not None, Reason.FORBIDDEN, f"not a member of exchange session {name!r}")
    assert final is not None
    previous = accepted(view, name, tx.sender)
    summary = read_obj(view, rounds_key(name))
    params = ctx.genesis.params
    if previous is None and _late(record, params.accept_rounds, ctx.time):
        raise RuleError(
            Reason.CLOSED,
            f"the deadline {record['deadline']} passed before this member's first accept: it counts as "
            f"declined (the chain's genesis accept_rounds {params.accept_rounds})",
        )
    # a first accept in round 1 reads nothing more (as before rounds): the member list only once they run
    members: list[bytes] = (
        [] if previous is None and summary is None else read_obj(view, xch.members_key(name))
    )
    stood: dict[int, int] = {}
    since: int | None = None
    if previous is None:  # a first accept: round 1, or the round running (then a change in it)
        entries = summary["members"] if summary is not None else None
        round_ = max(r for r, _, _ in entries) if entries is not None else 1
    else:  # a re-accept reads the rounds' state (from every member's accept once, when rounds start)
        status, entries, stood, since = _status(
            view, record, name, members, params.accept_rounds, ctx.time, params.accept_wait_ms, tx.sender
        )
        round_ = _next_round(record, ctx, status, tx.sender, previous)
    require(
        view.get(clearing_key(name)) is None,
        Reason.CLOSED,
        f"exchange session {name!r} is being cleared (in parts): its accepts are final",
    )
    intervals = record["intervals"]
    require(
        len(positions) == intervals,
        Reason.INVALID,
        f"{len(positions)} positions, the session has {intervals} intervals",
    )
    first, clean = record["first_interval"], tx.body["clean"]
    cleans = clean_book.book_of(record, tx.body, tx.kind)  # None off a clean session
    books = [positions] if cleans is None else [positions, cleans]
    window = _stated_window(view, record, tx, books, previous is not None)
    if previous is None and (min(positions) < 0 or min(cleans or [0]) < 0):
        # a member that came to owe since its last position buys nothing more (a re-accept only shrinks)
        refuse_debtor(view, tx.sender, f"a purchase accepted in exchange session {name!r}", params.owed_limit)
    if previous is not None:
        _reduce_only(previous, positions, clean, first, params.accept_rounds, cleans)
    finals = final["positions"] or [0] * intervals  # none stepped: it may only decline
    prices = read_obj(view, xch.prices_key(name))
    for t, q in enumerate(positions):
        c = 0 if cleans is None else cleans[t]
        if q != 0 or c != 0:
            _check_accept(view, tx.sender, first + t, q, finals[t], xch.micro_per_wh(prices[t]), c)
    if cleans is not None:
        clean_finals = final.get("clean_positions") or [0] * intervals
        clean_prices = read_obj(view, clean_prices_key(name))
        for t, (q, c) in enumerate(zip(positions, cleans, strict=True)):
            if c != 0:
                at = xch.micro_per_wh(clean_prices[t])
                clean_book.check_accept(view, tx.sender, first + t, q, c, clean_finals[t], at, clean)
    nets = positions if cleans is None else [q + c for q, c in zip(positions, cleans, strict=True)]
    within_capacity(view, tx.sender, first, nets, "accepted net position")
    events: list[Event] = []
    for i, at in sorted(stood.items()):  # silent past the round's wait: their latest accepts stand in it
        theirs = accepted(view, name, members[i])
        assert theirs is not None
        kept = theirs["positions"]
        stands = {"before": kept, "clean": theirs["clean"], "positions": kept, "round": at}
        if "clean_positions" in theirs:  # a clean session: its clean book stands unchanged too
            stands.update(clean_before=theirs["clean_positions"], clean_positions=theirs["clean_positions"])
        view.put_obj(accept_key(members[i], name), stands)
        events.append(("exchange_stood", {"session": name, "member": members[i], "round": at}))
    value: dict[str, Any] = {"clean": clean, "positions": positions}
    before = previous["positions"] if previous is not None else [0] * intervals
    changed = positions != before
    if cleans is not None:  # a clean session's accept: its clean book (and its round before) beside
        value["clean_positions"] = cleans
        clean_before = previous["clean_positions"] if previous is not None else [0] * intervals
        changed = changed or cleans != clean_before
    if round_ > 1:  # round 1 keeps the record's bytes from before rounds
        value.update({"before": before, "round": round_})
        if cleans is not None:
            value["clean_before"] = clean_before
        assert entries is not None  # rounds run: the summary exists, or a re-accept just read every accept
        entries[members.index(tx.sender)] = [round_, trading(value), changed]
        rounds_now: dict[str, Any] = {"members": entries}
        if params.accept_rounds >= 2:  # since when the round open has been: its wait after the deadline
            top = max(r for r, _, _ in entries)
            if not any(0 < r < top and trading for r, trading, _ in entries):
                since = ctx.time  # this accept completed its round: the next opens now
            if since is not None:
                rounds_now["since"] = since
            rounds_now["last"] = ctx.time  # the latest accept: a round completes no earlier
        view.put_obj(rounds_key(name), rounds_now)
    view.put_obj(accept_key(tx.sender, name), value)
    traded = [t for t in range(intervals) if any(book[t] for book in books)]
    reach = [first + traded[-1]] if traded else []
    if window is not None and previous is None:  # kept; its rules bound its gain there (`uplift.gain_bound`)
        view.put_obj(window_key(tx.sender, name), [window[0], window[-1]])
        reach.append(window[-1])
    if reach:  # its rules hold for what it accepted and its window: changed only after, as for a position
        last_key = last_interval_key(tx.sender)
        last = view.get(last_key)
        if last is None or max(reach) > ks.decode_int(last):
            view.put(last_key, ks.encode_int(max(reach)))
    event: dict[str, Any] = {"session": name, "member": tx.sender, "declined": not traded}
    if round_ > 1:
        event.update({"round": round_, "changed": changed})
    if window is not None and previous is None:  # absent without one: today's event bytes
        event["window"] = [window[0], window[-1]]
    return [*events, ("exchange_accepted", event)]


def _next_round(
    record: dict[str, Any], ctx: BlockContext, status: dict[str, Any], member: bytes, previous: dict[str, Any]
) -> int:
    """The round a member's next accept would be, refused `duplicate` until it opens: once every member
    accepted (or the deadline passed) and every other member still trading posted the member's round."""
    k: int = previous["round"]
    require(
        trading(previous),
        Reason.DUPLICATE,
        f"already declined (all zeros in round {k}): a later accept could only repeat it",
    )
    deadline = record.get("deadline")
    if status["waiting"] and (deadline is None or ctx.time <= deadline):
        raise RuleError(
            Reason.DUPLICATE,
            f"already accepted (round {k}): round {k + 1} opens once every member accepted "
            f"({len(status['waiting'])} have not) or the deadline passed",
        )
    late = [m for m in status["behind"] if m != member] if status["round"] == k else []
    if status["round"] > k + 1 or late:
        # (round > k + 1 cannot be: a member still trading holds every round after its own; kept loud)
        raise RuleError(
            Reason.DUPLICATE,
            f"already accepted (round {k}): round {k + 1} opens once every member still trading posted "
            f"round {k}; waiting for {_short(late)}",
        )
    return k + 1


def _reduce_only(
    previous: dict[str, Any],
    positions: list[int],
    clean: bool,
    first: int,
    accept_rounds: int = 1,
    clean_positions: list[int] | None = None,
) -> None:
    """A re-accept against the member's round k: same `clean`, each position 0 or of the same sign and no
    larger; with genesis `accept_rounds` 2 from round LAST_REDUCING_ROUND + 1 on, unchanged or all zeros.
    On a clean session (`clean_positions`) per book: each clean position against its round-k clean one,
    and unchanged or all zeros means in both books."""
    k = previous["round"]
    require(clean == previous["clean"], Reason.RULE_VIOLATION, f"clean {clean} differs from round {k}'s")
    books = [("position", positions, previous["positions"])]
    if clean_positions is not None:
        books.append(("clean position", clean_positions, previous["clean_positions"]))
    if accept_rounds >= 2 and k >= LAST_REDUCING_ROUND and any(now != then for _, now, then in books):
        require(
            not any(any(now) for _, now, _ in books),
            Reason.RULE_VIOLATION,
            f"round {k + 1}: from round {LAST_REDUCING_ROUND + 1} on a re-accept keeps its round-{k} "
            f"accept or declines (all zeros) (the chain's genesis accept_rounds {accept_rounds})",
        )
    for what, now, then in books:
        for t, (q, before) in enumerate(zip(now, then, strict=True)):
            within(q, before, f"{what} {q} Wh in interval {first + t}", f"round-{k} accept", " (reduce only)")
