"""The day-ahead session as one MGMC reads it from its replica of the MGMC chain (`dayahead_agent`'s eyes).

Promises: `SessionView` answers what the agent asks of the chain about its session: the record, whether it is
open, the session as opened checked against this MGMC's own idea of it (`opened`), each step or close of an
iteration in a final block (`stepped`), every member's post of an iteration (`posts`: the one the step priced
once it is stepped, review7 F1), whether every post of an iteration said settled (`all_settled`), and the
chain's prices and ρ checked against this MGMC's own book (`check`), and, before the coordinator opens on a
`settle_by_both` chain, the DSO's cover prices of every member for the intervals it trades (`unpriced`,
`await_tariffs`: bounded, what is still missing returned, never a failure). What it cannot find in time, or finds
other than this MGMC computes, is `SessionFailed` with a message naming both. How long it waits is the
stage's: one phase timeout, or with a deadline until its close (`start_wait`).
Read-only: it never submits, never changes the agent's state (the caller takes what it returns), never
blocks the loop (it waits on the replica's `wait_for`). `ledger` is the one replica every part of the agent
uses (the agent's `ledger` is this attribute).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from peergrid_controller.dayexchange import Book, DayAheadConfig, nano, unfollowed
from peergrid_edge.dayahead_clean import post_positions, sellers, session_prices
from peergrid_edge.exchange_io import ROLE, Deadline, Replica, SessionFailed, short
from peergrid_ledger.contracts import exchange, market


class SessionView:
    def __init__(
        self,
        ledger: Replica,
        public: bytes,
        session: str,
        members: list[bytes],
        intervals: int,
        first_interval: int,
        cfg: DayAheadConfig,
        opening: list[float] | None,
        deadline: Deadline | None,
        clock: Callable[[], float],
        timeout_s: float,
    ) -> None:
        """`public`: this MGMC's trading key; the rest as `DayAheadAgent` takes them (`intervals`: its MG's)."""
        self.ledger, self.public, self.session, self.members = ledger, public, session, members
        self.n, self.first_interval, self.cfg, self.opening = intervals, first_interval, cfg, opening
        self.deadline, self.clock, self.timeout_s = deadline, clock, timeout_s
        self.coordinator = min(self.members) if self.members else b""
        self.is_coordinator = public == self.coordinator

    def record(self) -> dict[str, Any] | None:
        return exchange.session(self.ledger.state(ROLE), self.session)

    def open_now(self) -> bool:
        record = self.record()
        return record is not None and not record["closed"]

    def start_wait(self) -> float:
        """How long the stage's first step (the opening; every member's first response) and, with a
        deadline, any member's post may take: each MGMC starts the stage when its own trader comes up, so
        they start apart, and one may restart mid-session and rejoin; with a deadline, until the deadline's
        close (at least one phase timeout), else one phase timeout (review8 F1: a member or a coordinator
        2.5 s late against 1-s phases failed the stage for every MGMC; F3: a restart)."""
        if self.deadline is None:
            return self.timeout_s
        return max(self.timeout_s, self.deadline.close_s - self.clock())

    def expects_tariffs(self) -> bool:
        """Whether the DSO prices the members' cover on this chain: only a `settle_by_both` genesis lets it
        (`market.tariff`; such a genesis always names a `dso` account)."""
        return bool(self.ledger.replicas[ROLE].app.genesis.params.settle_by_both)

    def unpriced(self, intervals: Sequence[int]) -> dict[bytes, tuple[int, ...]]:
        """Per member (its trading key, the account the DSO prices), those of `intervals` the chain holds no
        cover prices for and has not closed (a closed interval can no longer be priced, and a clear skips
        it: waiting for it would be waiting for nothing). Members with none missing are left out."""
        state = self.ledger.state(ROLE)
        open_ = [t for t in intervals if not market.closed(state, t)]
        missing = {m: tuple(t for t in open_ if market.tariff(state, m, t) is None) for m in self.members}
        return {m: ts for m, ts in missing.items() if ts}

    async def await_tariffs(
        self, intervals: Sequence[int], wait_s: float, stop_check: Callable[[], None] = lambda: None
    ) -> dict[bytes, tuple[int, ...]]:
        """Wait (at most `wait_s`, on final blocks) until every member is priced for `intervals`; what is
        still unpriced then ({}: all priced). A price once set stays set, so each block re-reads only the
        (member, interval) pairs still missing, not the whole day for every member. `stop_check` is called
        at every block (the daemon's stop check may raise: a stopping MGMC does not sit out the wait)."""
        pending = {(m, t) for m, ts in self.unpriced(intervals).items() for t in ts}

        def priced(state: Any) -> bool:
            stop_check()
            done = {(m, t) for m, t in pending if market.closed(state, t) or market.tariff(state, m, t)}
            pending.difference_update(done)
            return not pending

        if pending and wait_s > 0:
            await self.ledger.wait_for(ROLE, priced, wait_s)
        return self.unpriced(intervals)

    async def opened(self, extra_s: float = 0.0) -> dict[str, Any]:
        """The session as opened, once this replica holds it final, checked against this MGMC's own idea of
        it (a restarted MGMC finds it under way or closed: its iteration, ρ and prices are then the
        chain's, and judged as it goes on). `extra_s`: longer than the stage's first step by how long the
        coordinator may wait for the DSO's cover prices before it opens (`await_tariffs`)."""
        wait = self.start_wait() + extra_s
        if not await self.ledger.wait_for(ROLE, lambda s: exchange.session(s, self.session) is not None,
                                          wait):  # fmt: skip
            raise SessionFailed(f"no session {self.session!r} opened within {wait:g} s")
        record = self.record()
        assert record is not None
        expected = {
            "coordinator": self.coordinator,
            "members": sorted(self.members),
            "intervals": self.n,
            "first_interval": self.first_interval,
            "deadline": None if self.deadline is None else self.deadline.clear_ms,
        }
        if record["iteration"] == 0:  # as opened: the opening ρ, and the coordinator's own opening prices
            expected["rho"] = nano(self.cfg.rho)
            if self.is_coordinator and self.opening is not None:
                expected["prices"] = tuple(nano(p) for p in self.opening)
        found = {**record, "members": sorted(record["members"]), "deadline": record.get("deadline")}
        for field, value in expected.items():
            if found[field] != value:
                raise SessionFailed(
                    f"session {self.session!r} has {field} {short(found[field])} where this MGMC expects "
                    f"{short(value)}: not joined"
                )
        return record

    async def stepped(self, k: int) -> int:
        """Wait until iteration k is stepped in a final block (the coordinator: only that it landed); the
        session's iteration then: k if the coordinator closed at k instead (the caller judges whether that
        was the stop)."""
        wait = self.timeout_s if self.is_coordinator else 2 * self.timeout_s
        # the step waits for every member's first response, and members start apart; with a deadline, any
        # step may wait for a member (or the coordinator) that restarts, until the coordinator closes at it
        if k == 0 or self.deadline is not None:
            wait += self.start_wait()

        def moved(state: Any) -> bool:
            record = exchange.session(state, self.session)
            return record is not None and (record["iteration"] > k or record["closed"])

        if not await self.ledger.wait_for(ROLE, moved, wait):
            raise SessionFailed(
                f"iteration {k} was not stepped within {wait:g} s (the coordinator is silent)"
            )
        record = self.record()
        assert record is not None
        return int(record["iteration"])

    async def closed(self, iteration: int) -> None:
        """Wait until the session is closed in a final block (the stop was reached at `iteration`)."""
        if not await self.ledger.wait_for(ROLE, lambda _s: not self.open_now(), 2 * self.timeout_s):
            raise SessionFailed(f"the stop was reached at iteration {iteration} but the session stays open")

    async def all_posted(self, k: int) -> None:
        """The coordinator: wait until every member posted iteration k; SessionFailed naming those that did
        not within the timeout (`run` then closes the session)."""

        def missing(state: Any) -> list[bytes]:
            return [m for m in self.members if not exchange.posted(state, self.session, m)]

        # iteration 0: members start apart; with a deadline a member that restarts is waited for until it
        wait = self.start_wait() if k == 0 or self.deadline is not None else self.timeout_s
        if not await self.ledger.wait_for(ROLE, lambda s: not missing(s), wait):
            late = ", ".join(m.hex()[:16] + "…" for m in missing(self.ledger.state(ROLE)))
            raise SessionFailed(
                f"member(s) {late} did not post iteration {k} within {wait:g} s: the coordinator "
                "closes the session"
            )

    def in_time(self, iteration: int) -> None:
        """The coordinator, before each iteration (this MGMC at `iteration`): SessionFailed once the
        deadline to close has come (`run` then closes the session where it stands)."""
        if self.is_coordinator and self.deadline is not None and self.clock() >= self.deadline.close_s:
            raise SessionFailed(
                f"the day-ahead deadline ({self.deadline.close_s:.3f}, wall s) came at iteration "
                f"{iteration}, before the stop: the coordinator closes the session"
            )

    def past_deadline(self) -> str:
        """Why the coordinator closed early, as far as this MGMC can tell: its deadline passed."""
        if self.deadline is not None and self.clock() >= self.deadline.close_s:
            return f" (the day-ahead deadline {self.deadline.close_s:.3f} has passed)"
        return ""

    def positions(self, k: int) -> list[tuple[int, ...]]:
        """Every member's posted positions of iteration k (`posts`): on a clean session its general then its
        clean ones (`dayahead_clean.post_positions`: the book's 2n)."""
        return [post_positions(post) for post in self.posts(k)]

    def posts(self, k: int, members: Sequence[bytes] | None = None) -> list[dict[str, Any]]:
        """Every member's post of iteration k (`members`' order, else this MGMC's), as this replica holds
        them: its last post (before the step, or after a close that abandoned k), or, once k is stepped, the
        post the step priced (`exchange.stepped`): a faster member may already have posted k+1 (review7 F1)."""
        state = self.ledger.state(ROLE)
        out = []
        for member in self.members if members is None else members:
            post = exchange.position(state, self.session, member)
            if post is not None and post["iteration"] != k:
                post = exchange.stepped(state, self.session, member)
            if post is None or post["iteration"] != k:
                got = None if post is None else post["iteration"]
                raise SessionFailed(
                    f"member {member.hex()[:16]}…'s post of iteration {k} is not on the chain "
                    f"(its stepped one is of {got})"
                )
            out.append(post)
        return out

    def all_settled(self, k: int) -> bool:
        """Whether every member's post of k said settled on k - 1, read from the posts themselves (public
        transactions, the post's txid): before the step (the coordinator) and after it or the close (every
        member) alike."""
        if self.cfg.value_per_kwh <= 0 or k < 2:  # nobody configured alike posts a verdict
            return False
        for post in self.posts(k):
            tx = self.ledger.transaction(ROLE, post["txid"])
            if tx is None:
                raise SessionFailed(
                    f"the post {post['txid'].hex()[:16]}… of iteration {k} is not on this replica"
                )
            if not tx.body.get("settled", False):
                return False
        return True

    def mine(self, k: int) -> tuple[int, ...] | None:
        """This MGMC's post of iteration k as the chain holds it, both books on a clean session (None: not
        posted)."""
        post = exchange.position(self.ledger.state(ROLE), self.session, self.public)
        return post_positions(post) if post is not None and post["iteration"] == k else None

    async def declarations(self) -> list[bool]:
        """Each member's clean-seller declaration on a clean session (`dayahead_clean.sellers`), once every
        member posted its first response (waited for as iteration 0's posts are)."""
        wait = self.start_wait()
        if not await self.ledger.wait_for(ROLE, lambda s: sellers(s, self.session, self.members) is not None,
                                          wait):  # fmt: skip
            raise SessionFailed(f"not every member posted its first response within {wait:g} s")
        declared = sellers(self.ledger.state(ROLE), self.session, self.members)
        assert declared is not None
        return declared

    def iteration_now(self) -> int:
        record = self.record()
        return -1 if record is None else int(record["iteration"])

    def check(self, book: Book) -> None:
        """The chain's prices and ρ after a step must be this MGMC's own computation (`book`), to the nano."""
        record = self.record()
        assert record is not None
        step = book.iterations
        why = unfollowed(session_prices(record), book.prices, step, "this MGMC computes")
        if why is not None:
            raise SessionFailed(why)
        if record["rho"] != book.rho:
            raise SessionFailed(
                f"the chain's rho after iteration {step} is {record['rho']} nano/kWh² where the public residual "
                f"balancing gives {book.rho}: not followed (a coordinator on another peergrid release follows "
                f"other rules for rho, as the fee's drift rule of 2026-12-07 did: every MGMC of a feeder must run "
                f"the same release)"
            )
