"""The exchange contract's state: its bounds, its price arithmetic, its keys and its readers (exchange.py has
the transactions that write them, exchange_accept.py the accepts and exchange_clearing.py the clear).

Promises: `next_prices` is the one price rule, `rho_bounds` the one ρ rule and `micro_per_wh` the one
conversion onto the market contract's tick, exact in integers; the controller imports them, so the two sides
compute the same integers. `reserved_name` and `name_owner` are the one rule of which session names only one
key may open. The readers (`session`, `position`, `stepped`, `posted`, `settled_count`,
`judgements`, `trading_window`) read a session as the handlers keep it and never write. A clean session
(exchange_clean.py) keeps its second book under keys of its own (`clean_prices_key`, `clean_sums_key`); every
other session has none of them. Everything here is importable from `peergrid_ledger.contracts.exchange` as
before. Pure; no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..state import StateReader, read_obj

MIN_MEMBERS, MAX_MEMBERS = 2, 256
MAX_INTERVALS = 672  # a week of quarter-hours
MAX_PRICE = 10**13  # |λ| in nano per kWh: 10^4 currency units per kWh, far beyond any energy price
MAX_RHO = 10**13  # nano per kWh²
MAX_POSITION = 10**12  # |q| in Wh: the market contract's QUANTITY bound
MAX_ITERATIONS = 1_000_000


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


# ---------------------------------------------------------------------------------------------- session names
# A name `<o>/<rest>`, o the first OWNER_HEX lowercase hex digits of a public key, is reserved to that key:
# only a sender whose key starts so may open it (`exchange.open`), so members that agree on their coordinator
# name their session after it and nobody else can take the name first (squatting). Opening needs an
# authorised (enrolled) key, so a stranger cannot grind one to match; 64 bits make two enrolled keys that
# share a prefix negligible. Any other name is anyone's, as before the rule.

OWNER_HEX = 16
_HEX = frozenset("0123456789abcdef")
MAX_NAME = 64  # the `session` label's length in characters (schema LABEL)


def reserved_name(owner: bytes, rest: str) -> str:
    """The session name `rest` reserved to the key `owner` (`<its first 16 hex digits>/<rest>`); ValueError if
    `rest` is empty or the name would be longer than a session label."""
    name = f"{owner.hex()[:OWNER_HEX]}/{rest}"
    if not rest or len(name) > MAX_NAME:
        raise ValueError(f"a reserved session name needs 1 to {MAX_NAME - OWNER_HEX - 1} characters after it")
    return name


def name_owner(name: str) -> str | None:
    """The key prefix (OWNER_HEX lowercase hex digits) that `name` is reserved to, or None: anyone's name."""
    head, slash, _ = name.partition("/")
    return head if slash and len(head) == OWNER_HEX and set(head) <= _HEX else None


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


def clean_prices_key(name: str) -> bytes:
    """A clean session's second price list (the clean book's λᶜ, nano per kWh): absent on any other session."""
    return b"xch/cprices/" + name.encode()


def clean_sums_key(name: str) -> bytes:
    """A clean session's running sums of the current iteration's clean positions (Wh per interval)."""
    return b"xch/csums/" + name.encode()


def post_key(member: bytes, name: str) -> bytes:
    """A member's last post; present from the opening on, so it is also the membership record."""
    return b"xch/pos/" + member + name.encode()


def stepped_key(member: bytes, name: str) -> bytes:
    """The member's post before its last one, kept when it posts again (that post was stepped then)."""
    return b"xch/stepped/" + member + name.encode()


def window_key(member: bytes, name: str) -> bytes:
    """The trading window a member stated with its first `exchange.accept` (absent: it stated none)."""
    return b"xch/window/" + member + name.encode()


def cleared_key(name: str) -> bytes:
    return b"xch/cleared/" + name.encode()


def clearing_key(name: str) -> bytes:
    """A clear in parts: `{next, skipped, trades}` so far; absent before the first part and after the last."""
    return b"xch/clearing/" + name.encode()


def trading_window(state: StateReader, name: str, member: bytes) -> range | None:
    """The chain intervals of the trading window `member` stated with its first accept of session `name`
    (`exchange.accept`'s `window` [first, last]: every interval it may trade in, hence deviate in: the
    uplift contract bounds its make-whole gain over them), or None: it stated none (the whole session)."""
    value = read_obj(state, window_key(member, name))
    return None if value is None else range(int(value[0]), int(value[1]) + 1)


def session(state: StateReader, name: str) -> dict[str, Any] | None:
    """`{closed, coordinator, first_interval, intervals, iteration, members, posted, prices, rho, settled}`,
    or None if no such session: `iteration` is the current one (the number of steps taken), `posted` how
    many members posted it, `settled` how many of those posts said settled (their verdict on the iteration
    before), `prices` a tuple of nano per kWh; plus `deadline` (block time, ms) if the open set one, and on a
    clean session (opened with `clean_prices`) `clean` true and `clean_prices`, the clean book's tuple."""
    record = read_obj(state, session_key(name))
    if record is None:
        return None
    progress = read_obj(state, sums_key(name))
    out = {
        **record,
        "members": list(read_obj(state, members_key(name))),
        "posted": progress["posted"],
        "prices": tuple(read_obj(state, prices_key(name))),
        "settled": settled_in(progress),
    }
    if record.get("clean"):
        out["clean_prices"] = tuple(read_obj(state, clean_prices_key(name)))
    return out


def settled_count(state: StateReader, name: str) -> int | None:
    """How many members' posts at the session's current iteration said settled (`session`'s `settled`,
    without reading the member list or the prices), or None if no such session."""
    progress = read_obj(state, sums_key(name))
    return None if progress is None else settled_in(progress)


def settled_in(progress: dict[str, Any]) -> int:
    """How many posts of the iteration `progress` (the session's `xch/sums/` record) sums said settled."""
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
