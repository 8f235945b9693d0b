"""`market.fee`: the exchange fee the DSO sets for the day-ahead sessions opened after it, and the uplift fund's cap.

Why: the day-ahead make-whole (`uplift`) was funded by the payers' own claimed surplus, and a payer saved its
whole charge by claiming 0 (study M10 §3: if every payer does, 9 of the bench's 11 days go unfunded). A fee on
every cleared Wh, paid into a fund the chain holds (`uplift_fund`), leaves no payer figure to misreport.

  `market.fee` {fee, fund_cap} (the DSO only; on a chain with the uplift contract): `fee` nano-currency per kWh
      per side of every day-ahead trade (0 … 10^7, i.e. up to 10 micro-units per Wh: one market tick, 1
      micro-unit per Wh, is 10^6), `fund_cap` the most the uplift fund keeps after a session's payout
      (micro-units, 0 … 10^15). Standing from the next `exchange.open` on: `exchange.open` copies the pair in
      force into the session's record (`fee`, `fund_cap`; both absent when the fee is 0, so a session without
      a fee keeps today's bytes), and the session's members, its clear and its uplift read that figure alone -
      never one posted after the open (every member's answers and accept check were priced with it).
      Refused: a sender without the dso role (`forbidden`), a fee above 10^7 or a cap above 10^15 or a
      missing or extra field (`malformed`, by the schema). Event `market_fee`.
Until the DSO posts one, the genesis' `exchange_fee` and `uplift_fund_cap` stand (both 0 by default: no fee).
Why the DSO: it posts the tariffs and capacities already and is the market's regulator; the MGMCs co-validate,
so the change is public. Pure; no I/O.
"""

from __future__ import annotations

from typing import Any

from .. import keyspace as ks
from ..machine import BlockContext, KindSpec, require_role
from ..results import Event
from ..schema import Int, Map
from ..state import Overlay, StateReader, read_obj
from ..tx import Tx

# nano-currency per kWh per side: 10 micro-units per Wh, ten ticks, far above the study's 0.75-1
MAX_FEE = 10**7
MAX_FUND_CAP = 10**15  # micro-units, as payments.MAX_AMOUNT: far beyond any fund, well inside 64 bits
NANO_PER_MICRO_KWH = 10**6  # fee (nano/kWh) x Wh / this = micro-units: 10^-9 x 10^-3 / 10^-6


def fee_in_force(state: StateReader, params: Any) -> tuple[int, int]:
    """(fee, fund_cap) a session opened now takes: the DSO's latest `market.fee`, else the genesis'."""
    posted = read_obj(state, ks.MARKET_FEE)
    if posted is None:
        return int(params.exchange_fee), int(params.uplift_fund_cap)
    return int(posted["fee"]), int(posted["fund_cap"])


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
    view.put_obj(ks.MARKET_FEE, {"fee": fee, "fund_cap": cap})
    return [("market_fee", {"fee": fee, "fund_cap": cap})]


KIND = KindSpec(Map({"fee": Int(0, MAX_FEE), "fund_cap": Int(0, MAX_FUND_CAP)}), set_fee)
