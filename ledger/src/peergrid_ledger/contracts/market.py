"""The market contract: each MGMC's preset rules, iterative bargaining, agreed trades and settlement.

Units: quantities in Wh, prices in currency micro-units per Wh, amounts = price × quantity in micro-units.
Flow for one trading interval (see docs/ledger-format.md):
  `market.rules` presets a participant's rules (floor price for selling, cap price for buying, maximum
      quantity, clean-only preference with the premium it will pay for clean energy), effective from an
      interval it has not yet traded in; genesis may preset them too. No rules: no limits.
  `offer` opens a seller's position (price, quantity, clean); `bid` opens a buyer's position (a quantity from
      each accepted offer); `move` revises either in a later round (a seller's move of zero quantity
      withdraws its offer at any price, keeping the standing price; a later move may offer again). The
      chain checks every one against the sender's rules and the current offers: a seller below its floor, a buyer above its cap (plus premium for
      clean offers), a clean-only buyer taking non-clean energy, more than the maximum quantity or more than
      a seller offered: all rejected.
  `trade` closes the interval and computes the agreed trades deterministically from the final positions (an
      oversubscribed seller is shared pro rata, rounded down; with genesis `close_on_clock` not before the
      interval's start + `close_after_ms`, and with `close_quiet_ms` only once its book stood still that long
      or its end came: `market_close_time`, which every offer, bid and move tells, and whose `max_rounds`
      caps one bargaining's rounds on any chain whose genesis names it); `settle` pays one trade once, for
      the energy delivered, from buyer to seller, within the genesis credit limit: on the first party's word,
      or with genesis `settle_by_both` on both parties' statements (`market_closing.settle`: the DSO or an
      authority decides a dispute; a lone statement settles after a deadline). With genesis `cap_on_fills`
      a buyer's maximum quantity caps what the closing allocates it instead of the sum of its requests
      (its pro-rata grants kept in its own effective-price order, clean premium counted, up to the
      maximum): it may ask several sellers, some of them rationed, and still be filled up to it.
  `market.tariff` (the DSO only, on a `settle_by_both` chain): an account's retail and feed-in prices for a
      run of intervals, each set once and only while its interval is open, so they are terms of the trades
      agreed in it. A trade both of whose parties are priced carries an imbalance compensation: each party's
      statement may add its own side's shortfall (`short`), and the settlement moves, once, price x delivered
      from buyer to seller and `market_state.compensation` from the side that fell short more to the other
      (`market_closing.settle`).
  `market.capacity` (the DSO only, any chain): an account's connection capacity, Wh per interval, standing
      from an interval it has not traded in: bounds what it trades wherever max_quantity does, and its
      make-whole gain (`uplift.gain_bound`; market_capacity).
  `market.reopen` (design step 6: the DSO's adjustment contract makes the MGs re-bargain) reopens a closed
      interval. Only the DSO sends it (the `dso` role: the MGMCs cannot reopen a bargain on their own), for
      the next iteration (last + 1), at most genesis `max_reopens` times (0, the default, disables it), while
      none of the interval's trades is settled and not after the reopening's own deadline `until` (block
      time). The closed trades stay, marked superseded (never deleted, never settled); positions stand,
      moves continue in later rounds, no new member may join, `trade` closes it again with new trade ids.
  On a `settle_by_both` chain only an anonym trades (`offer`, `bid`, `move`, and an exchange session's
      members: `market_state.require_anonym`, review14 K1/K2): the DSO meters, prices and holds debts by
      anonym, so an MGMC's node key (role `mgmc`) is refused `forbidden`; so too with genesis `anonyms_only`
      (review17 K-B: no MGMC trades with itself through its node key); elsewhere any participant trades.
  A member that owes (a priced settlement's `owed` it has not paid yet: `funds`) may not buy: a `bid` with
      any demand, and a `move` that asks any seller for more than its standing bid did, are refused
      `insufficient-funds` naming the debt; it may join with an empty bid, sell (`offer`, `move`) and cut
      its demands, since a sale's payment is what pays its debts (FIFO, `funds.collect`).
The kinds table, `market.rules` and `market.tariff` are here; the positions' handlers (`offer`, `bid`, `move`)
in `market_positions`, the closing's (`trade`, `settle`) in `market_closing`, when a `trade` may come in
`market_close_time`, `market.reopen` in `market_reopen`.
Pure; no I/O.
"""

from __future__ import annotations

from typing import Any

from .. import keyspace as ks
from ..machine import BlockContext, KindSpec, require, require_participant, require_role
from ..results import Event, Reason, RuleError
from ..schema import HASH, INTERVAL, KEY, PRICE, QUANTITY, ROUND, Bool, Int, List, Map, OneOf, check
from ..state import Overlay, read_obj
from ..tx import Tx
from .market_capacity import KIND as CAPACITY_KIND
from .market_clock import KIND as CLOCK_KIND
from .market_closing import agree_trades, settle
from .market_positions import OPENING_SLACK, move, post_bid, post_offer
from .market_reopen import reopen
from .market_sealed import SETTLE_SHAPE
from .market_state import (  # re-exported: callers import the contract's records from here
    DEMANDS,
    MAX_DEMANDS,
    MAX_TARIFF_INTERVALS,
    NO_RULES,
    RULES_SHAPE,
    allocate,
    bid,
    buyer_limit,
    capacity,
    closed,
    compensation,
    interval_record,
    last_interval_key,
    members,
    offer,
    reopening,
    rules_for,
    rules_key,
    settlement,
    tariff,
    tariff_key,
    trade,
    trade_id,
)

__all__ = [
    "DEMANDS",
    "END_BLOCK",
    "KINDS",
    "MAX_DEMANDS",
    "NO_RULES",
    "OPENING_SLACK",
    "RULES_OVERTAKEN",
    "RULES_SHAPE",
    "allocate",
    "bid",
    "buyer_limit",
    "capacity",
    "closed",
    "compensation",
    "genesis_writes",
    "interval_record",
    "members",
    "offer",
    "reopening",
    "rules_for",
    "settlement",
    "tariff",
    "trade",
    "trade_id",
]

# the refusal's own words for rules a participant's position overtook (the edge's rules poster sends
# them again from the interval after it on them)
RULES_OVERTAKEN = "rules can change only after interval"


# ---------------------------------------------------------------------------------------------- handlers


def set_rules(view: Overlay, tx: Tx, ctx: BlockContext, sender: ks.AccountRecord) -> None:
    require_participant(sender, tx.kind)
    start = tx.body["from_interval"]
    last = read_obj(view, last_interval_key(tx.sender))
    require(last is None or start > last, Reason.RULE_VIOLATION, f"{RULES_OVERTAKEN} {last}")
    entries = [e for e in read_obj(view, rules_key(tx.sender)) or [] if e[0] < start]
    view.put_obj(rules_key(tx.sender), [*entries, [start, tx.body["rules"]]])


def set_tariff(view: Overlay, tx: Tx, ctx: BlockContext, sender: ks.AccountRecord) -> list[Event]:
    """The DSO prices an account's cover for a run of intervals: retail (what it charges for energy a trade
    did not deliver) and feed-in (what it pays for energy a trade's buyer did not take), micro-units per Wh.
    Once per interval, before the interval closes: a trade's cover prices are fixed when it is agreed."""
    require_role(sender, {ks.ROLE_DSO}, tx.kind)
    b = tx.body
    account, first, retail, feed_in = b["account"], b["first_interval"], b["retail"], b["feed_in"]
    require(
        bool(ctx.genesis.params.settle_by_both),
        Reason.RULE_VIOLATION,
        "cover prices need genesis settle_by_both: each party states its own shortfall",
    )
    require(view.get(ks.account(account)) is not None, Reason.NOT_FOUND, "the account is not a known account")
    require(
        len(retail) == len(feed_in) > 0,
        Reason.INVALID,
        f"{len(retail)} retail and {len(feed_in)} feed-in prices: one of each per interval, at least one",
    )
    for interval in range(first, first + len(retail)):
        if closed(view, interval):
            raise RuleError(
                Reason.CLOSED, f"interval {interval} is closed: its trades were agreed without these prices"
            )
        set_before = tariff(view, account, interval)
        if set_before is not None:
            raise RuleError(
                Reason.DUPLICATE,
                f"interval {interval}: the account's prices are set already (retail {set_before[0]}, "
                f"feed-in {set_before[1]})",
            )
    for k, prices in enumerate(zip(retail, feed_in, strict=True)):
        view.put_obj(tariff_key(account, first + k), list(prices))
    return [("tariff", {"account": account, "first_interval": first, "intervals": len(retail)})]


def genesis_writes(genesis: Any) -> dict[bytes, bytes | None]:
    from ..codec import encode

    writes: dict[bytes, bytes | None] = {}
    for acct in genesis.accounts:
        if acct.rules is not None:
            check(RULES_SHAPE, acct.rules, "genesis rules")
            writes[rules_key(acct.key)] = encode([[0, acct.rules]])
    return writes


KINDS: dict[str, KindSpec] = {
    "market.rules": KindSpec(Map({"rules": RULES_SHAPE, "from_interval": INTERVAL}), set_rules),
    "offer": KindSpec(
        Map({"interval": INTERVAL, "round": ROUND, "price": PRICE, "quantity": QUANTITY, "clean": Bool()}),
        post_offer,
    ),
    "bid": KindSpec(Map({"interval": INTERVAL, "round": ROUND, "demands": DEMANDS}), post_bid),
    "move": KindSpec(
        OneOf(
            (
                Map({"interval": INTERVAL, "round": ROUND, "price": PRICE, "quantity": QUANTITY}),
                Map({"interval": INTERVAL, "round": ROUND, "demands": DEMANDS}),
            )
        ),
        move,
    ),
    "trade": KindSpec(Map({"interval": INTERVAL}), agree_trades),
    # a party may add its own side's shortfall, the DSO both sides' (only on a trade the DSO priced); on a
    # sealed_statements chain a party commits ({trade, seal}) and then reveals (with its salt): market_sealed
    "settle": KindSpec(SETTLE_SHAPE, settle),
    "market.tariff": KindSpec(
        Map(
            {
                "account": KEY,
                "first_interval": INTERVAL,
                "retail": List(PRICE, MAX_TARIFF_INTERVALS),
                "feed_in": List(PRICE, MAX_TARIFF_INTERVALS),
            }
        ),
        set_tariff,
    ),
    "market.capacity": CAPACITY_KIND,  # the DSO's connection capacity of an account: market_capacity
    "market.clock": CLOCK_KIND,  # the DSO's interval clock on a settle_by_both chain: market_clock
    "market.reopen": KindSpec(
        Map({"interval": INTERVAL, "iteration": Int(1, 1_000_000), "ref": HASH, "until": Int(0, 2**63 - 1)}),
        reopen,
    ),
}
END_BLOCK = None
