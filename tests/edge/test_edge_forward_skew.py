"""The accept rounds survive an MGMC whose clock runs ahead of the proposer's (review10 F3).

Round 2 opens at the session's deadline by block time (the absent member never accepts), and block time is
the proposer's clock. An MGMC whose clock runs ahead asks `due` after the deadline by its own clock, posts its
re-check as round 2 and lands in a block stamped before it: the contract refuses it `duplicate` ("round 2
opens once …"). Before the fix the agent filed round 1 as refused and never answered it again, so it never
re-checked the clear's cut: with `accept_rounds` 1 mg002 ended 1.311 above its conventional day (the one-shot
accept the rounds exist to fix), with 2 nobody traded forward.

The day is test_edge_forward_rounds' absent-member day (5 x 4, seed 1, one real single-authority replica);
only mg002's `ForwardAgent.clock` is skewed, as /work/notes/r10/forward_skew.py set it up.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest
from test_edge_dayahead_session import free_day, ledger_for, run_on
from test_edge_forward import session_then_forward, venue_keys
from test_edge_forward_rounds import CLEAR_IN_S, above_conventional, chain_after

from peergrid_edge.forward_agent import DEADLINE_MARGIN_S, ForwardAgent, ForwardOutcome, margin_s
from peergrid_edge.trader import dayahead_deadline
from peergrid_ledger.genesis import Params

SKEWED = "mg002"  # the battery MG the one-shot accept leaves above its conventional day


def ahead(skew_s: float) -> type[ForwardAgent]:
    class Ahead(ForwardAgent):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.clock = lambda: time.time() + skew_s

    return Ahead


def skewed_day(tmp_path: Path, skew_s: float, params: Params) -> tuple[dict[str, ForwardOutcome], float]:
    """The absent-member day with mg002's clock `skew_s` ahead; the outcomes and mg002's day cost with what it
    cleared less its conventional day's."""
    scenario = free_day(5, 4, seed=1)
    ledger, keys_ = ledger_for(tmp_path, scenario, key_of=venue_keys(scenario), params=params)
    coordinator = min(keys_, key=lambda name: keys_[name].public)
    absent = next(n for n in ("mg005", "mg001") if n != coordinator)
    assert SKEWED not in (coordinator, absent)
    timings: dict[str, float] = {}
    _, forward = run_on(
        ledger,
        lambda: session_then_forward(
            ledger, keys_, scenario, set(keys_) - {absent}, timeout_s=2.0, clear_in_s=CLEAR_IN_S,
            clear_wait_s=30.0, make={SKEWED: ahead(skew_s)}, timings=timings,
        ),
    )  # fmt: skip
    # the day this test is about: the session over well before the deadline, round 2 opening at it
    assert timings["session"] < CLEAR_IN_S - 1.0, f"the session took {timings['session']:.1f} s"
    after = chain_after(tmp_path, scenario, keys_, params)
    cut = forward[SKEWED]
    assert cut.cleared, cut.reason
    over = above_conventional(scenario, SKEWED, cut, after["money"][SKEWED])
    print(
        f"\n{SKEWED} {skew_s} s ahead, accept_rounds {params.accept_rounds}: {over:+.4f}, round {cut.rounds}"
    )
    return forward, over


def rechecked(forward: dict[str, ForwardOutcome], over: float) -> None:
    """Every member cleared; mg002 re-checked the cut (rounds past 1, reduced or declined) and is no worse off
    than its conventional day (the MILP gap)."""
    assert all(o.cleared and o.members_accepted == 4 for o in forward.values())
    cut = forward[SKEWED]
    assert cut.decision in ("reduced", "declined") and cut.rounds > 2
    assert over <= 1e-6 * max(1.0, abs(cut.conventional))


@pytest.mark.parametrize("accept_rounds", [1, 2])
def test_a_round_refused_as_not_open_yet_is_answered_after_the_next_block(
    tmp_path: Path, accept_rounds: int, caplog: pytest.LogCaptureFixture
) -> None:
    # 2 s ahead on a chain that tolerates 0.25 s of clock difference (genesis block_max_future_ms): mg002's
    # round 2 goes out before block time reaches the deadline, is refused, and is answered again
    params = Params(accept_rounds=accept_rounds, block_max_future_ms=250)
    with caplog.at_level(logging.INFO, logger="peergrid.edge.forward"):
        forward, over = skewed_day(tmp_path, 2.0, params)
    said = [r.getMessage() for r in caplog.records if r.name == "peergrid.edge.forward"]
    assert any("not open yet" in m for m in said)  # the refusal happened: this is the path under test
    assert not [m for m in said if " refused: " in m]  # and no round was given up
    rechecked(forward, over)


@pytest.mark.parametrize("accept_rounds", [1, 2])
@pytest.mark.parametrize("skew_s", [0.0, 2.0])  # none, and well ahead (0.5 too until T10: below 3 s, the
# margin less the 2-s heartbeat, `_now_ms` is the head's time + 1 for any skew: 0.5 reached what 2.0 does)
def test_within_the_chains_clock_tolerance_a_skewed_mgmc_posts_no_round_early(
    tmp_path: Path, skew_s: float, accept_rounds: int, caplog: pytest.LogCaptureFixture
) -> None:
    # the default genesis tolerates 5 s (block_max_future_ms): the agent counts on block time only that
    # far behind its clock, or from the latest final block's time, so it never posts a round before it opens
    params = Params(accept_rounds=accept_rounds)
    with caplog.at_level(logging.INFO, logger="peergrid.edge.forward"):
        forward, over = skewed_day(tmp_path, skew_s, params)
    said = [r.getMessage() for r in caplog.records if r.name == "peergrid.edge.forward"]
    assert not [m for m in said if "not open yet" in m or " refused: " in m]
    rechecked(forward, over)


def test_the_day_ahead_deadline_leaves_the_chains_margin_before_the_first_interval() -> None:
    margin = margin_s(Params())
    assert margin == 5.0 and margin_s(Params(block_max_future_ms=10)) == DEADLINE_MARGIN_S
    deadline = dayahead_deadline(1000.0, 2.0, margin)
    # a member whose coordinator is gone clears 1.5 phases past the deadline and its margin: still before
    assert deadline.clear_ms / 1000 + margin + 1.5 * 2.0 < 1000.0
