"""The forward trades of one interval from accepted day-ahead positions: scale the long side, pair the sides.

Promises: `forward_trades(sells, buys, limit)` takes each seller's and each buyer's accepted volume (whole
Wh, positive) and returns the interval's bilateral trades `(seller, buyer, Wh)`, sorted by (seller, buyer):
  1. the long side is scaled pro rata to the short side's volume (`largest_remainder`: floors, then one Wh
     more to the largest remainders; a tie between equal remainders goes to the smaller participant id),
     so each side sells or buys exactly that volume and nobody more than it accepted;
  2. the largest sellers are paired with the largest buyers (`north_west` over both sides by descending
     volume, a tie in volume to the smaller id): at most |S| + |B| − 1 trades;
  3. a buyer that would still name more than `limit` sellers (the market contract's MAX_DEMANDS: a longer
     bid is refused there) keeps its `limit` largest trades (a tie to the smaller seller id) and the rest is
     not traded on either side, so the interval stays balanced.
Participant ids are whatever sorts: the exchange contract passes public keys (bytes), and the controller's
matching.py passes the same keys, so both sides break every tie the same way. Integers only: the contract
and the controller compute the same trades to the Wh. Pure; no I/O, no state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

from .market_state import MAX_DEMANDS

P = TypeVar("P", str, bytes)  # a participant id: a public key on the chain


def largest_remainder(weights: Mapping[P, int], total: int) -> dict[P, int]:
    """`total` split in proportion to non-negative integer `weights` (sum ≥ total): floors, then one more for
    the largest remainders, a tie to the smaller id. Exact: the shares sum to `total`, each at most its
    weight."""
    whole = sum(weights.values())
    if any(w < 0 for w in weights.values()):
        raise ValueError("weights must be non-negative")
    if not 0 <= total <= whole:
        raise ValueError(f"cannot share {total} over weights summing to {whole}")
    if whole == 0:
        return dict.fromkeys(weights, 0)
    share = {who: total * w // whole for who, w in weights.items()}
    left = total - sum(share.values())
    for who in sorted(weights, key=lambda who: (-(total * weights[who] % whole), who))[:left]:
        share[who] += 1
    return share


def north_west(rows: Sequence[tuple[P, int]], columns: Sequence[tuple[P, int]]) -> list[tuple[P, P, int]]:
    """The north-west corner walk over two lists of (id, positive amount) in the order given: each step
    moves the smaller of what the current row and column have left, (row, column, amount), until either
    side runs out: at most rows + columns − 1 steps."""
    left_rows = [amount for _, amount in rows]
    left_columns = [amount for _, amount in columns]
    out: list[tuple[P, P, int]] = []
    i = j = 0
    while i < len(rows) and j < len(columns):
        amount = min(left_rows[i], left_columns[j])
        out.append((rows[i][0], columns[j][0], amount))
        left_rows[i] -= amount
        left_columns[j] -= amount
        if left_rows[i] == 0:
            i += 1
        if left_columns[j] == 0:
            j += 1
    return out


def _largest_first(side: Mapping[P, int]) -> list[tuple[P, int]]:
    return sorted(((who, amount) for who, amount in side.items() if amount > 0), key=lambda x: (-x[1], x[0]))


def pair(sells: Mapping[P, int], buys: Mapping[P, int], limit: int = MAX_DEMANDS) -> list[tuple[P, P, int]]:
    """Steps 2 and 3 of the module contract on sides that already balance (or not: the walk stops when the
    shorter runs out)."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    named: dict[P, list[tuple[P, int]]] = {}
    for seller, buyer, amount in north_west(_largest_first(sells), _largest_first(buys)):
        named.setdefault(buyer, []).append((seller, amount))
    kept = [
        (seller, buyer, amount)
        for buyer, pairs in named.items()
        for seller, amount in sorted(pairs, key=lambda x: (-x[1], x[0]))[:limit]
    ]
    return sorted(kept)


def forward_trades(
    sells: Mapping[P, int], buys: Mapping[P, int], limit: int = MAX_DEMANDS
) -> list[tuple[P, P, int]]:
    """The module contract: (seller, buyer, Wh) sorted by (seller, buyer). ValueError on a negative volume
    or an id on both sides."""
    for side in (sells, buys):
        if any(amount < 0 for amount in side.values()):
            raise ValueError("volumes must be non-negative (whole Wh)")
    both = {who for who, a in sells.items() if a > 0} & {who for who, a in buys.items() if a > 0}
    if both:
        raise ValueError(f"{min(both)!r} both sells and buys")
    volume = min(sum(sells.values()), sum(buys.values()))
    return pair(_scaled(sells, volume), _scaled(buys, volume), limit)


def _scaled(side: Mapping[P, int], volume: int) -> dict[P, int]:
    return dict(side) if sum(side.values()) <= volume else largest_remainder(side, volume)
