"""The exchange contract's `exchange.open` (split from exchange.py, whose docstring has the session's whole
flow): who may open a session and with what.

Promises: an authorised sender opens a session under a name nobody holds yet, and a name reserved to a key
(`exchange_state.reserved_name`) only that key opens; the members are 2..256 distinct known, unrevoked,
authorised keys (one that could never post would only stall the session), on a `settle_by_both` or
`anonyms_only` chain each an anonym (`market_state.require_anonym`: the DSO meters its forward trades by anonym;
the genesis names each MGMC's anonym); 1..672 opening prices; a
`deadline`, when given, after the open's block time, and required on a chain whose genesis says
`accept_rounds` 2. The sender becomes the coordinator; the session's record, members, prices, running sums
and each member's empty post are written, a clean session's book by `exchange_clean.open_book`. The exchange
fee in force (`market_fee.fee_in_force`: the DSO's latest `market.fee`, else the genesis') is copied into the
record as `fee` (nano-currency per kWh per side) and `fund_cap` (micro-units) when the fee is above 0 and the
opener is sanctioned (`market_fee.sanctioned`: a coordinator the DSO named, or the DSO), so the members, the
clear and the uplift read one figure, fixed at the open; a fee of 0, or an opener the DSO did not name, writes
neither (the record's bytes as before the fee: the session funds its make-whole by its payers' surplus and
never draws on the uplift fund - review26 R26-1, a sham session opened by any key drained it). Pure; no I/O.
"""

from __future__ import annotations

from typing import Any

from .. import keyspace as ks
from ..machine import BlockContext, require
from ..results import Event, Reason, RuleError
from ..state import Overlay
from ..tx import Tx
from . import exchange_clean as clean_book
from .exchange_state import (
    MAX_INTERVALS,
    MAX_MEMBERS,
    MIN_MEMBERS,
    members_key,
    name_owner,
    post_key,
    prices_key,
    session_key,
    sums_key,
)
from .market_fee import fee_in_force, sanctioned
from .market_state import require_anonym


def open_exchange(view: Overlay, tx: Tx, ctx: BlockContext, sender: ks.AccountRecord) -> list[Event]:
    require(sender.authorised, Reason.NOT_AUTHORISED, f"{tx.kind}: sender is not authorised")
    b = tx.body
    name, members, prices = b["session"], b["members"], b["prices"]
    owner = name_owner(name)
    require(
        owner is None or tx.sender.hex().startswith(owner),
        Reason.FORBIDDEN,
        f"exchange session name {name!r} is reserved to the key {owner}…: only it opens it",
    )
    require(view.get(session_key(name)) is None, Reason.DUPLICATE, f"exchange session {name!r} exists")
    require(
        MIN_MEMBERS <= len(members) <= MAX_MEMBERS,
        Reason.INVALID,
        f"{len(members)} members, a session needs {MIN_MEMBERS} to {MAX_MEMBERS}",
    )
    require(len(set(members)) == len(members), Reason.INVALID, "a member appears twice")
    for member in members:
        raw = view.get(ks.account(member))
        if raw is None:
            raise RuleError(Reason.NOT_FOUND, f"member {member.hex()[:16]}… is not a known account")
        if view.get(ks.revoked(member)) is not None:
            raise RuleError(Reason.FORBIDDEN, f"member {member.hex()[:16]}…'s key was revoked")
        # a member that could never post (post_position refuses it) could only stall the session
        account = ks.AccountRecord.decode(raw)
        if not account.authorised:
            raise RuleError(Reason.NOT_AUTHORISED, f"member {member.hex()[:16]}… is not authorised")
        require_anonym(
            ctx.genesis.params.settle_by_both,
            account.roles,
            f"member {member.hex()[:16]}…",
            tx.kind,
            anonyms_only=ctx.genesis.params.anonyms_only,
        )
    require(
        1 <= len(prices) <= MAX_INTERVALS,
        Reason.INVALID,
        f"{len(prices)} prices, a session has 1 to {MAX_INTERVALS} intervals",
    )
    intervals = len(prices)
    deadline = b.get("deadline")
    require(
        deadline is None or deadline > ctx.time,
        Reason.INVALID,
        f"deadline {deadline} is not after the open's block time {ctx.time}",
    )
    accept_rounds = ctx.genesis.params.accept_rounds
    require(
        deadline is not None or accept_rounds < 2,
        Reason.RULE_VIOLATION,
        f"no deadline: the chain's genesis accept_rounds {accept_rounds} needs one (without it a member that "
        "never accepts, or stops answering the rounds, would hold the clear for ever)",
    )
    record: dict[str, Any] = {
        "closed": False,
        "coordinator": tx.sender,
        "first_interval": b["first_interval"],
        "intervals": intervals,
        "iteration": 0,
        "rho": b["rho"],
        "size": len(members),
    }
    if deadline is not None:  # absent without one, so that the sessions opened before it keep their bytes
        record["deadline"] = deadline
    fee, fund_cap = fee_in_force(view, ctx.genesis.params)
    # absent without one, so that a session without a fee keeps its bytes; only a session the DSO sanctioned
    # (its opener named) takes the fee and so draws on the fund
    if fee and sanctioned(view, ctx.genesis, tx.sender, sender.roles):
        record["fee"], record["fund_cap"] = fee, fund_cap
    record.update(clean_book.open_book(view, name, b, intervals))  # `clean` only on a clean session
    view.put_obj(session_key(name), record)
    view.put_obj(members_key(name), members)
    view.put_obj(prices_key(name), prices)
    view.put_obj(sums_key(name), {"posted": 0, "sums": [0] * intervals})
    for member in members:
        view.put_obj(post_key(member, name), {"iteration": -1, "positions": [], "txid": b""})
    return [("exchange_opened", {"session": name, "coordinator": tx.sender, "members": len(members)})]
