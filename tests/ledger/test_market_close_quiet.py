"""Genesis `close_quiet_ms` (review13 F1b, what C4's clock left): no `trade` while the interval's book (its start,
a reopening, any offer, bid or move) changed within the last close_quiet_ms of block time, until the interval's
end; a reopening after the end waits it once (`market_close_time`). R13's pre-close and a close at the
reopening are refused while the honest MGMCs move; an honest interval closes once its book stood still; one
MGMC moving for ever holds the close no later than the interval's end; a state machine over random moves,
reopenings, closes and block times: a close is accepted exactly when no book change lies within the quiet
period (or the end came)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_fixtures import T0, Keys, make_genesis, reason
from test_settle_both import BUYER, OTHER, SELLER, both_chain

from peergrid_ledger import query
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts import market
from peergrid_ledger.contracts.market_close_time import earliest_close, moved
from peergrid_ledger.genesis import Genesis, GenesisError, Params
from peergrid_ledger.keys import Keypair
from peergrid_ledger.results import Accepted, Reason, Rejected

INTERVAL, QUIET, K = 60_000, 2_000, 3
START, END = T0 + K * INTERVAL, T0 + (K + 1) * INTERVAL
REOPEN = {"interval": K, "ref": b"\x01" * 32, "until": T0 + 100 * INTERVAL}


def _chain(**more: int) -> LocalChain:
    return both_chain(  # type: ignore[no-any-return]
        settle_epoch_ms=T0, settle_interval_ms=INTERVAL, close_on_clock=1, close_quiet_ms=QUIET, **more
    )


def _at(c: LocalChain, when: int, who: Keypair, kind: str, body: dict[str, Any]) -> Accepted | Rejected:
    """One transaction alone in a block stamped `when`."""
    result = c.sign_and_submit(who, kind, body, time_ms=when)
    c.seal(when)
    return result


def _offer(price: int, round_: int, quantity: int = 1000) -> dict[str, Any]:
    return {"interval": K, "round": round_, "price": price, "quantity": quantity, "clean": False}


def _seller_move(price: int, round_: int) -> dict[str, Any]:
    return {"interval": K, "round": round_, "price": price, "quantity": 1000}


def _ask(quantity: int, round_: int) -> dict[str, Any]:
    return {"interval": K, "round": round_, "demands": [{"seller": SELLER.public, "quantity": quantity}]}


def test_r13_pre_close_is_refused_while_the_honest_mgmcs_move() -> None:
    c = _chain()
    # the attacker (OTHER) offers 1 Wh in interval K long before it starts, and closes at its first block
    assert _at(c, START - INTERVAL, OTHER, "offer", {**_offer(10**12, 0, 1)}).ok
    early = _at(c, START, OTHER, "trade", {"interval": K})
    assert reason(early) is Reason.RULE_VIOLATION
    assert "close_quiet_ms" in str(early) and f"no trade closes it before {START + QUIET}" in str(early)
    # its other key, a node key (an authority: on the MGMC chain every MGMC's is one), is held to the same rule
    assert reason(_at(c, START + 1, Keys.authority, "trade", {"interval": K})) is Reason.RULE_VIOLATION
    # the honest MGMCs join and bargain, each step within the quiet period of the last
    assert _at(c, START + 300, SELLER, "offer", _offer(200, 1)).ok
    assert _at(c, START + 600, BUYER, "bid", _ask(400, 0)).ok
    assert reason(_at(c, START + 600 + QUIET - 1, OTHER, "trade", {"interval": K})) is Reason.RULE_VIOLATION
    assert _at(c, START + 2_000, SELLER, "move", _seller_move(210, 2)).ok
    assert _at(c, START + 3_500, BUYER, "move", _ask(500, 1)).ok
    assert reason(_at(c, START + 3_500 + QUIET - 1, OTHER, "trade", {"interval": K})) is Reason.RULE_VIOLATION
    assert not market.closed(c.state, K)
    # the book stood still for the quiet period: the closer the edge names closes it on the final positions
    assert _at(c, START + 3_500 + QUIET, SELLER, "trade", {"interval": K}).ok
    [(_, agreed)] = query.trades(c.state, K)
    assert (agreed["buyer"], agreed["price"], agreed["quantity"]) == (BUYER.public, 210, 500)


def test_a_reopened_interval_is_not_closed_before_its_members_re_bargain() -> None:
    c = _chain(max_reopens=2)
    assert _at(c, START + 10, SELLER, "offer", _offer(200, 1)).ok
    assert _at(c, START + 20, BUYER, "bid", _ask(400, 0)).ok
    assert _at(c, START + 20 + QUIET, SELLER, "trade", {"interval": K}).ok
    at = START + 5_000
    assert _at(c, at, Keys.dso, "market.reopen", {**REOPEN, "iteration": 1}).ok
    instant = _at(c, at + 1, BUYER, "trade", {"interval": K})  # at once, before anyone re-bargained
    assert reason(instant) is Reason.RULE_VIOLATION and f"reopened at {at}" in str(instant)
    assert _at(c, at + 400, SELLER, "move", _seller_move(190, 2)).ok
    assert _at(c, at + 800, BUYER, "move", _ask(300, 1)).ok
    assert reason(_at(c, at + 800 + QUIET - 1, BUYER, "trade", {"interval": K})) is Reason.RULE_VIOLATION
    assert _at(c, at + 800 + QUIET, BUYER, "trade", {"interval": K}).ok
    assert [t["quantity"] for _, t in query.trades(c.state, K)] == [300]  # the re-bargained positions


def test_one_mgmc_moving_for_ever_holds_the_close_no_later_than_the_interval_end() -> None:
    c = _chain()
    assert _at(c, START, SELLER, "offer", _offer(200, 1)).ok
    assert _at(c, START + 1, BUYER, "bid", _ask(400, 0)).ok
    # the buyer (here the one holding it open) re-posts the same demand every quiet period less a millisecond:
    # a move that changes nothing counts too; the rounds it spends are the bound's only cost to it
    when, round_ = START + 1, 1
    while when + QUIET - 1 < END:
        when += QUIET - 1
        assert _at(c, when, BUYER, "move", _ask(400, round_)).ok
        round_ += 1
        if when < END:
            assert reason(_at(c, when + 1, SELLER, "trade", {"interval": K})) is Reason.RULE_VIOLATION
    assert moved(c.state, K) == when and when + QUIET > END
    rule = earliest_close(c.state, c.genesis.params, K)
    assert rule is not None and rule[0] == END and f"or at {END} whatever moves" in rule[1]
    assert _at(c, END, SELLER, "trade", {"interval": K}).ok  # its end: nothing is left to bargain


def test_a_reopening_after_the_end_waits_the_quiet_period_once() -> None:
    c = _chain(max_reopens=1)
    assert _at(c, START, SELLER, "offer", _offer(200, 1)).ok
    assert _at(c, START + 1, BUYER, "bid", _ask(400, 0)).ok
    assert _at(c, START + 1 + QUIET, SELLER, "trade", {"interval": K}).ok
    at = END + 7_000  # a slow DSO
    assert _at(c, at, Keys.dso, "market.reopen", {**REOPEN, "iteration": 1}).ok
    assert reason(_at(c, at + QUIET - 2, SELLER, "trade", {"interval": K})) is Reason.RULE_VIOLATION
    assert _at(c, at + QUIET - 1, BUYER, "move", _ask(300, 1)).ok  # moves no longer hold it past at + QUIET
    assert _at(c, at + QUIET, SELLER, "trade", {"interval": K}).ok


def test_without_the_parameter_nothing_is_written_and_the_rule_is_c4s() -> None:
    c = both_chain(settle_epoch_ms=T0, settle_interval_ms=INTERVAL, close_on_clock=1)
    assert _at(c, START, SELLER, "offer", _offer(200, 1)).ok
    assert _at(c, START + 1, BUYER, "bid", _ask(400, 0)).ok
    assert moved(c.state, K) is None  # no `mkt/moved` key: such chains keep their state bytes
    assert not any(k.startswith(b"mkt/moved/") for k, _ in c.committed().items())
    assert _at(c, START + 2, SELLER, "trade", {"interval": K}).ok  # at once, as before


def test_the_parameter_is_checked_at_genesis() -> None:
    clock = {"settle_by_both": 1, "settle_interval_ms": INTERVAL}
    plain = make_genesis(params=Params(**clock, close_on_clock=1))
    assert "close_quiet_ms" not in plain.to_value()["params"]  # the default: old hashes stand
    with pytest.raises(GenesisError, match="close_quiet_ms: only with settle_by_both"):
        Params(close_quiet_ms=QUIET)
    with pytest.raises(GenesisError, match="close_quiet_ms: only with close_on_clock"):
        Params(**clock, close_quiet_ms=QUIET)
    for bad in (-1, INTERVAL + 1, 2**63):  # negative, longer than the interval, beyond 64 bits
        with pytest.raises(GenesisError, match="close_quiet_ms: expected 0 to the interval"):
            Params(**clock, close_on_clock=1, close_quiet_ms=bad)
    with pytest.raises(GenesisError, match=r"close_quiet_ms: expected an integer in \[0, 2\*\*63\)"):
        Params.from_value({**Params(**clock, close_on_clock=1).to_value(), "close_quiet_ms": 2**64})
    with pytest.raises(GenesisError, match="close_quiet_ms: 0 is the default"):
        Params.from_value({**Params(**clock, close_on_clock=1).to_value(), "close_quiet_ms": 0})
    set_ = Params(**clock, close_on_clock=1, close_quiet_ms=INTERVAL)
    assert Params.from_value(set_.to_value()) == set_
    again = Genesis.decode(make_genesis(params=set_).encode())
    assert again.params.close_quiet_ms == INTERVAL and again.hash != make_genesis(params=Params(**clock)).hash


# ---------------------------------------------------------------------------------------------- state machine

SHORT = 8_000  # the state machine's interval: four quiet periods, so its end and late reopenings come often
GAP = st.one_of(st.sampled_from([1, QUIET - 1, QUIET, QUIET + 1]), st.integers(1, 2 * QUIET))
STEP = st.tuples(st.sampled_from(["seller", "buyer", "same", "trade", "trade", "reopen", "end"]), GAP)


@settings(max_examples=150, deadline=None)
@given(
    window=st.sampled_from([0, 700, 3_000]),
    first=st.integers(-3 * QUIET, 2 * QUIET),
    steps=st.lists(STEP, min_size=1, max_size=40),
)
def test_a_close_is_accepted_exactly_when_the_book_stood_still(
    window: int, first: int, steps: list[tuple[str, int]]
) -> None:
    """Random offers, moves (changed or not), reopenings and closes at random block times around the interval,
    checked against the rule stated on the history: a `trade` lands iff the interval is open, the window
    after its opening passed, and no book change (its opening, any position) lies within the quiet period
    before it - or the interval's end came (for a reopening after it: the opening + the quiet period).
    `end` tries a close at 2, 1 or 0 ms before the end."""
    c = both_chain(
        settle_epoch_ms=T0, settle_interval_ms=SHORT, close_on_clock=1, close_quiet_ms=QUIET, max_reopens=3,
        **({"close_after_ms": window} if window else {}),
    )  # fmt: skip
    start, end = T0 + K * SHORT, T0 + (K + 1) * SHORT
    now = start + first
    assert _at(c, now, SELLER, "offer", _offer(200, 1)).ok
    changes = [now]  # block times of every accepted offer, bid and move
    now += 1
    assert _at(c, now, BUYER, "bid", _ask(100, 0)).ok
    changes.append(now)
    rounds = {"seller": 1, "buyer": 0}
    is_closed, opened, reopens = False, start, 0
    for kind, gap in steps:
        now = max(now + 1, end - gap % 3) if kind == "end" else now + gap
        if kind == "reopen":
            result = _at(c, now, Keys.dso, "market.reopen", {**REOPEN, "iteration": reopens + 1})
            assert result.ok == (is_closed and reopens < 3), result
            if result.ok:
                is_closed, opened, reopens = False, now, reopens + 1
        elif kind in ("trade", "end"):
            hard = max(end, opened + QUIET)
            moving = any(now - QUIET < t <= now for t in [*changes, opened])
            expected = not is_closed and now >= opened + window and (now >= hard or not moving)
            result = _at(c, now, BUYER if now % 2 else SELLER, "trade", {"interval": K})
            assert result.ok == expected, (
                result,
                now - start,
                [t - start for t in changes[-3:]],
                opened - start,
            )
            if not expected:
                assert reason(result) is (Reason.CLOSED if is_closed else Reason.RULE_VIOLATION)
            is_closed = is_closed or result.ok
        else:
            who = "seller" if kind == "seller" else "buyer"
            round_ = rounds[who] + 1
            if who == "seller":
                body = _seller_move(200 + round_ % 3, round_)
            else:  # "buyer" changes its demand, "same" re-posts it
                body = _ask(100 if kind == "same" else 100 + round_ % 5, round_)
            result = _at(c, now, SELLER if who == "seller" else BUYER, "move", body)
            assert result.ok == (not is_closed), result
            if result.ok:
                changes.append(now)
                rounds[who] = round_


def test_the_cli_writes_close_quiet_ms_only_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    from test_settle_cli import run

    base = ["genesis", "--chain", "mgmc-pilot", "--authority", "cd" * 32, "--account", "ab" * 32 + ":dso"]
    rule = ["--settle-by-both", "--settle-interval-ms", "900000", "--close-on-clock"]
    status, out, _ = run(capsys, *base, *rule)
    assert status == 0 and "close_quiet_ms" not in Genesis.from_json(json.loads(out)).to_json()["params"]
    status, out, _ = run(capsys, *base, *rule, "--close-quiet-ms", "2000")
    assert status == 0 and Genesis.from_json(json.loads(out)).params.close_quiet_ms == 2000
    status, out, err = run(capsys, *base, "--close-quiet-ms", "2000")  # alone: a usage error, nothing written
    assert status == 2 and err.count("\n") == 1 and "--close-quiet-ms: only with --settle-by-both" in err
    assert not out
    status, out, err = run(capsys, *base, *rule[:-1], "--close-quiet-ms", "2000")  # without --close-on-clock
    assert status == 2 and err.count("\n") == 1 and "close_quiet_ms: only with close_on_clock 1" in err
    for bad in ("-5", "900001", str(2**64)):
        status, out, err = run(capsys, *base, *rule, "--close-quiet-ms", bad)
        assert status == 2 and err.count("\n") == 1 and "close_quiet_ms" in err and not out


def test_the_lab_sets_two_and_a_half_block_periods() -> None:
    """The lab's MGMC genesis sets the rule at its block period (200 ms unless the testbed is told otherwise),
    within the interval; a lab without the clock names none."""
    from peergrid_sim.lab_chains import SettleByBoth

    lab = SettleByBoth.for_lab(6.0, 36, 1000.5).params()
    assert lab["close_on_clock"] == 1 and lab["close_quiet_ms"] == 500
    assert Params(**lab).close_quiet_ms == 500  # a genesis takes it
    assert SettleByBoth.for_lab(6.0, 36, 1000.5, block_period_ms=1_000).params()["close_quiet_ms"] == 2_500
    assert SettleByBoth.for_lab(1.0, 36, 1000.5, block_period_ms=1_000).params()["close_quiet_ms"] == 1_000
    assert "close_quiet_ms" not in SettleByBoth().params()  # no clock, no close rule
