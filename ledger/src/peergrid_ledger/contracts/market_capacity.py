"""`market.capacity`: the connection capacity the DSO posts for an account, bounding its make-whole gain.

Why: `uplift.gain_bound` is max_quantity x spread per interval, and max_quantity is the member's own
`market.rules` (up to 10^12 - 1 Wh): a member that sets a huge rule before the session may claim up to it
(review19 F1: the bound should use a quantity the member cannot raise). The DSO knows each MG's physical
connection (its point of common coupling, the connection agreement): no MG deviates by more than it carries.

  `market.capacity` {account, from_interval, wh} (the DSO only; any chain: it settles nothing): the account's
      connection carries at most `wh` (1 … 10^12) per interval from `from_interval` on, standing until the
      DSO posts another (an entry from a later interval keeps the earlier ones for the intervals before it,
      as `market.rules` does). Like the account's own rules it changes only from an interval the account has
      not traded or accepted in yet (`market_state.last_interval_key`: a position, or an exchange accept and
      its stated window): the bound a member's make-whole claim meets is fixed when it commits, so the DSO
      cannot cut an honest claim after the fact. Refused: a sender without the dso role (`forbidden`), an
      unknown account (`not-found`), a `from_interval` at or before the account's last traded interval
      (`rule-violation`), `wh` 0 or above 10^12 (`malformed`, by the schema). Event `capacity`.
Standing per account rather than per run of intervals like `market.tariff`: a connection is a physical fact
that changes seldom (a new transformer, a new agreement), so the DSO posts it once per MG, not once a day;
one record per account, read per interval by `market_state.capacity`.
The capacity also bounds what the account may trade, wherever its `max_quantity` does (`within_capacity`,
called after each max_quantity check, so the bound is min(max_quantity, capacity); a quantity above the rule
is refused in the rule's words as before, one within it but above the capacity naming the capacity): an
`offer` or a seller's `move` (its quantity), a `bid` or a buyer's `move` (its total demand; with genesis
`cap_on_fills` instead what the closing allocates it: `market_closing.agree_trades`), an `exchange.position`
and an `exchange.accept` (per interval its net |general + clean|). Why: a position above its connection is a
trade delivered short, or a day-ahead position that moves the prices and is then cut. A capacity is posted
only from an interval after the account's last position (above), so a standing position is never made too big
after the fact; an exchange post is not a position until accepted, so the next post and the accept meet a
newer capacity. Without a capacity every check reads one absent key and refuses nothing: bytes as before.
Pure; no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import keyspace as ks
from ..machine import BlockContext, KindSpec, require, require_role
from ..results import Event, Reason, RuleError
from ..schema import INTERVAL, KEY, QUANTITY, Int, Map
from ..state import Overlay, StateReader, read_obj
from ..tx import Tx
from .market_state import capacities, capacity_key, last_interval_key, standing_capacity

CAPACITY_WH = Int(1, QUANTITY.high)
# the refusal's own words for a capacity an account's position overtook (the DSO's poster sends it again on them)
OVERTAKEN = "its capacity can change only after it"


def set_capacity(view: Overlay, tx: Tx, ctx: BlockContext, sender: ks.AccountRecord) -> list[Event]:
    require_role(sender, {ks.ROLE_DSO}, tx.kind)
    account, start, wh = tx.body["account"], tx.body["from_interval"], tx.body["wh"]
    require(view.get(ks.account(account)) is not None, Reason.NOT_FOUND, "the account is not a known account")
    last = read_obj(view, last_interval_key(account))
    require(
        last is None or start > last,
        Reason.RULE_VIOLATION,
        f"the account traded or accepted up to interval {last}: {OVERTAKEN}",
    )
    entries = [e for e in read_obj(view, capacity_key(account)) or [] if e[0] < start]
    view.put_obj(capacity_key(account), [*entries, [start, wh]])
    return [("capacity", {"account": account, "from_interval": start, "wh": wh})]


def within_capacity(
    state: StateReader, account: bytes, first: int, quantities: Sequence[int], what: str
) -> None:
    """Each of `quantities` (Wh, signed or not: its size counts), the account's in chain interval first + t,
    within the connection capacity standing there; refused `rule-violation` naming the quantity, the interval
    and the capacity. Called after the caller's max_quantity check (whose words a quantity above the rule
    keeps). One read for all the intervals; none posted: nothing more."""
    entries = capacities(state, account)
    if not entries:
        return
    for t, quantity in enumerate(quantities):
        cap = standing_capacity(entries, first + t)
        if cap is not None and abs(quantity) > cap:
            raise RuleError(
                Reason.RULE_VIOLATION,
                f"{what} {quantity} Wh in interval {first + t} above the connection capacity {cap} Wh "
                "the DSO posted for it (market.capacity)",
            )


KIND = KindSpec(Map({"account": KEY, "from_interval": INTERVAL, "wh": CAPACITY_WH}), set_capacity)
