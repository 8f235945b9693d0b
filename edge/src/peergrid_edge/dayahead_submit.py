"""How one MGMC's day-ahead agent writes to the MGMC chain: its open, its posts, a failed session's close.

Promises: every move goes in one transaction through `exchange_io.submit_final` (signed with this MGMC's
trading key, `before_submit` called first: the daemon's stop check may raise), waited for in a final block;
a refusal is `SessionFailed` naming it, never retried. Two cases are not failures, because the chain shows the
move made (`landed`): a transaction not final in time that lands later (waited for until the deadline's close,
the view's `start_wait`), and, after a restart (`rejoined`), a refusal because this MGMC's earlier process
made the same move first (its nonce taken; that move stands, review8 F3).
`post` sends a position with its verdict and judgement and returns what the chain holds as this MGMC's post;
`open` says whether this process opened the session (the coordinator closes a failed session only then);
`abandon` closes a failed session where it stands and returns what became of it, to add to the reason.
Never decides what to post: the agent does (`dayahead_agent`, `dayahead_rounds`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from peergrid_controller.dayexchange import nano
from peergrid_edge.dayahead_view import SessionView
from peergrid_edge.exchange_io import ROLE, NotFinal, SessionFailed, submit_final
from peergrid_ledger import keys

log = logging.getLogger("peergrid.edge.dayahead")


class Submitter:
    def __init__(
        self,
        view: SessionView,
        key: keys.Keypair,
        timeout_s: float,
        before_submit: Callable[[], None],
    ) -> None:
        """`view`: the session as this MGMC reads it (its replica is the one submitted to)."""
        self.view, self.key, self.timeout_s, self.before_submit = view, key, timeout_s, before_submit

    async def submit(
        self,
        kind: str,
        body: dict[str, Any],
        landed: Callable[[], bool] = lambda: False,
        rejoined: bool = False,
    ) -> None:
        """Submit in a final block. One not final in time may still land: it is waited for (until the
        deadline's close, `start_wait`) as the chain showing the move made (`landed`): a coordinator whose
        open was slow to land in the lab's first blocks failed the stage, leaving the session it opened open.
        After a restart (`rejoined`) a refusal may be this MGMC's earlier process's same move landing first
        (its nonce taken): when the chain shows the move made, that one stands (review8 F3)."""
        view = self.view
        try:
            await submit_final(view.ledger, self.key, kind, body, self.timeout_s, self.before_submit)
        except NotFinal:  # it may still land (a slow chain: the lab's first blocks): wait for the move
            wait = view.start_wait()
            if not await view.ledger.wait_for(ROLE, lambda _state: landed(), wait):
                raise
            log.warning("day-ahead session %s: its %s landed after the phase timeout", view.session, kind)
        except SessionFailed:
            if not (rejoined and landed()):
                raise
            log.warning("day-ahead session %s: its %s before the restart stands", view.session, kind)

    async def open(self, clean: bool = False) -> bool:
        """The coordinator opens the session (`clean`: a clean one, its clean book opened at the same prices
        as `dayrounds.Exchange` opens it); whether this process opened it. A refusal because it exists
        (this MGMC's earlier process opened it and died: its open landed meanwhile) is no failure: it
        rejoins, never abandons it."""
        view = self.view
        assert view.opening is not None  # `refusal` checked it
        body = {
            "session": view.session,
            "first_interval": view.first_interval,
            "members": view.members,
            "prices": [nano(p) for p in view.opening],
            "rho": nano(view.cfg.rho),
            **({} if view.deadline is None else {"deadline": view.deadline.clear_ms}),
        }
        if clean:  # absent: no clean book, the open's bytes as before
            body["clean_prices"] = [nano(p) for p in view.opening]
        try:
            await self.submit("exchange.open", body, landed=lambda: view.record() is not None)
        except SessionFailed:
            if view.record() is None:
                raise
            log.warning("day-ahead session %s: opened before this start; rejoining it", view.session)
            return False
        return True

    async def post(
        self,
        k: int,
        positions: tuple[int, ...],
        says_settled: bool,
        judged: dict[str, object] | None,
        rejoined: bool,
        clean: bool | None = None,
    ) -> tuple[int, ...]:
        """Post this MGMC's `positions` of iteration k with its verdict and its judgement of its own rules on
        k - 1 (`judged`); the post the chain holds then (an earlier process's, after a restart). On a clean
        session (`clean` not None: its clean-seller declaration) `positions` are both books', general then
        clean, posted as `positions` and `clean_positions` (with `clean` when true)."""
        view = self.view
        general = positions if clean is None else positions[: view.n]
        body: dict[str, Any] = {"session": view.session, "iteration": k, "positions": list(general)}
        if says_settled:  # absent is false: a post without a verdict keeps the bytes it had before them
            body["settled"] = True
        if judged is not None:  # its judgement of its own rules on k - 1 (absent: none)
            body["judged"] = judged
        if clean is not None:
            body["clean_positions"] = list(positions[view.n :])
            if clean:  # absent is false, as the controller's recorder posts it
                body["clean"] = True
        await self.submit("exchange.position", body, lambda: view.mine(k) is not None, rejoined)
        mine = view.mine(k)
        return positions if mine is None else mine

    async def close(self, iteration: int, rejoined: bool) -> None:
        """The coordinator closes the session at `iteration` (at the stop, or a failed one)."""
        body = {"session": self.view.session, "iteration": iteration}
        await self.submit("exchange.close", body, lambda: not self.view.open_now(), rejoined)

    async def abandon(self, rejoined: bool) -> str:
        """The coordinator closes a failed session where it stands (its unstepped posts abandoned); what
        became of that close, to add to the reason."""
        record = self.view.record()
        assert record is not None
        try:
            await self.close(record["iteration"], rejoined)
        except SessionFailed as failure:
            return f"; closing the session failed too: {failure}"
        return f"; the coordinator closed the session at iteration {record['iteration']}"
