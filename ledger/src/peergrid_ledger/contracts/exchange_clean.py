"""The exchange contract's clean book, and the rules each day-ahead position and forward trade obeys per book.

A session opened with `clean_prices` (a clean session) trades two products per interval: general energy at
λᴳ_t (`prices`, as every session) and clean energy at λᶜ_t (`clean_prices`). Each member's answer is two
positions per interval, g_t (`positions`) and c_t (`clean_positions`, + a clean sale, − a clean purchase),
whole Wh; its physical net export is g_t + c_t. Why: clean-only buyers refuse grey energy, so on a day with
one they got no day-ahead position at all (M4, docs/market.md "Rules days").
Promises:
  - A session opened without `clean_prices` is untouched by anything here: its records, events and state
    roots are the bytes they were before the clean book (tests/ledger/test_exchange_clean_compat.py pins
    them), and `clean_positions` or a position's `clean` on it is refused `invalid`.
  - `exchange.open` with `clean_prices` (one per interval, the bounds of `prices`): the session record says
    `clean: true`, the clean prices and the iteration's running clean sums live under their own keys
    (`exchange_state.clean_prices_key`, `clean_sums_key`).
  - `exchange.position` on a clean session requires `clean_positions` (so that a step never guesses) and
    takes an optional `clean` (false when absent): the member's declaration that it sells clean energy,
    fixed by its first post. Per interval (`check_positions`): c_t > 0 only for a declared clean seller, and
    then g_t ≥ 0 in the same post (a clean sale only where it buys no general energy: the exact side rule,
    checkable from the public positions); c_t < 0 only for a member whose owner rules for that chain
    interval say `clean_only` (which never buys general energy, g_t ≥ 0, as on every session), and then
    g_t = 0 (a clean purchase is never resold as general in its interval: M5); |g_t + c_t| ≤ `max_quantity`.
  - `exchange.step` moves both price lists with the one ρ (`next_prices` on each book's sums; the
    coordinator balances ρ over both books' residuals); its event and `exchange.close`'s add
    `clean_prices`. Verdicts (`settled`) and judgements (`judged`) stay on the general book.
  - `exchange.accept` on a clean session requires `clean_positions`: each of the sign of the member's final
    stepped clean position and no larger (and, in a later round, of its round-k clean accept), and at the
    clean closing price on the market tick p_t = `micro_per_wh(λᶜ_t)` (`check_accept`): a clean sale needs
    the accept's `clean` true, g_t ≥ 0 and p_t ≥ its floor; a clean purchase needs `clean_only`, g_t = 0
    (as in the post), p_t ≥ 0 and p_t ≤ its cap + clean premium (`market_state.buyer_limit`, as a
    clean-only bid is judged on a clean offer); |g_t + c_t| ≤ `max_quantity` (exchange_clearing checks the
    general half as before).
  - `exchange.clear` (`clear_interval`): per interval the clean book first — `pairing.forward_trades` of the
    accepted clean sales and purchases at the clean closing price, recorded with `clean: true` (and `clean`
    in their `trade` events) — then the general book as before (`clean` the seller's accept's). Both books'
    trades go into the one interval record. A pair meets in one book only: a clean buyer is clean-only and
    never buys general energy, so `trade_id(interval, seller, buyer)` stays unique; a pair in both books is
    refused (`invalid`), which the accepts' rules leave impossible. MAX_DEMANDS counts per book, and a clean
    session counts two cells per member and interval towards MAX_CLEAR_CELLS.
"Clean" stays self-declared by the member, as `offer`'s and `exchange.accept`'s flag: nothing on the chain
backs it with DER data yet. Pure; no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..machine import require
from ..results import Event, Reason, RuleError
from ..state import Overlay, read_obj
from .exchange_state import MAX_PRICE, clean_prices_key, clean_sums_key, next_prices
from .market_state import (
    MAX_DEMANDS,
    buyer_limit,
    closed,
    interval_key,
    members,
    reopen_key,
    rules_for,
    trade_id,
    trade_key,
)
from .pairing import forward_trades


def trading(accept: dict[str, Any]) -> bool:
    """Whether an accept (`accepted`'s, or a record as written) trades anything, in either book: all zeros in
    both is a decline."""
    return any(accept["positions"]) or any(accept.get("clean_positions", ()))


def within(q: int, reference: int, where: str, what: str, note: str = "") -> None:
    """`q` 0, or of the sign of `reference` and no larger: the reduce-only rule of an accept against the
    final stepped position and of a re-accept against its round before (`what` names it)."""
    if (q > 0 and reference <= 0) or (q < 0 and reference >= 0):
        raise RuleError(Reason.RULE_VIOLATION, f"{where}: not of the sign of its {what} {reference}")
    if abs(q) > abs(reference):
        raise RuleError(Reason.RULE_VIOLATION, f"{where}: larger than its {what} {reference}{note}")


def is_clean(record: dict[str, Any]) -> bool:
    """Whether the session (its `xch/sess/` record) was opened with `clean_prices`."""
    return bool(record.get("clean"))


def check_prices(prices: Sequence[int], book: str = "") -> None:
    """Each price within ±MAX_PRICE (a step that would leave them is refused, nothing changes)."""
    for t, price in enumerate(prices):
        if abs(price) > MAX_PRICE:
            raise RuleError(
                Reason.RULE_VIOLATION, f"{book}price {price} in interval {t} beyond ±{MAX_PRICE} nano per kWh"
            )


def open_book(view: Overlay, name: str, body: dict[str, Any], intervals: int) -> dict[str, Any]:
    """`exchange.open`'s clean book: with `clean_prices` its prices and zero sums written and `{clean: true}`
    for the session record; without, nothing (today's bytes)."""
    clean_prices = body.get("clean_prices")
    if clean_prices is None:
        return {}
    require(
        len(clean_prices) == intervals,
        Reason.INVALID,
        f"{len(clean_prices)} clean prices, the session has {intervals} intervals (one per price)",
    )
    view.put_obj(clean_prices_key(name), clean_prices)
    view.put_obj(clean_sums_key(name), [0] * intervals)
    return {"clean": True}


def book_of(record: dict[str, Any], body: dict[str, Any], what: str) -> list[int] | None:
    """The body's `clean_positions` on a clean session, where they are required, one per interval; None on
    any other session, where they are refused (`invalid`)."""
    cleans: list[int] | None = body.get("clean_positions")
    if not is_clean(record):
        require(
            cleans is None,
            Reason.INVALID,
            f"{what}: clean_positions on a session opened without clean_prices (it has no clean book)",
        )
        return None
    require(
        cleans is not None,
        Reason.INVALID,
        f"{what}: a clean session needs clean_positions (Wh per interval; all zeros trade no clean energy)",
    )
    assert cleans is not None
    require(
        len(cleans) == record["intervals"],
        Reason.INVALID,
        f"{len(cleans)} clean positions, the session has {record['intervals']} intervals",
    )
    return cleans


def post_fields(record: dict[str, Any], last: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """What a post adds to the member's post record on a clean session, `{clean, clean_positions}`, checked
    (the declaration `clean` fixed by the member's first post); nothing on any other session."""
    cleans = book_of(record, body, "exchange.position")
    if cleans is None:
        require(
            "clean" not in body,
            Reason.INVALID,
            "exchange.position: clean (a clean seller's declaration) on a session opened without clean_prices",
        )
        return {}
    seller: bool = body.get("clean", False)
    if last["iteration"] >= 0:
        declared = last["clean"]
        require(
            seller == declared,
            Reason.RULE_VIOLATION,
            f"clean {seller}: the member's first post declared {declared}, fixed for the session",
        )
    return {"clean": seller, "clean_positions": cleans}


def check_positions(
    view: Overlay,
    member: bytes,
    first: int,
    positions: Sequence[int],
    cleans: Sequence[int] | None = None,
    seller: bool = False,
) -> None:
    """Each interval's positions within the member's owner rules for its chain interval (`rules_for`) and,
    on a clean session (`cleans`), the clean book's rules (the module contract; `seller`: declared)."""
    for t, g in enumerate(positions):
        c = 0 if cleans is None else cleans[t]
        interval = first + t
        rules = rules_for(view, member, interval)
        if abs(g + c) > rules["max_quantity"]:
            what = f"position {g} Wh" if not c else f"net position {g} + clean {c} Wh"
            raise RuleError(
                Reason.RULE_VIOLATION,
                f"{what} in interval {interval} beyond the maximum {rules['max_quantity']}",
            )
        if g < 0 and rules["clean_only"]:
            raise RuleError(
                Reason.RULE_VIOLATION,
                f"position {g} Wh in interval {interval}: a clean-only member never buys",
            )
        where = f"clean position {c} Wh in interval {interval}"
        if c > 0 and not seller:
            raise RuleError(
                Reason.RULE_VIOLATION,
                f"{where}: only a member that declared itself a clean seller (`clean` true in its first "
                "post of the session) sells clean energy",
            )
        if c > 0 and g < 0:
            raise RuleError(
                Reason.RULE_VIOLATION, f"{where}: a clean sale where the member buys general energy ({g} Wh)"
            )
        if c < 0 and not rules["clean_only"]:
            raise RuleError(Reason.RULE_VIOLATION, f"{where}: only a clean-only member buys clean energy")
        if c < 0 and g != 0:
            raise RuleError(Reason.RULE_VIOLATION, resold(where, g))


def resold(where: str, g: int) -> str:
    """Why a clean purchase with a general position g ≠ 0 in its interval is refused (post and accept alike):
    with g > 0 it is a clean purchase resold as general (M5: one such buyer took seed 1 from 0.9997 allocated
    to 0.811 committed); g < 0 a clean-only member never posts. The honest answer is its net alone."""
    return (
        f"{where}: a clean purchase where the member also trades general energy ({g} Wh): a clean-only "
        "buyer posts its net, c < 0 with g = 0 (a clean purchase is never resold as general)"
    )


def add_sums(view: Overlay, name: str, fields: dict[str, Any]) -> None:
    """A post's clean positions into the iteration's running clean sums (nothing off a clean session)."""
    if fields:
        sums = read_obj(view, clean_sums_key(name))
        view.put_obj(
            clean_sums_key(name), [s + c for s, c in zip(sums, fields["clean_positions"], strict=True)]
        )


def step_book(view: Overlay, name: str, record: dict[str, Any], rho: int) -> dict[str, Any]:
    """`exchange.step`'s clean book: from iteration 1 on its prices `next_prices` with the step's ρ (the
    current one, as the general book's), the sums reset; `{clean_prices}` for the event. Nothing off a clean
    session."""
    if not is_clean(record):
        return {}
    prices = list(read_obj(view, clean_prices_key(name)))
    if record["iteration"] > 0:
        sums = read_obj(view, clean_sums_key(name))
        prices = list(next_prices(prices, sums, record["size"], rho))
        check_prices(prices, "clean ")
        view.put_obj(clean_prices_key(name), prices)
    view.put_obj(clean_sums_key(name), [0] * record["intervals"])
    return {"clean_prices": prices}


def closing_prices(view: Overlay, name: str, record: dict[str, Any]) -> dict[str, Any]:
    """`{clean_prices}` (the clean closing prices) for `exchange.close`'s event; nothing off a clean session."""
    return {"clean_prices": read_obj(view, clean_prices_key(name))} if is_clean(record) else {}


def check_accept(
    view: Overlay, member: bytes, interval: int, g: int, c: int, final: int, price: int, clean: bool
) -> None:
    """One nonzero accepted clean position c (its general position g, its final stepped clean position
    `final`) at the clean closing price `price` on the market tick: the module contract's rules."""
    where = f"clean position {c} Wh in interval {interval}"
    within(c, final, where, "final stepped clean position")
    rules = rules_for(view, member, interval)
    if c > 0:
        if not clean:
            raise RuleError(Reason.RULE_VIOLATION, f"{where}: a clean sale needs the accept's clean true")
        if g < 0:
            raise RuleError(
                Reason.RULE_VIOLATION, f"{where}: a clean sale where the member buys general energy ({g} Wh)"
            )
        if price < rules["floor_price"]:
            raise RuleError(
                Reason.RULE_VIOLATION, f"{where}: a sale at {price} below the floor {rules['floor_price']}"
            )
        return
    if not rules["clean_only"]:
        raise RuleError(Reason.RULE_VIOLATION, f"{where}: only a clean-only member buys clean energy")
    if g != 0:
        raise RuleError(Reason.RULE_VIOLATION, resold(where, g))
    if price < 0:
        raise RuleError(Reason.RULE_VIOLATION, f"{where}: the market contract has no price {price} < 0")
    limit = buyer_limit(rules, True)
    if price > limit:
        raise RuleError(
            Reason.RULE_VIOLATION,
            f"{where}: a purchase at {price} above the cap {rules['cap_price']} + clean premium "
            f"{rules['clean_premium']}",
        )


# ---------------------------------------------------------------------------------------------- the clear


def held(view: Overlay, interval: int) -> tuple[str, str] | None:
    """What the market contract holds in `interval` (`closed`, `positions` or `reopened`, and why in words),
    or None when it holds nothing there: no closing, no positions, no reopening."""
    if closed(view, interval):
        return "closed", f"interval {interval} is already closed in the market contract"
    if members(view, interval, "sellers") or members(view, interval, "buyers"):
        return "positions", f"interval {interval} has open positions in the market contract"
    if view.get(reopen_key(interval)) is not None:
        return "reopened", f"interval {interval} was reopened in the market contract"
    return None


Book = tuple[bool, int, list[tuple[bytes, bytes, int]]]  # (the clean book?, price on the tick, its trades)


def book_trades(taken: dict[bytes, dict[str, Any]], t: int, field: str) -> list[tuple[bytes, bytes, int]]:
    """One book's trades of session interval t from the accepts `taken` (`field`: `positions` or
    `clean_positions`)."""
    sells = {m: a[field][t] for m, a in taken.items() if a[field][t] > 0}
    buys = {m: -a[field][t] for m, a in taken.items() if a[field][t] < 0}
    return forward_trades(sells, buys, MAX_DEMANDS)


def one_book_per_pair(interval: int, books: Sequence[Book]) -> None:
    """Refuse (`invalid`) a seller–buyer pair that would trade in two books of one interval: its trade id
    would be taken twice. The accepts' rules leave it impossible (a clean buyer buys no general energy)."""
    seen: set[tuple[bytes, bytes]] = set()
    for _, _, trades in books:
        for seller, buyer, _ in trades:
            require(
                (seller, buyer) not in seen,
                Reason.INVALID,
                f"interval {interval}: {seller.hex()[:16]}… and {buyer.hex()[:16]}… would trade in both "
                "books (one trade id per pair and interval)",
            )
            seen.add((seller, buyer))


def clear_interval(
    view: Overlay,
    name: str,
    interval: int,
    prices: tuple[int, int | None],
    taken: dict[bytes, dict[str, Any]],
    t: int,
) -> tuple[list[Event], dict[str, Any] | None]:
    """Session interval t (chain `interval`) at `prices` (general, clean; clean None off a clean session):
    both books' trades recorded as the market contract's and their events, the clean book first, or the
    skip that names what the market holds there; nothing when no accepted position pairs in either."""
    price, clean_price = prices
    books: list[Book] = []
    if clean_price is not None:
        books.append((True, clean_price, book_trades(taken, t, "clean_positions")))
    books.append((False, price, book_trades(taken, t, "positions")))
    if not any(trades for _, _, trades in books):
        return [], None
    holding = held(view, interval)
    if holding is not None:  # the market trades it (or traded it): it stays the market's, as it stands
        return [], {"interval": interval, "held": holding[0]}
    one_book_per_pair(interval, books)
    events: list[Event] = []
    ids = []
    for clean_book, at, trades in books:
        for seller, buyer, quantity in trades:
            tid = trade_id(interval, seller, buyer)
            agreed = {
                "buyer": buyer,
                "clean": clean_book or taken[seller]["clean"],
                "interval": interval,
                "price": at,
                "quantity": quantity,
                "seller": seller,
                "settlement": None,
            }
            view.put_obj(trade_key(tid), agreed)
            ids.append(tid)
            event = {"id": tid, "interval": interval, "seller": seller, "buyer": buyer, "price": at}
            # `clean` only on a clean-book trade: the general book's events keep their bytes
            events.append(
                ("trade", {**event, "quantity": quantity, **({"clean": True} if clean_book else {})})
            )
    view.put_obj(interval_key(interval), {"closed": True, "session": name, "trades": ids})
    return events, None
