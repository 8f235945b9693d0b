"""A clean day-ahead session on the edge: the clean book beside the general one (controller cleanbook.py, M4 §5).

Promises: a session opened with `clean_prices` (a clean session) is played by each MGMC as the controller's
`dayrounds.Exchange` plays it with every MG in one process: its book runs over 2n prices and positions,
general then clean, with one ρ (`dayexchange.Book` over both: `session_prices`, `post_positions`); each
member answers from the controller's own model for the session (`dayahead.model_for`: `CleanDayModel`,
its g then c), posts `clean_positions` with its clean-seller declaration (`declares_clean`: the
controller's `clean_kind` "seller"), and a clean-only buyer buys P2P there, all of it clean, with its cap
at cap + premium (`clean_buy_kw`, `dayrules.clean_cap_fees`). The coordinator opens a clean session exactly
where `dayahead.allocate` on a chain venue would: `DayAheadConfig.clean_book` and
`cleanbook.clean_session` of the members, judged on the chain's rules of each member (public: `opens_clean`).
A clean seller's switch ("fixed": decided at the relaxed phase's prices, like genset on/off) runs
`allocate`'s phases on such a day even without gensets: whether any member is a clean seller is public
(every first post's `clean` declaration, `sellers`), and each seller decides its own switch alone
(`decide_switch`, `dayahead._switch`'s MILP). Since a1e9184 `allocate` re-decides by count (`clean_decisions`
− 1 more decisions, each after a run, whatever changed: `redecisions`), so its phases are public and the rounds
(`dayahead_rounds.play_phases`) run them too. Refused with the reason (`refusal`): `recommits` other than 1
(whether another seller's switch changed is private).
A session opened without `clean_prices` reads and posts exactly as before.
Two twins of the controller's code live here until the controller exposes them as functions (they are inline in
/ bound to its `Exchange`): `clean_buy_kw` (`dayrounds.Exchange.__init__`'s `clean_buy_kw`) and `decide_switch`
(`dayahead._switch`); a change to either side must be made to both.
Pure helpers over the replica's state and the controller's models; no I/O beyond reading the state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from types import SimpleNamespace
from typing import Any, cast

from peergrid_controller.cleanbook import CleanDayModel, Side, clean_kind, clean_session
from peergrid_controller.dayexchange import DayAheadConfig, anchor
from peergrid_controller.dayrules import limits_kw
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


def clean_buy_kw(mg: Microgrid, dt: float) -> list[float] | None:
    """A clean-only buyer's purchase bound (kW, ≤ 0) per interval on a clean session, where it buys P2P, all
    of it clean (cleanbook.py's c ≤ x), within its physical limits and maximum quantity: `dayrounds.Exchange`'s
    `clean_buy_kw`. None for any other MG (its own bounds stand).
    TWIN of the dict comprehension `clean_buy_kw` in `dayrounds.Exchange.__init__` (controller): keep both the same."""
    if not mg.rules.clean_only:
        return None
    free = replace(mg, rules=replace(mg.rules, clean_only=False))
    return [limits_kw(free, t, float("nan"), dt)[0] for t in range(mg.intervals)]


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


def decide_switch(
    mg: Microgrid,
    dt: float,
    cfg: DayAheadConfig,
    prices: Sequence[float],
    rho: float,
    bounds: tuple[Sequence[float], Sequence[float]],
    fees: Any,
    own: Sequence[float],
    mean: Sequence[float],
) -> tuple[tuple[bool, ...], CleanDayModel]:
    """A clean seller decides alone where it sells clean (`dayahead._switch`): its MILP at the prices found
    with its proximal term at `commit_weight`·ρ anchored at its own answer; its switch per interval and its
    model for the final phase (LPs with the switch fixed).
    TWIN of `dayahead._switch` (controller), which reads its inputs from an `Exchange`: keep both the same."""
    fresh = CleanDayModel(mg, dt, side="exact")
    fresh.trade(prices, *bounds, *fees)
    fresh.proximal(prices, cfg.commit_weight * rho, anchor(own, mean), cfg.resolution_kwh, True)
    fresh.solve()
    on = fresh.clean_intervals()
    return on, CleanDayModel(mg, dt, side="fixed", clean_intervals=on)


def side(cfg: DayAheadConfig) -> Side:
    return cast(Side, cfg.clean_side)
