"""The bargaining venue on the MGMC chain: every move a signed transaction, judged by the ledger's market contract.

Promises: each MG trades under a pseudonymous key (role `anonym`) derived deterministically from the scenario
and MG name, with its contract rules preset in genesis, so the chain — not the MGMC — enforces floors, caps,
quantity limits and clean-only preferences. A round's offers, bids and moves are submitted as signed `offer`,
`bid` and `move` transactions and sealed into one block by a single in-memory authority (the ledger's
`LocalChain`); moves identical to the standing position are not re-sent. `finish` submits `trade`, and the
agreed trades are the ones the contract computed (read from its events: `trades`, shared with the
exchange's clear); every seal checks the block kept every transaction accepted on submit (`seal`: a
SealError, or the exchange's refusal, never an effect silently missing); `settle` pays each one once, on
both parties' statements by default (genesis `settle_by_both`; below); `pay` posts a plain payment (the
ledger's payments contract: the day-ahead make-whole uplift). `exchange` is the day-ahead exchange's
recorder and forward clearing on this chain (chain_exchange.py). Genesis sets
`cap_on_fills` (a buyer's maximum caps its allocation, as on the lab's chains) and `bargain` is told so.
Same scenario, same chain bytes. Units: the chain's Wh and currency micro-units per Wh (market.wh, micro_per_wh).
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
wherever both state): the DSO prices every MG's cover on the chain (`market.tariff`, the scenario's retail
and feed-in in micro-units per Wh, in the chain's first block, before any interval closes), the venue is
told each trade's shortfalls (`metered`: delivery.py's `shortfalls`, by simulate_dayahead), each party's
statement adds its own (`short`) and the DSO's settlement of a dispute both, and the contract moves the
compensation in the trade's one settlement. Nothing is then posted with `pay` for it:
a `pay` of the day's compensation (settling.COMPENSATION_REF) is checked against the settlements'
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
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from peergrid_controller.chain_exchange import ChainExchange as ChainExchange
from peergrid_controller.chain_exchange import SealError as SealError
from peergrid_controller.chain_exchange import seal_left_out
from peergrid_controller.dayrules import chain_rules as chain_rules  # where the MGs' rules meet the chain
from peergrid_controller.market import (
    Accepted,
    Bid,
    Offer,
    Rejected,
    Trade,
    Verdict,
    clear,
    micro_per_wh,
    wh,
)
from peergrid_controller.model import Scenario
from peergrid_controller.uplift import Payment
from peergrid_ledger import query
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts import market as contract
from peergrid_ledger.contracts.market_sealed import seal_of
from peergrid_ledger.genesis import Account, Genesis, Params
from peergrid_ledger.keys import Keypair
from peergrid_ledger.results import Accepted as ChainAccepted
from peergrid_ledger.results import Rejected as ChainRejected


class CompensationError(RuntimeError):
    """The chain moved an imbalance compensation that the simulation's own figures do not have."""


CREDIT_LIMIT = 10**15  # micro-units: MGs settle with the DSO off-chain; the chain only has to move balances


def key_for(scenario: str, mg: str) -> Keypair:
    return Keypair.from_seed(hashlib.sha256(f"peergrid-market/{scenario}/{mg}".encode()).digest())


def _verdict(result: ChainAccepted | ChainRejected) -> Verdict:
    return Accepted() if isinstance(result, ChainAccepted) else Rejected(f"chain: {result}")


class ChainVenue:
    def __init__(
        self,
        scenario: Scenario,
        settle_by_both: bool = True,
        settle_tolerance_wh: int = 0,
        silent: Collection[str] = (),
        meter_error_wh: Mapping[str, int] | None = None,
        compensate: bool = False,
        credit_limit: int = CREDIT_LIMIT,
        sealed_statements: bool = False,
    ) -> None:
        if compensate and not settle_by_both:
            raise ValueError(
                "the chain computes the compensation only with settle_by_both (each side states)"
            )
        if sealed_statements and not settle_by_both:
            raise ValueError("sealed statements need settle_by_both (each side states)")
        names = [mg.name for mg in scenario.microgrids]
        errors = dict(meter_error_wh or {})
        strangers = sorted((set(silent) | set(errors)) - set(names))
        if strangers:
            raise ValueError(f"no microgrid named {strangers[0]!r} in scenario {scenario.name!r}")
        self.keys = {name: key_for(scenario.name, name) for name in names}
        self.names = {kp.public: name for name, kp in self.keys.items()}
        authority = key_for(scenario.name, "authority")
        accounts = tuple(
            Account(self.keys[mg.name].public, ("anonym",), f"anonym-{i}", rules=chain_rules(mg.rules))
            for i, mg in enumerate(scenario.microgrids)
        )
        self.dso = key_for(scenario.name, "dso")
        if settle_by_both:  # the DSO meters the feeder: its word settles a dispute
            accounts += (Account(self.dso.public, ("dso",), "dso"),)
        settling = (
            {
                "settle_by_both": 1,
                "settle_tolerance_wh": settle_tolerance_wh,
                # interval k ends at (k + 1) x the scenario's interval on the chain's clock (genesis time 0)
                "settle_interval_ms": round(scenario.interval_hours * 3_600_000),
            }
            | ({"sealed_statements": 1} if sealed_statements else {})
            if settle_by_both
            else {}
        )
        genesis = Genesis(
            chain=f"mgmc-{scenario.name}"[:64],
            time=0,
            authorities=(authority.public,),
            accounts=accounts,
            contracts=("market", "payments", "exchange"),
            # a buyer's maximum caps what it is allocated, not what it asks, as on the lab's chains
            # (closedloop.py): without it a capped buyer asking rationed sellers ended short (docs/market.md)
            params=Params(credit_limit=credit_limit, cap_on_fills=1, **settling),
        )
        self.settle_by_both, self.sealed = settle_by_both, sealed_statements
        self.silent = frozenset(silent)
        self.meter_error_wh = errors
        self.settled: dict[str, int] = {}  # trades settled per basis (agreed, lapsed, dso; first: no rule)
        self.cap_on_fills = True  # `bargain` reads it: buyers may ask past their maximum
        self.chain = LocalChain(genesis, authority)
        self.round = 0
        self.standing_offers: dict[tuple[int, str], tuple[int, int]] = {}
        self.standing_bids: dict[tuple[int, str], list[dict[str, Any]]] = {}
        self.offers: dict[str, Offer] = {}
        self.bids: list[Bid] = []
        self.rules = {mg.name: mg.rules for mg in scenario.microgrids}
        self.transactions = 0
        self.exchange = ChainExchange(self, scenario.name)
        self.compensate = compensate
        self.shortfalls: dict[tuple[int, str, str], tuple[int, int]] = {}  # `metered`
        # the settlements' compensation (moved + owed) and its unpaid part, (payer, payee) -> micro-units
        self.due: dict[tuple[str, str], int] = {}
        self.unpaid: dict[tuple[str, str], int] = {}
        self.confirmed: set[tuple[str, str]] = set()  # netted pairs a `pay` of the compensation matched
        if compensate:  # the DSO's cover prices: terms of every trade, so before any interval closes
            for mg in scenario.microgrids:
                body = {
                    "account": self.keys[mg.name].public,
                    "first_interval": 0,
                    "retail": [micro_per_wh(p) for p in mg.tariff.retail],
                    "feed_in": [micro_per_wh(p) for p in mg.tariff.feed_in],
                }
                self.transactions += 1
                verdict = _verdict(self.chain.sign_and_submit(self.dso, "market.tariff", body))
                if isinstance(verdict, Rejected):
                    raise ValueError(f"{mg.name}'s tariff: {verdict.reason}")

    def seal(self) -> None:
        """Seal the pending transactions into a block; one the block left out (accepted on submit, refused at
        the block's time) raises SealError, so that it is never seen only by its missing effects."""
        self.chain.seal()
        left_out = seal_left_out(self.chain)
        if left_out:
            raise SealError(left_out)

    def trades(
        self, events: Sequence[tuple[str, Any]], interval: int | None = None, first: int = 0
    ) -> list[Trade]:
        """A transaction's `trade` events as Trades (kWh, currency per kWh), sorted by (seller, buyer): at
        `interval`, or (None) at the event's chain interval less `first`."""
        out = [
            Trade(
                interval if interval is not None else event["interval"] - first,
                self.names[event["seller"]],
                self.names[event["buyer"]],
                event["quantity"] / 1000,
                event["price"] / 1000,
            )
            for kind, event in events
            if kind == "trade"
        ]
        return sorted(out, key=lambda t: (t.seller, t.buyer))

    def _do(self, name: str, kind: str, body: dict[str, Any]) -> Verdict:
        self.transactions += 1
        return _verdict(self.chain.sign_and_submit(self.keys[name], kind, body))

    def post_offer(self, offer: Offer) -> Verdict:
        position = (micro_per_wh(offer.price), wh(offer.quantity_kwh))
        where = (offer.interval, offer.seller)
        standing = self.standing_offers.get(where)
        if standing == position:
            verdict: Verdict = Accepted()  # unchanged: the standing offer is this move
        elif standing is None:
            body = {
                "interval": offer.interval,
                "round": self.round + 1,
                "price": position[0],
                "quantity": position[1],
                "clean": offer.clean,
            }
            verdict = self._do(offer.seller, "offer", body)
        else:
            body = {
                "interval": offer.interval,
                "round": self.round + 1,
                "price": position[0],
                "quantity": position[1],
            }
            verdict = self._do(offer.seller, "move", body)
        if isinstance(verdict, Accepted):
            self.standing_offers[where] = position
            self.offers[offer.seller] = offer
        return verdict

    def post_bid(self, bid: Bid) -> Verdict:
        by_seller = sorted((self.keys[s].public, wh(q)) for s, q in bid.requests if wh(q) > 0)
        demands: list[dict[str, object]] = [{"seller": k, "quantity": q} for k, q in by_seller]
        where = (bid.interval, bid.buyer)
        standing = self.standing_bids.get(where)
        if standing == demands:
            verdict: Verdict = Accepted()
        elif standing is None:
            verdict = self._do(
                bid.buyer, "bid", {"interval": bid.interval, "round": self.round + 1, "demands": demands}
            )
        else:
            verdict = self._do(
                bid.buyer, "move", {"interval": bid.interval, "round": self.round + 1, "demands": demands}
            )
        if isinstance(verdict, Accepted):
            self.standing_bids[where] = demands
            self.bids.append(bid)
        return verdict

    def close_round(self) -> list[Trade]:
        self.seal()
        self.round += 1
        caps = {b.buyer: self.rules[b.buyer].max_quantity_kwh for b in self.bids}
        premiums = {b.buyer: self.rules[b.buyer].clean_premium for b in self.bids}
        # what the contract will compute from these positions (cap_on_fills: each buyer's maximum)
        trades = clear(list(self.offers.values()), self.bids, caps, premiums)
        self.offers, self.bids = {}, []
        return trades

    def finish(self, interval: int) -> list[Trade]:
        sellers = sorted(s for (i, s) in self.standing_offers if i == interval)
        if not sellers:
            return []
        result = self.chain.sign_and_submit(self.keys[sellers[0]], "trade", {"interval": interval})
        self.transactions += 1
        self.seal()
        if not isinstance(result, ChainAccepted):
            raise RuntimeError(f"the chain refused to close interval {interval}: {result}")
        self.standing_offers = {k: v for k, v in self.standing_offers.items() if k[0] != interval}
        self.standing_bids = {k: v for k, v in self.standing_bids.items() if k[0] != interval}
        return self.trades(result.events, interval)

    def trade_id(self, trade: Trade) -> bytes:
        seller, buyer = self.keys[trade.seller].public, self.keys[trade.buyer].public
        return contract.trade_id(trade.interval, seller, buyer)

    def settle(self, trade: Trade, delivered_kwh: float, carry: Callable[[], None] | None = None) -> Verdict:
        """Settle one agreed trade for `delivered_kwh`, the energy delivered (what the DSO meters): each party
        states, and the lone or disputed statement is resolved as the module says. Accepted only when the
        chain says `settled`. `carry`, where given, runs before each transaction sent (netsim's transport)."""
        tid = self.trade_id(trade)
        what = f"trade {tid.hex()[:16]}… (interval {trade.interval}, {trade.seller} to {trade.buyer})"
        delivered = wh(delivered_kwh)
        speaking = [p for p in ("buyer", "seller") if getattr(trade, p) not in self.silent]
        if not speaking:
            return Rejected(f"chain: {what}: neither party states what was delivered (both MGMCs silent)")
        if self.sealed:  # each commits before either reveals; a lone one reveals from its commit deadline
            for party in speaking:
                verdict = self.statement(trade, party, delivered, carry, "seal")
                if isinstance(verdict, Rejected):
                    return Rejected(f"{verdict.reason} ({what}, the {party}'s commitment)")
            if len(speaking) == 1:
                self._wait_until(self._standing(tid)["deadline"])
        for party in speaking if self.settle_by_both else speaking[:1]:
            verdict = self.statement(trade, party, delivered, carry, "salt" if self.sealed else None)
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
            self.transactions += 1
            body = {"trade": tid, "delivered": delivered}
            if self.compensate:  # the DSO meters both PCCs: it names each side's shortfall
                sides = self._shorts(trade)
                body |= {"seller_short": sides[0], "buyer_short": sides[1]}
            result = _verdict(self.chain.sign_and_submit(self.dso, "settle", body))
            if isinstance(result, Rejected):
                return Rejected(f"{result.reason} ({what}, the DSO's settlement of the dispute)")
        final = self._standing(tid)
        if final["state"] != "settled":
            return Rejected(f"chain: {what} is {final['state']}, not settled: {final['statements']}")
        basis = final["settlement"].get("basis", "first")
        self.settled[basis] = self.settled.get(basis, 0) + 1
        self._read_compensation(trade, final["settlement"])
        return Accepted()

    def _read_compensation(self, trade: Trade, settlement: Mapping[str, Any]) -> None:
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

    def metered(self, shortfalls: Mapping[tuple[int, str, str], tuple[int, int]]) -> None:
        """Each trade's (seller's, buyer's) own shortfall in Wh, by (interval, seller, buyer): what each
        party's meter tells it of its own side (delivery.py's `shortfalls`; a trade not named: none)."""
        self.shortfalls.update(shortfalls)

    def _shorts(self, trade: Trade) -> tuple[int, int]:
        return self.shortfalls.get((trade.interval, trade.seller, trade.buyer), (0, 0))

    def compensation(self) -> tuple[Payment, ...]:
        """The imbalance compensation of the settlements so far (the contract's: moved, plus recorded `owed`
        where the payer could not pay it all), netted per pair of MGs as delivery.py nets its own (one
        payment per payer and payee)."""
        from peergrid_controller.delivery import netted  # delivery -> forward -> this module: not at import

        return netted(self.due)

    def owed(self) -> tuple[Payment, ...]:
        """The part of `compensation` the settlements record as `owed`, unpaid, per (payer, payee), sorted;
        not netted: each debt stands on its own trade's record."""
        return tuple(Payment(payer, payee, amount) for (payer, payee), amount in sorted(self.unpaid.items()))

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
        interval ended on the chain's clock (the venue moves its logical block time there first). `sealed`
        (genesis sealed_statements): "seal" commits to that statement, "salt" reveals it; the salt is
        derived from the MG and the trade so the same scenario gives the same chain bytes (the venue's keys
        are derived from the scenario too: it simulates the rule, it keeps no secret)."""
        name: str = getattr(trade, party)
        tid = self.trade_id(trade)
        agreed = contract.trade(self.chain.view, tid)
        ended = None if agreed is None else self.chain.genesis.params.interval_end(agreed["interval"])
        if ended is not None and self.chain.tip.time < ended:  # a meter is read after the delivery: the
            self._wait_until(ended)  # chain refuses a statement before its interval ended (review9 F1)
        # its own shortfall, where the chain computes the compensation: its meter reads no more than its
        # own side could have delivered
        short = self._shorts(trade)[0 if party == "seller" else 1] if self.compensate else 0
        reading = delivered + self.meter_error_wh.get(name, 0)
        reading = max(0, min(reading, agreed["quantity"] - short if agreed is not None else reading))
        if carry is not None:
            carry()
        body = {"trade": tid, "delivered": reading} | ({"short": short} if self.compensate else {})
        if sealed is not None:
            salt = hashlib.sha256(b"chain-venue/salt/" + name.encode() + b"/" + tid).digest()
            key = self.keys[name].public
            seal = seal_of(self.chain.genesis.chain, tid, key, reading, short if self.compensate else 0, salt)
            body = {"trade": tid, "seal": seal} if sealed == "seal" else body | {"salt": salt}
        return self._do(name, "settle", body)

    def _standing(self, tid: bytes) -> dict[str, Any]:
        standing = query.settlement(self.chain.view, tid)
        return standing if standing is not None else {"state": "not agreed", "statements": {}}

    def _wait_until(self, deadline: int) -> None:
        """Let the chain's clock reach `deadline` (block time, ms): seal what is pending, then an empty block
        at the deadline (the venue's chain has no clock of its own: its block time is logical)."""
        self.seal()
        if self.chain.tip.time < deadline:
            self.chain.seal(deadline)

    def pay(self, payment: Payment, ref: str) -> Verdict:
        """A plain payment (the payments contract's `pay`), micro-units from payer to payee, once per ref; on a
        venue whose chain computes the compensation, the day's compensation is checked, not posted."""
        if self.checks(ref):
            return self._check(payment)
        body = {"payee": self.keys[payment.payee].public, "amount": payment.amount, "ref": ref}
        return self._do(payment.payer, "pay", body)

    def checks(self, ref: str) -> bool:
        """Whether a `pay` under `ref` is checked against what the settlements moved, not sent (the day's
        compensation on a venue whose chain computes it)."""
        from peergrid_controller.settling import COMPENSATION_REF  # settling -> venues -> this module

        return self.compensate and ref == COMPENSATION_REF

    def _check(self, payment: Payment) -> Verdict:
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

    def flush(self) -> None:
        if self.chain.pending:
            self.seal()
        moved = self.compensation() if self.due else ()
        unconfirmed = [p for p in moved if (p.payer, p.payee) not in self.confirmed]
        if unconfirmed:
            p = unconfirmed[0]
            raise CompensationError(
                f"the settlements moved{self._or_owed()} {p.amount} micro-units of compensation from {p.payer} to {p.payee} "
                f"that no payment of the simulation's compensation confirmed ({len(unconfirmed)} pairs)"
            )

    def _or_owed(self) -> str:
        """Words for a figure that may include owed compensation (none where nothing is owed)."""
        return " (or recorded as owed)" if self.unpaid else ""

    def balance(self, name: str) -> float:
        """Currency units (the chain keeps micro-units)."""
        from peergrid_ledger.keyspace import balance, decode_int

        return float(decode_int(self.chain.view.get(balance(self.keys[name].public)))) / 1e6
