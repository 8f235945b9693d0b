"""Where a restarted MGMC picks up its day-ahead session, from its replica of the chain alone (review8 F3).

Promises: `rebuilt` is the session's public book (`dayexchange.Book`) as every member holds it after the
chain's last step: the chain's prices and ρ, every member's stepped positions, the steps taken; a member that
restarts mid-session goes on from there (`dayahead_restart`). `ended` says how a closed session ended as its
members judged it when it closed: the value stop (every post of the abandoned iteration said settled), the
iteration cap, or the kWh stop (recomputed from the last two posts of every member, which the contract keeps
for a session closed before anyone posted again: `kwh_stop`, which also tells a restarted coordinator that
its earlier process reached the stop and died before its close landed); "" for a close before any stop
(the stage failed: a restarted MGMC then has nothing to accept). Assumes the session exists on the replica (the caller checked).
What it cannot see: a member's private anchor (its unrounded last answer; the caller falls back on the
rounded posted one) and its verdict on the last step (it needs the post before the stepped one, which the
contract no longer holds once the member posted again).
Pure: reads the replica's state, never writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from peergrid_controller.dayexchange import Book, DayAheadConfig
from peergrid_edge.dayahead_clean import post_positions, session_prices
from peergrid_edge.exchange_io import SessionFailed
from peergrid_ledger.contracts import exchange
from peergrid_ledger.contracts.market_fee import session_fee
from peergrid_ledger.state import read_obj


def rebuilt(cfg: DayAheadConfig, state: Any, session: str, members: Sequence[bytes]) -> Book:
    """The open session's public book after the chain's last step (iteration 0: the opening's)."""
    record = exchange.session(state, session)
    assert record is not None and not record["closed"]
    book = Book(cfg, session_prices(record), len(members), session_fee(record))
    book.rho = record["rho"]
    k = record["iteration"]
    if k >= 1:  # every member posted k - 1 (a step needs every post): what that step priced
        book.take([_post(exchange.stepped(state, session, m), m, k - 1) for m in members])
        book.iterations = k - 1  # the first responses (iteration 0) are not an ADMM iteration
    return book


def ended(cfg: DayAheadConfig, state: Any, session: str, members: Sequence[bytes]) -> str:
    """How the closed session ended: "value", "cap", "kwh", or "" when it closed before any stop."""
    record = exchange.session(state, session)
    assert record is not None and record["closed"]
    k, n = record["iteration"], len(members)
    if k >= 2 and record["settled"] == n:  # every post of k said settled on k - 1: closed at k unstepped
        return "value"
    if k - 1 >= cfg.max_iterations:
        return "cap"
    return "kwh" if kwh_stop(cfg, state, session, members) else ""


def kwh_stop(cfg: DayAheadConfig, state: Any, session: str, members: Sequence[bytes]) -> bool:
    """Whether the session's last step (k - 1, k its current iteration) was the kWh stop, recomputed from
    every member's last two posts: the contract keeps them while nobody has posted k, as after that stop
    (closed, or open when the coordinator died before its close landed)."""
    record = exchange.session(state, session)
    assert record is not None
    k = record["iteration"]
    if k < 2 or record["posted"]:  # a kWh stop closes before anyone posts again
        return False
    # every member's last post is of k - 1 and the one before it (kept when it posted k - 1) of k - 2
    before, last = [], []
    for m in members:
        prior = read_obj(state, exchange.stepped_key(m, session))
        latest = exchange.position(state, session, m)
        if prior is None or latest is None or prior["iteration"] != k - 2 or latest["iteration"] != k - 1:
            return False
        before.append(post_positions(prior))
        last.append(post_positions(latest))
    book = Book(cfg, session_prices(record), len(members), session_fee(record))
    book.take(before)
    converged, _ = book.advance(last, cfg.free_tolerance_kwh)  # a close ends the last phase, on its stop
    return converged


def _post(post: dict[str, Any] | None, member: bytes, k: int) -> tuple[int, ...]:
    if post is None or post["iteration"] != k:
        got = None if post is None else post["iteration"]
        raise SessionFailed(
            f"member {member.hex()[:16]}…'s stepped post of iteration {k} is not on this replica (it holds {got})"
        )
    return post_positions(post)
