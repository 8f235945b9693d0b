"""The market contract's allocation rule: how the closing shares each seller's offer among the buyers that
asked it, and, with genesis `cap_on_fills`, how a buyer's maximum caps what it is filled.

Promises: `allocate(offers, demands, limits, premiums)` gives each seller's grants in its demands' order, in
whole Wh: pro rata to the demands, rounded down, where a seller is over-asked; with `limits`, each buyer's
grants capped at its limit in its own effective-price order, what a cap frees handed on once to the seller's
other rationed buyers (`_hand_on`). No name or key decides a tie, nothing is granted beyond an offer or a
limit, and the two rules agree whenever no buyer asks for more than its limit. Generic in the participant
(`K`: a key on the chain, a name in the controller's mirror, `peergrid_controller.market`), so both compute
the same grants. Pure, integer, exact; split from market_state.py, which re-exports `allocate`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

K = TypeVar("K", str, bytes)  # a participant: its key on the chain, its name in the controller's mirror


def allocate(
    offers: Mapping[K, Mapping[str, Any]],
    demands: Mapping[K, list[tuple[K, int]]],
    limits: Mapping[K, int] | None,
    premiums: Mapping[K, int] | None = None,
) -> dict[K, list[tuple[K, int]]]:
    """Each seller's grants, in its demands' order (Wh; the controller's `market.clear` mirrors the contract
    with it). A seller whose demanded total exceeds its offer grants each buyer `demand × offered // total`.

    With `limits` (genesis `cap_on_fills`; `offers` then carry `clean`) each buyer's grants are then taken
    in that buyer's own effective-price order (price, minus its clean premium from `premiums` for a clean
    offer: the order in which its bid ranks offers) up to its limit; the sellers of one effective price
    share what is left of the limit pro rata to their grants, rounded down, so no name or key decides a tie.
    What is cut is handed on once to the seller's other rationed buyers (`_hand_on`). The two rules agree
    whenever no buyer demands more in all than its limit (all that a chain without the parameter accepts):
    nothing is cut then."""
    out: dict[K, list[tuple[K, int]]] = {}
    for seller in sorted(demands):
        offered = offers[seller]["quantity"]
        wanted = demands[seller]
        total = sum(q for _, q in wanted)
        out[seller] = [(b, q if total <= offered else q * offered // total) for b, q in wanted]
    if limits is None:
        return out
    # per buyer: effective price -> the (seller, position in its grants) served at that price
    levels: dict[K, dict[int, list[tuple[K, int]]]] = {}
    premium_of = premiums or {}
    for seller, grants in out.items():
        standing = offers[seller]
        for i, (b, g) in enumerate(grants):
            if g > 0:
                premium = premium_of.get(b, 0) if standing["clean"] else 0
                levels.setdefault(b, {}).setdefault(int(standing["price"]) - premium, []).append((seller, i))
    rationed = {seller: list(grants) for seller, grants in out.items()}
    room = dict(limits)
    for b, by_price in levels.items():
        for price in sorted(by_price):
            served = by_price[price]
            total = sum(out[s][i][1] for s, i in served)
            for s, i in served:
                kept = out[s][i][1] if total <= room[b] else out[s][i][1] * room[b] // total
                out[s][i] = (b, kept)
            room[b] = room[b] - total if total <= room[b] else 0
    _hand_on(out, rationed, demands, room)
    return out


def _hand_on(
    out: dict[K, list[tuple[K, int]]],
    rationed: Mapping[K, list[tuple[K, int]]],
    demands: Mapping[K, list[tuple[K, int]]],
    room: Mapping[K, int],
) -> None:
    """What the cut took at a seller goes, once, to its buyers that it rationed and that have room left
    (none was cut), pro rata to what each may still take there: a buyer's room is split over the sellers
    that freed energy in proportion to its unmet demand at each, so it never passes its limit. Otherwise a
    capped buyer asking a rationed seller for more than it keeps would take energy from the others only to
    leave it unsold. One pass; no name or key decides anything; nothing is cut, nothing moves."""
    freed = {
        seller: sum(g for _, g in rationed[seller]) - sum(g for _, g in grants)
        for seller, grants in out.items()
    }
    unmet: dict[K, dict[K, int]] = {}  # buyer -> seller that freed energy -> demand it did not grant
    for seller, grants in out.items():
        if freed[seller] > 0:
            for (b, g), (_, q) in zip(grants, demands[seller], strict=True):
                if q > g and room[b] > 0:
                    unmet.setdefault(b, {})[seller] = q - g
    for seller, grants in out.items():
        if freed[seller] <= 0:
            continue
        may = [
            min(unmet[b][seller], room[b] * unmet[b][seller] // sum(unmet[b].values()))
            if seller in unmet.get(b, {})
            else 0
            for b, _ in grants
        ]
        total = sum(may)
        extra = [m if total <= freed[seller] else m * freed[seller] // total for m in may]
        out[seller] = [(b, g + e) for (b, g), e in zip(grants, extra, strict=True)]
