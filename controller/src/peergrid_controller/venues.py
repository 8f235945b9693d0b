"""Where the market's moves go: the market contract in memory, or the MGMC chain when the ledger offers one.

Promises: `VENUES` maps a name to a factory `Scenario -> Venue`; `default_venue()` prefers the chain. Both
venues also take plain payments (`PaymentVenue.pay`, the chain's payments contract; the day-ahead market's
make-whole uplift): once per (payer, payee, reference), a positive amount, between two known MGs (the memory
venue also knows the exchange fee's fund, uplift_fund.FUND).
`exchange_recorder(venue)` is the venue's recorder of the day-ahead exchange ADMM's moves (`ExchangeVenue`:
the chain's exchange contract), or None where it keeps none (the memory venue: the allocation is unchanged).
`forward_clearing(venue)` is the same exchange where it also clears the forward trades itself
(forward.ForwardClearing: the chain's) and a closed session of the venue awaits its clear, or None (the memory
venue, or an allocation not recorded on the venue: forward.post's offers and bids).
`metering_venue(venue)` is the venue where it is told each trade's own shortfalls (`MeteringVenue.metered`:
delivery.py's `shortfalls`), or None; the chain venue is made with `compensate` (`chain_venue`): its chain
computes the imbalance compensation from each side's statement of its own shortfall, so the day's
compensation is checked against the chain, not posted (chain_venue.py).
Never opens sockets: the chain venue seals blocks in memory with a single authority.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from peergrid_controller.bargaining import MemoryVenue, Venue
from peergrid_controller.chain_venue import ChainVenue
from peergrid_controller.dayexchange import ExchangeRecorder
from peergrid_controller.forward import ForwardClearing
from peergrid_controller.market import Accepted, Rejected, Verdict
from peergrid_controller.model import Scenario
from peergrid_controller.uplift import MICRO, Payment
from peergrid_controller.uplift_fund import FUND


@runtime_checkable
class PaymentVenue(Protocol):
    def pay(self, payment: Payment, ref: str) -> Verdict:
        """Move `payment.amount` micro-units from payer to payee, once per (payer, payee, ref)."""
        ...


@runtime_checkable
class ExchangeVenue(Protocol):
    exchange: ExchangeRecorder  # where the day-ahead exchange ADMM's moves go


@runtime_checkable
class MeteringVenue(Protocol):
    def metered(self, shortfalls: Mapping[tuple[int, str, str], tuple[int, int]]) -> None:
        """Each trade's (seller's, buyer's) own shortfall in Wh, by (interval, seller, buyer)."""
        ...


def metering_venue(venue: Venue) -> MeteringVenue | None:
    return venue if isinstance(venue, MeteringVenue) else None


def exchange_recorder(venue: Venue) -> ExchangeRecorder | None:
    return venue.exchange if isinstance(venue, ExchangeVenue) else None


def forward_clearing(venue: Venue) -> ForwardClearing | None:
    recorder = exchange_recorder(venue)
    return recorder if isinstance(recorder, ForwardClearing) and recorder.ready() else None


@dataclass
class MemoryMarket(MemoryVenue):
    """The market contract without a chain, with the payments contract's rules (ledger contracts/payments.py)
    beside it; balances in currency units like `MemoryVenue.settle`'s."""

    paid: set[tuple[str, str, str]] = field(default_factory=set)

    def pay(self, payment: Payment, ref: str) -> Verdict:
        where = (payment.payer, payment.payee, ref)
        if payment.amount <= 0:
            return Rejected(f"payment of {payment.amount} micro-units: the amount must be positive")
        if payment.payer == payment.payee:
            return Rejected(f"{payment.payer} cannot pay itself")
        unknown = [name for name in (payment.payer, payment.payee) if name not in self.rules and name != FUND]
        if unknown:
            return Rejected(f"{unknown[0]} is not a known account")
        if where in self.paid:
            return Rejected(f"{payment.payer} already paid {payment.payee} for {ref!r}")
        self.paid.add(where)
        amount = payment.amount / MICRO
        self.balances[payment.payer] = self.balances.get(payment.payer, 0.0) - amount
        self.balances[payment.payee] = self.balances.get(payment.payee, 0.0) + amount
        return Accepted()


def memory_venue(scenario: Scenario) -> Venue:
    return MemoryMarket({mg.name: mg.rules for mg in scenario.microgrids})


def chain_venue(scenario: Scenario) -> Venue:
    # each trade settles on both statements (the default), so its chain can compute the compensation
    return ChainVenue(scenario, compensate=True)


VENUES: dict[str, Callable[[Scenario], Venue]] = {"memory": memory_venue, "chain": chain_venue}


def default_venue() -> Callable[[Scenario], Venue]:
    return VENUES.get("chain", memory_venue)
