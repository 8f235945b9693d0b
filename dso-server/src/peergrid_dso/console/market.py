"""The market view's data: a day of bargaining among the lab MGs on the MGMC chain, with every round's prices.

Promises: `run_lab_market(mgs, intervals)` runs the controller's day simulation (`peergrid_controller.simulate`)
over its chain venue wrapped in `RecordingVenue`, which notes each seller's price in each round, the agreed
trades and their settlement, and returns (`MarketReport`, the MGMC chain). MG names are the console's (mg1..);
the synthetic scenario's are mapped onto them in order. Interval k covers hours [2k, 2k+2), all of market day 0
(`day`, `hours_of_day`, `days` as the live view's, `console.market_days`). Costs are in
currency units; P2P and conventional are the controller's own baselines. No sockets, no clock.
Stand-in until the testbed's MGMCs run the market live (issue 11); the view reads the same JSON shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from peergrid_dso.console.market_days import day_fields, days


@dataclass
class RecordingVenue:
    inner: Any  # a peergrid_controller Venue (the chain venue)
    names: dict[str, str]
    prices: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    settlements: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    _round: dict[int, int] = field(default_factory=dict)
    _interval: int = 0

    def post_offer(self, offer: Any) -> Any:
        verdict = self.inner.post_offer(offer)
        self._interval = offer.interval
        self.prices.setdefault(offer.interval, []).append(
            {
                "round": self._round.get(offer.interval, 0) + 1,
                "seller": self.names.get(offer.seller, offer.seller),
                "price": round(offer.price, 6),
                "quantity_kwh": round(offer.quantity_kwh, 3),
                "accepted": type(verdict).__name__ == "Accepted",
            }
        )
        return verdict

    def post_bid(self, bid: Any) -> Any:
        self._interval = bid.interval
        return self.inner.post_bid(bid)

    def close_round(self) -> Any:
        self._round[self._interval] = self._round.get(self._interval, 0) + 1
        return self.inner.close_round()

    def finish(self, interval: int) -> Any:
        return self.inner.finish(interval)

    def settle(self, trade: Any, delivered_kwh: float, carry: Any = None) -> Any:
        verdict = self.inner.settle(trade, delivered_kwh, carry)
        self.settlements.setdefault(trade.interval, []).append(
            {
                "seller": self.names.get(trade.seller, trade.seller),
                "buyer": self.names.get(trade.buyer, trade.buyer),
                "delivered_kwh": round(delivered_kwh, 3),
                "amount": round(delivered_kwh * trade.price, 6),
                "ok": type(verdict).__name__ == "Accepted",
            }
        )
        return verdict

    def flush(self) -> None:
        self.inner.flush()


def run_lab_market(mgs: list[str], intervals: int, seed: int = 1) -> tuple[dict[str, Any], Any]:
    from peergrid_controller.chain_venue import ChainVenue
    from peergrid_controller.simulate import SimulationConfig, simulate
    from peergrid_controller.synth import synthetic_scenario

    scenario = synthetic_scenario(len(mgs), intervals=intervals, seed=seed, interval_hours=24.0 / intervals)
    names = {mg.name: ours for mg, ours in zip(scenario.microgrids, sorted(mgs), strict=True)}
    venues: list[RecordingVenue] = []

    def factory(s: Any) -> RecordingVenue:
        venues.append(RecordingVenue(ChainVenue(s), names))
        return venues[-1]

    result = simulate(scenario, SimulationConfig(with_central=True, central_time_limit_s=20.0), factory)
    venue = venues[0]
    hours = 24.0 / intervals
    out = []
    for r in result.intervals:
        out.append(
            {
                "interval": r.interval,
                "hours": [r.interval * hours, (r.interval + 1) * hours],
                **day_fields(r.interval, hours),
                "rounds": r.rounds,
                "converged": r.converged,
                "prices": venue.prices.get(r.interval, []),
                "trades": [
                    {
                        "seller": names[t.seller],
                        "buyer": names[t.buyer],
                        "quantity_kwh": round(t.quantity_kwh, 3),
                        "price": round(t.price, 6),
                    }
                    for t in r.trades
                ],
                "settlements": venue.settlements.get(r.interval, []),
                "cost_p2p": {names[k]: round(v, 4) for k, v in r.mg_cost_p2p.items()},
                "cost_conventional": {names[k]: round(v, 4) for k, v in r.mg_cost_conventional.items()},
                "welfare": {
                    "p2p": round(r.p2p_welfare, 4),
                    "conventional": round(r.conventional_welfare, 4),
                    "central": round(r.central_welfare, 4),
                },
            }
        )
    listed = days([iv["interval"] for iv in out], hours)
    day = listed[0]["day"] if listed else None
    report = {"source": "lab simulation on the MGMC chain", "intervals": out, "day": day, "days": listed}
    return report, venue.inner.chain
