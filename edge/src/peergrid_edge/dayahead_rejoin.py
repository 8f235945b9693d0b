"""Where a restarted MGMC picks up its day-ahead session, from its replica of the chain alone (review8 F3).

Promises: `rebuilt` is the session's public book (`dayexchange.Book`) as every member holds it after the
chain's last step: the chain's prices and ρ, every member's stepped positions, the steps taken; a member that
restarts mid-session goes on from there (`dayahead_restart`). `ended` says how a closed session ended as its
members judged it when it closed: the value stop (every post of the abandoned iteration said settled), the
iteration cap, or the kWh stop (recomputed from the last two posts of every member, which the contract keeps
for a session closed before anyone posted again: `kwh_stop`, which also tells a restarted coordinator that
its earlier process reached the stop and died before its close landed); "" for a close before any stop
(the stage failed: a restarted MGMC then has nothing to accept). Assumes the session exists on the replica (the caller checked).
On a session with an exchange fee `drift_from` gives the book the imbalance at which the fee's drift first
took ρ below the config's (`Book.drift_from`, which its verdicts wait on: `Book.lowered`), as the book that
made the steps holds it, to the float: the contract's state keeps only the last stepped posts, so it is read
from the session's stored blocks, newest first back to its `exchange.open` (every `exchange.step` carries the
new ρ, and only the fee's drift takes ρ below the config's: `Book.follow_fee`, `balance_rho`), as the
imbalance of the posts of the first step that did (`Book.imbalance`). Once per rejoin, yielding to the loop
after each block; a block missing, corrupt or not what its header commits to, or a step or post not found,
is `BlocksUnread` naming it (the caller goes on without, logged).
What it cannot see: a member's private anchor (its unrounded last answer; the caller falls back on the
rounded posted one) and its verdict on the last step (it needs the post before the stepped one, which the
contract no longer holds once the member posted again).
Reads the replica's state and (`drift_from`) its stored blocks; never writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

from peergrid_controller.dayexchange import Book, DayAheadConfig
from peergrid_edge.dayahead_clean import post_positions, session_prices
from peergrid_edge.exchange_io import SessionFailed
from peergrid_ledger.contracts import exchange
from peergrid_ledger.contracts.market_fee import session_fee
from peergrid_ledger.state import read_obj
from peergrid_ledger.store import StoreError
from peergrid_ledger.tx import Tx, decode_tx


class BlocksUnread(Exception):
    """The replica's stored blocks do not give the session's drift (`drift_from`): the message says where."""


class StoredBlocks(Protocol):
    """What `drift_from` reads of a replica's block store (`peergrid_ledger.store.BlockStore`): each block's
    transactions undecoded, checked against its header (KeyError: no such block; StoreError: corrupt)."""

    def transactions(self, height: int) -> tuple[bytes, ...]: ...


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


async def drift_from(
    book: Book, session: str, members: Sequence[bytes], blocks: StoredBlocks, head: int
) -> float | None:
    """`Book.drift_from` of the session's book after its `book.iterations` steps (`rebuilt`'s), as the book
    that made them holds it: None on a fee-0 session (ρ never follows a fee) or where no step of
    1..iterations took ρ below the config's (`book.rho_min`), else the imbalance of the posts of the first
    that did (`follow_fee` takes it from the iteration it steps). Read from `blocks` from `head` down to the
    session's open (steps after `book.iterations`, landed since the book was rebuilt, are not its).
    BlocksUnread: a block missing or corrupt, or a step or post of the session not there.
    Cost: every block of the session read once, checked against its header, but of its transactions only
    the steps and the open decoded, and the posts of the first step below the config's: a 1,000-iteration
    100-member 96-interval session (100,000 posts in 1,001 blocks) took about 0.4 s on the x86 test machine
    (0.9-1.1 s at load 4-5; decoding every post, `BlockStore.block`: 6.9 s, and 17-24 s at that load)."""
    if not book.fee or book.iterations < 1:
        return None
    # newest first down to the open, only the steps (and the open) decoded: a post's body is most of a
    # block's cost, and every transaction's kind is in its wire bytes
    steps: dict[int, tuple[int, int]] = {}  # iteration -> (its ρ, the height of its block)
    height, opened = head + 1, False
    while not opened:
        height -= 1
        if height < 1:
            raise BlocksUnread(f"no exchange.open of session {session!r} in this replica's blocks 1..{head}")
        await asyncio.sleep(0)  # a long session is many blocks: the replica's loop goes on between them
        for tx in _decoded(blocks, height, session, (b"exchange.step", b"exchange.open")):
            if tx.kind == "exchange.open":
                opened = True
            elif tx.kind == "exchange.step":
                steps[tx.body["iteration"]] = (tx.body["rho"], height)
    missing = sorted(set(range(book.iterations + 1)) - set(steps))
    if missing:
        raise BlocksUnread(
            f"the steps {_few(missing)} of session {session!r} are not in this replica's blocks "
            f"{height}..{head}"
        )
    first = next((k for k in range(1, book.iterations + 1) if steps[k][0] < book.rho_min), None)
    if first is None:
        return None
    # its posts: after the step before it, up to its own (in their blocks, before it)
    posts: dict[bytes, tuple[int, ...]] = {}
    for height in range(steps[first - 1][1], steps[first][1] + 1):
        await asyncio.sleep(0)
        for tx in _decoded(blocks, height, session, (b"exchange.position",)):
            if tx.kind == "exchange.position" and tx.body["iteration"] == first:
                posts[tx.sender] = post_positions(tx.body)
    absent = [m.hex()[:16] + "…" for m in members if m not in posts]
    if absent:
        raise BlocksUnread(f"the posts of iteration {first} of session {session!r} by {', '.join(absent)} "
                           f"are not in this replica's blocks {steps[first - 1][1]}..{steps[first][1]}")  # fmt: skip
    sums = Book(book.cfg, book.prices, len(members)).take([posts[m] for m in members])
    return Book.imbalance(sums)


def _decoded(blocks: StoredBlocks, height: int, session: str, kinds: tuple[bytes, ...]) -> list[Tx]:
    """The session's transactions of `kinds` in the block at `height`, in block order; only those whose wire
    bytes name one of `kinds` are decoded."""
    try:
        raws = blocks.transactions(height)
    except KeyError:
        raise BlocksUnread(f"block {height} is not in this replica's store") from None
    except StoreError as exc:  # corrupt: its message names the height
        raise BlocksUnread(str(exc)) from None
    except RuntimeError as exc:  # the store closed (the MGMC stopping)
        raise BlocksUnread(f"block {height}: {exc}") from None
    txs = (decode_tx(raw) for raw in raws if any(kind in raw for kind in kinds))
    return [tx for tx in txs if tx.kind.encode() in kinds and tx.body.get("session") == session]


def _few(numbers: Sequence[int]) -> str:
    return ", ".join(map(str, numbers[:5])) + (f" and {len(numbers) - 5} more" if len(numbers) > 5 else "")


def _post(post: dict[str, Any] | None, member: bytes, k: int) -> tuple[int, ...]:
    if post is None or post["iteration"] != k:
        got = None if post is None else post["iteration"]
        raise SessionFailed(
            f"member {member.hex()[:16]}…'s stepped post of iteration {k} is not on this replica (it holds {got})"
        )
    return post_positions(post)
