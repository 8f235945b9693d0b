"""One MGMC's owner floors and caps in its day-ahead session: its own judgement and the public coordination.

Promises: `SessionRules` is what an MGMC runs of the controller's `dayjudge` so that a rules day on the edge
is `allocate`'s on the chain venue (the timing of `dayrounds.Exchange`, as the members of
tests/controller/test_ctl_dayjudge_members.py run it): its own `OwnRules` (its bounds and fees less what it
banned or dropped: private), the public `Coordination` built from the owners' rules as its replica holds them
(`market_state.rules_for`, members in the session's order, read once when it joins), and after each step
(`judge`) its judgement on the iteration just stepped, to post with its next position (`posting`); once every
post of that next iteration is in, `settle` runs the coordination on the posted judgements (once per round,
in order) if they were `due`, and puts its own part and its let-backs in force (`enact`).
`snapshot`/`restore` carry this state through the MGMC's checkpoint (`dayahead_state`), so that a restart
resumes the judgement where it was; `restarted` says why a rejoin without one cannot.
`fees()` is the MG's fee per kWh sold and bought for its answers: its rule fees as they stand, a clean-only
buyer's cap at cap + premium on a clean session, and the session's exchange fee on both sides (`fee`, nano per
kWh per side, the chain's record of the session: `exchange_fee.with_fee`, as `dayrounds.Exchange.fees`).
Its judgement takes its floor and cap net of that fee (`OwnRules.exchange_fee`: a rule's fee is dropped only
where the price less or plus the fee clears the rule by the margin), as `dayrounds.Exchange` builds them. A
session whose fee is not a whole number of ticks (only a chain written before the chain refused such a fee can
hold one) is not joined: SessionFailed naming it (its answers cannot price it on the tick).
`own_rules_differ` is the up-front check that the floor and cap this MGMC judges are the ones the chain holds
for it (else its judgement and everyone's queue would disagree).
What a judgement posted by another member can do: only what `Coordination.settle` lets it (its own sides;
a repeated ban or an ask for a side it does not hold banned are ignored); a cell outside the session never
reaches it (the contract refuses the post). Never reads another MG's private data; no I/O besides reading
the replica's state it is given.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from peergrid_controller.cleanbook import clean_buy_kw
from peergrid_controller.dayexchange import Book, DayAheadConfig
from peergrid_controller.dayjudge import (
    Coordination,
    Judgement,
    Outcome,
    OwnJudgement,
    OwnRules,
    Side,
    binds,
    decode,
    demand,
    due,
    enact,
    encode,
    judge_own,
)
from peergrid_controller.dayrules import Fees, chain_rules, clean_cap_fees
from peergrid_controller.exchange_fee import with_fee
from peergrid_controller.model import Microgrid
from peergrid_edge.exchange_io import SessionFailed
from peergrid_ledger.contracts.market_fee import check_fee
from peergrid_ledger.contracts.market_state import rules_for

log = logging.getLogger("peergrid.edge.dayahead")


def own_rules_differ(mg: Microgrid, state: Any, key: bytes, first_interval: int) -> str:
    """Why this MGMC's floor or cap is not the one the chain holds for its key in some interval of the
    session ("" when they agree): the coordination orders let-backs by the chain's, the MG judges its own."""
    mine = chain_rules(mg.rules)
    for t in range(mg.intervals):
        chain = rules_for(state, key, first_interval + t)
        for field in ("floor_price", "cap_price"):
            if int(chain[field]) != int(mine[field]):
                return (
                    f"{mg.name}'s {field} is {mine[field]} micro/Wh in its own config but {chain[field]} on "
                    f"the chain in interval {first_interval + t}"
                )
    return ""


class SessionRules:
    """This MGMC's side of the owners' rules in one session, and the public coordination it computes."""

    def __init__(
        self, mg: Microgrid, dt: float, cfg: DayAheadConfig, window: Collection[int] | None = None
    ) -> None:
        """`window`: the session's intervals this MG trades in (None: all): its range is [0, 0] outside, as
        `dayrounds.Exchange` has it for an MG of `DayAheadConfig.windows`."""
        self.n = mg.intervals
        self.own = OwnRules(mg, dt, self.n, cfg.fee_margin, cfg.resolution_kwh, window=window)
        self.coordination = Coordination(lambda i, t, side: 0, self.n, ruled=False)  # until `join`
        self.me = -1
        self.members: list[bytes] = []
        # its judgement on the last stepped iteration (None: none), posted with its next position, with the
        # public facts it was judged under (whether the rules are judged there and near convergence)
        self.mine: OwnJudgement | None = None
        self.near = self.judging = False
        self.prices: tuple[int, ...] = ()  # ... and the prices it judged at (the step's)
        self.posted: Judgement | None = None  # what it posted with its last position
        self.last = Outcome((), False)  # what the last settled round did
        # on a clean session, a clean-only buyer's purchase bound (kW per interval: it buys P2P there, all
        # clean) and its cap at cap + premium (`dayahead_clean`); None: its own bounds and fees
        self.clean_buy_kw: list[float] | None = None
        self.clean_cap: Microgrid | None = None
        # the session's exchange fee (nano per kWh per side), read off its record when the MGMC joins it
        self.fee = 0

    def clean_session(self, mg: Microgrid, dt: float) -> None:
        """The session is a clean one: a clean-only buyer's bounds and fees as `dayrounds.Exchange` has them
        (`bounds`, `fees`); the floors and caps are judged on the general half of the book (`judge`)."""
        buys = clean_buy_kw(mg, dt)
        self.clean_buy_kw = None if buys is None else self.own.within(buys)
        self.clean_cap = mg if self.clean_buy_kw is not None else None

    def join(
        self, state: Any, members: Sequence[bytes], me: bytes, first_interval: int, fee: int = 0
    ) -> None:
        """The public side from the replica: every member's rules (members in the session's order, as the
        chain keeps the judgements), read once, so that every MGMC orders let-backs alike; `fee` the session's
        exchange fee as its record holds it (`market_fee.session_fee`), on both sides of its answers (`fees`);
        SessionFailed when that fee is not a whole number of ticks (module contract)."""
        try:
            check_fee(fee, "the session's exchange fee")
        except ValueError as exc:
            raise SessionFailed(
                f"refused: {exc} (a fee the chain took before fees were whole ticks: the sessions opened after "
                "the DSO posts a whole-tick market.fee run - its operator sets loop.exchange_fee in the DSO "
                "server's config and restarts the server, which posts it; only a replica catching up from genesis "
                "needs the chain recreated)"
            ) from None
        self.fee = fee
        self.own.exchange_fee = fee  # its floor and cap net of it (dayjudge.OwnRules)
        if fee:
            log.info("day-ahead session: an exchange fee of %d nano/kWh on each side of every trade, in this MG's "
                     "answers", fee)  # fmt: skip
        table: list[list[Mapping[str, Any]]] = [
            [rules_for(state, member, first_interval + t) for t in range(self.n)] for member in members
        ]
        ruled = any(binds(rules) for row in table for rules in row)
        self.coordination = Coordination(lambda i, t, side: demand(table[i][t], side), self.n, ruled=ruled)
        self.members = list(members)
        self.me = self.members.index(me)

    @property
    def ruled(self) -> bool:
        """Some member's floor or cap binds (public): the day runs the tight kWh stop, as `allocate`'s."""
        return self.coordination.ruled

    def bounds(self) -> tuple[list[float], list[float]]:
        lo, hi = self.own.bounds()
        return (list(self.clean_buy_kw) if self.clean_buy_kw is not None else lo), hi

    def fees(self) -> Fees:
        sell, buy = self.own.fees()
        if self.clean_cap is not None:
            buy = clean_cap_fees(self.clean_cap, buy)
        return with_fee((sell, buy), self.fee, self.n)

    def judge(self, book: Book, mine: int, verdict: bool) -> None:
        """After a step: this MG's judgement on it (`judge_own`: near convergence its fees and bans are in
        force at once, for its next answer), from the book's public prices and its own position (`mine`,
        its index in the book)."""
        self.near = book.rules_near()
        # on the general half of the book (the whole book off a clean session): `Exchange.general`
        self.prices = tuple(book.prices[: self.n])
        self.judging = self.coordination.judging(self.prices)
        self.mine = judge_own(
            self.own, list(self.prices), book.q[mine][: self.n], near=self.near, settled=verdict,
            judging=self.judging,
        )  # fmt: skip

    def posting(self) -> dict[str, object] | None:
        """The `judged` of its next post (None: nothing to say), remembered as posted."""
        public = self.mine.public if self.mine is not None and not self.mine.public.empty else None
        self.posted = public
        return None if public is None else encode(public)

    def settle(self, posts: Sequence[Mapping[str, Any]], all_settled: bool) -> Outcome:
        """Every member's post of the next iteration is in (`posts`: as the chain keeps them, in the
        session's member order; `all_settled`: every one said settled): if the judgements they carry were
        due, the coordination settles them and this MG's own part and its let-backs are in force (for its
        answers after those posts). Its own judgement must be what it posted, and every member's position
        must keep off the sides it stands banned from (`_held_to`). Once per round, in order."""
        judged = [post.get("judged") for post in posts]
        standing = set(self.coordination.standing)  # in force for these posts whatever this round does
        recorded = judged[self.me]
        if (None if recorded is None else decode(dict(recorded))) != _canonical(self.posted):
            raise SessionFailed(
                f"the chain records this MGMC's judgement as {recorded} where it posted "
                f"{None if self.posted is None else encode(self.posted)}: not followed"
            )
        outcome = Outcome((), False)
        if due(self.judging, self.near, all_settled):
            outcome = self.coordination.settle(
                [Judgement() if body is None else decode(dict(body)) for body in judged], self.prices
            )
            if self.me in outcome.ignored:
                raise SessionFailed(
                    f"the coordination ignores this MGMC's own judgement {encode(self.posted or Judgement())}"
                    " as contradicting its rule on the chain: not followed"
                )
            if outcome.ignored:
                log.warning("day-ahead rules: the judgements of member(s) %s contradict their rules on the "
                            "chain and count as none", ", ".join(map(str, outcome.ignored)))  # fmt: skip
            enact(self.own, self.me, self.mine, self.near, outcome)
            if self.near:  # judged near convergence: its bans were in force for the posts that carried them
                standing |= self.coordination.standing
        # (a side let back now was still banned for these posts: it is checked too)
        _held_to(standing, posts, self.members)
        self.mine, self.near, self.judging, self.posted = None, False, False, None
        self.last = outcome
        return outcome

    def restarted(self, iteration: int) -> str:
        """Why a restart without a checkpoint cannot rejoin this session ("" when it can): on a day where
        the rules bind, its bans, dropped fees and the coordination's record are only in its checkpoint."""
        if self.ruled and iteration >= 2:
            return (
                f"restarted at iteration {iteration} of a day with floors or caps in force without a usable "
                "checkpoint: its judgements of its own rules are not on the chain alone"
            )
        return ""

    def snapshot(self) -> dict[str, Any]:
        """Its side and the coordination as they stand (JSON: `dayahead_state.Checkpoint.rules`), so that a
        restart resumes the judgement exactly (`restore`)."""
        own, coordination, mine = self.own, self.coordination, self.mine
        return {
            "own": {name: sorted([t, side] for t, side in cells) for name, cells in (
                ("banned", own.banned), ("returned", own.returned), ("fee_off", own.fee_off),
                ("fee_back", own.fee_back))},
            "returned": sorted([i, t, side] for i, t, side in coordination.returned),
            "standing": sorted([i, t, side] for i, t, side in coordination.standing),
            "fees_counted": coordination.fees_counted,
            "mine": None if mine is None else {
                "public": encode(mine.public),
                "dropped": sorted([t, side] for t, side in mine.dropped),
                "restored": sorted([t, side] for t, side in mine.restored),
            },
            "near": self.near, "judging": self.judging, "prices": list(self.prices),
        }  # fmt: skip

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        """`snapshot`'s state back (after `join`); KeyError, ValueError or TypeError when it is not one
        (never a guess: the caller then treats the checkpoint as unusable), and then nothing is changed."""
        size, n = len(self.members), self.n
        own = {
            name: set(_cells(snapshot["own"][name], n))
            for name in ("banned", "returned", "fee_off", "fee_back")
        }
        returned = {(i, *cell) for i, cell in _member_cells(snapshot["returned"], size, n)}
        standing = {(i, *cell) for i, cell in _member_cells(snapshot["standing"], size, n)}
        counted = _count(snapshot["fees_counted"])
        mine: OwnJudgement | None = None
        if snapshot["mine"] is not None:
            body = snapshot["mine"]
            public = body["public"]
            if not isinstance(public, dict) or not isinstance(public.get("fees"), bool):
                raise TypeError(f"judgement {public!r}")
            codes = [_int(code) for key in ("banned", "asks") for code in _list(public[key])]
            _cells([[code // 2, "sell"] for code in codes], n)
            mine = OwnJudgement(decode(public), _cells(body["dropped"], n), _cells(body["restored"], n))
        near, judging = _flag(snapshot["near"]), _flag(snapshot["judging"])
        prices = tuple(_int(p) for p in _list(snapshot["prices"]))
        # every part read: now in place
        for name, value in own.items():
            setattr(self.own, name, value)
        self.coordination.returned, self.coordination.standing = returned, standing
        self.coordination.fees_counted = counted
        self.mine, self.near, self.judging, self.prices = mine, near, judging, prices
        self.posted = mine.public if mine is not None and not mine.public.empty else None


def _held_to(
    standing: set[tuple[int, int, Side]], posts: Sequence[Mapping[str, Any]], members: Sequence[bytes]
) -> None:
    """Every (member, interval, side) standing banned for these posts must be off that side in them: a member
    that bans itself and trades the side anyway lies about its rule (its bound there is 0: an honest answer
    is at most rounding off it, which `wh` makes 0). SessionFailed naming it: not followed."""
    for i, t, side in sorted(standing):
        q = int(posts[i]["positions"][t])
        if (side == "sell" and q > 0) or (side == "buy" and q < 0):
            raise SessionFailed(
                f"member {members[i].hex()[:16]}… posts {q} Wh in interval {t} at iteration {posts[i]['iteration']} "
                f"on the side ({side}) it stands banned from by its own judgement: not followed"
            )


def _cells(rows: Any, n: int) -> tuple[tuple[int, Side], ...]:
    out: list[tuple[int, Side]] = []
    for t, side in _list(rows):
        if side not in ("sell", "buy") or not 0 <= _int(t) < n:
            raise ValueError(f"cell {[t, side]!r}")
        out.append((t, "sell" if side == "sell" else "buy"))
    return tuple(out)


def _member_cells(rows: Any, size: int, n: int) -> list[tuple[int, tuple[int, Side]]]:
    return [(_index(i, size), _cells([[t, side]], n)[0]) for i, t, side in _list(rows)]


def _index(i: Any, size: int) -> int:
    if not 0 <= _int(i) < size:
        raise ValueError(f"member {i!r}")
    return int(i)


def _count(value: Any) -> int:
    if _int(value) < 0:
        raise ValueError(f"count {value!r}")
    return int(value)


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"{value!r} is not a list")
    return value


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{value!r} is not an integer")
    return value


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{value!r} is not true or false")
    return value


def _canonical(judgement: Judgement | None) -> Judgement | None:
    """A judgement as the chain gives it back: cells ascending (`encode`)."""
    return None if judgement is None else decode(encode(judgement))
