"""The uplift contract: the day-ahead make-whole payments of a cleared exchange session, claimed and paid on chain.

Why: with gensets the day's uniform prices may not support a genset MG's commitment (it would gain by deviating
alone); the make-whole rule (`uplift_rule`, the simulation's too) pays it that lost opportunity from the other
members' gains over the conventional market. Only each MG knows its own gain and surplus (they need its DER
model), so each claims them, signed; the chain bounds what it can, applies the rule and moves the money.

  `uplift.claim` {session, gain, surplus} (micro-units, 0 … 10^15; a member of the exchange session, once):
      gain, its deviation gain at the closing prices valued at its own rules, rounded up (0: none); surplus, its
      conventional day cost less its committed day cost, rounded down (0 when not positive). Refused: no such
      session (`not-found`), not a member (`forbidden`), before the session's clear (`rule-violation`), a
      second claim (`duplicate`), after the session's uplift was settled or, with genesis `uplift_claim_ms`
      W > 0 and a session deadline D, after D + W (`closed`: late), a gain above 0 from a member whose rules
      set no `max_quantity` for an interval of the session within its trading window and for which the DSO
      posted no capacity (`rule-violation`: no bound; review17 U-C), a gain above `gain_bound` over that window (`rule-violation`, naming the bound and
      the window; an interval the DSO did not price counts genesis `uplift_max_spread`, 0 by default).
      Event `uplift_claimed`.
  `uplift.settle` {session} (a member, once; `duplicate` after): once every trade the clear recorded for the
      session is settled (or superseded by a reopening) and its claim window is over (every member claimed; or
      W > 0 and the block time is past D + W; or W = 0), refused `rule-violation` naming what it waits for
      before that (`waiting_for`; `ready_by`: the block time by which the chain's own rules make it so). W = 0
      closes claims at the first settle: a member's claim not on the chain by then is `closed` (the edges'
      settling member waits for every claim a while first). Then: owed, each claim whose gain exceeds its tolerance (`tolerance`: one chain tick, 1
      micro-unit per Wh, per Wh it traded in the session, at least 1000, plus the controller's 1 micro-unit of
      slack); payers, the members with trades that are owed nothing, each funding by its claimed surplus (a
      member that never claimed: 0); `uplift_rule.split`; the credits of payees that did not deliver all their
      own committed energy withheld (`defaulted`) and the charges cut (`uplift_rule.withhold`); each transfer
      (`uplift_rule.transfers`) moved payer → payee within the payer's credit (`funds.transfer`), the part it
      cannot pay recorded as its debt to the payee first (`funds.record_debt`, the trade `uplift_ref`), so a
      drained payer holds up nobody. The outcome is kept (`outcome`); events `uplift_settled` and one
      `uplift_paid` per transfer (with `owed` where part of it became a debt).
      A session opened with an exchange fee (its record's `fee` > 0: `market_fee`; only a session its
      opener was sanctioned for) is funded by the fee instead (`uplift_fund`): every member with trades
      pays ceil(fee x its cleared Wh / 10^6) into the chain's uplift fund, the owed with cleared Wh are paid
      from the fund all-or-nothing, what was owed and not paid is reserved for later make-whole, the fund
      above the reserve and the session's `fund_cap` is refunded to the fee payers; the claims' `surplus` is
      ignored there (taken, stored, not read: an edge that does not read the fee yet still gets its gain
      claim in). Without a fee: as above, byte for byte.
  `market.fee` {fee, fund_cap} (the DSO only): the exchange fee and fund cap for sessions opened after it
      (`market_fee`; registered here, since only this contract collects the fee).
`gain_bound`: deviating alone an MG trades some x_t at the closing price λ_t; doing that with the DSO instead
costs it at most |x_t| · max(retail_t − λ_t, λ_t − feed-in_t, 0), so its gain is at most the sum over the
session's intervals of its `max_quantity` rule (cut to the connection capacity the DSO posted for it,
`market.capacity`, where there is one: a member may raise its own rule before the session, not its
connection; review19 F1) × that spread at the DSO's cover prices (`market.tariff`),
summed only over its trading window where it stated one with its first `exchange.accept`
(`exchange_state.trading_window`): an MGMC that trades a run inside the session (the lab's 36–37 of 96)
could deviate nowhere else, and a window is stated before the clear and never widened after it, its rules
frozen through it (no window: every interval of the session, as before). Where the DSO left an interval of
it unpriced for the member, the spread there is the chain's own genesis `uplift_max_spread` (0 by default:
that interval adds nothing), so a bound exists on every chain and no claim above it is taken (review18
U-1: before, one unpriced interval - every interval on a chain without settle_by_both, where the DSO cannot
price - left the gain unbounded and a claim of 10^15 voided the honest make-whole). What stays open is
said in docs/market.md: an over-claim within the bound takes at most the payers' claimed surplus (no honest
payer pays beyond its own), and a surplus claimed low shifts a charge onto the other payers or leaves the
uplift unfunded.
Pure; no I/O.
"""

from __future__ import annotations

import hashlib
from typing import Any

from .. import keyspace as ks
from ..machine import BlockContext, KindSpec, require
from ..results import Event, Reason
from ..schema import LABEL, Int, Map
from ..state import Overlay, StateReader, read_obj
from ..tx import Tx
from . import exchange_state as xch
from . import uplift_rule
from .exchange_clearing import cleared
from .funds import pay_or_owe
from .market_clock import epoch_ms
from .market_fee import KIND as FEE_KIND
from .market_fee import session_fee
from .market_state import NO_RULES, capacity, interval_key, rules_for, tariff, trade
from .payments import MAX_AMOUNT
from .uplift_fund import settle_from_fund

AMOUNT = Int(0, MAX_AMOUNT)
# the tolerance: one chain tick (1 micro-unit per Wh) per Wh traded, at least a kWh's worth, plus the slack
# the controller's `uplift.earns` allows (1e-6 currency: 1 micro-unit) - its price_tolerance 0.001 per kWh
MIN_TOLERANCE = 1000
SLACK = 1


def claim_key(name: str, member: bytes) -> bytes:
    """Fixed-width member key first, the variable-length session name last."""
    return b"upl/claim/" + member + name.encode()


def done_key(name: str) -> bytes:
    return b"upl/done/" + name.encode()


def claim(state: StateReader, name: str, member: bytes) -> dict[str, Any] | None:
    """`{gain, surplus, txid}` of the member's claim on the session, or None."""
    value: dict[str, Any] | None = read_obj(state, claim_key(name, member))
    return value


def outcome(state: StateReader, name: str) -> dict[str, Any] | None:
    """The session's settled uplift, or None before: `{funded, owed, surplus, credits, charges, withheld,
    refunds, payments, txid}`, each of credits … refunds a list of [key, micro-units] in key order, payments a
    list of [payer, payee, amount, owed] (owed: the part that became the payer's debt). A session with an
    exchange fee (`uplift_fund`): `{funded, owed, collected, fund_before, fund_after, fee, credits, charges
    (each member's fee), withheld, refunds (the cap's), payments (fees member -> fund, credits and refunds
    fund -> member), txid}` - no `surplus`."""
    value: dict[str, Any] | None = read_obj(state, done_key(name))
    return value


def uplift_ref(name: str) -> bytes:
    """The id a debt for the session's uplift is recorded under (a debt names the trade it is for)."""
    return hashlib.sha256(b"peergrid/uplift" + name.encode()).digest()


def tolerance(traded_wh: int) -> int:
    """The gain (micro-units) within which an MG that traded `traded_wh` is owed nothing: a gain is owed only
    above this (the controller's `earns`, on the chain's integers)."""
    return max(traded_wh, MIN_TOLERANCE) + SLACK


def bound_intervals(record: dict[str, Any], window: range | None = None) -> range:
    """The chain intervals a member's gain is bounded over: those of the session inside `window` (its stated
    trading window, `exchange_state.trading_window`), every one of the session's when None."""
    first = int(record["first_interval"])
    session = range(first, first + int(record["intervals"]))
    return session if window is None else range(max(first, window.start), min(session.stop, window.stop))


def gain_bound(
    state: StateReader,
    record: dict[str, Any],
    member: bytes,
    window: range | None = None,
    max_spread: int = 0,
) -> int:
    """The most the member's deviation gain can be (module contract) over the session's intervals inside
    `window` (the member's stated trading window; None: every interval), `max_spread` (genesis
    `uplift_max_spread`) the spread in an interval the DSO left unpriced for it."""
    prices = [xch.micro_per_wh(p) for p in record["prices"]]
    clean = [xch.micro_per_wh(p) for p in record.get("clean_prices", ())]
    bound = 0
    for interval in bound_intervals(record, window):
        t = interval - int(record["first_interval"])
        cover = tariff(state, member, interval)
        if cover is None:
            spread = max_spread
        else:
            retail, feed_in = cover
            spread = max(max(retail - p, p - feed_in, 0) for p in [prices[t], *clean[t : t + 1]])
        bound += bound_quantity(state, member, interval) * spread
    return bound


def bound_quantity(state: StateReader, member: bytes, interval: int) -> int:
    """The most the member can deviate by in `interval` (Wh): its `max_quantity` rule, cut to the connection
    capacity the DSO posted for it (`market.capacity`) where there is one - a figure the member cannot raise."""
    quantity = int(rules_for(state, member, interval)["max_quantity"])
    cap = capacity(state, member, interval)
    return quantity if cap is None else min(quantity, cap)


def unbounded_interval(
    state: StateReader, record: dict[str, Any], member: bytes, window: range | None = None
) -> int | None:
    """The first chain interval of the session inside `window` (as `gain_bound`'s) in which the member's rules
    set no `max_quantity` (its no-rule value) and the DSO posted no capacity, or None: each has one. Without it `gain_bound` is no bound at
    all (review17 U-C)."""
    for interval in bound_intervals(record, window):
        if bound_quantity(state, member, interval) >= int(NO_RULES["max_quantity"]):
            return interval
    return None


def session_trades(state: StateReader, record: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """The trades the session's clear recorded that still stand: those of every interval whose latest closing
    is the session's (a reopened interval's were superseded and traded again intraday)."""
    out = []
    for t in range(record["intervals"]):
        closing = read_obj(state, interval_key(record["first_interval"] + t))
        if closing is not None and closing.get("session") == name:
            out += [trade(state, tid) for tid in closing["trades"]]
    return [agreed for agreed in out if agreed is not None and "superseded" not in agreed]


def defaulted(trades: list[dict[str, Any]]) -> set[bytes]:
    """The parties that fell short of their own side of a settled trade: the settlement's compensation record
    names each side's own shortfall (a priced trade); without it a trade settled for less than agreed is
    counted against both parties (the chain cannot tell whose it was: a payee's credit is withheld rather
    than paid for energy it may not have delivered)."""
    out: set[bytes] = set()
    for agreed in trades:
        done = agreed["settlement"]
        if done is None:
            continue
        shorts = done.get("compensation")
        if shorts is not None:
            out |= {agreed["seller"]} if shorts["seller_short"] > 0 else set()
            out |= {agreed["buyer"]} if shorts["buyer_short"] > 0 else set()
        elif done["delivered"] < agreed["quantity"]:
            out |= {agreed["seller"], agreed["buyer"]}
    return out


def _session(view: Overlay, tx: Tx, sender: ks.AccountRecord) -> tuple[str, dict[str, Any]]:
    """The named session, its sender a member, cleared: (name, record)."""
    require(sender.authorised, Reason.NOT_AUTHORISED, f"{tx.kind}: sender is not authorised")
    name = tx.body["session"]
    record = xch.session(view, name)
    require(record is not None, Reason.NOT_FOUND, f"no exchange session {name!r}")
    assert record is not None
    require(tx.sender in record["members"], Reason.FORBIDDEN, f"not a member of exchange session {name!r}")
    require(
        cleared(view, name) is not None,
        Reason.RULE_VIOLATION,
        f"exchange session {name!r} is not cleared yet: an uplift claim is of the cleared day",
    )
    return name, record


def _window_end(record: dict[str, Any], params: Any) -> int | None:
    """The block time after which no claim lands (None: until the settle)."""
    window = params.uplift_claim_ms
    deadline = record.get("deadline")
    return None if not window or deadline is None else int(deadline) + window


def claim_uplift(view: Overlay, tx: Tx, ctx: BlockContext, sender: ks.AccountRecord) -> list[Event]:
    name, record = _session(view, tx, sender)
    gain, surplus = tx.body["gain"], tx.body["surplus"]
    require(view.get(done_key(name)) is None, Reason.CLOSED, f"late: the uplift of {name!r} is settled")
    end = _window_end(record, ctx.genesis.params)
    require(
        end is None or ctx.time <= end,
        Reason.CLOSED,
        f"late: claims on {name!r} closed at {end} (block time {ctx.time})",
    )
    require(view.get(claim_key(name, tx.sender)) is None, Reason.DUPLICATE, f"already claimed on {name!r}")
    window = xch.trading_window(view, name, tx.sender)  # stated with its first accept; None: the session
    unbounded = unbounded_interval(view, record, tx.sender, window) if gain > 0 else None
    require(
        unbounded is None,
        Reason.RULE_VIOLATION,
        f"gain {gain} from a member whose rules set no max_quantity for interval {unbounded}: the chain bounds "
        "a gain only by max_quantity x the spread (without the rule a claim may take every payer's surplus); "
        "claim gain 0",
    )
    spread = int(ctx.genesis.params.uplift_max_spread)
    bound = gain_bound(view, record, tx.sender, window, spread)
    over = "the session's intervals" if window is None else f"its trading window {window[0]}..{window[-1]}"
    require(
        gain <= bound,
        Reason.RULE_VIOLATION,
        f"gain {gain} above {bound}, the most deviating could gain: max_quantity (or the DSO's capacity, "
        f"where lower) x the spread between the closing price and the DSO's cover prices (where unpriced: genesis uplift_max_spread, {spread} per "
        f"Wh), over {over}",
    )
    view.put_obj(claim_key(name, tx.sender), {"gain": gain, "surplus": surplus, "txid": tx.txid})
    return [("uplift_claimed", {"session": name, "member": tx.sender, "gain": gain, "surplus": surplus})]


def waiting_for(
    state: StateReader, params: Any, record: dict[str, Any], name: str, now_ms: int
) -> str | None:
    """Why `uplift.settle` of the session is refused `rule-violation` at block time `now_ms` (a trade
    unsettled, or the claim window still open for a silent member), or None: it would be taken."""
    trades = session_trades(state, record, name)
    waiting = [agreed for agreed in trades if agreed["settlement"] is None]
    if waiting:
        return (
            f"{len(waiting)} of the {len(trades)} trades of {name!r} not settled yet (the first in interval "
            f"{waiting[0]['interval']}): withholding needs every delivery"
        )
    silent = [m for m in record["members"] if state.get(claim_key(name, m)) is None]
    end = _window_end(record, params)
    if silent and end is not None and now_ms <= end:
        return (
            f"{len(silent)} member(s) of {name!r} have not claimed and claims are open until {end} "
            f"(block time {now_ms})"
        )
    return None


def ready_by(state: StateReader, params: Any, record: dict[str, Any], name: str) -> int | None:
    """The block time (ms) by which the chain's own rules have every trade of the session settled and its claim
    window over, if the parties and the DSO act within them; None where nothing on the chain bounds it (a trade
    unsettled with no statement on a chain without the interval clock). An unsettled trade with a statement:
    its `deadline` (the first statement's or commitment's, + `settle_wait_ms`) + `settle_wait_ms` more, by
    when the DSO's deadline rule settles a dispute, a lapsed or unrevealed word, or a vouch's window ended
    (`takeup`); one without a statement: its interval's end on the clock + both waits. With `uplift_claim_ms`
    and a member that has not claimed: the window's end too. Past it an uplift still not ready waits for
    something no rule makes happen (a party that never states again): whoever settles it later, after a
    restart, still may."""
    wait = int(params.settle_wait_ms)
    by: int = 0
    for agreed in session_trades(state, record, name):
        if agreed["settlement"] is not None:
            continue
        if "deadline" in agreed:
            stated_by = int(agreed["deadline"])
        elif params.settle_interval_ms:  # the chain's clock: a posted `market.clock`, else the genesis'
            stated_by = (
                epoch_ms(state, params) + (int(agreed["interval"]) + 1) * params.settle_interval_ms + wait
            )
        else:
            return None
        by = max(by, stated_by + wait)
    end = _window_end(record, params)
    if end is not None and any(state.get(claim_key(name, m)) is None for m in record["members"]):
        by = max(by, end + 1)
    return by


def settle_uplift(view: Overlay, tx: Tx, ctx: BlockContext, sender: ks.AccountRecord) -> list[Event]:
    name, record = _session(view, tx, sender)
    require(view.get(done_key(name)) is None, Reason.DUPLICATE, f"the uplift of {name!r} is already settled")
    why = waiting_for(view, ctx.genesis.params, record, name, ctx.time)
    require(why is None, Reason.RULE_VIOLATION, why or "")
    trades = session_trades(view, record, name)
    traded: dict[bytes, int] = {}
    for agreed in trades:
        for party in (agreed["seller"], agreed["buyer"]):
            traded[party] = traded.get(party, 0) + int(agreed["quantity"])
    claims = {m: c for m in record["members"] if (c := claim(view, name, m)) is not None}
    owed = {m: c["gain"] for m, c in claims.items() if c["gain"] > tolerance(traded.get(m, 0))}
    if session_fee(record):  # the fee's fund pays (uplift_fund); the claimed surplus is not read
        done, fund_events = settle_from_fund(
            view, ctx, name, record, traded, owed, defaulted(trades), uplift_ref(name)
        )
        view.put_obj(done_key(name), {**done, "txid": tx.txid})
        return fund_events
    surplus = {m: claims[m]["surplus"] if m in claims else 0 for m in traded if m not in owed}
    paid = uplift_rule.withhold(uplift_rule.split(owed, surplus), defaulted(trades))
    events: list[Event] = []
    payments = []
    ref = uplift_ref(name)
    for payer, payee, amount in uplift_rule.transfers(paid.credits, paid.charges):
        now, collected = pay_or_owe(view, ctx, payer, payee, amount, ref, "payer (uplift)")
        payments.append([payer, payee, amount, amount - now])
        paid_event = {"session": name, "payer": payer, "payee": payee, "amount": amount}
        events += [
            ("uplift_paid", {**paid_event, **({"owed": amount - now} if amount > now else {})}),
            *collected,
        ]
    done = {
        "funded": paid.funded,
        "owed": paid.owed,
        "surplus": paid.surplus,
        "credits": [[k, v] for k, v in sorted(paid.credits.items())],
        "charges": [[k, v] for k, v in sorted(paid.charges.items())],
        "withheld": [[k, v] for k, v in sorted(paid.withheld.items())],
        "refunds": [[k, v] for k, v in sorted(paid.refunds.items())],
        "payments": payments,
        "txid": tx.txid,
    }
    view.put_obj(done_key(name), done)
    settled = {
        "session": name,
        "funded": paid.funded,
        "owed": paid.owed,
        "surplus": paid.surplus,
        "paid": sum(paid.credits.values()),
        "withheld": sum(paid.withheld.values()),
    }
    return [("uplift_settled", settled), *events]


def genesis_writes(genesis: Any) -> dict[bytes, bytes | None]:
    return {}


KINDS: dict[str, KindSpec] = {
    "uplift.claim": KindSpec(Map({"session": LABEL, "gain": AMOUNT, "surplus": AMOUNT}), claim_uplift),
    "uplift.settle": KindSpec(Map({"session": LABEL}), settle_uplift),
    "market.fee": FEE_KIND,  # the DSO's exchange fee and fund cap for sessions opened after it: market_fee
}
END_BLOCK = None
