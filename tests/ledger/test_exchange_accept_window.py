"""Accept rounds bind the coordinator (review9 F4): with genesis `accept_rounds` 2 an `exchange.open` needs a
deadline, and `exchange.close` raises a deadline that falls before its own block time + genesis
`accept_window_ms` to that, so every member has at least the window after the close to post its first
accept. Without the window (0, the default) a deadline already past at the close counts every member that
could not accept before it as declined - pinned here too, so that the rule's reason stays visible.
"""

from __future__ import annotations

from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st
from ledger_fixtures import T0, Keys, make_genesis, reason, submit_checked
from test_exchange_accept_rounds import CLEAR, FINALS, trades_of, want
from test_exchange_clear import ALL, FIRST, P1, P2, P3, P4, PRICES, RHO, accept_body, refused

from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts.exchange import session
from peergrid_ledger.contracts.exchange_clearing import cleared, rounds
from peergrid_ledger.genesis import Account, Params
from peergrid_ledger.keys import Keypair
from peergrid_ledger.results import Accepted, Event, Reason, Rejected, Result
from peergrid_ledger.state import read_obj

WAIT = 10_000  # genesis accept_wait_ms here
WINDOW = 60_000  # genesis accept_window_ms here
OPEN, CLOSE = T0 + 1_000, T0 + 20_000  # block times of the open and the close (the session's steps between)


def chain_for(accept_rounds: int = 2, window: int = WINDOW) -> LocalChain:
    accounts = (
        Account(Keys.dso.public, ("dso",), "dso"),
        *(Account(k.public, ("anonym",), f"p{i}") for i, k in enumerate(ALL, 1)),
    )
    rounds_params: dict[str, int] = (
        {"accept_rounds": 2, "accept_wait_ms": WAIT, "accept_window_ms": window} if accept_rounds == 2 else {}
    )
    params = Params(credit_limit=10**12, **rounds_params)
    genesis = make_genesis(contracts=("market", "exchange"), accounts=accounts, params=params)
    return LocalChain(genesis, Keys.authority)


def at(chain: LocalChain, when: int, who: Keypair, kind: str, body: dict[str, Any]) -> Result:
    """`kind` signed and sealed alone in a block at block time `when`; its result there."""
    result = chain.sign_and_submit(who, kind, body, time_ms=when)
    if isinstance(result, Accepted):
        chain.seal(when)
        assert chain.dropped == []
    return result


def open_body(deadline: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "session": "day-1",
        "first_interval": FIRST,
        "members": [m.public for m in ALL],
        "prices": PRICES,
        "rho": RHO,
    }
    return body if deadline is None else {**body, "deadline": deadline}


def closed_at(chain: LocalChain, deadline: int, close: int = CLOSE) -> tuple[Event, ...]:
    """FINALS posted and stepped, the session opened at OPEN with `deadline` and closed at `close`; the
    close's events."""
    assert isinstance(at(chain, OPEN, Keys.dso, "exchange.open", open_body(deadline)), Accepted)
    for i, (m, q) in enumerate(FINALS.items()):
        body = {"session": "day-1", "iteration": 0, "positions": q}
        assert isinstance(at(chain, OPEN + 1 + i, m, "exchange.position", body), Accepted)
    step = {"session": "day-1", "iteration": 0, "rho": RHO}
    assert isinstance(at(chain, OPEN + 10, Keys.dso, "exchange.step", step), Accepted)
    closed = at(chain, close, Keys.dso, "exchange.close", {"session": "day-1", "iteration": 1})
    assert isinstance(closed, Accepted), closed
    return closed.events


def accept_at(chain: LocalChain, when: int, who: Keypair, positions: list[int]) -> Result:
    return at(chain, when, who, "exchange.accept", accept_body(positions))


def deadline_of(chain: LocalChain) -> int:
    record = session(chain.view, "day-1")
    assert record is not None
    deadline: int = record["deadline"]
    return deadline


def test_with_accept_rounds_2_an_open_without_a_deadline_is_refused_and_with_1_it_is_not() -> None:
    chain = chain_for(2)
    why, text = refused(chain, Keys.dso, "exchange.open", open_body(None))
    assert why is Reason.RULE_VIOLATION
    assert "no deadline: the chain's genesis accept_rounds 2 needs one" in text
    assert session(chain.view, "day-1") is None
    assert submit_checked(chain_for(1), Keys.dso, "exchange.open", open_body(None))  # the old rule
    assert submit_checked(chain, Keys.dso, "exchange.open", open_body(T0 + 10**6))


def test_without_the_window_a_deadline_past_at_the_close_shuts_every_member_out() -> None:
    # genesis accept_window_ms 0 (the default): the open's deadline, 1 ms after the open, stands; nobody
    # who had not accepted by the close can accept after it - the attack the window closes
    chain = chain_for(2, window=0)
    events = closed_at(chain, OPEN + 1)
    assert deadline_of(chain) == OPEN + 1 and "deadline" not in dict(events)["exchange_closed"]
    result = accept_at(chain, CLOSE + 1, P3, FINALS[P3])
    assert isinstance(result, Rejected) and result.reason is Reason.CLOSED


def test_the_close_raises_a_deadline_past_at_the_close_to_the_window_after_it() -> None:
    chain = chain_for(2)
    events = closed_at(chain, OPEN + 1)  # the attack: a deadline 1 ms after the open
    raised = CLOSE + WINDOW
    assert deadline_of(chain) == raised
    assert dict(events)["exchange_closed"]["deadline"] == raised  # anyone reading the chain sees it
    # a member that accepts at once cannot clear what stands: the others still have the window
    assert isinstance(accept_at(chain, CLOSE + 1, P1, FINALS[P1]), Accepted)
    result = at(chain, CLOSE + 2, P1, "exchange.clear", CLEAR)
    assert isinstance(result, Rejected) and result.reason is Reason.RULE_VIOLATION
    assert f"the deadline {raised} has not passed" in result.detail
    status = rounds(chain.view, "day-1", 2, CLOSE + 2, WAIT)
    assert status is not None and status["absent"] == [] and len(status["waiting"]) == 3
    # every member accepts late in the window (after the open's deadline by far), re-checks, and it clears
    for i, m in enumerate((P2, P3, P4)):
        assert isinstance(accept_at(chain, raised - 10 + i, m, FINALS[m]), Accepted)
    for i, m in enumerate(ALL):
        assert isinstance(accept_at(chain, raised - 5 + i, m, FINALS[m]), Accepted)  # round 2, unchanged
    assert isinstance(at(chain, raised, P2, "exchange.clear", CLEAR), Accepted)
    summary = cleared(chain.view, "day-1")
    assert summary is not None and summary["accepted"] == 4
    assert trades_of(chain) == want(FINALS) != set()  # the accepts as posted, nobody cleared out


def test_a_member_that_misses_the_raised_deadline_counts_as_declined() -> None:
    chain = chain_for(2)
    closed_at(chain, OPEN + 1)
    raised = CLOSE + WINDOW
    result = accept_at(chain, raised + 1, P4, FINALS[P4])
    assert isinstance(result, Rejected) and result.reason is Reason.CLOSED
    assert f"the deadline {raised} passed before this member's first accept" in result.detail


def test_an_honest_deadline_is_left_as_it_was_and_the_close_keeps_its_bytes() -> None:
    honest = CLOSE + WINDOW + 1  # at least the window after the close: nothing to raise
    records, closes = [], []
    for window in (0, WINDOW):
        chain = chain_for(2, window=window)
        events = closed_at(chain, honest)
        records.append(read_obj(chain.view, b"xch/sess/day-1"))
        closes.append(events)
        assert deadline_of(chain) == honest
    assert records[0] == records[1] and closes[0] == closes[1]
    assert "deadline" not in dict(closes[1])["exchange_closed"]


def test_accept_rounds_1_ignores_the_window() -> None:
    # the window exists only with accept_rounds 2 (genesis refuses it otherwise): the old rule stands
    chain = chain_for(1)
    closed_at(chain, OPEN + 1)
    assert deadline_of(chain) == OPEN + 1


@settings(max_examples=60, deadline=None)
@given(
    lead=st.integers(1, 3 * WINDOW),  # the open's deadline after the open
    close=st.integers(OPEN + 11, OPEN + 2 * WINDOW),  # the close's block time
    window=st.sampled_from([0, 1, WINDOW]),
    accept=st.integers(1, 3 * WINDOW),  # a member's first accept, after the close
)
def test_the_deadline_after_the_close_is_the_later_of_the_opens_and_the_window(
    lead: int, close: int, window: int, accept: int
) -> None:
    chain = chain_for(2, window=window)
    deadline = OPEN + lead
    closed_at(chain, deadline, close)
    effective = max(deadline, close + window) if window else deadline
    assert deadline_of(chain) == effective
    when = close + accept
    result = accept_at(chain, when, P3, FINALS[P3])
    # a first accept is refused as late exactly after the effective deadline, never within the window
    assert result.ok == (when <= effective)
    if not result.ok:
        assert reason(result) is Reason.CLOSED
    assert result.ok or not (window and when <= close + window)


# Any deadline the coordinator sets, any close time, then members accepting (unchanged: their re-check
# passes) and clears tried at random times in the window and beyond: with W > 0 nobody is shut out or cleared
# out before close + W - every first accept then lands, and a clear before it needs every member in.
step = st.tuples(st.sampled_from(["accept"] * 4 + ["clear"]), st.integers(0, 3), st.integers(1, WINDOW // 20))


@settings(max_examples=150, deadline=None)
@given(
    lead=st.integers(1, 2 * WINDOW),
    close=st.integers(OPEN + 11, OPEN + 2 * WINDOW),
    steps=st.lists(step, min_size=8, max_size=30),
)
def test_within_the_window_after_the_close_nobody_is_shut_out_or_cleared_out(
    lead: int, close: int, steps: list[tuple[str, int, int]]
) -> None:
    chain = chain_for(2)
    closed_at(chain, OPEN + lead, close)
    now, floor = close, close + WINDOW
    accepts: dict[Keypair, int] = {}  # how many accepts of each member landed
    for kind, i, dt in steps:
        now += dt
        m = ALL[i]
        if kind == "accept":
            result = accept_at(chain, now, m, FINALS[m])
            if now <= floor and m not in accepts:
                assert result.ok, result  # a first accept within the window always lands
            if result.ok:
                accepts[m] = accepts.get(m, 0) + 1
        else:
            result = at(chain, now, m, "exchange.clear", CLEAR)
            if result.ok:
                assert now > floor or len(accepts) == 4  # before close + W only with every member in
                event("cleared " + ("after the window" if now > floor else "within it, every member in"))
                return
    event(f"not cleared, {len(accepts)} members in")
