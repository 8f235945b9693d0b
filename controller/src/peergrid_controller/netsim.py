"""Deterministic network simulation for the market: moves cross a seeded lossy, delaying transport.

Promises: `LossyVenue(inner, seed, loss, max_delay_ms, round_deadline_ms, retries)` wraps any venue. Each move an
MGMC sends (offer, bid, move, settlement) is dropped with probability `loss` and otherwise delayed uniformly up to
`max_delay_ms` on a simulated clock; the MGMC resends after a lost or late attempt, up to `retries` more times
within the round's deadline. A move that does not arrive in time is not part of the round (the caller gets
`Rejected("lost in transport ...")` and the bargaining carries on without it). Settlements are retried until
delivered: every message one takes crosses the transport on its own (on the chain under `settle_by_both`
the buyer's and the seller's statements, a lone one sent again after the deadline, the DSO's settlement of a
dispute), and the venue refuses a second settlement of the same trade, so each trade settles exactly once.
So are the day-ahead market's messages where the inner venue takes them: plain payments (`pay`) and every
transaction of the exchange session (`exchange`, the inner venue's recorder: an ADMM iteration waits for every
member, so a lost post is resent, never left out); the inner venue refuses a second payment of a reference
(a chain that computes the compensation checks the day's figure against its settlements: nothing crosses).
`metered` (each trade's own shortfalls, what each MGMC's meter tells it of its own side) crosses no transport:
it is handed to the inner venue where that meters (venues.MeteringVenue), so the statements it then sends
carry them.
Same seed, same losses, same outcome. Assumes the venue side (authority) is reliable; the block broadcast back
to the MGMCs is not simulated. No sockets, no real clock: time is a counter.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from peergrid_controller.bargaining import Venue
from peergrid_controller.chain_venue import ChainVenue
from peergrid_controller.market import Bid, Offer, Rejected, Trade, Verdict
from peergrid_controller.uplift import Payment
from peergrid_controller.venues import PaymentVenue, exchange_recorder, metering_venue


@dataclass
class TransportStats:
    sent: int = 0
    lost: int = 0
    late: int = 0
    undelivered_moves: int = 0


@dataclass
class LossyVenue:
    inner: Venue
    seed: int = 0
    loss: float = 0.1
    max_delay_ms: int = 200
    round_deadline_ms: int = 1_000
    retries: int = 3
    stats: TransportStats = field(default_factory=TransportStats)
    now_ms: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.loss < 1.0:
            raise ValueError("loss must be in [0, 1)")
        self._rng = random.Random(self.seed)

    def _deliver(self, deadline_ms: int | None) -> bool:
        """Send until one copy arrives before the deadline (None: no deadline); True if it did."""
        sent_at = self.now_ms
        for _ in range(1 + self.retries if deadline_ms is not None else 1_000_000):
            self.stats.sent += 1
            lost = self._rng.random() < self.loss
            delay = self._rng.randint(0, self.max_delay_ms)
            if lost:
                self.stats.lost += 1
                sent_at += self.max_delay_ms  # the sender's ack timeout before it resends
                continue
            if deadline_ms is not None and sent_at + delay > deadline_ms:
                self.stats.late += 1
                return False
            return True
        return False

    def post_offer(self, offer: Offer) -> Verdict:
        if not self._deliver(self.now_ms + self.round_deadline_ms):
            self.stats.undelivered_moves += 1
            return Rejected(f"lost in transport: {offer.seller}'s offer did not reach the round in time")
        return self.inner.post_offer(offer)

    def post_bid(self, bid: Bid) -> Verdict:
        if not self._deliver(self.now_ms + self.round_deadline_ms):
            self.stats.undelivered_moves += 1
            return Rejected(f"lost in transport: {bid.buyer}'s bid did not reach the round in time")
        return self.inner.post_bid(bid)

    def close_round(self) -> list[Trade]:
        self.now_ms += self.round_deadline_ms
        return self.inner.close_round()

    def finish(self, interval: int) -> list[Trade]:
        return self.inner.finish(interval)

    def settle(self, trade: Trade, delivered_kwh: float, carry: Callable[[], None] | None = None) -> Verdict:
        def crossed() -> None:  # one message of the settlement, resent until it arrives
            self._deliver(None)
            if carry is not None:
                carry()

        return self.inner.settle(trade, delivered_kwh, crossed)

    def pay(self, payment: Payment, ref: str) -> Verdict:
        if not isinstance(self.inner, PaymentVenue):
            return Rejected(f"{type(self.inner).__name__} takes no payments")
        if not (isinstance(self.inner, ChainVenue) and self.inner.checks(ref)):  # a check sends nothing
            self._deliver(None)
        return self.inner.pay(payment, ref)

    def metered(self, shortfalls: Mapping[tuple[int, str, str], tuple[int, int]]) -> None:
        metering = metering_venue(self.inner)
        if metering is not None:
            metering.metered(shortfalls)

    @property
    def exchange(self) -> _LossyExchange:
        """The inner venue's exchange recorder behind this transport (AttributeError where it keeps none, so
        `venues.exchange_recorder` sees none, as for the inner venue)."""
        recorder = exchange_recorder(self.inner)
        if recorder is None:
            raise AttributeError(f"{type(self.inner).__name__} keeps no exchange")
        return _LossyExchange(recorder, self)

    def flush(self) -> None:
        self.inner.flush()


# the exchange recorder's calls that are transactions an MGMC sends (dayexchange.ExchangeRecorder,
# forward.ForwardClearing); anything else (`ready`, a local question) is the inner recorder's own
_SENT = frozenset({"open", "position", "step", "close", "accept", "clear"})


@dataclass
class _LossyExchange:
    """An exchange recorder whose every transaction first crosses the transport, resent until it arrives."""

    inner: Any  # dayexchange.ExchangeRecorder (and what else the inner venue's recorder offers)
    transport: LossyVenue

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name not in _SENT:
            return attr

        def sent(*args: Any, **kwargs: Any) -> Any:
            self.transport._deliver(None)
            return attr(*args, **kwargs)

        return sent
