"""Settlement on the venue's MGMC chain (chain_venue.ChainVenue.settlement): each party's statement of an agreed
trade, the DSO's word on a dispute, and the check of the imbalance compensation the settlements moved.

Settlement (docs/ledger-format.md, "Settlement on both parties' statements"). With `settle_by_both` (the
default: a buyer cannot pay less by under-stating, the seller's meter counts too) genesis names the rule,
a DSO account (role `dso`, key `key_for(scenario, "dso")`: it meters the feeder, and only it settles a
dispute) and the market interval clock (`settle_epoch_ms` 0, the genesis time; `settle_interval_ms` the
scenario's interval: the chain refuses a statement before its trade's interval ended), so before a party
states, the venue seals an empty block at the interval's end where the chain's logical clock is short of it.
For each trade the buyer and then the seller send `settle` with what its own meter attributes to the trade:
the energy delivered, which the simulation knows once per trade, so both state the same, unless a meter is
given an error (`meter_error_wh`, clamped to 0 … agreed). Two that agree (within `settle_tolerance_wh`) pay the
lower; two that do not leave the trade disputed and the DSO settles it with the delivered energy; a party
whose MGMC is `silent` never states, and its counterparty's lone statement settles once the trade's
deadline passed: the venue's chain has no clock (block time is logical, LocalChain), so the venue seals an
empty block at the deadline and the party sends its statement again (basis "lapsed"). A trade counts as
settled only when `query.settlement` says so; otherwise `settle` is a refusal naming the trade and where it
stands (two silent parties: nobody stated). Without the rule (`settle_by_both=False`) the genesis is the one
before it and the buyer's settle pays (the seller's when the buyer is silent). With `sealed_statements`
(off by default, so the pinned runs keep their bytes and counts) each speaking party commits first and
reveals after (market_sealed; a lone one from its commit deadline, which the venue seals a block at).
Imbalance compensation (`compensate=True`, with `settle_by_both`; the CLI's chain, venues.chain_venue,
wherever both state): the DSO prices every MG's cover on the chain (`market.tariff`, posted by the venue in
its first block), the venue is told each trade's shortfalls (`metered`: delivery.py's `shortfalls`, by
simulate_dayahead), each party's statement adds its own (`short`) and the DSO's settlement of a dispute both,
and the contract moves the compensation in the trade's one settlement. Nothing is then posted with `pay` for
it: a `pay` of the day's compensation (settling.COMPENSATION_REF) is checked against the settlements'
compensation, netted per pair as delivery.py nets it (`compensation`), and refused naming both figures where
they differ; `flush` raises CompensationError if the settlements hold a compensation no such `pay` confirmed.
The settlements' compensation is the contract's: what it moved plus what the payer could not pay within its
credit limit and the settlement records as `owed` (settle_pay; none with the venue's default `credit_limit`,
which no MG reaches); `owed` gives that unpaid part per (payer, payee), not netted, as the settlements
recorded it (the contract collects it later from the payer's credits: funds.py). A silent party
states no shortfall: the contract takes it as the undelivered rest its counterparty does not own, none where
that owns it all, so where a silent MG fell short too, and no more than its counterparty, the chain's figure
is larger than delivery.py's and the check refuses the day's `pay` naming both (the words on the chain cannot
tell it).
Assumes the ledger's market contract semantics (ledger/src/peergrid_ledger/contracts/market.py). No sockets.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

from peergrid_controller.market import Accepted, Rejected, Trade, Verdict, wh
from peergrid_controller.uplift import Payment
from peergrid_ledger import query
from peergrid_ledger.contracts import market as contract
from peergrid_ledger.contracts.market_clock import interval_end
from peergrid_ledger.contracts.market_sealed import seal_of

if TYPE_CHECKING:
    from peergrid_controller.chain_venue import ChainVenue


class CompensationError(RuntimeError):
    """The chain moved an imbalance compensation that the simulation's own figures do not have."""


class ChainSettlement:
    """The statements and settlements of the venue's agreed trades, and the compensation they moved. It signs
    with the venue's keys and counts its transactions on the venue; the rule (settle_by_both, sealed,
    compensate) is the venue's genesis."""

    def __init__(
        self, venue: ChainVenue, scenario: str, silent: Collection[str], meter_error_wh: Mapping[str, int]
    ) -> None:
        errors = dict(meter_error_wh)
        strangers = sorted((set(silent) | set(errors)) - set(venue.keys))
        if strangers:
            raise ValueError(f"no microgrid named {strangers[0]!r} in scenario {scenario!r}")
        self.venue = venue
        self.silent = frozenset(silent)
        self.meter_error_wh = errors
        self.settled: dict[str, int] = {}  # trades settled per basis (agreed, lapsed, dso; first: no rule)
        self.shortfalls: dict[tuple[int, str, str], tuple[int, int]] = {}  # `metered`
        # the settlements' compensation (moved + owed) and its unpaid part, (payer, payee) -> micro-units
        self.due: dict[tuple[str, str], int] = {}
        self.unpaid: dict[tuple[str, str], int] = {}
        self.confirmed: set[tuple[str, str]] = set()  # netted pairs a `pay` of the compensation matched

    def settle(self, trade: Trade, delivered_kwh: float, carry: Callable[[], None] | None = None) -> Verdict:
        """Settle one agreed trade for `delivered_kwh`, the energy delivered (what the DSO meters): each party
        states, and the lone or disputed statement is resolved as the module says. Accepted only when the
        chain says `settled`. `carry`, where given, runs before each transaction sent (netsim's transport)."""
        venue = self.venue
        tid = venue.trade_id(trade)
        what = f"trade {tid.hex()[:16]}… (interval {trade.interval}, {trade.seller} to {trade.buyer})"
        delivered = wh(delivered_kwh)
        speaking = [p for p in ("buyer", "seller") if getattr(trade, p) not in self.silent]
        if not speaking:
            return Rejected(f"chain: {what}: neither party states what was delivered (both MGMCs silent)")
        if venue.sealed:  # each commits before either reveals; a lone one reveals from its commit deadline
            for party in speaking:
                verdict = self.statement(trade, party, delivered, carry, "seal")
                if isinstance(verdict, Rejected):
                    return Rejected(f"{verdict.reason} ({what}, the {party}'s commitment)")
            if len(speaking) == 1:
                self._wait_until(self._standing(tid)["deadline"])
        for party in speaking if venue.settle_by_both else speaking[:1]:
            verdict = self.statement(trade, party, delivered, carry, "salt" if venue.sealed else None)
            if isinstance(verdict, Rejected):
                return Rejected(f"{verdict.reason} ({what}, the {party}'s statement)")
        standing = self._standing(tid)
        if standing["state"] == "stated":  # the other party is silent: its window runs to the deadline
            self._wait_until(standing["deadline"])
            verdict = self.statement(trade, speaking[0], delivered, carry)
            if isinstance(verdict, Rejected):
                return Rejected(
                    f"{verdict.reason} ({what}, the {speaking[0]}'s statement after the deadline)"
                )
        elif standing["state"] == "disputed":  # the meters disagree: the DSO's metering of the feeder settles
            if carry is not None:
                carry()
            body = {"trade": tid, "delivered": delivered}
            if venue.compensate:  # the DSO meters both PCCs: it names each side's shortfall
                sides = self._shorts(trade)
                body |= {"seller_short": sides[0], "buyer_short": sides[1]}
            result = venue.submit(venue.dso, "settle", body)
            if isinstance(result, Rejected):
                return Rejected(f"{result.reason} ({what}, the DSO's settlement of the dispute)")
        final = self._standing(tid)
        if final["state"] != "settled":
            return Rejected(f"chain: {what} is {final['state']}, not settled: {final['statements']}")
        basis = final["settlement"].get("basis", "first")
        self.settled[basis] = self.settled.get(basis, 0) + 1
        self.read_compensation(trade, final["settlement"])
        return Accepted()

    def statement(
        self,
        trade: Trade,
        party: str,
        delivered: int,
        carry: Callable[[], None] | None = None,
        sealed: str | None = None,
    ) -> Verdict:
        """The trade's `party` ("buyer" or "seller") sends `settle` with what its own meter reads of
        `delivered` Wh: its meter's error added, within 0 … the agreed quantity; not before the trade's
        interval ended on the chain's clock (a posted `market.clock`, else the genesis'; the venue moves its
        logical block time there first). `sealed` (genesis sealed_statements): "seal" commits to that statement, "salt" reveals it; the salt is
        derived from the MG and the trade so the same scenario gives the same chain bytes (the venue's keys
        are derived from the scenario too: it simulates the rule, it keeps no secret)."""
        venue, chain = self.venue, self.venue.chain
        name: str = getattr(trade, party)
        tid = venue.trade_id(trade)
        agreed = contract.trade(chain.view, tid)
        ended = None if agreed is None else interval_end(chain.view, chain.genesis.params, agreed["interval"])
        if ended is not None and chain.tip.time < ended:  # a meter is read after the delivery: the
            self._wait_until(ended)  # chain refuses a statement before its interval ended (review9 F1)
        # its own shortfall, where the chain computes the compensation: its meter reads no more than its
        # own side could have delivered
        short = self._shorts(trade)[0 if party == "seller" else 1] if venue.compensate else 0
        reading = delivered + self.meter_error_wh.get(name, 0)
        reading = max(0, min(reading, agreed["quantity"] - short if agreed is not None else reading))
        if carry is not None:
            carry()
        body = {"trade": tid, "delivered": reading} | ({"short": short} if venue.compensate else {})
        if sealed is not None:
            salt = hashlib.sha256(b"chain-venue/salt/" + name.encode() + b"/" + tid).digest()
            key = venue.keys[name].public
            seal = seal_of(chain.genesis.chain, tid, key, reading, short if venue.compensate else 0, salt)
            body = {"trade": tid, "seal": seal} if sealed == "seal" else body | {"salt": salt}
        return venue.submit(venue.keys[name], "settle", body)

    def _standing(self, tid: bytes) -> dict[str, Any]:
        standing = query.settlement(self.venue.chain.view, tid)
        return standing if standing is not None else {"state": "not agreed", "statements": {}}

    def _wait_until(self, deadline: int) -> None:
        """Let the chain's clock reach `deadline` (block time, ms): seal what is pending, then an empty block
        at the deadline (the venue's chain has no clock of its own: its block time is logical)."""
        self.venue.seal()
        if self.venue.chain.tip.time < deadline:
            self.venue.chain.seal(deadline)

    def metered(self, shortfalls: Mapping[tuple[int, str, str], tuple[int, int]]) -> None:
        """Each trade's (seller's, buyer's) own shortfall in Wh, by (interval, seller, buyer): what each
        party's meter tells it of its own side (delivery.py's `shortfalls`; a trade not named: none)."""
        self.shortfalls.update(shortfalls)

    def _shorts(self, trade: Trade) -> tuple[int, int]:
        return self.shortfalls.get((trade.interval, trade.seller, trade.buyer), (0, 0))

    def read_compensation(self, trade: Trade, settlement: Mapping[str, Any]) -> None:
        """Add a settlement's compensation to `due`: what it moved and what it records as `owed` (the part
        the payer could not pay within its credit limit); the owed part to `unpaid` too."""
        moved = settlement.get("compensation")
        owed = settlement.get("owed")
        if moved is None:
            if owed is not None:
                raise CompensationError(f"a settlement of {trade} records owed {owed} but no compensation")
            return
        if owed is not None and owed["payer"] != moved["payer"]:
            raise CompensationError(
                f"a settlement of {trade} records owed by the {owed['payer']}, compensation by the "
                f"{moved['payer']}"
            )
        unpaid = int(owed["amount"]) if owed is not None else 0
        due = int(moved["amount"]) + unpaid
        if not due:
            return
        pair = (trade.seller, trade.buyer) if moved["payer"] == "seller" else (trade.buyer, trade.seller)
        self.due[pair] = self.due.get(pair, 0) + due
        if unpaid:
            self.unpaid[pair] = self.unpaid.get(pair, 0) + unpaid

    def compensation(self) -> tuple[Payment, ...]:
        """The imbalance compensation of the settlements so far (the contract's: moved, plus recorded `owed`
        where the payer could not pay it all), netted per pair of MGs as delivery.py nets its own (one
        payment per payer and payee)."""
        from peergrid_controller.delivery import netted  # delivery -> forward -> chain_venue: not at import

        return netted(self.due)

    def owed(self) -> tuple[Payment, ...]:
        """The part of `compensation` the settlements record as `owed`, unpaid, per (payer, payee), sorted;
        not netted: each debt stands on its own trade's record."""
        return tuple(Payment(payer, payee, amount) for (payer, payee), amount in sorted(self.unpaid.items()))

    def checks(self, ref: str) -> bool:
        """Whether a `pay` under `ref` is checked against what the settlements moved, not sent (the day's
        compensation on a venue whose chain computes it)."""
        from peergrid_controller.settling import COMPENSATION_REF  # settling -> venues -> chain_venue

        return self.venue.compensate and ref == COMPENSATION_REF

    def check(self, payment: Payment) -> Verdict:
        """Accepted when the chain moved exactly `payment` (netted) as compensation in the settlements."""
        pair = (payment.payer, payment.payee)
        moved = {(p.payer, p.payee): p.amount for p in self.compensation()}.get(pair, 0)
        if moved != payment.amount:
            return Rejected(
                f"chain: the settlements moved{self._or_owed()} {moved} micro-units of compensation from "
                f"{pair[0]} to {pair[1]}, not {payment.amount}"
            )
        self.confirmed.add(pair)
        return Accepted()

    def check_confirmed(self) -> None:
        """Raise CompensationError where the settlements moved a compensation no checked `pay` confirmed."""
        moved = self.compensation() if self.due else ()
        unconfirmed = [p for p in moved if (p.payer, p.payee) not in self.confirmed]
        if unconfirmed:
            p = unconfirmed[0]
            raise CompensationError(
                f"the settlements moved{self._or_owed()} {p.amount} micro-units of compensation from {p.payer} "
                f"to {p.payee} that no payment of the simulation's compensation confirmed "
                f"({len(unconfirmed)} pairs)"
            )

    def _or_owed(self) -> str:
        """Words for a figure that may include owed compensation (none where nothing is owed)."""
        return " (or recorded as owed)" if self.unpaid else ""
