"""One MGMC's forward accept of a clean session (both books: forward_agent.py on a session opened with
`clean_prices`, controller forward.py's `commit` and `clear` over `matching.book_accepts`).

Promises: on a clean session an accept is 2n Wh, the general book's n then the clean book's n, posted as
`positions` and `clean_positions` (`accept_body`; a session without a clean book: today's body, byte for
byte). Round 1 (`accept_books`) is `commit`'s round 1 for this MG: its whole final stepped position in both
books, cut to what its rules allow at each book's closing price (`book_accepts` of the MG alone: a clean sale
within its floor and maximum, a clean purchase only by a clean-only MG within its cap + premium), with its own
exact check of that accept traded in full at both prices (its day cost, the session's exchange fee on
those Wh included where it has one; `forward_accept`'s check). Its
re-checks in the accept rounds are `forward.recheck` over both books (`standing_books`: every member's
general and clean accepts as the round left them, `closing_books`: both closing price lists), whose reductions
cut each book within its previous accept (reduce-only per book, as the contract requires). Public data and
this MG's own model only. Pure: reads the replica's state it is given, solves only this MG's own MILPs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from peergrid_controller.baselines import conventional as conventional_costs
from peergrid_controller.dayahead import Allocation
from peergrid_controller.dayexchange import NANO
from peergrid_controller.exchange_fee import by_interval
from peergrid_controller.forward import Acceptance
from peergrid_controller.forward_accept import _judge
from peergrid_controller.matching import book_accepts, closing_price
from peergrid_controller.model import Microgrid, Scenario
from peergrid_controller.uplift import MICRO
from peergrid_edge.dayahead_clean import session_prices
from peergrid_ledger.contracts.exchange_clearing import accepts_at
from peergrid_ledger.contracts.exchange_rounds import clean_accepts_at


def closing_books(record: Mapping[str, Any]) -> list[float]:
    """The session's closing prices, currency per kWh (exact to the nano): general, then clean on a clean
    session (`matching.book_prices`)."""
    return [p / NANO for p in session_prices(record)]


def accept_books(
    mg: Microgrid, dt: float, prices: Sequence[float], positions_kwh: Sequence[float], fee: int = 0
) -> Acceptance:
    """This MG's round-1 accept of a clean session: `prices` both books' closing λ (2n), `positions_kwh` its
    final stepped positions in both books (2n, kWh, zeros outside its window); the whole of it as its rules
    allow (`book_accepts`), and its day cost with that traded in full (each book at its own price on the
    tick, its dispatch with x = g + c fixed). Every MG accepts its whole position first, as in `commit`: a
    part that does not pay is cut in the re-check rounds (`forward.recheck`), which see the clear's cut."""
    n = len(prices) // 2
    alone = Scenario(mg.name, dt, (mg,))
    conventional = conventional_costs(alone).per_interval[mg.name]
    budget = sum(conventional)
    allocation = Allocation(
        tuple(prices[:n]), {mg.name: tuple(positions_kwh[:n])}, 0, 0.0, 0.0, True, 0, 0,
        clean_prices=tuple(prices[n:]), clean_positions={mg.name: tuple(positions_kwh[n:])},
    )  # fmt: skip
    row = book_accepts(alone, allocation)[mg.name]
    if not any(row):
        return Acceptance(row, "nothing", budget, budget, 0)
    kwh = [(row[t] + row[n + t]) / 1000 for t in range(n)]
    money = [
        (row[t] * closing_price(prices[t]) + row[n + t] * closing_price(prices[n + t])) / 1e6
        for t in range(n)
    ]
    # the exchange fee on the Wh it accepts in both books, as the chain collects it (`exchange_fee.by_interval`)
    due = by_interval(fee, [abs(row[t]) + abs(row[n + t]) for t in range(n)])
    money = [m - part / MICRO for m, part in zip(money, due, strict=True)]
    day, _ = _judge(mg, dt, kwh, money, conventional)
    cost = budget if day is None else day.cost - sum(money)
    return Acceptance(row, "whole", cost, budget, 0 if day is None else 1)


def standing_books(state: Any, session: str, k: int) -> dict[bytes, list[int]] | None:
    """Every member's accept in both books as round k left them (`accepts_at`, `clean_accepts_at`), by
    member key: general then clean. None as `accepts_at` (the chain is past round k + 1 for someone)."""
    general = accepts_at(state, session, k)
    clean = clean_accepts_at(state, session, k)
    if general is None or clean is None:
        return None
    return {member: [*row, *clean[member]] for member, row in general.items()}


def accept_body(session: str, row: Sequence[int], clean: bool, books: bool) -> dict[str, Any]:
    """`exchange.accept`'s body: `row` the accept (both books' 2n when `books`: a clean session, else n),
    `clean` the seller's flag."""
    if not books:
        return {"session": session, "positions": list(row), "clean": clean}
    n = len(row) // 2
    return {"session": session, "positions": list(row[:n]), "clean": clean, "clean_positions": list(row[n:])}
