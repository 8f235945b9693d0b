"""Forward trades from a day-ahead allocation: matched, checked for individual rationality, put on the chain.

Promises:
- `match(scenario, allocation)` (matching.py) turns the ADMM positions into balanced bilateral trades per
  interval at the interval's closing price on the chain's tick, within each MG's position and owner's rules,
  with the ledger's own arithmetic (the exchange contract's `exchange.clear` runs the same function).
- `commit(scenario, allocation, conventional, reductions)` checks, for every MG with trades, exactly and ex
  ante, with its own day MILP over the day with its trades fixed, that its day cost (its payments at λ_t
  included) is no more than its conventional day cost. An MG that fails takes, for up to `reductions`
  rounds, the largest part of its trades that passes (or declines when none does), and after that declines;
  the rest are matched again and re-checked until every MG that trades passes. It is rounds of `recheck`,
  every MG at once, from every MG accepting its whole position: the rule the exchange contract's accept
  rounds let each MGMC apply alone on the chain (one rule, not two; byte-identical to the loop before). A
  declined MG trades nothing day-ahead, and `commit` raises `ForwardError` rather than return a commitment
  where a declined MG trades or any MG's day costs more than its conventional one. The same MILPs are the MGs' dispatch (the trades are
  binding: each MG plans its day knowing them), so the strict guarantee holds ex post in the simulation,
  which has no forecast error.
  What it guarantees when a counterparty does not deliver: nothing beyond the contract's settlement rule
  (`settle` pays for the energy delivered, at most the agreed quantity): the MG that is left short buys the
  gap from the DSO at retail (or sells its surplus at feed-in) and may end worse off than conventional by
  that difference. delivery.py plays such faults (`SimulationConfig.delivery_faults`) and measures it.
- `Commitment.accepted` is each MG's accepted position per interval (whole Wh, zeros for a declined MG):
  what the final `match` was computed from.
- `clear(clearing, scenario, commitment, clean)` (a venue whose exchange clears on the chain: the MGMC
  chain's exchange contract) has each MG post its accepted positions (`exchange.accept`, in scenario order),
  the coordinator clear, and returns the trades the contract computed; `ForwardError` if it refuses an
  accept or the clear, or if its trades differ from the commitment's in any pair, Wh or price.
- `recheck`, `accept_alone` and `dispatch` (forward_accept.py): one MG's re-check of the clear's cut of
  every member's accept, its accept from its own data alone, and its day MILP with its trades fixed.
- `post(venue, commitment, clean)` (a venue without such an exchange: the memory venue) records every
  interval's forward trades through the market contract (offers at λ_t, bids naming the matched sellers, one
  round, closed) and raises `ForwardError` if the contract refuses a move or agrees different trades (pairs,
  whole Wh or price on the chain's tick).
- `deviation_gains` and `own_rule_fees` (deviation.py): the commitment's stability check, each MG deviating alone
  at the final prices, with or without make-whole payments. They, `match`, `provisional`, `net_by_interval`
  and forward_accept.py's names stay importable from here.
Deterministic. Never reads clocks or I/O beyond the venue `post` is given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import count
from typing import Protocol, TypeGuard, runtime_checkable

from peergrid_controller.bargaining import Venue
from peergrid_controller.baselines import BaselineCosts
from peergrid_controller.chain_venue import key_for
from peergrid_controller.dayahead import Allocation
from peergrid_controller.deviation import deviation_gains, own_rule_fees
from peergrid_controller.forward_accept import (
    Acceptance,
    Dispatch,
    Recheck,
    _ceiling,
    _judge,
    accept_alone,
    dispatch,
    recheck,
)
from peergrid_controller.market import Accepted, Bid, Offer, Rejected, Trade, Verdict, micro_per_wh, wh
from peergrid_controller.matching import (
    book_accepts,
    book_prices,
    closing_price,
    fold,
    match,
    net_by_interval,
    pair,
    provisional,
)
from peergrid_controller.model import Scenario

__all__ = [
    "Acceptance",
    "Commitment",
    "Dispatch",
    "ForwardClearing",
    "ForwardError",
    "Recheck",
    "accept_alone",
    "clear",
    "commit",
    "deviation_gains",
    "dispatch",
    "match",
    "net_by_interval",
    "own_rule_fees",
    "post",
    "provisional",
    "recheck",
]

_pair = pair  # its name here before matching.py (the tests pair through it)


class ForwardError(RuntimeError):
    """The market contract refused a forward move or agreed other trades than matched, or a commitment broke
    its own promise (a declined MG trading, an MG above its conventional cost): never ignored."""


@dataclass(frozen=True)
class Commitment:
    prices: tuple[float, ...]  # on the chain's tick
    trades: tuple[tuple[Trade, ...], ...]  # per interval
    declined: tuple[str, ...]  # MGs whose exact check failed for good (they trade nothing day-ahead)
    physical_cost: dict[str, tuple[float, ...]]  # per MG and interval, dispatched with its trades fixed
    payments: dict[str, tuple[float, ...]]  # per MG and interval: money received minus paid
    day_cost: dict[str, float]  # physical minus payments, the day's
    checks: int  # MILPs solved for the checks
    # per trading MG and interval: kWh (imported, exported) with the DSO in its dispatch (delivery.py
    # covers a counterparty's shortfall there)
    dso_kwh: dict[str, tuple[tuple[float, float], ...]] = field(default_factory=dict)
    # per MG and interval: its accepted position in whole Wh (+ sale), zeros for a declined MG: what the
    # trades were matched from, and what it accepts on the chain (`clear`)
    accepted: dict[str, tuple[int, ...]] = field(default_factory=dict)
    # a clean session's clean book (cleanbook.py; empty otherwise): λᶜ_t on the chain's tick, and per interval
    # which of `trades` are clean (at λᶜ_t; the others at `prices`); `accepted` then holds both books' rows
    clean_prices: tuple[float, ...] = ()
    clean_trades: tuple[tuple[Trade, ...], ...] = ()
    # the session's exchange fee (exchange_fee.py: nano per kWh per side), in `payments` and `day_cost`, and
    # in every MG's deviation (deviation.py); 0: none
    fee: int = 0


@runtime_checkable
class ForwardClearing(Protocol):
    """A venue's exchange that computes the forward trades itself (chain_venue.ChainExchange: the exchange
    contract's `exchange.accept` and `exchange.clear` on the session the allocation closed)."""

    def ready(self) -> bool:
        """Whether a closed session awaits its clear (none: the allocation was not recorded here)."""
        ...

    def accept(self, name: str, positions_wh: Sequence[int], clean: bool) -> Verdict: ...

    def clear(self) -> tuple[tuple[Trade, ...], ...] | Rejected: ...


class CleanClearing(ForwardClearing, Protocol):
    """A clearing that keeps a clean book (dayexchange.keeps_clean: `clean_book`): on a clean session each
    MG's accept carries its clean book's positions too."""

    clean_book: bool

    def accept(
        self,
        name: str,
        positions_wh: Sequence[int],
        clean: bool,
        clean_positions: Sequence[int] | None = None,
    ) -> Verdict: ...


def clears_clean(clearing: ForwardClearing) -> TypeGuard[CleanClearing]:
    """Whether `clearing` keeps a clean book (says so with `clean_book = True`, as a recorder does)."""
    return getattr(clearing, "clean_book", False) is True


@dataclass(frozen=True)
class _Checked:
    physical: dict[str, tuple[float, ...]]
    payments: dict[str, tuple[float, ...]]
    refused: dict[str, list[float]]  # MGs above their ceiling, with their kWh per interval
    checks: int  # MILPs solved
    dso_kwh: dict[str, tuple[tuple[float, float], ...]]


def _check(
    scenario: Scenario, trades: tuple[tuple[Trade, ...], ...], conventional: BaselineCosts
) -> _Checked:
    """Each MG's day with its trades fixed (`_judge`): physical cost, payments and DSO exchange per
    interval, the MGs above their ceiling, and how many MILPs that took."""
    n, dt = scenario.intervals, scenario.interval_hours
    physical: dict[str, tuple[float, ...]] = {}
    payments: dict[str, tuple[float, ...]] = {}
    refused: dict[str, list[float]] = {}
    dso: dict[str, tuple[tuple[float, float], ...]] = {}
    for mg in scenario.microgrids:
        kwh, money = net_by_interval(trades, mg.name)
        day, passes = _judge(mg, dt, kwh, money, conventional.per_interval[mg.name])
        if day is None:
            physical[mg.name] = conventional.per_interval[mg.name]
            payments[mg.name] = tuple(0.0 for _ in range(n))
            continue
        if not passes:
            refused[mg.name] = kwh
        physical[mg.name], payments[mg.name], dso[mg.name] = day.physical, tuple(money), day.dso_kwh
    return _Checked(physical, payments, refused, len(dso), dso)


def _verify(commitment: Commitment, conventional: BaselineCosts) -> None:
    """Raise ForwardError unless no declined MG trades and every MG's day cost is within its ceiling: what
    `commit` promises, checked on what it returns rather than trusted to its loop."""
    trading = {name for day in commitment.trades for tr in day for name in (tr.seller, tr.buyer)}
    still = sorted(trading & set(commitment.declined))
    if still:
        raise ForwardError(f"{still[0]} declined but still trades day-ahead")
    for name, cost in sorted(commitment.day_cost.items()):
        if cost > _ceiling(conventional.per_interval[name]):
            raise ForwardError(
                f"{name}'s day would cost {cost:.6f}, above its conventional {sum(conventional.per_interval[name]):.6f}"
            )


def commit(
    scenario: Scenario,
    allocation: Allocation,
    conventional: BaselineCosts,
    reductions: int = 4,
    fee: int = 0,
) -> Commitment:
    """Rounds of `recheck`, every MG at once, from every MG accepting its whole position (`accepted_wh`):
    each round every MG re-checks the clear of the round before; the rounds end when every MG passed, i.e.
    no accept changed (the chain's settled round); an MG that fails after `reductions` rounds declines.
    `fee`: the session's exchange fee (nano per kWh per side), in each MG's check and payments."""
    n, dt = scenario.intervals, scenario.interval_hours
    keys = {mg.name: key_for(scenario.name, mg.name).public for mg in scenario.microgrids}
    accepts = book_accepts(scenario, allocation)
    prices = book_prices(allocation)
    declined: list[str] = []
    checks = 0
    for round_ in count(1):
        rechecked = {
            mg.name: recheck(
                mg,
                dt,
                prices,
                accepts,
                mg.name,
                conventional.per_interval[mg.name],
                keys,
                may_reduce=round_ <= reductions,
                fee=fee,
            )
            for mg in scenario.microgrids
        }
        checks += sum(r.checks for r in rechecked.values())
        if all(r.passes for r in rechecked.values()):
            break
        for name, r in rechecked.items():
            accepts[name] = r.positions
            if r.decision == "declined":
                declined.append(name)
    physical = {
        name: r.day.physical if r.day is not None else conventional.per_interval[name]
        for name, r in rechecked.items()
    }
    payments = {name: r.money for name, r in rechecked.items()}
    books = provisional(accepts, prices, keys)
    commitment = Commitment(
        prices=tuple(closing_price(p) / 1000 for p in allocation.prices),
        trades=fold(books, n),
        declined=tuple(sorted(declined)),
        physical_cost=physical,
        payments=payments,
        day_cost={name: sum(physical[name]) - sum(payments[name]) for name in physical},
        checks=checks,
        dso_kwh={name: r.day.dso_kwh for name, r in rechecked.items() if r.day is not None},
        accepted=accepts,
        clean_prices=tuple(closing_price(p) / 1000 for p in allocation.clean_prices),
        clean_trades=fold((*((),) * n, *books[n:]), n) if allocation.clean_positions else (),
        fee=fee,
    )
    _verify(commitment, conventional)
    return commitment


def _same(theirs: Sequence[Trade], ours: Sequence[Trade]) -> bool:
    """The same trades in pairs, whole Wh and price on the chain's tick, whatever the order."""

    def key(trades: Sequence[Trade]) -> list[tuple[str, str, int, int]]:
        return sorted((tr.seller, tr.buyer, wh(tr.quantity_kwh), micro_per_wh(tr.price)) for tr in trades)

    return key(theirs) == key(ours)


def clear(
    clearing: ForwardClearing, scenario: Scenario, commitment: Commitment, clean: Mapping[str, bool]
) -> tuple[tuple[Trade, ...], ...]:
    """Each MG accepts its positions on the chain, the coordinator clears; the trades the contract computed."""
    n = scenario.intervals
    for mg in scenario.microgrids:
        positions = commitment.accepted.get(mg.name, (0,) * n * (2 if commitment.clean_trades else 1))
        if commitment.clean_trades and clears_clean(clearing):  # both books' accepts (book_accepts)
            verdict = clearing.accept(mg.name, positions[:n], clean[mg.name], clean_positions=positions[n:])
        else:
            verdict = clearing.accept(mg.name, positions, clean[mg.name])
        if not isinstance(verdict, Accepted):
            raise ForwardError(f"the exchange refused {mg.name}'s accepted positions: {verdict}")
    cleared = clearing.clear()
    if isinstance(cleared, Rejected):
        raise ForwardError(f"the exchange refused to clear the forward trades: {cleared}")
    if len(cleared) != len(commitment.trades):
        raise ForwardError(
            f"the exchange cleared {len(cleared)} intervals, {len(commitment.trades)} were matched"
        )
    for t, (theirs, ours) in enumerate(zip(cleared, commitment.trades, strict=True)):
        if not _same(theirs, ours):
            raise ForwardError(f"interval {t}: the exchange cleared other trades than were matched")
    return tuple(tuple(sorted(day, key=lambda tr: (tr.seller, tr.buyer))) for day in cleared)


def post(venue: Venue, commitment: Commitment, clean: dict[str, bool]) -> tuple[tuple[Trade, ...], ...]:
    """Record the forward trades interval by interval; returns the trades the contract agreed. On a clean
    session each interval's clean book goes first, as its own round of offers (at λᶜ_t, clean) and bids (a
    seller has one offer per round), then the general book."""
    agreed: list[tuple[Trade, ...]] = []
    for t, trades in enumerate(commitment.trades):
        clean_ids = {tr.trade_id for tr in commitment.clean_trades[t]} if commitment.clean_trades else set()
        books = [
            (
                [tr for tr in trades if tr.trade_id in clean_ids],
                commitment.clean_prices[t] if clean_ids else 0.0,
            ),
            ([tr for tr in trades if tr.trade_id not in clean_ids], commitment.prices[t]),
        ]
        closed = [tr for book, price in books if book for tr in _post_book(venue, t, book, price, clean)]
        agreed.append(tuple(sorted(closed, key=lambda tr: (tr.seller, tr.buyer))))
    return tuple(agreed)


def _post_book(
    venue: Venue, t: int, trades: Sequence[Trade], price: float, clean: Mapping[str, bool]
) -> list[Trade]:
    """One book's trades of interval t as one round of offers at `price` and bids naming the matched sellers;
    the trades the contract agreed (ForwardError unless they are `trades`)."""
    sold: dict[str, float] = {}
    asked: dict[str, list[tuple[str, float]]] = {}
    for tr in trades:
        sold[tr.seller] = sold.get(tr.seller, 0.0) + tr.quantity_kwh
        asked.setdefault(tr.buyer, []).append((tr.seller, tr.quantity_kwh))
    for seller in sorted(sold):
        verdict = venue.post_offer(Offer(seller, t, price, round(sold[seller], 3), clean[seller]))
        if not isinstance(verdict, Accepted):
            raise ForwardError(f"interval {t}: offer of {seller} refused: {verdict}")
    for buyer in sorted(asked):
        verdict = venue.post_bid(Bid(buyer, t, tuple(sorted(asked[buyer]))))
        if not isinstance(verdict, Accepted):
            raise ForwardError(f"interval {t}: bid of {buyer} refused: {verdict}")
    venue.close_round()
    closed = venue.finish(t)
    if not _same(closed, trades):
        raise ForwardError(f"interval {t}: the contract agreed other trades than were matched")
    return closed
