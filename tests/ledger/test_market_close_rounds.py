"""Genesis `max_rounds` R (review13 F1b residual): with `close_quiet_ms` Q one key moving once per Q held an
interval unclosed to its end; with R an offer, bid or move past its bargaining's opening round (0, or the
reopening's `round`) + R is refused and a re-bargaining's moves are numbered on from the reopening's round, so
the same key keeps the book from being quiet at most R + 1 quiet periods past the others' last change (its
opening and R moves; R after a reopening). Honest
bargaining up to R rounds, the first and each re-bargaining numbered as the edge numbers them, is never
refused; a chain without R keeps the rule and bytes it had (test_market_close_quiet.py); the genesis, the CLI
and the lab's genesis set it. The cap alone, on a chain without the quiet rule: test_q5_round_cap_alone.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_fixtures import T0, Keys, make_genesis, reason
from test_market_close_quiet import INTERVAL, QUIET, START, K, _ask, _at, _offer, _seller_move
from test_settle_both import BUYER, OTHER, SELLER, both_chain

from peergrid_ledger import query
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts import market
from peergrid_ledger.contracts.market_close_time import earliest_close
from peergrid_ledger.genesis import Genesis, GenesisError, Params
from peergrid_ledger.results import Reason

CAP = 6
REOPEN = {"interval": K, "ref": b"\x01" * 32, "until": T0 + 100 * INTERVAL}
QUIET_CLOCK = {
    "settle_epoch_ms": T0,
    "settle_interval_ms": INTERVAL,
    "close_on_clock": 1,
    "close_quiet_ms": QUIET,
}


def _chain(cap: int = CAP, **more: int) -> LocalChain:
    return both_chain(**QUIET_CLOCK, **({"max_rounds": cap} if cap else {}), **more)  # type: ignore[no-any-return]


def _hold(c: LocalChain, opened: int, first_round: int) -> tuple[int, int]:
    """OTHER, a seller, moves its standing offer every quiet period less a millisecond from `opened`, one round
    past its last each time, until the chain refuses it: (the block time the interval closes at, the moves
    accepted). Every other member stands still."""
    when, round_, moves = opened, first_round, 0
    while True:
        when += QUIET - 1
        # in each block the honest closer tries first: still held
        early = c.sign_and_submit(SELLER, "trade", {"interval": K}, time_ms=when)
        body = {"interval": K, "round": round_, "price": 300, "quantity": 1}
        result = c.sign_and_submit(OTHER, "move", body, time_ms=when)
        c.seal(when)
        assert reason(early) is Reason.RULE_VIOLATION and "close_quiet_ms" in str(early)
        if not result.ok:
            assert reason(result) is Reason.RULE_VIOLATION and "max_rounds" in str(result), result
            break
        moves, round_ = moves + 1, round_ + 1
    rule = earliest_close(c.state, c.genesis.params, K)
    assert rule is not None and rule[0] == when + 1  # its last accepted move + Q
    assert _at(c, rule[0], SELLER, "trade", {"interval": K}).ok
    return rule[0], moves


def test_one_key_moving_every_quiet_period_holds_the_close_cap_plus_one_quiet_periods() -> None:
    # without the cap (as before) the same key holds the interval to its end: test_market_close_quiet's
    # test_one_mgmc_moving_for_ever_holds_the_close_no_later_than_the_interval_end
    c = _chain()
    assert _at(c, START + QUIET - 1, OTHER, "offer", _offer(300, 0, 1)).ok  # its opening: one quiet period
    assert _at(c, START + QUIET, SELLER, "offer", _offer(200, 1)).ok
    assert _at(c, START + QUIET, BUYER, "bid", _ask(400, 0)).ok
    closes, moves = _hold(c, START + QUIET - 1, 1)
    assert moves == CAP  # rounds 1 .. CAP, then round CAP + 1 refused
    assert closes - START <= (CAP + 2) * QUIET and closes < START + INTERVAL
    [(_, agreed)] = query.trades(c.state, K)
    assert (agreed["buyer"], agreed["quantity"]) == (BUYER.public, 400)  # the honest book, unchanged


def test_after_a_reopening_the_same_key_holds_it_cap_quiet_periods_past_the_reopening() -> None:
    c = _chain(max_reopens=2)
    assert _at(c, START, OTHER, "offer", _offer(300, 0, 1)).ok
    assert _at(c, START, SELLER, "offer", _offer(200, 1)).ok
    assert _at(c, START, BUYER, "bid", _ask(400, 0)).ok
    assert _at(c, START + QUIET + 5, SELLER, "trade", {"interval": K}).ok  # the attacker never moved: round 0
    at = START + 5 * QUIET
    assert _at(c, at, Keys.dso, "market.reopen", {**REOPEN, "iteration": 1}).ok
    assert market.reopening(c.state, K)["round"] == 1  # type: ignore[index]
    # a move not past the reopening's round is refused: rounds it saved while idle buy no extra moves
    stale = _at(c, at + 1, OTHER, "move", {"interval": K, "round": 1, "price": 300, "quantity": 1})
    assert reason(stale) is Reason.RULE_VIOLATION and "re-bargaining's rounds are 2 to 7" in str(stale)
    closes, moves = _hold(c, at, 2)
    assert moves == CAP and closes - at <= (CAP + 1) * QUIET


def test_honest_bargaining_of_cap_rounds_and_its_re_bargaining_are_never_refused() -> None:
    """The edge's numbering (chain_bargaining._rounds): the seller opens at 1 and the buyer at 0, both move in
    rounds 1 .. R (the seller from round 2); after a reopening at the highest round h, rounds h + 1 .. h + R."""
    c = _chain(max_reopens=1)
    now = START
    assert _at(c, now, SELLER, "offer", _offer(200, 1)).ok
    assert _at(c, now + 1, BUYER, "bid", _ask(100, 0)).ok
    for r in range(1, CAP + 1):
        now += 200
        if r > 1:
            assert _at(c, now, SELLER, "move", _seller_move(200 + r, r)).ok
        assert _at(c, now + 100, BUYER, "move", _ask(100 + r, r)).ok
    over = _at(c, now + 200, BUYER, "move", _ask(100, CAP + 1))
    assert reason(over) is Reason.RULE_VIOLATION
    assert f"max_rounds {CAP} from its opening, so at most round {CAP}" in str(over)
    assert _at(c, now + 100 + QUIET, SELLER, "trade", {"interval": K}).ok
    now += 10 * QUIET
    assert _at(c, now, Keys.dso, "market.reopen", {**REOPEN, "iteration": 1}).ok
    for r in range(CAP + 1, 2 * CAP + 1):
        now += 200
        assert _at(c, now, SELLER, "move", _seller_move(190, r)).ok
        assert _at(c, now + 100, BUYER, "move", _ask(50, r)).ok
    assert reason(_at(c, now + 200, SELLER, "move", _seller_move(190, 2 * CAP + 1))) is Reason.RULE_VIOLATION
    assert _at(c, now + 100 + QUIET, BUYER, "trade", {"interval": K}).ok
    assert [t["quantity"] for _, t in query.trades(c.state, K)] == [50]


def test_an_opening_past_the_cap_is_refused() -> None:
    c = _chain()
    late = _at(c, START, OTHER, "offer", _offer(300, CAP + 1, 1))
    assert reason(late) is Reason.RULE_VIOLATION and "max_rounds" in str(late)
    assert market.members(c.state, K, "sellers") == []  # nothing written
    assert _at(c, START, OTHER, "offer", _offer(300, CAP, 1)).ok
    assert reason(_at(c, START + 1, BUYER, "bid", _ask(1, CAP + 1))) is Reason.RULE_VIOLATION


def test_without_the_cap_a_chain_keeps_the_rule_it_had() -> None:
    c = _chain(cap=0)
    assert "max_rounds" not in c.genesis.to_value()["params"]
    assert _at(c, START, SELLER, "offer", _offer(200, 1)).ok
    for r in range(2, 3 * CAP):  # as many rounds as it likes, one past the highest each
        assert _at(c, START + r, SELLER, "move", _seller_move(200, r)).ok


def test_the_parameter_is_checked_at_genesis() -> None:
    quiet = {
        "settle_by_both": 1,
        "settle_interval_ms": INTERVAL,
        "close_on_clock": 1,
        "close_quiet_ms": QUIET,
    }
    assert "max_rounds" not in make_genesis(params=Params(**quiet)).to_value()["params"]  # old hashes stand
    # a declared cap on its own too (Q5: the default lab's genesis names the rounds its MGMCs play), and
    # beside the clock without the quiet rule: test_q5_round_cap_alone.py
    assert Params(max_rounds=CAP).max_rounds == CAP
    assert Params(**{**quiet, "close_quiet_ms": 0}, max_rounds=CAP).max_rounds == CAP
    for bad in (-1, 1, 1001, 2**63):
        with pytest.raises(GenesisError, match=r"max_rounds: expected 0 \(no cap\) or 2 to 1000 rounds"):
            Params(**quiet, max_rounds=bad)
        with pytest.raises(GenesisError, match=r"max_rounds: expected 0 \(no cap\) or 2 to 1000 rounds"):
            Params(max_rounds=bad)
    with pytest.raises(GenesisError, match="max_rounds: 0 is the default"):
        Params.from_value({**Params(**quiet).to_value(), "max_rounds": 0})
    for good in (2, 1000):
        set_ = Params(**quiet, max_rounds=good)
        assert Params.from_value(set_.to_value()) == set_
        again = Genesis.decode(make_genesis(params=set_).encode())
        assert again.params.max_rounds == good and again.hash != make_genesis(params=Params(**quiet)).hash


@settings(max_examples=100, deadline=None)
@given(
    cap=st.integers(2, 8),
    steps=st.lists(st.tuples(st.sampled_from(["seller", "buyer", "reopen"]), st.integers(1, 3)), max_size=30),
)
def test_a_position_is_accepted_exactly_within_its_bargainings_rounds(
    cap: int, steps: list[tuple[str, int]]
) -> None:
    """Random moves jumping 1-3 rounds past the mover's last, and reopenings (each after a close): a move is
    accepted iff it is one past the interval's highest at most (F5), past the reopening's round, and within
    the opening's round + R."""
    c = _chain(cap=cap, max_reopens=3)
    now = START
    assert _at(c, now, SELLER, "offer", _offer(200, 1)).ok
    assert _at(c, now, BUYER, "bid", _ask(10, 0)).ok
    own: dict[str, int] = {"seller": 1, "buyer": 0}
    base, reopens = 0, 0
    for kind, jump in steps:
        now += QUIET + 1
        if kind == "reopen":
            if reopens == 3:
                continue
            assert _at(c, now, SELLER, "trade", {"interval": K}).ok
            now += 1
            assert _at(c, now, Keys.dso, "market.reopen", {**REOPEN, "iteration": reopens + 1}).ok
            base, reopens = max(own.values()), reopens + 1
            continue
        round_ = own[kind] + jump
        top = max(own.values())
        body: dict[str, Any] = _seller_move(200, round_) if kind == "seller" else _ask(10, round_)
        result = _at(c, now, SELLER if kind == "seller" else BUYER, "move", body)
        expected = (round_ == own[kind] + 1 or round_ <= top + 1) and base < round_ <= base + cap
        assert result.ok == expected, (result, kind, round_, own, base)
        if result.ok:
            own[kind] = round_


def test_the_cli_writes_max_rounds_only_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    from test_settle_cli import run

    base = ["genesis", "--chain", "mgmc-pilot", "--authority", "cd" * 32, "--account", "ab" * 32 + ":dso"]
    rule = [
        "--settle-by-both",
        "--settle-interval-ms",
        "900000",
        "--close-on-clock",
        "--close-quiet-ms",
        "500",
    ]
    status, out, _ = run(capsys, *base, *rule)
    assert status == 0 and "max_rounds" not in Genesis.from_json(json.loads(out)).to_json()["params"]
    status, out, _ = run(capsys, *base, *rule, "--max-rounds", "50")
    assert status == 0 and Genesis.from_json(json.loads(out)).params.max_rounds == 50
    status, out, _ = run(capsys, *base, "--max-rounds", "50")  # alone: a declared cap (Q5)
    assert status == 0 and Genesis.from_json(json.loads(out)).params.max_rounds == 50
    status, out, _ = run(capsys, *base, *rule[:-2], "--max-rounds", "50")  # with the clock, no quiet rule
    assert status == 0 and Genesis.from_json(json.loads(out)).params.max_rounds == 50
    for bad in ("1", "1001", "-3"):
        for flags in (rule, []):
            status, out, err = run(capsys, *base, *flags, "--max-rounds", bad)
            assert status == 2 and err.count("\n") == 1 and "max_rounds" in err and not out


@pytest.mark.parametrize(("interval_s", "block_ms"), [(6.0, 200), (6.0, 500), (30.0, 200), (900.0, 200)])
def test_the_lab_caps_rounds_where_its_mgmcs_stop(interval_s: float, block_ms: int) -> None:
    """The lab's genesis cap is the rounds its MGMCs play per bargaining (edge `EdgeSettings._rounds` without an
    explicit market.max_rounds: the simulation's 50 where the interval holds them, else what fits), so the
    cap refuses no honest move and holds a key to as few quiet periods as the lab's own bargaining takes."""
    from peergrid_controller.moves import BargainingConfig
    from peergrid_edge.config import rounds_that_fit
    from peergrid_sim.lab_chains import DSO_ITERATIONS, SettleByBoth

    edge = max(
        2, min(BargainingConfig().max_rounds, rounds_that_fit(interval_s, block_ms, 1 + DSO_ITERATIONS))
    )
    lab = SettleByBoth.for_lab(interval_s, 36, 1.8e9, block_period_ms=block_ms).params()
    assert lab["max_rounds"] == edge and Params(**lab).max_rounds == edge
    assert "max_rounds" not in SettleByBoth().params()  # no clock, no quiet rule, no cap
