"""Who may clear a closed exchange session, and when (review7 F3): any member once every member accepted;
before that, any member after the session's deadline (block time, set at the open), or the coordinator at
any time on a session opened without a deadline (its rule from before deadlines)."""

from __future__ import annotations

from ledger_fixtures import T0, Keys
from test_exchange_clear import FIRST, P1, P2, P3, accept_body, closed_session, refused, submit

from peergrid_ledger.contracts import exchange, market
from peergrid_ledger.contracts.exchange_clearing import cleared
from peergrid_ledger.results import Accepted, Reason

FINALS = {P1: [1000, 0, 0], P2: [-1000, 0, 0]}
CLEAR = {"session": "day-1"}
DEADLINE = T0 + 600_000  # block time, ms: the chain's blocks here are T0 + a few ms


def test_any_member_clears_once_every_member_accepted() -> None:
    chain = closed_session(FINALS)
    submit(chain, P1, "exchange.accept", accept_body([1000, 0, 0]))
    # not every member yet, no deadline: only the coordinator (Keys.dso) could clear now
    why, text = refused(chain, P2, "exchange.clear", CLEAR)
    assert why is Reason.FORBIDDEN and "1 of 2 members have not accepted" in text
    submit(chain, P2, "exchange.accept", accept_body([-1000, 0, 0]))
    why, text = refused(chain, P3, "exchange.clear", CLEAR)  # no member, no coordinator
    assert why is Reason.FORBIDDEN and "members or its coordinator" in text
    submit(chain, P2, "exchange.clear", CLEAR)  # the coordinator need not be there
    record = cleared(chain.view, "day-1")
    assert record is not None and (record["accepted"], record["trades"]) == (2, 1)
    assert market.closed(chain.view, FIRST)


def test_with_a_deadline_nobody_clears_a_member_out_before_it() -> None:
    chain = closed_session(FINALS, deadline=DEADLINE)
    record = exchange.session(chain.view, "day-1")
    assert record is not None and record["deadline"] == DEADLINE
    submit(chain, P1, "exchange.accept", accept_body([1000, 0, 0]))
    for who in (Keys.dso, P1):  # the coordinator too: it no longer picks whose accepts count
        why, text = refused(chain, who, "exchange.clear", CLEAR)
        assert why is Reason.RULE_VIOLATION and f"the deadline {DEADLINE} has not passed" in text
    chain.seal()  # before the clock jumps: the accept would be too old for a block after the deadline
    # at the deadline itself still not; after it any member clears with the accepts there are
    at = chain.sign_and_submit(P1, "exchange.clear", CLEAR, time_ms=DEADLINE)
    assert not isinstance(at, Accepted) and "has not passed" in str(at)
    result = chain.sign_and_submit(P1, "exchange.clear", CLEAR, time_ms=DEADLINE + 1)
    assert isinstance(result, Accepted), result
    chain.seal()
    summary = cleared(chain.state, "day-1")
    assert summary is not None and (summary["accepted"], summary["trades"]) == (1, 0)  # P2 trades nothing
    assert chain.dropped == []


def test_with_a_deadline_everyone_accepted_clears_at_once() -> None:
    chain = closed_session(FINALS, deadline=DEADLINE)
    submit(chain, P1, "exchange.accept", accept_body([1000, 0, 0]))
    submit(chain, P2, "exchange.accept", accept_body([-1000, 0, 0]))
    submit(chain, P2, "exchange.clear", CLEAR)
    assert market.closed(chain.view, FIRST)


def test_a_deadline_must_lie_after_the_open() -> None:
    chain = closed_session(FINALS)  # any chain with P1, P2 known
    body = {
        "session": "late",
        "first_interval": FIRST,
        "members": [P1.public, P2.public],
        "prices": [1],
        "rho": 1,
        "deadline": T0,
    }
    why, text = refused(chain, Keys.dso, "exchange.open", body)
    assert why is Reason.INVALID and "not after the open's block time" in text
    why, _ = refused(chain, Keys.dso, "exchange.open", {**body, "deadline": -1})
    assert why is Reason.MALFORMED


def test_a_session_without_a_deadline_keeps_its_bytes() -> None:
    """Bodies from before the field validate; the record has no `deadline` key (old chains replay)."""
    chain = closed_session(FINALS)
    record = exchange.session(chain.view, "day-1")
    assert record is not None and "deadline" not in record
