"""The book of this MG's trades still to settle (split from `settlement.py`, whose `Settler` is the async shell over
it): pure, no I/O, the time passed in.

Promises: `judge` says what to do about one trade from where it stands on the chain and the last attempt's
outcome (the chain's record first, so a settlement that landed is never sent again and a statement on record
is never stated twice before its deadline); `permanent` tells a refusal no later block cures (`PERMANENT`,
`POOL_PERMANENT`) from one that waiting may (insufficient funds above all); `Settlements` holds each trade's
back-off (`first_wait_s`, doubling up to `max_wait_s`), its wait for a counterparty's deadline, and what is
given up at the day's end (`give_up`, keeping a statement whose counterparty may still state and, between
days, the next day's trades); `own_short` and
`statement_body` are a side's statement on a priced trade (`short` = agreed - min(delivered, agreed)), frozen
once made; `unsettled_trades` reads what a previous run left unsettled off the chain state it is given;
`settled_figures` is what the chain settled for one side of a trade (`query.settlement`'s `settlement`), with
this side's money signed (+ in, - out), the figures an owner reads rather than its own statement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from peergrid_edge.replicas import Submission
from peergrid_ledger import query
from peergrid_ledger.results import Reason

PERMANENT = frozenset(
    {
        Reason.ALREADY_SETTLED, Reason.CLOSED, Reason.NOT_FOUND, Reason.FORBIDDEN, Reason.INVALID,
        Reason.MALFORMED, Reason.UNKNOWN_SENDER, Reason.NOT_AUTHORISED, Reason.UNKNOWN_KIND,
        Reason.BAD_SIGNATURE, Reason.WRONG_CHAIN,
    }
)  # fmt: skip
"""Contract refusals that no later block cures. Anything else (insufficient-funds above all) is retried."""

POOL_PERMANENT = ("unknown sender", "bad signature", "transaction for chain", "malformed", "sender revoked")
"""The mempool's own wording (no `Reason` prefix) of refusals that waiting never cures."""

Step = Literal["settled", "superseded", "permanent", "retry", "wait", "disputed"]
"""`wait`: this MG's statement is on record and the counterparty may still state (until the deadline);
`disputed`: the statements differ by more than the tolerance, only the DSO settles it now."""


def permanent(reason: str) -> bool:
    """True when the chain's refusal `reason` will be the same however long this MG waits."""
    head = reason.split(":", 1)[0].strip()
    if head in {r.value for r in PERMANENT}:
        return True
    return any(reason.startswith(words) for words in POOL_PERMANENT)


def judge(
    standing: dict[str, Any] | None,
    submission: Submission | None,
    party: str = "buyer",
    by_both: bool = False,
) -> Step:
    """What to do about one trade: where it stands on chain (`query.settlement`; None: not there) and the last
    attempt's outcome (None: no attempt yet), for this MG as its `party` ("buyer" or "seller"). The chain's
    record decides first, so a settlement that landed (by this MG's earlier attempt, or by its counterparty)
    is never sent again, and a statement on record is never stated twice before its deadline."""
    if standing is not None:
        where = standing["state"]
        if where in ("settled", "superseded", "disputed"):
            return where  # type: ignore[no-any-return]
        if where in ("stated", "vouching") and party in standing["statements"]:
            return "wait"  # vouching (seller_vouched): agreed, the DSO's word until the vouch's `until`
    if submission is None:
        return "permanent" if standing is None else "retry"
    if submission.landed:  # a landed statement is on record (`wait` above), a landed settle without it paid
        return "wait" if by_both else "settled"
    return "permanent" if permanent(submission.reason) else "retry"


def statement_until(standing: dict[str, Any] | None) -> int | None:
    """Chain ms from which this MG's statement on record settles the trade when sent again: a lone statement's
    deadline, or an agreement's vouch `until` (genesis seller_vouched: the DSO's window)."""
    if standing is None:
        return None
    if standing["state"] == "vouching":
        return int(standing["vouch"]["until"])
    return None if standing["deadline"] is None else int(standing["deadline"])


@dataclass
class PendingSettle:
    interval: int
    trade: bytes
    delivered: int | None  # Wh; None until metered (settle_by_both: `Settler.metering`), then frozen
    attempts: int = 0
    due: float = 0.0  # when the next attempt may go (time.time())
    reason: str = ""  # why the last attempt did not settle it
    party: str = "buyer"  # this MG's side of the trade
    deadline: float | None = None  # settle_by_both: until when (time.time()) the counterparty may still state
    quantity: int = 0  # the agreed Wh
    priced: bool = False  # the DSO priced both parties (market.tariff): the statement carries `short`
    short: int | None = None  # Wh: this side's own shortfall, frozen with `delivered` (None: not stated)
    refused: int = (
        0  # attempts the chain refused (a commitment, then its reveal, are two attempts, none refused)
    )
    watch: bool = False  # a sale on the buyer's word: only read until the buyer's settle lands, never sent


@dataclass(frozen=True, slots=True)
class Ended:
    """How a trade left the list: `settled` (by which attempt) or given up with the reason."""

    pending: PendingSettle
    settled: bool
    reason: str


class Settlements:
    """The trades still to settle, each with its back-off; pure (the caller passes the time)."""

    def __init__(self, first_wait_s: float, max_wait_s: float) -> None:
        self.first_wait_s, self.max_wait_s = first_wait_s, max(first_wait_s, max_wait_s)
        self.pending: dict[bytes, PendingSettle] = {}

    def add(self, pending: PendingSettle, due: float) -> None:
        pending.due = due
        self.pending[pending.trade] = pending

    def wait_after(self, attempts: int) -> float:
        """The back-off after the `attempts`-th refused attempt: first_wait_s, doubling, at most max_wait_s."""
        return float(min(self.max_wait_s, self.first_wait_s * 2 ** max(0, attempts - 1)))

    def due(self, now: float) -> list[PendingSettle]:
        return sorted((p for p in self.pending.values() if p.due <= now), key=lambda p: (p.due, p.interval))

    def next_due(self) -> float | None:
        return min((p.due for p in self.pending.values()), default=None)

    def after(
        self, pending: PendingSettle, step: Step, reason: str, now: float, deadline: float | None = None
    ) -> Ended | None:
        """Book an attempt's outcome: retry later (None), wait for the trade's `deadline` (time.time()) and
        then send the same statement again (None), or the trade leaves the list (`Ended`)."""
        if step == "retry":
            pending.reason = reason
            self.add(pending, now + self.wait_after(pending.attempts))
            return None
        if step == "wait":
            pending.reason, pending.deadline = reason, deadline
            # the chain is read again every first wait (a local read: the counterparty's statement settles or
            # disputes it meanwhile), and at the deadline the statement goes again
            self.add(
                pending,
                now + self.first_wait_s if deadline is None else min(deadline, now + self.first_wait_s),
            )
            return None
        self.pending.pop(pending.trade, None)
        if step == "disputed":
            reason = "disputed: the counterparty's statement differs; the DSO settles it"
        return Ended(pending, step == "settled", "" if step == "settled" else reason or step)

    def last_due(self) -> float | None:
        return max((p.due for p in self.pending.values()), default=None)

    def waiting_until(self) -> float | None:
        """The latest deadline a kept statement waits for (None: none waits)."""
        return max((p.deadline for p in self.pending.values() if p.deadline is not None), default=None)

    def give_up(self, why: str, now: float | None = None, first: int | None = None) -> list[Ended]:
        """Drop what is still unsettled; with `now`, keep statements whose counterparty's deadline is after
        it (the agent waits for them: ending them would leave a trade this MG can still settle unpaid); with
        `first` (the next trading day's first interval), keep that interval's trades and later ones: they are
        not the ended day's."""
        ended: list[Ended] = []
        kept: dict[bytes, PendingSettle] = {}
        for t, p in self.pending.items():
            next_days = first is not None and p.interval >= first
            if next_days or (now is not None and p.deadline is not None and p.deadline > now):
                kept[t] = p
            else:
                last = "the buyer did not settle it" if p.watch else f"last refusal: {p.reason}"
                ended.append(Ended(p, False, f"{why}; {last}"))
        self.pending = kept
        return ended


def own_short(quantity: int, delivered: int) -> int:
    """This side's own shortfall on a priced trade: agreed − min(what it states was delivered, agreed), the
    DSO's figure for a metered side (its share for `delivered`), so `delivered + short` is the agreed Wh."""
    return quantity - min(max(0, delivered), quantity)


def statement_body(pending: PendingSettle) -> dict[str, Any]:
    """The `settle` body of this side's statement: `{trade, delivered}`, and `short` on a priced trade."""
    body: dict[str, Any] = {"trade": pending.trade, "delivered": pending.delivered}
    if pending.short is not None:
        body["short"] = pending.short
    return body


def unsettled_trades(
    state: Any, me: bytes, intervals: range, sales: bool = False
) -> list[tuple[int, bytes, dict[str, Any]]]:
    """The trades `me` bought (and, with `sales`, sold) in `intervals`' latest closings that are not settled
    (after a restart: what a previous run of this agent left to settle)."""
    return [
        (t, tid, tr)
        for t in intervals
        for tid, tr in query.trades(state, t)
        if (tr["buyer"] == me or (sales and tr["seller"] == me))
        and tr["settlement"] is None
        and "superseded" not in tr
    ]


def unsettled_purchases(
    state: Any, buyer: bytes, intervals: range
) -> list[tuple[int, bytes, dict[str, Any]]]:
    """The trades `buyer` bought in `intervals`' latest closings that are not settled."""
    return unsettled_trades(state, buyer, intervals)


def settled_figures(settlement: dict[str, Any] | None, party: str) -> dict[str, Any] | None:
    """What the chain settled for `party`'s side of a trade from its `settlement` (`query.settlement(...)
    ["settlement"]`; None: not settled): {delivered (Wh, the settled figure, not a statement), basis
    ("dso", "lapsed", ...; absent on the buyer's-word chain), amount (micro-units of the energy payment),
    compensation (micro-units, + paid to this side, - paid by it), money (+ in, - out, in currency units:
    the energy payment and the compensation together, what `p2p_money` is for the agreed trade), txid (hex:
    the transaction that settled it), owed (micro-units the payer could not pay then, where it is the
    chain's `owed`)}. Pure. Raises ValueError for a party
    that is neither "seller" nor "buyer"."""
    if party not in ("seller", "buyer"):
        raise ValueError(f"party {party!r} is neither seller nor buyer")
    if settlement is None:
        return None
    amount = int(settlement["amount"])
    compensation = 0
    paid = settlement.get("compensation")
    if isinstance(paid, dict):
        compensation = int(paid["amount"]) * (-1 if paid["payer"] == party else 1)
    money_micro = (amount if party == "seller" else -amount) + compensation
    out: dict[str, Any] = {
        "delivered": int(settlement["delivered"]), "amount": amount, "compensation": compensation,
        "money": money_micro / 1e6,
    }  # fmt: skip
    if isinstance(settlement.get("txid"), bytes):  # the settlement's own transaction: one per trade, ever
        out["txid"] = settlement["txid"].hex()
    if "basis" in settlement:
        out["basis"] = settlement["basis"]
    owed = settlement.get("owed")
    if isinstance(owed, dict):
        out["owed"] = {"payer": owed["payer"], "amount": int(owed["amount"])}
    return out
