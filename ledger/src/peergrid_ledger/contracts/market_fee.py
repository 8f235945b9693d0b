"""`market.fee`: the exchange fee the DSO sets for the day-ahead sessions opened after it, and the uplift fund's cap.

Why: the day-ahead make-whole (`uplift`) was funded by the payers' own claimed surplus, and a payer saved its
whole charge by claiming 0 (study M10 §3: if every payer does, 9 of the bench's 11 days go unfunded). A fee on
every cleared Wh, paid into a fund the chain holds (`uplift_fund`), leaves no payer figure to misreport.

  `market.fee` {fee, fund_cap[, coordinators]} (the DSO only; on a chain with the uplift contract): `fee`
      nano-currency per kWh per side of every day-ahead trade, a whole number of market ticks (0 … 10^7 in
      multiples of 10^6: one tick, 1 micro-unit per Wh, is 10^6, so up to 10 ticks; `check_fee`),
      `fund_cap` the most of the uplift fund's refundable balance kept after a session's payout (micro-units,
      0 … 10^15; the reserve is kept beyond it: `uplift_fund`), `coordinators` (with a fee only, then
      required: 1 … 16 distinct known keys) the openers whose sessions the DSO sanctions to draw on the fund.
      Standing from the next `exchange.open` on: `exchange.open` copies the pair in force into the session's
      record (`fee`, `fund_cap`; both absent when the fee is 0, so a session without a fee keeps today's
      bytes) only when its opener is sanctioned (`sanctioned`: a listed coordinator, or the DSO); any other
      session opens at fee 0 and funds its make-whole by its payers' surplus as before (review26 R26-1: any
      authorised key could open a sham session, clear it, claim a gain and take the fund every honest member
      filled). The session's members, its clear and its uplift read the record's figure alone - never one
      posted after the open (every member's answers and accept check were priced with it).
      Refused: a sender without the dso role (`forbidden`), a fee above 10^7 or a cap above 10^15 or a
      missing or extra field (`malformed`, by the schema), a fee that is not a whole number of ticks, a fee
      without coordinators, coordinators or a cap above 0 without a fee, a coordinator named twice
      (`invalid`; as the genesis refuses them), a coordinator no account holds (`not-found`). Event
      `market_fee`.
`check_fee(fee, what)`: the one check of a fee every entry makes (this contract, the genesis, the ledger's,
the controller's and the testbed's options): an int in [0, MAX_FEE] that is a whole number of ticks, else a
ValueError naming `what`, the value and what is allowed. Why whole ticks: trades close on the tick
(`exchange_state.micro_per_wh`), so a fee below it cannot be priced there - the MGs' answers met it as the
whole tick above while the chain charged the bare fee, and buyers left short at the tick below retail gained
by deviating (docs/market.md "The fee on the tick"; the ieee33 whole day at 250,000 nano/kWh owed 2.467 with
1.599 collected, not stable).
Until the DSO posts one, the genesis' `exchange_fee`, `uplift_fund_cap` and `fee_coordinators` stand (0, 0 and
none by default: no fee). The edges' day-ahead coordinator is the session's lowest member key (edge
`dayahead_view`), so the DSO names it. Why the DSO: it posts the tariffs and capacities already and is the
market's regulator; the MGMCs co-validate, so the change is public. Pure; no I/O.
"""

from __future__ import annotations

from typing import Any

from .. import keyspace as ks
from ..machine import BlockContext, KindSpec, require, require_role
from ..results import Event, Reason, RuleError
from ..schema import KEY, Int, List, Map, OneOf
from ..state import Overlay, StateReader, read_obj
from ..tx import Tx
from .exchange_state import NANO_PER_MICRO_WH

# nano-currency per kWh per side: 10 micro-units per Wh, ten ticks, far above the study's 1-2
MAX_FEE = 10**7
# nano-currency per kWh: the market's tick, 1 micro-unit per Wh; a fee is a multiple of it
FEE_TICK = NANO_PER_MICRO_WH
MAX_FUND_CAP = 10**15  # micro-units, as payments.MAX_AMOUNT: far beyond any fund, well inside 64 bits
NANO_PER_MICRO_KWH = 10**6  # fee (nano/kWh) x Wh / this = micro-units: 10^-9 x 10^-3 / 10^-6
MAX_COORDINATORS = (
    16  # one per group of MGs trading a day-ahead session on the chain: far more than a feeder has
)


def check_fee(fee: object, what: str = "exchange_fee") -> int:
    """`fee` when it is an int (not a bool) in [0, MAX_FEE] and a whole number of ticks (module contract);
    ValueError naming `what`, the value and what is allowed otherwise."""
    if isinstance(fee, bool) or not isinstance(fee, int) or not 0 <= fee <= MAX_FEE or fee % FEE_TICK:
        raise ValueError(
            f"{what} must be a whole number of ticks (multiples of {FEE_TICK:,} nano-currency per kWh, 1 micro-unit"
            f" per Wh) in [0, {MAX_FEE:,}], got {fee!r}"
        )
    return fee


def fee_in_force(state: StateReader, params: Any) -> tuple[int, int]:
    """(fee, fund_cap) a session opened now takes: the DSO's latest `market.fee`, else the genesis'."""
    posted = read_obj(state, ks.MARKET_FEE)
    if posted is None:
        return int(params.exchange_fee), int(params.uplift_fund_cap)
    return int(posted["fee"]), int(posted["fund_cap"])


def coordinators_in_force(state: StateReader, genesis: Any) -> tuple[bytes, ...]:
    """The openers a session opened now must be for the fee in force to reach it: the DSO's latest
    `market.fee`'s coordinators, else the genesis' `fee_coordinators` (none while the fee is 0)."""
    posted = read_obj(state, ks.MARKET_FEE)
    if posted is None:
        return tuple(genesis.fee_coordinators)
    return tuple(posted.get("coordinators", ()))


def sanctioned(state: StateReader, genesis: Any, opener: bytes, roles: frozenset[str]) -> bool:
    """Whether a session `opener` (its account's `roles`) opens now takes the fee in force and so may draw on
    the uplift fund: a coordinator the DSO named (`coordinators_in_force`), or the DSO itself (it names them:
    sanctioning its own open adds no power)."""
    return ks.ROLE_DSO in roles or opener in coordinators_in_force(state, genesis)


def session_fee(record: dict[str, Any]) -> int:
    """The fee (nano-currency per kWh per side) a session was opened with; 0 when its record has none."""
    return int(record.get("fee", 0))


def fee_for(fee: int, wh: int) -> int:
    """What `wh` cleared Wh cost one side at `fee` nano/kWh, in micro-units, rounded up (one rounding per member
    per session: a member's many small trades are not each rounded up)."""
    return -(-fee * wh // NANO_PER_MICRO_KWH)


def set_fee(view: Overlay, tx: Tx, ctx: BlockContext, sender: ks.AccountRecord) -> list[Event]:
    require_role(sender, {ks.ROLE_DSO}, tx.kind)
    fee, cap = tx.body["fee"], tx.body["fund_cap"]
    try:  # the schema bounds it; the tick is the rule (module contract)
        check_fee(fee, "fee")
    except ValueError as exc:
        raise RuleError(Reason.INVALID, str(exc)) from None
    coordinators = tx.body.get("coordinators")
    if not fee:  # as the genesis: without a fee there is no fund to cap and no session to sanction (R26-7)
        require(cap == 0, Reason.INVALID, f"fund_cap {cap} without a fee: a cap only with a fee above 0")
        require(coordinators is None, Reason.INVALID, "coordinators without a fee: name them only with a fee")
        view.put_obj(ks.MARKET_FEE, {"fee": fee, "fund_cap": cap})
        return [("market_fee", {"fee": fee, "fund_cap": cap})]
    require(
        bool(coordinators),
        Reason.INVALID,
        f"a fee needs coordinators: 1 to {MAX_COORDINATORS} keys whose sessions may draw on the uplift fund",
    )
    assert coordinators is not None
    require(len(set(coordinators)) == len(coordinators), Reason.INVALID, "a coordinator appears twice")
    for key in coordinators:
        if view.get(ks.account(key)) is None:
            raise RuleError(Reason.NOT_FOUND, f"coordinator {key.hex()[:16]}… is not a known account")
    named = sorted(coordinators)
    view.put_obj(ks.MARKET_FEE, {"fee": fee, "fund_cap": cap, "coordinators": named})
    return [("market_fee", {"fee": fee, "fund_cap": cap, "coordinators": named})]


_FEE = {"fee": Int(0, MAX_FEE), "fund_cap": Int(0, MAX_FUND_CAP)}
KIND = KindSpec(
    OneOf((Map(_FEE), Map({**_FEE, "coordinators": List(KEY, MAX_COORDINATORS)}))),
    set_fee,
)
