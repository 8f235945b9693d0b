"""A connection capacity the DSO posts while the day-ahead stage runs (edge `dayahead_capacity`,
`ForwardAgent._accept`; E24's note): an exchange post fixes no capacity, so one may land at any moment of the
session, and the chain refuses a post or an accept whose net is above it.

On one real single-authority `EdgeLedger` (test_edge_capacity's `Chain`: the DSO in genesis, every transaction
an agent signed recorded with what the chain made of it), three MGs play the day-ahead session and then their
forward accepts:
  - a capacity posted mid-session after an answer was solved, before its post is built: the post is cut to
    it and lands (control, the edge blind to it: refused, the stage fails for every member);
  - one landing ahead of a post in the chain's order (the post built and signed): refused, cut to it and
    posted once more, one WARNING naming the post's net and the capacity; the session completes (control,
    today's edge that never re-posts: the stage fails for every member);
  - a second one ahead of that re-post: refused again, never a third post, the stage fails as today;
  - a capacity posted while the MG decides its accept: decided once more, cut to it, accepted (control:
    refused, the MG declines the day with zeros);
  - one landing ahead of the accept: refused, decided and accepted once more within it, one WARNING with both
    figures, the day clears (control: refused, declined); a second one ahead of the re-accept: declined.
Fee 0 and no capacity: the pinned sessions (test_edge_dayahead_session, test_edge_forward) are unchanged.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from test_edge_capacity import CAPPED, DAY, REFUSED, Chain, day_cap, posts
from test_edge_dayahead_session import CONFIG

from peergrid_controller.dayahead import starting_prices
from peergrid_controller.forward import Acceptance
from peergrid_edge import dayahead_capacity, forward_agent
from peergrid_edge.dayahead_agent import DayAheadAgent
from peergrid_edge.exchange_io import SessionOutcome
from peergrid_edge.forward_agent import ForwardAgent, ForwardOutcome
from peergrid_edge.replicas import Submission
from peergrid_ledger.tx import decode_tx

CONTROL = ["met as it lands", "control: blind to it"]
MID = 2  # the iteration whose post meets the capacity: mid-session (the session runs past it: asserted)
AGAIN = "posted once more within it"
ACCEPT_AGAIN = "it accepts once more within it"


def blind_dayahead(monkeypatch: pytest.MonkeyPatch, at_build: bool) -> None:
    """Today's edge (HEAD): it never re-posts a refused post; `at_build`: blind as the post is built too."""
    monkeypatch.setattr(dayahead_capacity, "first_above", lambda *_args: None)
    if at_build:
        monkeypatch.setattr(dayahead_capacity, "within_capacity", lambda row, *_args, **_kw: tuple(row))


def half_its_largest(row: list[int]) -> int:
    """A capacity below the row's largest net (one book here): half of it."""
    return max(abs(q) for q in row) // 2


async def session(chain: Chain, name: str, make: type[DayAheadAgent] = DayAheadAgent) -> dict[str, Any]:
    members = [chain.keys[mg.name].public for mg in DAY.microgrids]
    agents = {
        mg.name: (make if mg.name == CAPPED else DayAheadAgent)(
            chain.ledger, chain.keys[mg.name], mg, DAY.interval_hours, members, name, 0, starting_prices(DAY),
            CONFIG, 3.0,
        )
        for mg in DAY.microgrids
    }  # fmt: skip
    done = await asyncio.wait_for(asyncio.gather(*(a.run() for a in agents.values())), 180)
    return dict(zip(agents, done, strict=True))


async def forward(
    chain: Chain, name: str, make: type[ForwardAgent] = ForwardAgent
) -> dict[str, ForwardOutcome]:
    stages = {
        mg.name: (make if mg.name == CAPPED else ForwardAgent)(
            chain.ledger, chain.keys[mg.name], mg, DAY.interval_hours, name, timeout_s=10.0
        )
        for mg in DAY.microgrids
    }
    done = await asyncio.wait_for(asyncio.gather(*(s.run() for s in stages.values())), 300)
    return dict(zip(stages, done, strict=True))


def ahead_of(chain: Chain, kind: str, caps: list[int | None], iteration: int | None = None) -> list[int]:
    """The DSO's capacity for CAPPED lands ahead of each of its next `kind` transactions (of `iteration`, where
    given), after each was built and signed: one per entry of `caps` (None: half the transaction's largest
    position). Returns the capacities posted, in order."""
    real, key, posted = chain.ledger.submit, chain.keys[CAPPED].public, []

    async def submit(role: str, raw: bytes, timeout_s: float) -> Submission:
        tx = decode_tx(raw)
        mine = tx.kind == kind and tx.sender == key and tx.body.get("iteration", iteration) == iteration
        if mine and caps and any(tx.body["positions"]):  # zeros (a decline) are within any capacity
            cap = caps.pop(0)
            posted.append(half_its_largest(tx.body["positions"]) if cap is None else cap)
            await chain.capacity(CAPPED, posted[-1])
        return await real(role, raw, timeout_s)

    chain.ledger.submit = submit  # type: ignore[method-assign]
    return posted


def warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and text in r.getMessage()]


def failed_for_everyone(chain: Chain, outcomes: dict[str, SessionOutcome], refusals: int) -> None:
    """Today's outcome: CAPPED's post refused for the capacity, the stage failed for every member."""
    refused = [(who, kind) for who, kind, reason in chain.refused() if REFUSED in reason]
    assert refused == [(CAPPED, "exchange.position")] * refusals
    assert not any(o.completed for o in outcomes.values()), outcomes


# --- the session's posts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("is_blind", [False, True], ids=CONTROL)
def test_a_capacity_posted_after_an_answer_was_solved_cuts_its_post_as_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, is_blind: bool
) -> None:
    caplog.set_level(logging.INFO, logger="peergrid.edge")
    if is_blind:
        blind_dayahead(monkeypatch, at_build=True)
    chain = Chain(tmp_path, DAY)
    caps: list[int] = []

    class PostedAfterItsAnswer(DayAheadAgent):
        """The DSO posts the capacity after this MG's answer of iteration MID was solved within the bounds
        it read, before the post is built."""

        async def _post(self, k: int, positions: tuple[int, ...], says_settled: bool = False) -> None:
            if k == MID and not caps:
                caps.append(half_its_largest(list(positions)))
                await chain.capacity(CAPPED, caps[0])
            await super()._post(k, positions, says_settled)

    got: dict[str, Any] = {}

    async def day() -> None:
        got["session"] = await session(chain, "dayahead/capacity-built", PostedAfterItsAnswer)

    chain.run(day)
    (cap,) = caps
    if is_blind:
        failed_for_everyone(chain, got["session"], 1)
        return
    assert chain.refused() == []
    assert all(o.completed for o in got["session"].values()), got["session"]
    posted = posts(chain, CAPPED, "exchange.position")
    assert len(posted) > MID + 1  # the session ran past the iteration that met it
    assert max(abs(q) for q in posted[MID]) == cap  # cut to it as built (it binds: half its answer)
    assert all(abs(q) <= cap for p in posted[MID:] for q in p)
    assert len(warnings(caplog, "posted within it")) >= 1
    assert warnings(caplog, AGAIN) == []


@pytest.mark.parametrize("is_blind", [False, True], ids=CONTROL)
def test_a_post_refused_for_a_capacity_that_landed_ahead_of_it_is_posted_once_more_within_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, is_blind: bool
) -> None:
    caplog.set_level(logging.INFO, logger="peergrid.edge")
    if is_blind:
        blind_dayahead(monkeypatch, at_build=False)
    chain = Chain(tmp_path, DAY)
    landed = ahead_of(chain, "exchange.position", [None], iteration=MID)
    got: dict[str, Any] = {}

    async def day() -> None:
        got["session"] = await session(chain, "dayahead/capacity-ahead")
        if not is_blind:
            got["forward"] = await forward(chain, "dayahead/capacity-ahead")

    chain.run(day)
    (cap,) = landed
    mid = [(body, o) for body, o in chain.of(CAPPED, "exchange.position") if body["iteration"] == MID]
    (first, refused), *rest = mid
    assert max(abs(q) for q in first["positions"]) > cap and not refused.landed and REFUSED in refused.reason
    if is_blind:  # today: never posted again, the stage fails for every member
        assert rest == []
        failed_for_everyone(chain, got["session"], 1)
        return
    ((again, ok),) = rest  # once more, cut to the capacity (reduce-only: same signs, never larger)
    assert ok.landed and max(abs(q) for q in again["positions"]) == cap
    assert all(
        a * q >= 0 and abs(a) <= abs(q) for a, q in zip(again["positions"], first["positions"], strict=True)
    )
    assert [(who, kind) for who, kind, _ in chain.refused()] == [(CAPPED, "exchange.position")]
    (said,) = warnings(caplog, AGAIN)
    t = next(t for t, q in enumerate(first["positions"]) if abs(q) > cap)
    assert f"iteration {MID}'s post (net {first['positions'][t]} Wh in chain interval {t})" in said
    assert f"connection capacity of {cap} Wh" in said
    assert all(o.completed for o in got["session"].values()), got["session"]
    assert all(abs(q) <= cap for p in posts(chain, CAPPED, "exchange.position")[MID + 1 :] for q in p)
    assert all(o.cleared and o.reason == "" for o in got["forward"].values()), got["forward"]
    for t in range(DAY.intervals):
        assert max(chain.traded(CAPPED, t)) <= cap


def test_a_second_refusal_of_a_post_is_never_retried_and_fails_the_stage(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="peergrid.edge")
    chain = Chain(tmp_path, DAY)
    # the second lands ahead of the re-post: a quarter of the first post's largest net, below the re-post's
    landed = ahead_of(chain, "exchange.position", [None, None], iteration=MID)
    got: dict[str, Any] = {}

    async def day() -> None:
        got["session"] = await session(chain, "dayahead/capacity-twice")

    chain.run(day)
    assert len(landed) == 2 and landed[1] < landed[0]
    mid = [(body, o) for body, o in chain.of(CAPPED, "exchange.position") if body["iteration"] == MID]
    assert len(mid) == 2 and not any(o.landed for _, o in mid)  # posted twice, both refused, never a third
    failed_for_everyone(chain, got["session"], 2)
    assert len(warnings(caplog, AGAIN)) == 1
    assert "connection capacity" in got["session"][CAPPED].reason


# --- the forward accept ----------------------------------------------------------------------------------------


def blind_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    """Today's edge (HEAD): its accept is decided once, never re-read against the capacity nor sent again."""
    monkeypatch.setattr(forward_agent, "above_capacity", lambda *_args: False)


def declined_the_day(chain: Chain, outcomes: dict[str, ForwardOutcome], refusals: int) -> None:
    """Today's outcome: CAPPED's accept refused for the capacity, the MG declines the day with zeros."""
    refused = [(who, kind) for who, kind, reason in chain.refused() if REFUSED in reason]
    assert refused == [(CAPPED, "exchange.accept")] * refusals
    assert outcomes[CAPPED].decision == "declined"
    assert all(chain.traded(CAPPED, t) == (0, 0) for t in range(DAY.intervals))


@pytest.mark.parametrize("is_blind", [False, True], ids=CONTROL)
def test_a_capacity_posted_while_the_mg_decides_its_accept_is_met_by_deciding_once_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, is_blind: bool
) -> None:
    if is_blind:
        blind_forward(monkeypatch)
    cap = day_cap()
    chain = Chain(tmp_path, DAY)
    decided: list[Acceptance] = []

    class PostedAsItDecides(ForwardAgent):
        """Its first decision is the one it solved before the capacity landed (the DSO's post is final while
        the MILP runs); any later one is decided on the chain as it stands."""

        async def _accept(self, record: dict[str, Any]) -> None:
            self.stale: Acceptance | None = super()._decide(record)
            await chain.capacity(CAPPED, cap)
            await super()._accept(record)

        def _decide(self, record: dict[str, Any]) -> Acceptance:
            choice, self.stale = self.stale or super()._decide(record), None
            decided.append(choice)
            return choice

    got: dict[str, Any] = {}

    async def day() -> None:
        got["session"] = await session(chain, "dayahead/capacity-deciding")
        got["forward"] = await forward(chain, "dayahead/capacity-deciding", PostedAsItDecides)

    chain.run(day)
    assert all(o.completed for o in got["session"].values())
    assert max(abs(q) for q in decided[0].positions) > cap  # what it decided before the capacity is above it
    if is_blind:
        declined_the_day(chain, got["forward"], 1)
        return
    assert chain.refused() == [] and len(decided) == 2
    (accept, *_) = posts(chain, CAPPED, "exchange.accept")
    assert accept == list(decided[1].positions) and any(accept)
    assert all(abs(a) <= cap for a in accept)
    assert got["forward"][CAPPED].decision != "declined"
    assert all(o.cleared for o in got["forward"].values()), got["forward"]
    for t in range(DAY.intervals):
        assert max(chain.traded(CAPPED, t)) <= cap


@pytest.mark.parametrize("is_blind", [False, True], ids=CONTROL)
def test_an_accept_refused_for_a_capacity_that_landed_ahead_of_it_is_accepted_once_more_within_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, is_blind: bool
) -> None:
    caplog.set_level(logging.INFO, logger="peergrid.edge")
    if is_blind:
        blind_forward(monkeypatch)
    chain = Chain(tmp_path, DAY)
    got: dict[str, Any] = {}

    async def day() -> None:
        got["session"] = await session(chain, "dayahead/capacity-accept")
        got["landed"] = ahead_of(chain, "exchange.accept", [None])
        got["forward"] = await forward(chain, "dayahead/capacity-accept")

    chain.run(day)
    (cap,) = got["landed"]
    (first, refused), *rest = chain.of(CAPPED, "exchange.accept")
    assert max(abs(q) for q in first["positions"]) > cap and not refused.landed and REFUSED in refused.reason
    if is_blind:  # today: declined with zeros, its day traded nothing forward
        assert [body["positions"] for body, _ in rest][:1] == [[0] * DAY.intervals]
        declined_the_day(chain, got["forward"], 1)
        return
    (again, ok), *_rounds = rest
    assert ok.landed and any(again["positions"]) and all(abs(q) <= cap for q in again["positions"])
    assert all(
        a * q >= 0 and abs(a) <= abs(q) for a, q in zip(again["positions"], first["positions"], strict=True)
    )
    assert [(who, kind) for who, kind, _ in chain.refused()] == [(CAPPED, "exchange.accept")]
    (said,) = warnings(caplog, ACCEPT_AGAIN)
    t = next(t for t, q in enumerate(first["positions"]) if abs(q) > cap)
    assert f"its accept (net {first['positions'][t]} Wh in chain interval {t})" in said
    assert f"connection capacity of {cap} Wh" in said
    assert got["forward"][CAPPED].decision != "declined"
    assert all(o.cleared for o in got["forward"].values()), got["forward"]
    for t in range(DAY.intervals):
        assert max(chain.traded(CAPPED, t)) <= cap


def test_a_second_refusal_of_the_accept_is_never_retried_and_declines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="peergrid.edge")
    chain = Chain(tmp_path, DAY)
    got: dict[str, Any] = {}

    async def day() -> None:
        got["session"] = await session(chain, "dayahead/capacity-accept-twice")
        got["landed"] = ahead_of(chain, "exchange.accept", [None, None])
        got["forward"] = await forward(chain, "dayahead/capacity-accept-twice")

    chain.run(day)
    assert len(got["landed"]) == 2
    accepts = chain.of(CAPPED, "exchange.accept")
    # its accept and its one re-accept refused, then its zeros (today's decline): never a third decision
    assert [o.landed for _, o in accepts[:3]] == [False, False, True]
    assert accepts[2][0]["positions"] == [0] * DAY.intervals
    declined_the_day(chain, got["forward"], 2)
    assert len(warnings(caplog, ACCEPT_AGAIN)) == 1
