"""The exchange contract's judgements: each member's `judged` (its own floors and caps judged at the previous
stepped iteration's prices: the sides it banned, the ones it asks back, whether a fee changed), posted with
its next position, validated and kept with the post, readable by everyone."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from test_exchange import P1, P2, P3, RHO, opened, refused, step
from test_exchange_verdicts import OLD_ROOT, old_script, replay

from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts.exchange import judgements, position, session, stepped
from peergrid_ledger.keys import Keypair
from peergrid_ledger.results import Reason

MEMBERS = (P1, P2, P3)
CELLS = 6  # the session's three intervals, two sides each


def body(iteration: int, judged: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"session": "day-1", "iteration": iteration, "positions": [10, -10, 0], **extra}
    if judged is not None:
        out["judged"] = judged
    return out


def post(chain: LocalChain, who: Keypair, iteration: int, judged: dict[str, Any] | None = None) -> bool:
    return chain.sign_and_submit(who, "exchange.position", body(iteration, judged)).ok


def at_iteration_2() -> LocalChain:
    chain = opened(MEMBERS)
    for k in range(2):
        assert all(post(chain, m, k) for m in MEMBERS)
        assert step(chain, k, RHO)
    return chain


def test_a_judgement_is_kept_with_its_post_and_read_in_member_order() -> None:
    chain = at_iteration_2()
    mine = {"banned": [1, 4], "asks": [2], "fees": False}
    assert post(chain, P2, 2, mine)
    assert post(chain, P1, 2, {"banned": [], "asks": [], "fees": True})
    assert judgements(chain.view, "day-1") == [{"banned": [], "asks": [], "fees": True}, mine, None]
    record = position(chain.view, "day-1", P2.public)
    assert record is not None and record["judged"] == mine
    assert post(chain, P3, 2)
    assert step(chain, 2, RHO)
    # stepped, the post keeps its judgement (a reader of the iteration after sees it there); the new
    # iteration has none yet
    kept = stepped(chain.view, "day-1", P2.public)
    assert kept is not None and kept["iteration"] == 2 and kept["judged"] == mine
    assert judgements(chain.view, "day-1") == [None, None, None]
    assert judgements(chain.view, "nope") is None


def test_ill_formed_judgements_are_refused_with_the_reason_and_change_nothing() -> None:
    chain = at_iteration_2()
    cases: list[tuple[dict[str, Any], Reason, str]] = [
        ({"banned": [CELLS], "asks": [], "fees": False}, Reason.INVALID, "beyond the session's 3 intervals"),
        ({"banned": [3, 1], "asks": [], "fees": False}, Reason.INVALID, "strictly ascending"),
        ({"banned": [], "asks": [2, 2], "fees": False}, Reason.INVALID, "strictly ascending"),
        ({"banned": [2], "asks": [2], "fees": False}, Reason.INVALID, "both banned and asked back"),
        ({"banned": [], "asks": [], "fees": False}, Reason.INVALID, "an empty judgement is posted as none"),
        ({"banned": [-1], "asks": [], "fees": False}, Reason.MALFORMED, ""),
        ({"banned": [], "asks": []}, Reason.MALFORMED, ""),
        ({"banned": [], "asks": [], "fees": 1}, Reason.MALFORMED, ""),
        ({"banned": [], "asks": [], "fees": True, "others": [0]}, Reason.MALFORMED, ""),
        ({"banned": [0] * 2000, "asks": [], "fees": False}, Reason.MALFORMED, ""),
    ]
    for judged, why, words in cases:
        assert refused(chain, P1, "exchange.position", body(2, judged)) is why, judged
        result = chain.sign_and_submit(P1, "exchange.position", body(2, judged))
        assert words in str(result), (judged, str(result))
    state = session(chain.view, "day-1")
    assert state is not None and state["posted"] == 0


def test_a_judgement_at_iterations_0_and_1_is_refused() -> None:
    chain = opened(MEMBERS)
    for iteration in (0, 1):
        judged = {"banned": [0], "asks": [], "fees": False}
        assert refused(chain, P1, "exchange.position", body(iteration, judged)) is Reason.RULE_VIOLATION
        assert "previous stepped iteration" in str(
            chain.sign_and_submit(P1, "exchange.position", body(iteration, judged))
        )
        assert all(post(chain, m, iteration) for m in MEMBERS)
        assert step(chain, iteration, RHO)


def test_a_verdict_and_a_judgement_go_together() -> None:
    chain = at_iteration_2()
    both = body(2, {"banned": [], "asks": [5], "fees": False}, settled=True)
    assert chain.sign_and_submit(P1, "exchange.position", both).ok
    state = session(chain.view, "day-1")
    assert state is not None and state["settled"] == 1
    assert judgements(chain.view, "day-1") == [{"banned": [], "asks": [5], "fees": False}, None, None]


def test_an_old_chain_without_judgements_replays_to_the_same_root() -> None:
    assert replay(old_script()).state.root.hex() == OLD_ROOT


codes = st.lists(st.integers(0, CELLS - 1), unique=True).map(sorted)


@settings(max_examples=60, deadline=None)
@given(codes, codes, st.booleans())
def test_any_well_formed_judgement_is_kept_as_posted_and_two_chains_agree(
    banned: list[int], asks: list[int], fees: bool
) -> None:
    judged = {"banned": banned, "asks": asks, "fees": fees}
    well_formed = not set(banned) & set(asks) and bool(banned or asks or fees)
    roots = set()
    for _ in range(2):
        chain = at_iteration_2()
        assert post(chain, P3, 2, judged) is well_formed
        assert judgements(chain.view, "day-1") == [None, None, judged if well_formed else None]
        roots.add(chain.state.root)
    assert len(roots) == 1
