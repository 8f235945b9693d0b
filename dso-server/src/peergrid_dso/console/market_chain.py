"""What the live Market view reads of the MGMC chain: the blocks a shown day needs, and which intervals are listed.

Promises: `ChainReading` holds what the blocks read so far say - each seller's price and quantity in every round
of an interval (`rounds`, from the `offer` and `move` transactions with a price), which intervals their newest
`trade` closed and no `market.reopen` opened again (`closed`), the exchange sessions opened and cleared - and
reads blocks two ways: `up(store, head)` the blocks a new head added (at the first call none: the head is where
reading starts), `down(store, needed)` back from the lowest block read until the opening `offer` of every
(interval, seller hex) in `needed` is read, or to block 1 (`needed` None: every block). Why that suffices: the
contract takes one `offer` per seller and interval (another is `duplicate`) and a move, a trade or a reopening of
it only after it, so every block below those openings holds nothing of the interval's bargaining. `read` counts
the blocks read (C7: the view read every block from genesis at its first report; a pilot's idle chain makes one
every 2 s, ~15 M a year). What the blocks say does not depend on the order they are read in: a round's
position is one transaction, and an interval's closing is its newest trade or reopening (read down, an older
one leaves it as the newer said).
`listed(state, ...)` and `openings(state, intervals)` ask the chain's state (on the node's loop) which intervals
any seller offered in or an exchange clear closed (`mkt/sellers/<t>`, a closing record naming its `session`), up
to the newest any enrolled anonym holds a position in (`mkt/last`), and who the sellers of each interval are:
so the days are listed without reading the blocks of every day. Interval numbers count from the market's epoch
(interval 0), as the pilot's and the lab's do. Reads only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from peergrid_ledger.contracts.market_state import interval_key, last_interval_key, members, members_key
from peergrid_ledger.state import StateReader, read_obj


@dataclass
class ChainReading:
    """What the MGMC blocks read so far say (module)."""

    # interval -> seller's key (hex) -> round -> (price per kWh, kWh)
    rounds: dict[int, dict[str, dict[int, tuple[float, float]]]] = field(default_factory=dict)
    opened: set[tuple[int, str]] = field(default_factory=set)  # (interval, seller hex) whose `offer` was read
    closed: set[int] = field(default_factory=set)  # closed by their newest trade read (no reopening since)
    decided: set[int] = field(default_factory=set)  # intervals whose newest trade or reopening was read
    sessions: dict[str, range] = field(default_factory=dict)  # exchange session -> the intervals it opened
    clears: set[str] = field(default_factory=set)  # exchange sessions a clear (or a part of one) was read of
    top: int | None = None  # the highest block read (or the head reading started at)
    low: int | None = None  # the lowest block read (top + 1: none yet)
    read: int = 0  # blocks read

    def up(self, store: Any, head: int) -> None:
        """Read the blocks above the highest read, to `head`; at the first call start at `head`, reading none."""
        if self.top is None:
            self.top, self.low = head, head + 1
            return
        while self.top < head:
            self.top += 1
            self._read(store, self.top, newest=True)

    def down(self, store: Any, needed: set[tuple[int, str]] | None) -> None:
        """Read back from the lowest block read until every opening in `needed` is read (None: to block 1)."""
        assert self.low is not None, "up() first"
        while self.low > 1 and (needed is None or not needed <= self.opened):
            self.low -= 1
            self._read(store, self.low, newest=False)

    def cleared(self) -> set[int]:
        """The intervals of the exchange sessions a clear of was read, as far as their openings were read."""
        return {t for s in self.clears for t in self.sessions.get(s, ())}

    def _read(self, store: Any, height: int, newest: bool) -> None:
        self.read += 1
        for tx in store.block(height).txs:
            body = tx.body
            if tx.kind in ("offer", "move") and "price" in body:
                t, r = int(body["interval"]), int(body["round"])
                seller = tx.sender.hex()
                self.rounds.setdefault(t, {}).setdefault(seller, {})[r] = (
                    body["price"] / 1000,
                    body["quantity"] / 1000,
                )
                if tx.kind == "offer":
                    self.opened.add((t, seller))
            elif tx.kind in (
                "trade",
                "market.reopen",
            ):  # a reopening: bargaining again, its trades superseded
                t = int(body["interval"])
                if newest or t not in self.decided:
                    self.decided.add(t)
                    (self.closed.add if tx.kind == "trade" else self.closed.discard)(t)
            elif tx.kind == "exchange.open":
                first = int(body["first_interval"])
                self.sessions[str(body["session"])] = range(first, first + len(body["prices"]))
            elif tx.kind == "exchange.clear":  # a clear (or one part of it) closes intervals it traded
                self.clears.add(str(body["session"]))


def listed(
    state: StateReader, anonyms: Iterable[str], newest: int, start: int, known: set[int]
) -> tuple[set[int], dict[int, str], int] | None:
    """On the node's loop: of the intervals from `start` to the newest (the highest of `newest` and every
    anonym's `mkt/last`, the last interval it holds a position in), those not in `known` that a seller offered
    in, and those an exchange clear closed with its session; and that newest interval. None where no anonym
    holds a position: the state cannot say how far the intervals go (the loop's MGs trade under keys it does not
    name, or none has traded yet), and the caller reads the blocks instead."""
    last = [
        int(n) for key in anonyms if (n := read_obj(state, last_interval_key(bytes.fromhex(key)))) is not None
    ]
    if not last:
        return None
    upto = max([newest, *last])
    offered: set[int] = set()
    forward: dict[int, str] = {}
    for t in range(start, upto + 1):
        if t in known:
            continue
        if state.get(members_key(t, "sellers")) is not None:
            offered.add(t)
        raw = state.get(interval_key(t))
        if (
            raw is not None
            and b"session" in raw
            and (session := read_obj(state, interval_key(t)).get("session"))
        ):
            forward[t] = str(session)
    return offered, forward, upto


def openings(state: StateReader, intervals: Iterable[int]) -> set[tuple[int, str]]:
    """On the node's loop: (interval, seller hex) of every seller of `intervals`: the offers the blocks must show."""
    return {(t, seller.hex()) for t in intervals for seller in members(state, t, "sellers")}
