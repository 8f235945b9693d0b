"""A clean day-ahead session on the edge: the clean book beside the general one (controller cleanbook.py, M4 §5).

Promises: a session opened with `clean_prices` (a clean session) is played by each MGMC as the controller's
`dayrounds.Exchange` plays it with every MG in one process: its book runs over 2n prices and positions,
general then clean, with one ρ (`dayexchange.Book` over both: `session_prices`, `post_positions`); each
member answers from the controller's own model for the session (`dayahead.model_for`: `CleanDayModel`,
its g then c), posts `clean_positions` with its clean-seller declaration (`declares_clean`: the
controller's `clean_kind` "seller"), and a clean-only buyer buys P2P there, all of it clean, with its cap
at cap + premium (`cleanbook.clean_buy_kw`, `dayrules.clean_cap_fees`). The coordinator opens a clean session exactly
where `dayahead.allocate` on a chain venue would: `DayAheadConfig.clean_book` and
`cleanbook.clean_session` of the members, judged on the chain's rules of each member (public: `opens_clean`).
A clean seller's switch ("fixed": decided at the relaxed phase's prices, like genset on/off) runs
`allocate`'s phases on such a day even without gensets: whether any member is a clean seller is public
(every first post's `clean` declaration, `sellers`), and each seller decides its own switch alone
(`cleanbook.decide_switch`, the very rule of `dayahead._switch`). Since a1e9184 `allocate` re-decides by count (`clean_decisions`
− 1 more decisions, each after a run, whatever changed: `redecisions`), so its phases are public and the rounds
(`dayahead_rounds.play_phases`) run them too. Refused with the reason (`refusal`): `recommits` other than 1
(whether another seller's switch changed is private).
A session opened without `clean_prices` reads and posts exactly as before.
Pure helpers over the replica's state and the controller's models; no I/O beyond reading the state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any, cast

from peergrid_controller.cleanbook import Side, clean_kind, clean_session
from peergrid_controller.dayexchange import DayAheadConfig
from peergrid_controller.model import Microgrid, Scenario
from peergrid_ledger.contracts import exchange
from peergrid_ledger.contracts.market_state import rules_for


def session_prices(record: Mapping[str, Any]) -> tuple[int, ...]:
    """The session's book prices (nano/kWh): the general ones, then on a clean session the clean ones."""
    prices = tuple(record["prices"])
    return (*prices, *record["clean_prices"]) if record.get("clean") else prices


def post_positions(post: Mapping[str, Any]) -> tuple[int, ...]:
    """A post's positions in the book (Wh): the general ones, then on a clean session its clean ones (a
    post on a clean session always carries them: the contract requires them)."""
    return (*post["positions"], *post.get("clean_positions", ()))


def opens_clean(
    cfg: DayAheadConfig, state: Any, members: Sequence[bytes], first_interval: int, n: int
) -> bool:
    """Whether the coordinator opens a clean session: `allocate`'s condition on a recorder that keeps a clean
    book (`cfg.clean_book and clean_session(scenario)`), `cleanbook.clean_session` applied to the members'
    rules as the chain holds them (an MGMC sees no other MG's config): clean-only in any of its intervals."""
    if not cfg.clean_book:
        return False
    members_rules = [
        SimpleNamespace(rules=SimpleNamespace(clean_only=any(
            bool(rules_for(state, member, first_interval + t)["clean_only"]) for t in range(n))))
        for member in members
    ]  # fmt: skip
    # the controller's own function on the public rules (it reads nothing else of a Microgrid)
    return clean_session(cast(Scenario, SimpleNamespace(microgrids=members_rules)))


def declares_clean(mg: Microgrid) -> bool:
    """This MG's clean-seller declaration on a clean session (`dayrounds.Exchange._post`'s `clean`)."""
    return clean_kind(mg) == "seller"


def sellers(state: Any, session: str, members: Sequence[bytes]) -> list[bool] | None:
    """Each member's clean-seller declaration (its first post's `clean`, fixed for the session), or None
    while some member has not posted yet."""
    out = []
    for member in members:
        post = exchange.position(state, session, member)
        if post is None or post["iteration"] < 0:
            return None
        out.append(bool(post.get("clean", False)))
    return out


def phased(cfg: DayAheadConfig, declared: Sequence[bool]) -> bool:
    """Whether a clean session runs `allocate`'s phases for its clean sellers' switches (`_allocate`'s
    `sellers`: the "fixed" side and some member a declared clean seller)."""
    return cfg.clean_side == "fixed" and any(declared)


def redecisions(cfg: DayAheadConfig, declared: Sequence[bool]) -> int:
    """How many times each clean seller decides its switch again after the first decision, each followed by a
    run (`_allocate`'s `clean_decisions` − 1, by count whatever changed: public); 0 on a day without the phases."""
    return cfg.clean_decisions - 1 if phased(cfg, declared) else 0


def refusal(cfg: DayAheadConfig) -> str:
    """Why this edge does not play a clean session configured so ("" if it does)."""
    if cfg.recommits != 1:
        return f"recommits {cfg.recommits} on a clean session; the edge decides once"
    return ""


def side(cfg: DayAheadConfig) -> Side:
    return cast(Side, cfg.clean_side)
