"""Agreed statements that wait for the DSO's word on the seller's side (genesis `seller_vouched`; review13 F2).

The buyer's PCC meter counts its whole import from the feeder, so it cannot show that a P2P seller delivered:
a seller that states "delivered = agreed, short 0" agrees with an honest buyer whatever it delivered. With
`seller_vouched` two agreeing statements do not pay: `hold` records the agreed figures on the trade as
`vouch` {delivered, seller_short, buyer_short, until} (until = block time + `settle_wait_ms`), and the trade
waits (settlement state `vouching`). Within the window the DSO's `settle` (from its meters of the seller's
side) is final, as for any unsettled trade; after `until` either party's `settle` repeating its own statement
exactly pays the held figures (`release`, basis `agreed`), as a lone statement lapses. Without the param (the
default, and every genesis written before it) agreeing statements pay at once and no record changes.
A crash is not a choice (review14 K3): a lone statement whose counterparty committed and never revealed is
held the same way (`basis` "withheld"), so the DSO meters the seller before the withholding penalty
(`market_sealed.withheld`) pays, and either is held as having delivered all, so the seller's meter alone
decides (the DSO pays min(the seller's share, the quantity)): a withheld buyer with shortfalls (0, 0); a
withheld seller with the buyer's own shortfall kept, (0, its `short`), and `release` {delivered 0, the whole
quantity the seller's short}. Not at the buyer's word (review15 M4): a buyer that stated 0 took a crashed
seller's metered export free and was paid compensation on it. The repeat after `until` pays the penalty
(`release`, else the held figures) where the DSO did not vouch.
Pure; no I/O.
"""

from __future__ import annotations

from typing import Any

from ..machine import BlockContext, require
from ..results import Event, Reason, RuleError
from ..state import Overlay
from ..tx import Tx
from .market_state import trade_key
from .settle_pay import pay


def hold(
    view: Overlay,
    ctx: BlockContext,
    tx: Tx,
    tid: bytes,
    agreed: dict[str, Any],
    delivered: int,
    shorts: tuple[int, int],
    basis: str = "agreed",
    release: tuple[int, tuple[int, int]] | None = None,
) -> list[Event]:
    """Two statements agreed on `delivered` and `shorts` (seller's, buyer's), or (`basis` "withheld") a lone
    statement whose counterparty kept its sealed one back (`market_closing._lapse`): pay now, or with
    `seller_vouched` keep them on the trade for the DSO's window. `release` (delivered, shorts), when given,
    is what the repeat after `until` pays instead of the held figures (a withheld seller's worst case, where
    the DSO did not vouch)."""
    if not ctx.genesis.params.seller_vouched:
        return pay(view, ctx, tx, tid, agreed, delivered, basis, shorts)
    until = ctx.time + ctx.genesis.params.settle_wait_ms
    agreed["vouch"] = {
        "delivered": delivered,
        "seller_short": shorts[0],
        "buyer_short": shorts[1],
        "until": until,
    }
    if basis != "agreed":  # only then: an agreement's vouch keeps its bytes
        agreed["vouch"]["basis"] = basis
    if release is not None:
        agreed["vouch"]["release"] = {
            "delivered": release[0],
            "seller_short": release[1][0],
            "buyer_short": release[1][1],
        }
    view.put_obj(trade_key(tid), agreed)
    return [("vouching", {"trade": tid, "delivered": delivered, "until": until})]


def release(
    view: Overlay, ctx: BlockContext, tx: Tx, tid: bytes, agreed: dict[str, Any], party: str, delivered: int
) -> list[Event]:
    """A party's `settle` on a trade whose agreement waits (`hold`): refused before `until` (the DSO's
    window); after it, the party's own statement repeated exactly pays the held figures."""
    vouch, own = agreed["vouch"], agreed["statements"][party]
    said = f"trade {tid.hex()[:16]}…: the {party} already stated {own['delivered']} Wh and the parties agree"
    if ctx.time < vouch["until"]:
        raise RuleError(
            Reason.DUPLICATE,
            f"{said}; the DSO vouches for the seller's side until {vouch['until']} (block time {ctx.time}), "
            f"then the {party}'s settle of {own['delivered']} Wh again settles on the agreed figures",
        )
    require(
        delivered == own["delivered"] and tx.body.get("short", 0) == own.get("short", 0),
        Reason.DUPLICATE,
        f"{said}: a statement is final, repeat it as it was",
    )
    terms = vouch.get("release", vouch)  # a withheld seller's worst case, else the held figures
    shorts = (int(terms["seller_short"]), int(terms["buyer_short"]))
    return pay(view, ctx, tx, tid, agreed, int(terms["delivered"]), vouch.get("basis", "agreed"), shorts)
