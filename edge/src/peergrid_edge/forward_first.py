"""One MGMC's first forward accept (round 1) of a closed day-ahead session: what it accepts alone.

Promises: `first_accept` is what this MG accepts after a completed session (`forward_agent.ForwardAgent`
posts it): its final stepped position (`exchange.stepped`, public) within `window` (the chain intervals this
MGMC will trade; outside it zeros), checked with its own day MILP against its conventional day at the
session's closing prices (`forward.accept_alone`: the whole position if it pays, else the largest part that
does, else zeros; a clean session both books, `forward_clean.accept_books`), cut first to the connection
capacity the DSO posted for `key` (`connection.within_capacity`: the chain refuses an accept above it); while it owes more than the chain
lets a buyer owe, its sales alone (`debts.owed_on`: the chain refuses a debtor's first accept with a
purchase). With an exchange fee (the session record's `fee`, `market_fee.session_fee`) the check is net of it:
the fee the chain collects on the Wh it accepts (ceil(fee × Wh / 10⁶) micro-units) is part of its day's cost,
so it never accepts a day worse than its conventional one after the fee (individual rationality, exact), and
a part it keeps is found at p − fee for a sale, p + fee for a purchase. Reads only public chain state and this MG's own model; posts nothing. `SessionFailed` when this
MGMC is no member of the session. `stated_window` (`with_window`: on the accept's body) is the trading window its first accept states on the chain
(`exchange.accept`'s `window`: `window` clipped to the session, [first, last]), over which the chain bounds its
make-whole gain (`uplift.gain_bound`) and its claim deviates (`dayahead_uplift.claim_for`): the accept above
is zeros outside it, so the chain takes it. `above_capacity` reads a decided accept against the capacity
standing now (the chain's rule, `connection.first_above`): one the DSO posted while the MG decided, or ahead of
its accept in the chain's order (`ForwardAgent._accept` then decides once more, cut to it).
"""

from __future__ import annotations

import logging
from typing import Any

from peergrid_controller.forward import Acceptance, accept_alone
from peergrid_controller.model import Microgrid
from peergrid_edge import debts
from peergrid_edge.connection import capacity_row, first_above, within_capacity
from peergrid_edge.dayahead_clean import post_positions
from peergrid_edge.exchange_io import ROLE, Replica, SessionFailed
from peergrid_edge.forward_clean import accept_books, closing_books
from peergrid_ledger.contracts import exchange
from peergrid_ledger.contracts.market_fee import session_fee

log = logging.getLogger("peergrid.edge.forward")


def stated_window(window: range | None, record: dict[str, Any]) -> list[int] | None:
    """[first, last]: the chain intervals of `window` inside the session `record` describes, or None where
    there is nothing to state (no window: the whole session; or none of the session's intervals in it, where
    this MG accepts only zeros and the chain has no empty window)."""
    if window is None:
        return None
    first = int(record["first_interval"])
    inside = range(max(first, window.start), min(first + int(record["intervals"]), window.stop))
    return [inside[0], inside[-1]] if inside else None


def with_window(body: dict[str, Any], window: range | None, record: dict[str, Any]) -> dict[str, Any]:
    """A first `exchange.accept` body stating `window` (`stated_window`) where there is one to state."""
    stated = stated_window(window, record)
    return body if stated is None else {**body, "window": stated}


def first_accept(
    ledger: Replica,
    key: bytes,
    mg: Microgrid,
    interval_hours: float,
    session: str,
    window: range | None,
    record: dict[str, Any],
) -> Acceptance:
    """What the MG with trading key `key` accepts of closed `session` (`record`: the chain's session record)
    as its round 1 (module docstring); `window` None: all of the session's intervals."""
    final = exchange.stepped(ledger.state(ROLE), session, key)
    if final is None:
        raise SessionFailed(f"this MGMC is not a member of session {session!r}")
    n, first = record["intervals"], record["first_interval"]
    books = 2 if record.get("clean") else 1  # a clean session: both books, general then clean
    stepped = post_positions(final) or [0] * n * books
    # within the connection capacity the DSO posted for the key: the chain refuses an accept above it, and an
    # exchange post fixes no capacity (one posted during the session stands for the accept); cut toward zero,
    # so the accept stays reduce-only against the final position
    held = within_capacity(stepped, capacity_row(ledger.state(ROLE), key, first, n))
    if held != tuple(stepped):
        log.warning("forward trades of %s: the final position is above this MG's connection capacity "
                    "(market.capacity): it accepts within it", session)  # fmt: skip
        stepped = list(held)
    inside = [window is None or first + t % n in window for t in range(n * books)]
    kwh = [q / 1000 if keep else 0.0 for q, keep in zip(stepped, inside, strict=True)]
    if min(kwh) < 0 and (owed := debts.owed_on(ledger, key)):
        log.warning("forward trades of %s: this MG owes %d micro-units and may not buy: it accepts its "
                    "sales alone", session, owed)  # fmt: skip
        kwh = list(debts.sales_only(kwh))
    fee = session_fee(record)  # its day is checked with the exchange fee the chain collects (0: none)
    if books == 2:
        return accept_books(mg, interval_hours, closing_books(record), kwh, fee)
    return accept_alone(mg, interval_hours, closing_books(record), kwh, fee=fee)


def above_capacity(
    ledger: Replica, key: bytes, record: dict[str, Any], positions: tuple[int, ...], refused: str = ""
) -> bool:
    """Whether `positions` (an accept of the session `record` describes, one book or both) is above the capacity
    standing for `key` on the replica now (`connection.first_above`, the chain's rule). `refused`: the session
    whose accept of `positions` the chain refused; where it is above, one warning names its first interval's
    net and the capacity (it accepts once more within it)."""
    first = record["first_interval"]
    above = first_above(positions, capacity_row(ledger.state(ROLE), key, first, record["intervals"]))
    if above is not None and refused:
        t, net, cap = above
        log.warning("forward trades of %s: its accept (net %d Wh in chain interval %d) was refused above the "
                    "connection capacity of %d Wh the DSO posted meanwhile: it accepts once more within it",
                    refused, net, first + t, cap)  # fmt: skip
    return above is not None
