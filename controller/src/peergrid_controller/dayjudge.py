"""The owners' floors and caps on the day-ahead exchange: each MG's own judgement, and the public coordination.

Promises:
- `OwnRules` is one MG's side, private: its bounds (`limits_kw` with no price: physical limits, maximum
  quantity, clean-only; nothing outside the window it trades in, where it states one) less the sides it
  banned itself, its rule fees (`rule_fees`) less the ones it dropped, and `judge`, a pure function of its
  own model data, rules and fee state and of the public prices and its own posted position: which of its
  fees it drops or takes back (`OwnRules.fee_change`), which of its sides it bans (it holds one against its
  rule where no fee is there) and which banned sides it asks back (the price now permits them), and `apply`,
  which puts its fees and bans in force; what the others need is its `Judgement`: the (interval, side)s it
  banned, the ones it asks back and whether any fee changed.
- `Coordination` is the public side, computable by anyone from the chain (the owners' rules of
  `market.set_rules`, the prices, the positions and the judgements posted with them, `exchange.position`'s
  `judged`): which judgements its poster's public rule contradicts at the judged prices (ignored), among
  the MGs asking back at (interval, side) the one let back (the least demanding rule first, on the market
  tick, ties in member order), the members' returns closed (let back and banned again: each its own) and
  whether anything changed (so that the exchange goes on instead of stopping).
- `encode`/`decode` are a judgement's chain form: cells 2·t (sale) and 2·t + 1 (purchase), ascending.
- `demand`, `binds`, `forbids`: the coordination's questions of an owner's rules as the chain keeps them.
- `same_judgement(posted, recorded)`: whether a recorder's judgement is the one posted, cells in any order.
What a lying MG can do with it: only ban itself or ask itself back, and only as its own public rule says
at the judged prices (a ban where it forbids the side, an ask where it permits it; otherwise its whole
judgement, fees too, is ignored and `Outcome.ignored` names it). It cannot ban another MG, let another
back, close another's return or jump the queue (the order is the public rules'). A ban of a side of its
own holds that (interval, side)'s let-backs for that one judgement, at most twice per (interval, side)
(before and after its own let-back, the price crossing its rule each time); a ban said again or an ask
for a side it does not hold banned counts for nothing. `fees` said falsely counts as a change in at most
one judgement per interval of the session, shared by all members (the chain cannot check a fee, which is
private): with n intervals, liars keep the exchange going through fees for at most n judgements in all,
and through bans for at most 2n per liar whose rule forbids a side at every price (more only where the
prices cross its rule: 3 changes per (member, interval, side) at most). Said falsely false, `fees` only
stops the exchange on the liar's own answer, which is what it posted anyway.
Pure; no solver, no clocks, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from peergrid_controller import market
from peergrid_controller.dayrules import Fees, chain_rules, limits_kw, rule_fees
from peergrid_controller.model import Microgrid
from peergrid_ledger.contracts.exchange import micro_per_wh
from peergrid_ledger.contracts.exchange_state import NANO_PER_MICRO_WH
from peergrid_ledger.schema import PRICE

Side = Literal["sell", "buy"]
SIDES: tuple[Side, Side] = ("sell", "buy")
Cell = tuple[int, Side]  # (interval, side)


def on_tick(price_nano: int) -> float:
    """An exchange price (nano per kWh) on the market contract's tick, in currency per kWh: the contract's
    one conversion (`exchange.micro_per_wh`, exact, a half tick to the even one) ÷ 1000, so that a rule
    judged here is judged at the tick the matching and `exchange.accept` use (a float round of p/NANO
    differs at some exact half ticks: review7 F4): market.micro_per_wh(on_tick(p)) == exchange.micro_per_wh(p)."""
    return micro_per_wh(price_nano) / 1000


@dataclass(frozen=True)
class Judgement:
    """One MG's judgement of its own rules at one iteration's prices: what the public coordination needs."""

    banned: tuple[Cell, ...] = ()  # the sides it banned itself now (it held them against its rule, no fee)
    asks: tuple[Cell, ...] = ()  # its banned sides the price now permits and that were never let back
    fees: bool = False  # whether it dropped or took back any of its rule fees

    @property
    def empty(self) -> bool:
        return not (self.banned or self.asks or self.fees)


@dataclass(frozen=True)
class OwnJudgement:
    """An MG's judgement with its private part: the fees it drops and takes back (only `public.fees`, that
    some did, goes on the chain)."""

    public: Judgement
    dropped: tuple[Cell, ...] = ()
    restored: tuple[Cell, ...] = ()


def cell_code(cell: Cell) -> int:
    t, side = cell
    return 2 * t + (0 if side == "sell" else 1)


def encode(judgement: Judgement) -> dict[str, object]:
    """The chain's form (`exchange.position`'s `judged`): cells ascending; an empty judgement is posted as
    none."""
    return {
        "banned": sorted(map(cell_code, judgement.banned)),
        "asks": sorted(map(cell_code, judgement.asks)),
        "fees": judgement.fees,
    }


def decode(body: dict[str, object]) -> Judgement:
    """`encode`'s inverse (the contract validated the cells: within the session, ascending, apart)."""

    def cells(key: str) -> tuple[Cell, ...]:
        codes = body.get(key, [])
        assert isinstance(codes, list)
        return tuple((code // 2, SIDES[code % 2]) for code in codes)

    return Judgement(cells("banned"), cells("asks"), bool(body.get("fees", False)))


class OwnRules:
    """One MG's floors and caps as its own state (private: its tariff decides where a fee stands in for a
    rule, its physical limits where a side is open at all). `judge` is its whole judgement."""

    def __init__(
        self,
        mg: Microgrid,
        dt: float,
        intervals: int,
        fee_margin: float,
        resolution: float,
        exchange_fee: int = 0,
        window: Collection[int] | None = None,
    ) -> None:
        """`exchange_fee` (nano per kWh per side, exchange_fee.py): the owner's floor and cap are net of it, so
        a rule's fee is dropped only where the price less (plus) the exchange fee clears the rule by the
        margin (0: the price itself, as before). `window`: the session's intervals the MG trades in (None:
        all); outside it its range is [0, 0] (its day is solved with P2P fixed to nothing there, not its
        whole day's answer clipped) and its rules are never judged there (it holds nothing to judge)."""
        self.mg, self.dt, self.n = mg, dt, intervals
        self.fee_margin, self.resolution, self.exchange_fee = fee_margin, resolution, exchange_fee
        self.window = None if window is None else frozenset(window)
        self.base = [
            limits_kw(mg, t, math.nan, dt) if self.trades(t) else (0.0, 0.0) for t in range(intervals)
        ]
        self.base_fees = rule_fees(mg)
        self.banned: set[Cell] = set()
        self.returned: set[Cell] = set()  # let back after a ban (the public coordination's choice)
        self.fee_off: set[Cell] = set()  # whose fee is dropped
        self.fee_back: set[Cell] = set()  # ... and came back: never dropped again

    def trades(self, t: int) -> bool:
        """Whether interval t is in its window (every interval without one)."""
        return self.window is None or t in self.window

    def within(self, per_interval: Sequence[float]) -> list[float]:
        """`per_interval` with 0 outside its window (a clean-only buyer's purchase bound, kW)."""
        return [value if self.trades(t) else 0.0 for t, value in enumerate(per_interval)]

    def bounds(self) -> tuple[list[float], list[float]]:
        lo = [0.0 if (t, "buy") in self.banned else self.base[t][0] for t in range(self.n)]
        hi = [0.0 if (t, "sell") in self.banned else self.base[t][1] for t in range(self.n)]
        return lo, hi

    def fees(self) -> Fees:
        """Its rule fees as they stand (dropped ones zero)."""
        return self._fees_of(0, "sell"), self._fees_of(1, "buy")

    def _fees_of(self, which: int, side: Side) -> tuple[float, ...] | None:
        base = self.base_fees[which]
        if base is None:
            return None
        return tuple(0.0 if (t, side) in self.fee_off else fee for t, fee in enumerate(base))

    def has_fee(self, t: int, side: Side) -> bool:
        base = self.base_fees[0 if side == "sell" else 1]
        return base is not None and base[t] > 0.0

    def judge(self, prices_nano: Sequence[int], position_kwh: Sequence[float]) -> OwnJudgement:
        """Judge every floor and cap of this MG at the prices found (on the chain's tick) against its posted
        position (kWh), changing nothing yet (`apply` does, once the judgement is in force). A side with a
        fee there: `fee_change`. A side without (its rule at or beyond its own tariff): banned if it holds
        it against its rule; a banned side the price now permits is asked back, unless it was let back once
        already (the coordination lets one MG per interval and side back at a time)."""
        banned: list[Cell] = []
        asks: list[Cell] = []
        dropped: list[Cell] = []
        restored: list[Cell] = []
        rules, res = self.mg.rules, self.resolution
        for t in filter(self.trades, range(self.n)):
            price = on_tick(prices_nano[t])
            lo, hi = limits_kw(self.mg, t, price, self.dt)
            for side in SIDES:
                forbidden = hi <= 0.0 if side == "sell" else lo >= 0.0
                holds = position_kwh[t] > res if side == "sell" else position_kwh[t] < -res
                cell = (t, side)
                if self.has_fee(t, side):
                    # the fee, not a ban, keeps the MG off a side its rule forbids (a sale an inch
                    # below the floor at the margin is cut by forward.match at the tick price)
                    # on the chain's integers: nano per kWh, the exchange fee taken off a sale, added to a
                    # purchase (the rule is net of it)
                    tick = market.micro_per_wh(price) * NANO_PER_MICRO_WH
                    if side == "sell":
                        net = tick - self.exchange_fee
                        crossed = net < market.micro_per_wh(rules.floor_price) * NANO_PER_MICRO_WH
                        clear = (
                            net
                            >= market.micro_per_wh(rules.floor_price + self.fee_margin) * NANO_PER_MICRO_WH
                        )
                    else:
                        net = tick + self.exchange_fee
                        crossed = net > market.micro_per_wh(rules.cap_price) * NANO_PER_MICRO_WH
                        clear = (
                            net <= market.micro_per_wh(rules.cap_price - self.fee_margin) * NANO_PER_MICRO_WH
                        )
                    # taken back where the net price crosses the rule, as it is dropped (review26 R26-4: judged
                    # on the gross price, a sale at a price in [floor, floor + fee) kept the fee dropped and
                    # sold below the floor net); fee 0: `crossed` is `forbidden`'s price half, nothing moves
                    change = self.fee_change(cell, forbidden or crossed, clear)
                    if change is not None:
                        (dropped if change else restored).append(cell)
                elif cell not in self.banned and holds and forbidden:
                    banned.append(cell)
                elif cell in self.banned and not forbidden and cell not in self.returned:
                    asks.append(cell)
        public = Judgement(tuple(banned), tuple(asks), bool(dropped or restored))
        return OwnJudgement(public, tuple(dropped), tuple(restored))

    def apply(self, judged: OwnJudgement) -> None:
        """Put this MG's own judgement in force: its bans and its fees dropped or taken back (the sides
        it asked back wait for the coordination's `let_back`)."""
        self.banned.update(judged.public.banned)
        self.fee_off.update(judged.dropped)
        self.fee_off.difference_update(judged.restored)
        self.fee_back.update(judged.restored)

    def fee_change(self, cell: Cell, forbidden: bool, clear: bool) -> bool | None:
        """The rule's fee (`rule_fees`) smooths the side's response where the price is near the rule; where
        the price found clears the rule (by `fee_margin`) it only distorts the MG's response (the fee is
        exact for its surplus, not for energy it would shift or produce at another cost), so it is dropped
        there (True); if the price (net of the exchange fee, `judge`) then crosses the rule, it comes back
        for good (False). Dropped at a price within a few ticks of the rule, the MG's whole surplus came in
        at the rule, pushed the price back across it and brought the fee back for good (about 300 of the
        20-MG rules day's fees, each return costing ADMM some 30 iterations): there the fee is what the rule
        is. None: no change."""
        if cell not in self.fee_off and not forbidden and clear and cell not in self.fee_back:
            return True
        if cell in self.fee_off and forbidden:
            return False
        return None

    def let_back(self, cell: Cell) -> None:
        """The coordination let this banned side back (once: a side banned again stays banned)."""
        self.banned.discard(cell)
        self.returned.add(cell)


def demand(rules: Mapping[str, Any], side: Side) -> int:
    """How demanding an owner's rule (as the chain keeps it: `chain_rules`, `market_state.rules_for`;
    micro-units per Wh) is on a side: its floor for a sale, minus its cap for a purchase. The least
    demanding is let back first."""
    return int(rules["floor_price"]) if side == "sell" else -int(rules["cap_price"])


def forbids(demand_micro: int, side: Side, price_nano: int) -> bool:
    """Whether a rule of that `demand` (micro-units per Wh on the tick) forbids `side` at an exchange price
    (nano per kWh), on the tick `exchange.micro_per_wh` gives it, as `limits_kw` judges the rule: a sale
    below the floor, a purchase above the cap."""
    tick = micro_per_wh(price_nano)
    return (tick if side == "sell" else -tick) < demand_micro


def binds(rules: Mapping[str, Any]) -> bool:
    """Whether an owner's rule as the chain keeps it has a floor or a cap in force (a cap at the chain's
    highest price is none): a day where some member's does is judged, whatever the prices."""
    return int(rules["floor_price"]) > 0 or int(rules["cap_price"]) < int(PRICE.high)


def demand_on_tick(mg: Microgrid) -> Callable[[int, Side], int]:
    """`demand` of `mg`'s rules as the chain keeps them (the same every interval)."""
    rules = chain_rules(mg.rules)
    return lambda t, side: demand(rules, side)


@dataclass(frozen=True)
class Outcome:
    """What one round of judgements did, publicly: the (member, cell)s let back, whether anything changed
    (a ban, a fee, a let-back: the exchange goes on while something does) and the members whose judgement
    was ignored (a ban of a side its rule permits, or an ask for one it forbids, at the judged prices)."""

    let_back: tuple[tuple[int, Cell], ...]
    changed: bool
    ignored: tuple[int, ...] = ()  # members whose judgement contradicted their chain rule: counted as none


class Coordination:
    """The public half of the rules' judgement: the sides let back (each at most once per member), the
    members' returns closed (let back and banned again). `demand(i, t, side)` is member i's rule there on the
    market tick (`demand_on_tick`; on the chain `demand` of `market_state.rules_for`), public. What an
    honest member can post is bounded, and the coordination holds every member to it: a ban counts only
    where the member's public rule forbids the side at the judged prices and it does not hold it banned, an
    ask only where its rule permits the side and it holds it banned and was never let back (a judgement
    that breaks the rule is ignored whole, `Outcome.ignored`), and `fees` counts as a change in at most
    `fee_rounds` = one judgement per interval of the session, all members together (fees are private: the
    chain cannot tell a true change from a false one; the 20-MG rules days, seeds 1-8, 96 intervals, had
    3-9 judgements with a fee change, the 8-MG 12-interval days 1 and 3).
    What that bounds (one session of n intervals and m members): judgements that change something number
    at most n (fees) plus the bans and let-backs, at most 3 per (member, interval, side) and each needing
    the price on the right side of that member's rule: a liar whose rule forbids a side at every price
    bans each of its 2n sides once (2n judgements) and is never let back; a liar's counted ban holds the
    others' let-back at that (interval, side) for that one judgement, at most twice. It cannot hold another
    member's return for good, ban or let back another, or jump the queue."""

    def __init__(self, demand: Callable[[int, int, Side], int], intervals: int, ruled: bool = True) -> None:
        self.demand = demand
        self.ruled = ruled  # some member's rule binds (`binds`)
        # judgements that may count as a fee change, per session and all members together (`settle`)
        self.fee_rounds = intervals
        self.returned: set[tuple[int, int, Side]] = set()  # (member, interval, side) let back after a ban
        self.standing: set[tuple[int, int, Side]] = set()  # (member, interval, side) banned now
        self.fees_counted = 0  # the judgements that counted as a fee change so far

    @property
    def closed(self) -> set[tuple[int, int, Side]]:
        """The (member, interval, side)s closed to returns: let back once and banned again (that member's
        own, never anyone else's: one member's swing says nothing about another's rule)."""
        return self.returned & self.standing

    def judging(self, prices_nano: Sequence[int]) -> bool:
        """Whether judgements at these prices can change anything: some member's rule binds (`ruled`), a
        price is below 0 (a floor of 0 forbids a sale there) or a side stands banned. All public; where it
        is false nobody judges (a day without rules posts no judgement and no final round)."""
        return self.ruled or min(prices_nano) < 0 or bool(self.standing)

    def consistent(self, member: int, judgement: Judgement, prices_nano: Sequence[int]) -> bool:
        """Whether `member`'s judgement at these prices is one its public rule allows: every ban of a side
        its rule forbids there, every ask for one it permits (`forbids`; what `OwnRules.judge` of that rule
        says: an honest judgement always is). A cell outside the prices is not."""

        def forbidden(cell: Cell) -> bool | None:
            t, side = cell
            if not 0 <= t < len(prices_nano):
                return None
            return forbids(self.demand(member, t, side), side, prices_nano[t])

        return all(forbidden(cell) is True for cell in judgement.banned) and all(
            forbidden(cell) is False for cell in judgement.asks
        )

    def settle(self, judgements: Sequence[Judgement], prices_nano: Sequence[int]) -> Outcome:
        """Every member's judgement of one iteration (in member order) at the prices it was judged at (those
        of the step just made): a member's judgement that its public rule contradicts (`consistent`) is
        taken as none and reported in `Outcome.ignored`. A side just banned moves the
        price, so no one is let back at an (interval, side) where anyone banned now; elsewhere the asking
        member with the least demanding rule (ties: member order) is let back, one per (interval, side) —
        letting them all back at once pushed the price across their rules again and swung them in and out
        for ever; a member let back and banned again stays banned there (its own return is closed; the
        others still come back in turn: one member's swing says nothing of another's rule).
        Why the judgements end: per (member, interval, side) the coordination's state only moves forward —
        not banned → banned (`standing`) → let back (`returned`) → banned again (closed) — so it changes at
        most 3 times; a ban said again, an ask for a side not standing banned or let back before, count
        for nothing. A judgement changes something only through such a move or a counted fee change."""
        ignored = tuple(i for i, j in enumerate(judgements) if not self.consistent(i, j, prices_nano))
        judgements = [Judgement() if i in ignored else j for i, j in enumerate(judgements)]
        banned_now: set[Cell] = set()
        for i, judgement in enumerate(judgements):
            for t, side in judgement.banned:
                if (i, t, side) in self.standing:
                    continue  # banned already: nothing new (an honest member never says it again)
                banned_now.add((t, side))
                self.standing.add((i, t, side))
        asking: dict[Cell, list[tuple[int, int]]] = {}
        for i, judgement in enumerate(judgements):
            for t, side in judgement.asks:
                if (i, t, side) in self.standing and (i, t, side) not in self.returned:
                    asking.setdefault((t, side), []).append((self.demand(i, t, side), i))
        let_back = []
        for cell in sorted(asking, key=cell_code):
            if cell not in banned_now:
                _, i = min(asking[cell])
                self.returned.add((i, *cell))
                self.standing.discard((i, *cell))
                let_back.append((i, cell))
        fees = any(j.fees for j in judgements) and self.fees_counted < self.fee_rounds
        self.fees_counted += fees
        return Outcome(tuple(let_back), bool(banned_now or let_back or fees), ignored)


# ---------------------------------------------------------------------------------------------- the timing
# What every party does after the step of iteration k, so that MGs that see each other only through the
# chain (the edge) and one process holding them all (dayrounds.Exchange) do the same things at the same
# iterations.


def judge_own(
    own: OwnRules,
    prices_nano: Sequence[int],
    position_kwh: Sequence[float],
    *,
    near: bool,
    settled: bool,
    judging: bool,
) -> OwnJudgement | None:
    """An MG's judgement on the iteration just stepped, to post with its next position (`encode` of its
    `public` unless empty); None where it has nothing to judge: the day is not `judging`
    (`Coordination.judging`) or the judgement cannot be due as far as it can tell — neither `near`
    convergence (both residuals within `rules_within_kwh`, public: `Book.rules_near`) nor its own value-stop
    verdict `settled`. Near convergence the judgement is due for every MG, so its fees and bans are in force
    at once, for that next position; otherwise `enact` puts it in force if every verdict was settled."""
    if not judging or not (near or settled):
        return None
    judged = own.judge(prices_nano, position_kwh)
    if near:
        own.apply(judged)
    return judged


def due(judging: bool, near: bool, all_settled: bool) -> bool:
    """Whether the judgements on an iteration are in force: near convergence, or on a value stop (every
    member's verdict on it settled: known once the posts of the next iteration are all in)."""
    return judging and (near or all_settled)


def enact(own: OwnRules, member: int, judged: OwnJudgement | None, near: bool, outcome: Outcome) -> None:
    """Once every member's post of the next iteration is in and the judgements were `due` and settled into
    `outcome` (`Coordination.settle`, every member's in member order): MG `member`'s own judgement in force
    if it was not already (`judge_own` near convergence), and its sides the coordination let back. In force
    for its answers after those posts."""
    if judged is not None and not near:
        own.apply(judged)
    for i, cell in outcome.let_back:
        if i == member:
            own.let_back(cell)


def same_judgement(posted: Judgement | None, recorded: Judgement | None) -> bool:
    """Whether the recorder's judgement is the one posted, cells in any order."""
    if posted is None or recorded is None:
        return posted is recorded
    return (
        sorted(posted.banned) == sorted(recorded.banned)
        and sorted(posted.asks) == sorted(recorded.asks)
        and posted.fees == recorded.fees
    )
