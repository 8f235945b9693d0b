"""The exchange contract: the day-ahead market's exchange ADMM on the chain, every move a signed transaction.

Units: positions in whole Wh (signed; + = export, a sale), prices in nano-currency per kWh (10**9 = one
currency unit per kWh; the market contract's micro-units per Wh × 10**6), ρ in nano-currency per kWh².
Flow of one session (the controller's dayahead.py is the computation mirrored here):
  `exchange.open` names the members (2..256 known, unrevoked keys), the first chain interval, the opening
      price of each of its intervals (1..672) and ρ; the sender becomes the session's coordinator. A name
      `<first 16 hex digits of a key>/…` (`reserved_name`) only that key opens, so nobody squats the name
      members agreed on for their coordinator's session (exchange_state.py says why that suffices). An
      optional `deadline` (block time, ms, after the open's) bounds how long the clear is the coordinator's
      to time (`exchange_clearing` has the rule); on a chain whose genesis says `accept_rounds` 2 it is
      required (without one a member that never accepted would hold the clear for ever).
  `exchange.position` is one member's net position for every interval at the current iteration, once per
      iteration, each within the member's owner rules for that chain interval (`market_state.rules_for`:
      |q| ≤ `max_quantity`; a `clean_only` member never buys) and the connection capacity the DSO posted
      for it (`market.capacity`: market_capacity). The chain keeps the iteration's running sum
      per interval, so a step costs the same however many members posted. An optional `settled` (default
      false) is the member's verdict on the previous, stepped, iteration (the controller's value stop,
      judged with the member's own tariff spread: dayexchange.settled): true says what that iteration still
      moved is worth no more to it than its stop allows. Only iteration k ≥ 2 may say so (iteration 0 is
      the first responses, so iteration 1's post has no move to judge); the chain counts the iteration's
      true verdicts (`session`'s `settled`, `settled_count`). An optional `judged` is the member's judgement
      of its own owner rules (floors, caps) at the previous, stepped, iteration (the controller's
      dayjudge.py): `banned`, the (interval, side)s it banned itself there, `asks`, its banned ones the
      price now permits, each a cell 2·t for a sale or 2·t + 1 for a purchase (t from 0 within the
      session), strictly ascending, the two apart, and `fees`, whether it dropped or took back any of its
      rule fees. Absent is nothing to say (an all-empty one is refused, so each has one form); also only
      from iteration 2 on. It is kept with the post (`position`, `stepped`; `judgements` reads the current
      iteration's), so that anyone computes from the chain who is let back (dayjudge.Coordination). A
      member can only ban or ask back its own sides, and the coordination (dayjudge.Coordination) counts
      a ban or an ask only as the member's rule on the chain allows it at the judged prices; fee changes
      count in at most one judgement per interval per session, all members together; its positions are
      checked against its rules as ever. A member that owes (`funds.refuse_debtor`) may post no purchase
      (a negative position in either book), refused `insufficient-funds` naming the debt; it may sell.
  `exchange.step` (coordinator, once every member posted) computes the new prices itself: unchanged at
      iteration 0 (every member's first response to the opening prices), else `next_prices` with the
      session's current ρ; then ρ takes the body's value, within [ceil(ρ/2), 2ρ] (the coordinator's
      residual balancing halves or doubles it, or caps it), and the next iteration starts.
  `exchange.close` (coordinator) freezes the prices of the last step; posts already made for the current
      iteration are abandoned (counted in the event: a member that can no longer post cannot hold the
      session open). Each member's last stepped position stays readable (`stepped`). The event's `settled`
      says whether every member's verdict on the last stepped iteration was settled (the value stop: the
      coordinator closed once they all said so), so anyone reading the chain sees why the session ended.
      With genesis `accept_rounds` 2 and `accept_window_ms` W, a deadline before the close's block time + W
      is raised to it (in the session record and the event): the coordinator cannot leave the members less
      than W to accept, e.g. by a deadline already past at the close (review9 F4).
  `exchange.accept` (each member, once) and `exchange.clear` (any member when every member accepted or the
      deadline passed; the coordinator also before that on a session without a deadline; in parts for a
      big session) then turn the closed session into the day's forward trades, recorded as the market
      contract's trades at the closing prices on its tick (`micro_per_wh`): `exchange_clearing` has their
      rules. A member's first accept may state its trading window (`window` [first, last]): the chain
      intervals it trades in, which bound its make-whole gain (`uplift`).
A session opened with `clean_prices` also trades clean energy in a second book per interval
(`clean_positions`, a member's `clean` declaration, a second price list moved with the same ρ, clean trades
first in the clear): exchange_clean.py has its rules; a session opened without keeps today's bytes.
Nobody has to trust the coordinator's arithmetic: the chain computes every price from the posted positions.
The coordinator does choose the opening prices, ρ's path (at most halved or doubled per step, with no rule
on which), when to close and the deadline (with `accept_rounds` 2 no earlier than `accept_window_ms` after
the close); members see all of them on the chain and must judge them (a member can refuse to post). Only
the coordinator steps and closes: one that is gone before the close leaves the session open, holding nothing (no interval is reserved; the members bargain intraday). Positions are posted in the clear, so a member posting late in an iteration can read the sum so far:
before a shared live chain this wants commit–reveal per iteration. The bounds, the price arithmetic
(`next_prices`, `rho_bounds`, `micro_per_wh`), the keys and the readers are exchange_state.py's, imported
here under the same names; the `exchange.open` handler is exchange_open.py's. Pure; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import combinations, pairwise
from typing import Any

from .. import keyspace as ks
from ..machine import BlockContext, KindSpec, require
from ..results import Event, Reason
from ..schema import INTERVAL, KEY, LABEL, Bool, Int, List, Map, OneOf, Shape
from ..state import Overlay, read_obj
from ..tx import Tx
from . import exchange_clean as clean_book
from . import exchange_clearing
from .exchange_open import open_exchange
from .exchange_state import (
    MAX_INTERVALS,
    MAX_ITERATIONS,
    MAX_MEMBERS,
    MAX_POSITION,
    MAX_PRICE,
    MAX_RHO,
    MIN_MEMBERS,
    judgements,
    members_key,
    micro_per_wh,
    name_owner,
    next_prices,
    position,
    post_key,
    posted,
    prices_key,
    reserved_name,
    rho_bounds,
    session,
    session_key,
    settled_count,
    settled_in,
    stepped,
    stepped_key,
    sums_key,
)
from .funds import refuse_debtor
from .market_capacity import within_capacity
from .market_state import require_anonym

__all__ = [  # the state's names, imported here by the controller, the edge and exchange_clearing as before
    "KINDS",
    "MAX_INTERVALS",
    "MAX_ITERATIONS",
    "MAX_MEMBERS",
    "MAX_POSITION",
    "MAX_PRICE",
    "MAX_RHO",
    "MIN_MEMBERS",
    "judgements",
    "members_key",
    "micro_per_wh",
    "name_owner",
    "next_prices",
    "position",
    "post_key",
    "posted",
    "prices_key",
    "reserved_name",
    "rho_bounds",
    "session",
    "session_key",
    "settled_count",
    "stepped",
    "stepped_key",
    "sums_key",
]

PRICE_NANO = Int(-MAX_PRICE, MAX_PRICE)
RHO = Int(1, MAX_RHO)
ITERATION = Int(0, MAX_ITERATIONS)
POSITION = Int(-MAX_POSITION, MAX_POSITION)


def _open_session(view: Overlay, name: str) -> dict[str, Any]:
    record: dict[str, Any] | None = read_obj(view, session_key(name))
    require(record is not None, Reason.NOT_FOUND, f"no exchange session {name!r}")
    assert record is not None
    require(not record["closed"], Reason.CLOSED, f"exchange session {name!r} is closed")
    return record


def _at_iteration(record: dict[str, Any], iteration: int) -> None:
    current = record["iteration"]
    require(
        iteration == current, Reason.RULE_VIOLATION, f"iteration {iteration}, the session is at {current}"
    )


def _coordinator_only(record: dict[str, Any], tx: Tx) -> None:
    require(tx.sender == record["coordinator"], Reason.FORBIDDEN, f"{tx.kind}: only the coordinator")


# ---------------------------------------------------------------------------------------------- handlers


def _check_judged(judged: dict[str, Any], record: dict[str, Any]) -> None:
    """A judgement's cells within the session, strictly ascending, its bans and asks apart, not empty."""
    require(
        record["iteration"] >= 2,
        Reason.RULE_VIOLATION,
        f"judged at iteration {record['iteration']}: a judgement is of the previous stepped iteration's "
        "prices, and iterations 0 (the first responses) and 1 have none before them to judge",
    )
    cells = 2 * record["intervals"]
    for key in ("banned", "asks"):
        codes = judged[key]
        require(
            all(0 <= c < cells for c in codes),
            Reason.INVALID,
            f"judged {key}: a cell beyond the session's {record['intervals']} intervals (cells 0..{cells - 1})",
        )
        require(
            all(a < b for a, b in pairwise(codes)),
            Reason.INVALID,
            f"judged {key}: cells must be strictly ascending (no duplicates)",
        )
    require(
        not set(judged["banned"]) & set(judged["asks"]),
        Reason.INVALID,
        "judged: a side both banned and asked back",
    )
    require(
        bool(judged["banned"] or judged["asks"] or judged["fees"]),
        Reason.INVALID,
        "judged: an empty judgement is posted as none",
    )


def post_position(view: Overlay, tx: Tx, ctx: BlockContext, sender: ks.AccountRecord) -> None:
    require(sender.authorised, Reason.NOT_AUTHORISED, f"{tx.kind}: sender is not authorised")
    params, who = ctx.genesis.params, f"{tx.sender.hex()[:16]}…"
    require_anonym(params.settle_by_both, sender.roles, who, tx.kind, anonyms_only=params.anonyms_only)
    b = tx.body
    name, positions = b["session"], b["positions"]
    record = _open_session(view, name)
    key = post_key(tx.sender, name)
    last = read_obj(view, key)
    require(last is not None, Reason.FORBIDDEN, f"not a member of exchange session {name!r}")
    _at_iteration(record, b["iteration"])
    require(last["iteration"] != record["iteration"], Reason.DUPLICATE, "already posted this iteration")
    require(
        len(positions) == record["intervals"],
        Reason.INVALID,
        f"{len(positions)} positions, the session has {record['intervals']} intervals",
    )
    settled = b.get("settled", False)
    require(
        not settled or record["iteration"] >= 2,
        Reason.RULE_VIOLATION,
        f"settled at iteration {record['iteration']}: a verdict judges the previous iteration's move, "
        "and iterations 0 (the first responses) and 1 have none before them to judge",
    )
    judged = b.get("judged")
    if judged is not None:
        _check_judged(judged, record)
    fields = clean_book.post_fields(record, last, b)  # {clean, clean_positions} on a clean session
    if min(positions) < 0 or min(fields.get("clean_positions") or [0]) < 0:
        refuse_debtor(
            view, tx.sender, f"a purchase in exchange session {name!r}", ctx.genesis.params.owed_limit
        )
    seller = fields.get("clean", False)
    cleans = fields.get("clean_positions")
    clean_book.check_positions(view, tx.sender, record["first_interval"], positions, cleans, seller)
    nets = positions if cleans is None else [g + c for g, c in zip(positions, cleans, strict=True)]
    within_capacity(view, tx.sender, record["first_interval"], nets, "net position")
    clean_book.add_sums(view, name, fields)
    progress = read_obj(view, sums_key(name))
    sums = [s + q for s, q in zip(progress["sums"], positions, strict=True)]
    running: dict[str, Any] = {"posted": progress["posted"] + 1, "sums": sums}
    count = settled_in(progress) + settled
    if count:  # absent until a post says settled: a chain without verdicts keeps its state bytes
        running["settled"] = count
    view.put_obj(sums_key(name), running)
    if last["iteration"] >= 0:  # the session is past it: it was stepped, and this post may yet be abandoned
        view.put_obj(stepped_key(tx.sender, name), last)
    post: dict[str, Any] = {"iteration": record["iteration"], "positions": positions, "txid": tx.txid}
    if judged is not None:  # absent without one, so that the posts before judgements keep their bytes
        post["judged"] = judged
    view.put_obj(key, {**post, **fields})


def step(view: Overlay, tx: Tx, ctx: BlockContext, sender: ks.AccountRecord) -> list[Event]:
    b = tx.body
    name, new_rho = b["session"], b["rho"]
    record = _open_session(view, name)
    _coordinator_only(record, tx)
    _at_iteration(record, b["iteration"])
    progress = read_obj(view, sums_key(name))
    require(
        progress["posted"] == record["size"],
        Reason.RULE_VIOLATION,
        f"{progress['posted']} of {record['size']} members posted iteration {record['iteration']}",
    )
    rho = record["rho"]
    low, high = rho_bounds(rho)
    require(
        low <= new_rho <= high,
        Reason.RULE_VIOLATION,
        f"rho {new_rho} outside [{low}, {high}] (at most halved or doubled per step)",
    )
    require(record["iteration"] < MAX_ITERATIONS, Reason.RULE_VIOLATION, "last iteration reached: close it")
    if record["iteration"] > 0:
        prices = next_prices(read_obj(view, prices_key(name)), progress["sums"], record["size"], rho)
        clean_book.check_prices(prices)
        view.put_obj(prices_key(name), list(prices))
    clean = clean_book.step_book(view, name, record, rho)  # the clean book's prices, on a clean session
    iteration = record["iteration"] + 1
    view.put_obj(session_key(name), {**record, "iteration": iteration, "rho": new_rho})
    view.put_obj(sums_key(name), {"posted": 0, "sums": [0] * record["intervals"]})
    # how many of the stepped iteration's posts said settled (their verdicts on the iteration before it)
    stepped_event = {"session": name, "iteration": iteration, "rho": new_rho, "settled": settled_in(progress)}
    return [("exchange_step", {**stepped_event, **clean})]


def close(view: Overlay, tx: Tx, ctx: BlockContext, sender: ks.AccountRecord) -> list[Event]:
    name = tx.body["session"]
    record = _open_session(view, name)
    _coordinator_only(record, tx)
    _at_iteration(record, tx.body["iteration"])
    # an iteration some members posted and the coordinator closes instead of stepping (a member that can no
    # longer post would otherwise hold the session open for ever) is abandoned: its posts never price
    # anything, the prices stay those of the last step, and the event says how many posts were dropped
    progress = read_obj(view, sums_key(name))
    unstepped = progress["posted"]
    raised = _raised_deadline(record, ctx)
    view.put_obj(session_key(name), {**record, "closed": True, **raised})
    prices = read_obj(view, prices_key(name))
    closed = {
        "session": name,
        "iteration": record["iteration"],
        "prices": prices,
        "unstepped": unstepped,
        # every member's verdict on the last stepped iteration, posted with the abandoned one, was settled:
        # the value stop (a kWh stop or any other close leaves it false)
        "settled": settled_in(progress) == record["size"],
        **raised,  # the deadline only when the close raised it: every other close keeps its event's bytes
        **clean_book.closing_prices(view, name, record),  # on a clean session only
    }
    return [("exchange_closed", closed)]


def _raised_deadline(record: dict[str, Any], ctx: BlockContext) -> dict[str, int]:
    """`{deadline}` raised to the close's block time + genesis `accept_window_ms` (with `accept_rounds` 2)
    when the session's falls before that, else nothing: every member has at least the window after the
    close to post its first accept, whatever deadline the coordinator set at the open (review9 F4)."""
    params = ctx.genesis.params
    if params.accept_rounds < 2 or not params.accept_window_ms:
        return {}
    floor = ctx.time + params.accept_window_ms
    # an accept_rounds 2 session always has a deadline (`open_exchange` refuses one without)
    return {"deadline": floor} if record["deadline"] < floor else {}


def genesis_writes(genesis: Any) -> dict[bytes, bytes | None]:
    return {}


def _optional(base: Map, *extras: Mapping[str, Shape]) -> OneOf:
    """`base` with any of the optional field groups `extras`: the bodies posted before a group existed (or
    without it) still validate."""
    groups = range(len(extras))
    return OneOf(
        tuple(
            Map({**base.fields, **{k: v for i in chosen for k, v in extras[i].items()}})
            for n in range(len(extras) + 1)
            for chosen in combinations(groups, n)
        )
    )


_POSITION_BODY = Map({"session": LABEL, "iteration": ITERATION, "positions": List(POSITION, MAX_INTERVALS)})
CELL = Int(0, 2 * MAX_INTERVALS - 1)  # 2·t a sale, 2·t + 1 a purchase, in the session's interval t
JUDGED = Map({"banned": List(CELL, 2 * MAX_INTERVALS), "asks": List(CELL, 2 * MAX_INTERVALS), "fees": Bool()})
_VERDICT = {"settled": Bool()}
_JUDGED = {"judged": JUDGED}
_CLEAN_POSITIONS = {"clean_positions": List(POSITION, MAX_INTERVALS)}  # a clean session's
_ACCEPT_BODY = Map({"session": LABEL, "positions": List(POSITION, MAX_INTERVALS), "clean": Bool()})
_OPEN_BODY = Map(
    {
        "session": LABEL,
        "first_interval": INTERVAL,
        "members": List(KEY, MAX_MEMBERS),
        "prices": List(PRICE_NANO, MAX_INTERVALS),
        "rho": RHO,
    }
)

KINDS: dict[str, KindSpec] = {
    "exchange.open": KindSpec(
        # `deadline` (none when absent) and `clean_prices` (no clean book when absent) are optional
        _optional(
            _OPEN_BODY, {"deadline": Int(0, 2**63 - 1)}, {"clean_prices": List(PRICE_NANO, MAX_INTERVALS)}
        ),
        open_exchange,
    ),
    "exchange.position": KindSpec(
        # `settled` (false when absent), `judged` (none when absent), and on a clean session
        # `clean_positions` and `clean` (false when absent) are optional
        _optional(_POSITION_BODY, _VERDICT, _JUDGED, _CLEAN_POSITIONS, {"clean": Bool()}),
        post_position,
    ),
    "exchange.step": KindSpec(Map({"session": LABEL, "iteration": ITERATION, "rho": RHO}), step),
    "exchange.close": KindSpec(Map({"session": LABEL, "iteration": ITERATION}), close),
    # `clean_positions` (a clean session's) and `window` (the member's trading window, [first, last]: none
    # when absent, the whole session) are optional
    "exchange.accept": KindSpec(
        _optional(_ACCEPT_BODY, _CLEAN_POSITIONS, {"window": List(INTERVAL, 2)}), exchange_clearing.accept
    ),
    "exchange.clear": KindSpec(Map({"session": LABEL}), exchange_clearing.clear),
}
END_BLOCK = None
