"""The exchange contract's verdicts: each member's `settled` on the previous stepped iteration, posted with
its next position, counted per iteration, and the close that says whether they all said so."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_fixtures import T0, Keys
from test_exchange import P1, P2, P3, RHO, exchange_chain, open_body, opened, refused, step

from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts.exchange import session, settled_count
from peergrid_ledger.keys import Keypair
from peergrid_ledger.results import Accepted, Reason

MEMBERS = (P1, P2, P3)


def post(chain: LocalChain, who: Keypair, iteration: int, settled: bool | None = None) -> bool:
    body: dict[str, Any] = {"session": "day-1", "iteration": iteration, "positions": [10, -10, 0]}
    if settled is not None:
        body["settled"] = settled
    return chain.sign_and_submit(who, "exchange.position", body).ok


def to_iteration(chain: LocalChain, iteration: int) -> None:
    """Every member posts (without a verdict) and the coordinator steps, up to `iteration`."""
    for k in range(iteration):
        assert all(post(chain, m, k) for m in MEMBERS)
        assert step(chain, k, RHO)


def test_verdicts_are_counted_per_iteration_and_the_step_event_says_how_many() -> None:
    chain = opened(MEMBERS)
    to_iteration(chain, 2)
    assert post(chain, P1, 2, True) and post(chain, P2, 2, False) and post(chain, P3, 2, True)
    state = session(chain.view, "day-1")
    assert state is not None and (state["posted"], state["settled"]) == (3, 2)
    assert settled_count(chain.view, "day-1") == 2
    result = chain.sign_and_submit(
        Keys.dso, "exchange.step", {"session": "day-1", "iteration": 2, "rho": RHO}
    )
    assert isinstance(result, Accepted)
    assert result.events == (
        ("exchange_step", {"session": "day-1", "iteration": 3, "rho": RHO, "settled": 2}),
    )
    # a new iteration starts with no verdicts
    assert settled_count(chain.view, "day-1") == 0
    assert settled_count(chain.view, "nope") is None


def test_a_close_after_every_member_said_settled_says_so() -> None:
    chain = opened(MEMBERS)
    to_iteration(chain, 3)
    before = session(chain.view, "day-1")
    assert before is not None
    assert all(post(chain, m, 3, True) for m in MEMBERS)
    closing = chain.sign_and_submit(Keys.dso, "exchange.close", {"session": "day-1", "iteration": 3})
    assert isinstance(closing, Accepted)
    assert closing.events == (
        (
            "exchange_closed",
            {
                "session": "day-1",
                "iteration": 3,
                "prices": list(before["prices"]),
                "unstepped": 3,
                "settled": True,
            },
        ),
    )


def test_a_close_with_one_verdict_missing_or_false_is_no_value_stop() -> None:
    for last in (False, None):  # one member said not settled / one member has not posted
        chain = opened(MEMBERS)
        to_iteration(chain, 2)
        assert post(chain, P1, 2, True) and post(chain, P2, 2, True)
        if last is not None:
            assert post(chain, P3, 2, last)
        closing = chain.sign_and_submit(Keys.dso, "exchange.close", {"session": "day-1", "iteration": 2})
        assert isinstance(closing, Accepted)
        assert closing.events[0][1]["settled"] is False


def test_settled_is_refused_at_iterations_0_and_1_with_the_reason() -> None:
    chain = opened(MEMBERS)
    for iteration in (0, 1):
        body = {"session": "day-1", "iteration": iteration, "positions": [1, 2, 3], "settled": True}
        assert refused(chain, P1, "exchange.position", body) is Reason.RULE_VIOLATION
        result = chain.sign_and_submit(P1, "exchange.position", body)
        assert "previous iteration" in str(result) and f"iteration {iteration}" in str(result)
        # saying not settled is no claim: accepted there
        assert post(chain, P1, iteration, False) and post(chain, P2, iteration) and post(chain, P3, iteration)
        assert step(chain, iteration, RHO)
    assert post(chain, P1, 2, True)


def test_a_verdict_that_is_not_a_bool_or_an_unknown_field_is_malformed() -> None:
    chain = opened(MEMBERS)
    to_iteration(chain, 2)
    for extra in ({"settled": 1}, {"settled": "yes"}, {"verdict": True}):
        body = {"session": "day-1", "iteration": 2, "positions": [1, 2, 3], **extra}
        assert refused(chain, P1, "exchange.position", body) is Reason.MALFORMED
    state = session(chain.view, "day-1")
    assert state is not None and (state["posted"], state["settled"]) == (0, 0)


# a chain of bodies without the field, as posted before it existed: its state root under the code before
# `settled` (HEAD 82f66ce, measured in a worktree); the verdicts must not change one byte of it
OLD_ROOT = "528e699376deaab1f703e04d518866d1867448c033dbf0431fb5cd0a38bfe76e"


def old_script() -> list[tuple[Keypair, str, dict[str, Any]]]:
    script: list[tuple[Keypair, str, dict[str, Any]]] = [(Keys.dso, "exchange.open", open_body())]
    for iteration, (a, b) in enumerate([([300, -20, 7], [-100, 40, 1]), ([5, 5, 5], [-9, 0, 13])]):
        script += [
            (P1, "exchange.position", {"session": "day-1", "iteration": iteration, "positions": a}),
            (P2, "exchange.position", {"session": "day-1", "iteration": iteration, "positions": b}),
            (Keys.dso, "exchange.step", {"session": "day-1", "iteration": iteration, "rho": RHO + iteration}),
        ]
    script.append((P1, "exchange.position", {"session": "day-1", "iteration": 2, "positions": [1, 1, 1]}))
    script.append((Keys.dso, "exchange.close", {"session": "day-1", "iteration": 2}))
    return script


def replay(script: list[tuple[Keypair, str, dict[str, Any]]]) -> LocalChain:
    chain = exchange_chain()
    signers = {k.public: chain.signer(k) for k in (Keys.dso, P1, P2, P3)}
    txs = [signers[who.public].sign(kind, body, T0 + 1000 + i) for i, (who, kind, body) in enumerate(script)]
    assert all(r.ok for r in chain.submit_all(txs))
    chain.seal(T0 + 60_000)
    return chain


def test_an_old_chain_without_verdicts_replays_to_the_same_root() -> None:
    assert replay(old_script()).state.root.hex() == OLD_ROOT


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from([None, False, True]), min_size=2, max_size=2))
def test_two_chains_with_the_same_verdicts_have_the_same_root(verdicts: list[bool | None]) -> None:
    script = old_script()[:-2]  # up to iteration 2
    for who, verdict in zip((P1, P2), verdicts, strict=True):
        body: dict[str, Any] = {"session": "day-1", "iteration": 2, "positions": [3, -3, 0]}
        if verdict is not None:
            body["settled"] = verdict
        script.append((who, "exchange.position", body))
    script.append((Keys.dso, "exchange.close", {"session": "day-1", "iteration": 2}))
    chains = [replay(script), replay(script)]
    assert chains[0].state.root == chains[1].state.root
    assert chains[0].tip.hash == chains[1].tip.hash
    state = session(chains[0].state, "day-1")
    assert state is not None and state["settled"] == sum(bool(v) for v in verdicts)
