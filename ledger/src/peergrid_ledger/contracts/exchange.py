"""The exchange contract: the day-ahead market's exchange ADMM on the chain, every move a signed transaction.

Units: positions in whole Wh (signed; + = export, a sale), prices in nano-currency per kWh (10**9 = one
currency unit per kWh; the market contract's micro-units per Wh × 10**6), ρ in nano-currency per kWh².
Flow of one session (the controller's dayahead.py is the computation mirrored here):
  `exchange.open` names the members (2..256 known, unrevoked keys), the first chain interval, the opening
      price of each of its intervals (1..672) and ρ; the sender becomes the session's coordinator. An
      optional `deadline` (block time, ms, after the open's) bounds how long the clear is the coordinator's
      to time (`exchange_clearing` has the rule).
  `exchange.position` is one member's net position for every interval at the current iteration, once per
      iteration, each within the member's owner rules for that chain interval (`market_state.rules_for`:
      |q| ≤ `max_quantity`; a `clean_only` member never buys). The chain keeps the iteration's running sum
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
      member can only ban or ask back its own sides: a lie bans itself, holds one (interval, side)'s
      let-backs for a judgement, or keeps the exchange going no longer than an honest member's fee
      changes could (the coordination bounds each, dayjudge.Coordination); its positions are checked
      against its rules as ever.
  `exchange.step` (coordinator, once every member posted) computes the new prices itself: unchanged at
      iteration 0 (every member's first response to the opening prices), else `next_prices` with the
      session's current ρ; then ρ takes the body's value, within [ceil(ρ/2), 2ρ] (the coordinator's
      residual balancing halves or doubles it, or caps it), and the next iteration starts.
  `exchange.close` (coordinator) freezes the prices of the last step; posts already made for the current
      iteration are abandoned (counted in the event: a member that can no longer post cannot hold the
      session open). Each member's last stepped position stays readable (`stepped`). The event's `settled`
      says whether every member's verdict on the last stepped iteration was settled (the value stop: the
      coordinator closed once they all said so), so anyone reading the chain sees why the session ended.
  `exchange.accept` (each member, once) and `exchange.clear` (any member when every member accepted or the
      deadline passed; the coordinator also before that on a session without a deadline; in parts for a
      big session) then turn the closed session into the day's forward trades, recorded as the market
      contract's trades at the closing prices on its tick (`micro_per_wh`): `exchange_clearing` has their
      rules.
Nobody has to trust the coordinator's arithmetic: the chain computes every price from the posted positions.
The coordinator does choose the opening prices, ρ's path (at most halved or doubled per step, with no rule
on which), when to close and the deadline; members see all of them on the chain and must judge them (a
member can refuse to post). Only the coordinator steps and closes: one that is gone before the close leaves
the session open, holding nothing (no interval is reserved; the members bargain intraday). Positions are posted in the clear, so a member posting late in an iteration can read the sum so far:
before a shared live chain this wants commit–reveal per iteration. `next_prices` is the one price rule and
`rho_bounds` the one ρ rule; the controller imports both, so the two sides compute the same integers.
Pure; no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any

from .. import keyspace as ks
from ..machine import BlockContext, KindSpec, require
from ..results import Event, Reason, RuleError
from ..schema import INTERVAL, KEY, LABEL, Bool, Int, List, Map, OneOf
from ..state import Overlay, StateReader, read_obj
from ..tx import Tx
from . import exchange_clearing
from .market_state import rules_for

MIN_MEMBERS, MAX_MEMBERS = 2, 256
MAX_INTERVALS = 672  # a week of quarter-hours
MAX_PRICE = 10**13  # |λ| in nano per kWh: 10^4 currency units per kWh, far beyond any energy price
MAX_RHO = 10**13  # nano per kWh²
MAX_POSITION = 10**12  # |q| in Wh: the market contract's QUANTITY bound
MAX_ITERATIONS = 1_000_000

PRICE_NANO = Int(-MAX_PRICE, MAX_PRICE)
RHO = Int(1, MAX_RHO)
ITERATION = Int(0, MAX_ITERATIONS)
POSITION = Int(-MAX_POSITION, MAX_POSITION)


def rho_bounds(rho: int) -> tuple[int, int]:
    """The ρ a step may set after one of `rho`: [ceil(ρ/2), 2ρ] (halved, rounded up, or doubled at most; the
    controller's residual balancing keeps within it with the same function)."""
    return -(-rho // 2), 2 * rho


def next_prices(prices: Sequence[int], sums_wh: Sequence[int], members: int, rho: int) -> tuple[int, ...]:
    """λ_t − ρ·(Σ_i q_i,t)/N per interval: prices (nano/kWh) less rho (nano/kWh²) times the mean position in kWh,
    sums_wh[t] / (1000 * members), rounded to the nearest nano (ties to even), exactly in integers."""
    if members < 1:
        raise ValueError(f"members must be at least 1, got {members}")
    if rho < 1:
        raise ValueError(f"rho must be at least 1, got {rho}")
    if len(prices) != len(sums_wh):
        raise ValueError(f"{len(prices)} prices but {len(sums_wh)} sums")
    scale = 1000 * members  # λ − ρ·S/scale = (λ·scale − ρ·S) / scale
    return tuple(
        _nearest(price * scale - rho * total, scale) for price, total in zip(prices, sums_wh, strict=True)
    )


def _nearest(numerator: int, denominator: int) -> int:
    """numerator / denominator (> 0) rounded to the nearest integer, a tie to the even one, exactly."""
    quotient, remainder = divmod(numerator, denominator)  # remainder in [0, denominator)
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient % 2 == 1):
        quotient += 1
    return quotient


NANO_PER_MICRO_WH = 10**6  # one micro-unit per Wh = 10**-3 currency per kWh = 10**6 nano per kWh


def micro_per_wh(nano_per_kwh: int) -> int:
    """A price in nano-currency per kWh (this contract's) on the market contract's tick, micro-units per Wh:
    rounded to the nearest, a tie to the even one. The one conversion: the forward trades' price
    (`exchange.clear`), the owner rules `exchange.accept` judges, and the controller's matching use it."""
    return _nearest(nano_per_kwh, NANO_PER_MICRO_WH)


# ---------------------------------------------------------------------------------------------- keys & reads
# One small record read on every post (`xch/sess/`), the lists a step or a reader needs apart from it.


def session_key(name: str) -> bytes:
    return b"xch/sess/" + name.encode()


def members_key(name: str) -> bytes:
    return b"xch/members/" + name.encode()


def prices_key(name: str) -> bytes:
    return b"xch/prices/" + name.encode()


def sums_key(name: str) -> bytes:
    return b"xch/sums/" + name.encode()


def post_key(member: bytes, name: str) -> bytes:
    """A member's last post; present from the opening on, so it is also the membership record."""
    return b"xch/pos/" + member + name.encode()


def stepped_key(member: bytes, name: str) -> bytes:
    """The member's post before its last one, kept when it posts again (that post was stepped then)."""
    return b"xch/stepped/" + member + name.encode()


def session(state: StateReader, name: str) -> dict[str, Any] | None:
    """`{closed, coordinator, first_interval, intervals, iteration, members, posted, prices, rho, settled}`,
    or None if no such session: `iteration` is the current one (the number of steps taken), `posted` how
    many members posted it, `settled` how many of those posts said settled (their verdict on the iteration
    before), `prices` a tuple of nano per kWh; plus `deadline` (block time, ms) if the open set one."""
    record = read_obj(state, session_key(name))
    if record is None:
        return None
    progress = read_obj(state, sums_key(name))
    return {
        **record,
        "members": list(read_obj(state, members_key(name))),
        "posted": progress["posted"],
        "prices": tuple(read_obj(state, prices_key(name))),
        "settled": _settled(progress),
    }


def settled_count(state: StateReader, name: str) -> int | None:
    """How many members' posts at the session's current iteration said settled (`session`'s `settled`,
    without reading the member list or the prices), or None if no such session."""
    progress = read_obj(state, sums_key(name))
    return None if progress is None else _settled(progress)


def _settled(progress: dict[str, Any]) -> int:
    # the count is kept only once a post says settled, so that chains without verdicts keep their bytes
    count: int = progress.get("settled", 0)
    return count


def posted(state: StateReader, name: str, member: bytes) -> bool:
    """Whether `member` posted its position at the session's current iteration (False for a non-member)."""
    record = read_obj(state, session_key(name))
    last = read_obj(state, post_key(member, name))
    return record is not None and last is not None and last["iteration"] == record["iteration"]


def position(state: StateReader, name: str, member: bytes) -> dict[str, Any] | None:
    """`{iteration, positions, txid}` of the member's last post (iteration −1 before its first), plus its
    `judged` if it posted one, or None for a non-member."""
    value: dict[str, Any] | None = read_obj(state, post_key(member, name))
    return value


def stepped(state: StateReader, name: str, member: bytes) -> dict[str, Any] | None:
    """`{iteration, positions, txid}` of the member's last post that a step priced (iteration −1 and no
    positions if none was), or None for a non-member. A close abandons a half-posted iteration: a member
    that posted it has its post before as its stepped one."""
    record = read_obj(state, session_key(name))
    last: dict[str, Any] | None = read_obj(state, post_key(member, name))
    if record is None or last is None:
        return None
    if last["iteration"] < record["iteration"]:
        return last
    kept: dict[str, Any] | None = read_obj(state, stepped_key(member, name))
    return kept if kept is not None else {"iteration": -1, "positions": [], "txid": b""}


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


def open_exchange(view: Overlay, tx: Tx, ctx: BlockContext, sender: ks.AccountRecord) -> list[Event]:
    require(sender.authorised, Reason.NOT_AUTHORISED, f"{tx.kind}: sender is not authorised")
    b = tx.body
    name, members, prices = b["session"], b["members"], b["prices"]
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
        if not ks.AccountRecord.decode(raw).authorised:
            raise RuleError(Reason.NOT_AUTHORISED, f"member {member.hex()[:16]}… is not authorised")
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
    view.put_obj(session_key(name), record)
    view.put_obj(members_key(name), members)
    view.put_obj(prices_key(name), prices)
    view.put_obj(sums_key(name), {"posted": 0, "sums": [0] * intervals})
    for member in members:
        view.put_obj(post_key(member, name), {"iteration": -1, "positions": [], "txid": b""})
    return [("exchange_opened", {"session": name, "coordinator": tx.sender, "members": len(members)})]


def _check_positions(view: Overlay, member: bytes, first: int, positions: list[int]) -> None:
    """Each position within the member's owner rules for its chain interval (`rules_for`)."""
    for t, quantity in enumerate(positions):
        rules = rules_for(view, member, first + t)
        if abs(quantity) > rules["max_quantity"]:
            raise RuleError(
                Reason.RULE_VIOLATION,
                f"position {quantity} Wh in interval {first + t} beyond the maximum {rules['max_quantity']}",
            )
        if quantity < 0 and rules["clean_only"]:
            raise RuleError(
                Reason.RULE_VIOLATION,
                f"position {quantity} Wh in interval {first + t}: a clean-only member never buys",
            )


def judgements(state: StateReader, name: str) -> list[dict[str, Any] | None] | None:
    """Each member's `judged` posted at the session's current iteration, in member order (None where it
    posted none or has not posted yet), or None if no such session."""
    record = read_obj(state, session_key(name))
    if record is None:
        return None
    out: list[dict[str, Any] | None] = []
    for member in read_obj(state, members_key(name)):
        last = read_obj(state, post_key(member, name))
        out.append(last.get("judged") if last["iteration"] == record["iteration"] else None)
    return out


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
    _check_positions(view, tx.sender, record["first_interval"], positions)
    progress = read_obj(view, sums_key(name))
    sums = [s + q for s, q in zip(progress["sums"], positions, strict=True)]
    running: dict[str, Any] = {"posted": progress["posted"] + 1, "sums": sums}
    count = _settled(progress) + settled
    if count:  # absent until a post says settled: a chain without verdicts keeps its state bytes
        running["settled"] = count
    view.put_obj(sums_key(name), running)
    if last["iteration"] >= 0:  # the session is past it: it was stepped, and this post may yet be abandoned
        view.put_obj(stepped_key(tx.sender, name), last)
    post: dict[str, Any] = {"iteration": record["iteration"], "positions": positions, "txid": tx.txid}
    if judged is not None:  # absent without one, so that the posts before judgements keep their bytes
        post["judged"] = judged
    view.put_obj(key, post)


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
        for t, price in enumerate(prices):
            if abs(price) > MAX_PRICE:
                raise RuleError(
                    Reason.RULE_VIOLATION, f"price {price} in interval {t} beyond ±{MAX_PRICE} nano per kWh"
                )
        view.put_obj(prices_key(name), list(prices))
    iteration = record["iteration"] + 1
    view.put_obj(session_key(name), {**record, "iteration": iteration, "rho": new_rho})
    view.put_obj(sums_key(name), {"posted": 0, "sums": [0] * record["intervals"]})
    # how many of the stepped iteration's posts said settled (their verdicts on the iteration before it)
    stepped_event = {"session": name, "iteration": iteration, "rho": new_rho, "settled": _settled(progress)}
    return [("exchange_step", stepped_event)]


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
    view.put_obj(session_key(name), {**record, "closed": True})
    prices = read_obj(view, prices_key(name))
    closed = {
        "session": name,
        "iteration": record["iteration"],
        "prices": prices,
        "unstepped": unstepped,
        # every member's verdict on the last stepped iteration, posted with the abandoned one, was settled:
        # the value stop (a kWh stop or any other close leaves it false)
        "settled": _settled(progress) == record["size"],
    }
    return [("exchange_closed", closed)]


def genesis_writes(genesis: Any) -> dict[bytes, bytes | None]:
    return {}


_POSITION_BODY = Map({"session": LABEL, "iteration": ITERATION, "positions": List(POSITION, MAX_INTERVALS)})
CELL = Int(0, 2 * MAX_INTERVALS - 1)  # 2·t a sale, 2·t + 1 a purchase, in the session's interval t
JUDGED = Map({"banned": List(CELL, 2 * MAX_INTERVALS), "asks": List(CELL, 2 * MAX_INTERVALS), "fees": Bool()})
_VERDICT = {"settled": Bool()}
_JUDGED = {"judged": JUDGED}
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
        # `deadline` is optional (none when absent), so that the bodies posted before it still validate
        OneOf((_OPEN_BODY, Map({**_OPEN_BODY.fields, "deadline": Int(0, 2**63 - 1)}))),
        open_exchange,
    ),
    "exchange.position": KindSpec(
        # `settled` (false when absent) and `judged` (none when absent) are optional, so that the bodies
        # posted before them still validate
        OneOf(
            (
                _POSITION_BODY,
                Map({**_POSITION_BODY.fields, **_VERDICT}),
                Map({**_POSITION_BODY.fields, **_JUDGED}),
                Map({**_POSITION_BODY.fields, **_VERDICT, **_JUDGED}),
            )
        ),
        post_position,
    ),
    "exchange.step": KindSpec(Map({"session": LABEL, "iteration": ITERATION, "rho": RHO}), step),
    "exchange.close": KindSpec(Map({"session": LABEL, "iteration": ITERATION}), close),
    "exchange.accept": KindSpec(
        Map({"session": LABEL, "positions": List(POSITION, MAX_INTERVALS), "clean": Bool()}),
        exchange_clearing.accept,
    ),
    "exchange.clear": KindSpec(Map({"session": LABEL}), exchange_clearing.clear),
}
END_BLOCK = None
