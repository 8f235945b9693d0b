"""A simulated day's money through the venue (simulate.py, both markets): settlements and make-whole payments.

Promises: `settle_interval(venue, t, trades, delivered)` settles every agreed trade of interval `t` exactly once,
for the quantity delivered (all of it when `delivered` is None), a trade settled only when the venue says it
was paid (on the chain: both parties' statements, `query.settlement` "settled"; chain_venue.py);
`pay_uplift(venue, uplift, ref)` posts every make-whole payment once through the venue's `pay`, nothing when
there are none; `pay_fund(venue, fund)` a fee-funded day's fees, credits and refunds through the fund's account; `pay_compensation(venue, payments)` the day's imbalance compensation (delivery.py) the same
way. A refusal (a bug, a tampered chain, a trade left unpaid: a party's second statement, nobody stating),
or a venue that cannot record payments, raises `SettlementError` naming it, never skipped. Never reads
clocks.
"""

from __future__ import annotations

from collections.abc import Sequence

from peergrid_controller.bargaining import Venue
from peergrid_controller.market import Rejected, Trade
from peergrid_controller.uplift import Payment, Uplift
from peergrid_controller.uplift_fund import FUND, FundOutcome
from peergrid_controller.venues import PaymentVenue

UPLIFT_REF = "uplift/day-0"  # the simulation runs one day on its own chain
COMPENSATION_REF = "imbalance/day-0"  # delivery.py's compensation for forward trades not delivered
FEE_REF = "fee/day-0"  # the exchange fee into the fund (uplift_fund.py)
REFUND_REF = "fund-refund/day-0"  # the fund above its cap, back to the day's fee payers


class SettlementError(RuntimeError):
    """The venue refused to settle an agreed trade: a bug or a tampered chain, never silently ignored."""


def settle_interval(
    venue: Venue, t: int, trades: Sequence[Trade], delivered: Sequence[Trade] | None = None
) -> None:
    """Settle every agreed trade of interval `t` once, for what was delivered (`delivered`: the same trades
    with the quantity delivered; None: all of it, dispatch delivered it as agreed)."""
    quantities = [tr.quantity_kwh for tr in (trades if delivered is None else delivered)]
    settlements = [venue.settle(tr, q) for tr, q in zip(trades, quantities, strict=True)]
    refused = [v.reason for v in settlements if isinstance(v, Rejected)]
    if refused:
        raise SettlementError(
            f"interval {t}: settlement refused: {refused[0]} ({len(refused)} of {len(trades)} trades unpaid)"
        )


def pay_uplift(venue: Venue, uplift: Uplift, ref: str) -> None:
    """Post every make-whole payment through the venue (the chain's `pay`), once; refused ones are fatal."""
    _pay(venue, uplift.payments, ref, "uplift")


def pay_fund(venue: Venue, fund: FundOutcome) -> None:
    """A fee-funded day's money through the venue (uplift_fund.py): each member's fee into the fund, then
    the credits and the refunds above the cap out of it, each once. A fee's part left owed to the fund
    (`FundOutcome.unpaid`: the member could not pay it) is not moved."""
    fees = {name: f - fund.unpaid.get(name, 0) for name, f in fund.fees.items()}
    _pay(venue, [Payment(name, FUND, f) for name, f in fees.items() if f], FEE_REF, "exchange fee")
    _pay(venue, [Payment(FUND, name, c) for name, c in fund.credits.items()], UPLIFT_REF, "uplift")
    _pay(venue, [Payment(FUND, name, r) for name, r in fund.refunds.items()], REFUND_REF, "fund refund")


def pay_compensation(venue: Venue, payments: Sequence[Payment], ref: str = COMPENSATION_REF) -> None:
    """Post the day's imbalance compensation (one payment per payer and payee) through the venue, once."""
    _pay(venue, payments, ref, "imbalance compensation")


def _pay(venue: Venue, payments: Sequence[Payment], ref: str, what: str) -> None:
    if not payments:
        return
    if not isinstance(venue, PaymentVenue):
        raise SettlementError(f"the venue {type(venue).__name__} cannot record {what} payments")
    verdicts = [venue.pay(p, ref) for p in payments]
    refused = [v.reason for v in verdicts if isinstance(v, Rejected)]
    if refused:
        raise SettlementError(f"{what} payment refused: {refused[0]}")
