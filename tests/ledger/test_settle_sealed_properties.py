"""Properties of sealed settlement statements over any order of commits, reveals, repeats, waits and the DSO.

For generated sequences on one priced trade of a `sealed_statements` chain (each party committing to true or
other figures, revealing them or other figures or with another salt, repeating, the DSO settling, block time
jumping past deadlines): balances are conserved; the trade settles at most once and its settlement never
changes after; a rejection changes nothing; a commitment is accepted only as its party's first, before the
commit deadline once the other committed; a party's first statement lands only as the exact opening of its own
commitment, after both committed or once the commit deadline passed; a `withheld` settlement only ever takes
a party that committed and never revealed; and a party that keeps its reveal back never nets more than the
same run with its reveal sent in its place.
"""

from __future__ import annotations

from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st
from ledger_fixtures import Keys
from sealed_fixtures import commit, reveal, sealed_setup
from test_settle_both import BUYER, SELLER, WAIT, balances

from peergrid_ledger import query
from peergrid_ledger.results import Accepted, Reason

PARTIES = {"buyer": BUYER, "seller": SELLER}
QUANTITY = 400  # trades_of's SELLER -> BUYER trade

figures = st.integers(0, QUANTITY).flatmap(lambda d: st.tuples(st.just(d), st.integers(0, QUANTITY - d)))


def dso_figures(stated: tuple[int, int]) -> Any:
    """The DSO's (delivered, seller_short, buyer_short): one side owns the gap, the other up to it."""
    delivered, short = stated
    gap = QUANTITY - delivered
    return st.sampled_from([(delivered, gap, short), (delivered, short, gap)])


# a party's move on its own plan's figures (None: the test puts them in) or on any others
party_move = st.tuples(
    st.sampled_from(["commit", "reveal", "reveal"]),
    st.sampled_from(sorted(PARTIES)),
    st.one_of(st.none(), st.none(), st.none(), figures),
    st.sampled_from([b"", b"", b"x"]),
)
wait = st.tuples(st.just("wait"), st.sampled_from([1, WAIT // 2, WAIT, 2 * WAIT]), st.none(), st.none())
dso = st.tuples(st.just("dso"), figures.flatmap(dso_figures), st.none(), st.none())
# the DSO's word ends a trade: rarely, so that most runs get to the parties' own endings first
action = st.integers(0, 19).flatmap(lambda k: party_move if k < 16 else wait if k < 19 else dso)


def run(actions: list[tuple[Any, ...]]) -> tuple[dict[bytes, int], list[str]]:
    """Play `actions` on a fresh sealed chain, checking every invariant; (balance change, bases settled)."""
    c, clock, tid, _ = sealed_setup()
    start = balances(c)
    total = sum(start.values())
    committed: dict[str, tuple[int, int, bytes]] = {}
    stated: set[str] = set()
    deadline: int | None = None
    settled: dict[str, Any] | None = None
    bases: list[str] = []
    for act in actions:
        root = c.state.root
        kind = act[0]
        if kind == "wait":
            clock.now += act[1]
            continue
        if kind == "dso":
            delivered, seller_short, buyer_short = act[1]
            body = {
                "trade": tid,
                "delivered": delivered,
                "seller_short": seller_short,
                "buyer_short": buyer_short,
            }
            result = clock.send(Keys.dso, body)
        else:
            party, (delivered, short), tag = act[1], act[2], act[3]
            who = PARTIES[party]
            other = "seller" if party == "buyer" else "buyer"
            if kind == "commit":
                result = commit(clock, who, tid, delivered, short, tag)
                if result.ok:
                    assert party not in committed
                    assert other not in committed or deadline is None or clock.now < deadline
                    committed[party] = (delivered, short, tag)
            else:
                result = reveal(clock, who, tid, delivered, short, tag)
                if result.ok and party not in stated:
                    assert committed.get(party) == (delivered, short, tag)  # the exact opening
                    assert other in committed or (deadline is not None and clock.now >= deadline)
                    stated.add(party)
        if isinstance(result, Accepted):
            for name, fields in result.events:
                if name == "sealed":
                    deadline = fields["deadline"]
                if name == "settled":
                    assert settled is None, "settled twice"
                    bases.append(fields["basis"])
                    if fields["basis"] == "withheld":
                        silent = [p for p in committed if p not in stated]
                        assert len(silent) == 1 and len(stated) == 1
            record = query.settlement(c.state, tid)
            assert record is not None
            if settled is None and record["settlement"] is not None:
                settled = dict(record["settlement"])
        else:
            assert c.state.root == root, f"a rejection changed the state: {result}"
            if settled is not None:
                assert result.reason is Reason.ALREADY_SETTLED
        if settled is not None:
            after = query.settlement(c.state, tid)
            assert after is not None and after["settlement"] == settled
        assert sum(balances(c).values()) == total
    end = balances(c)
    return {k: end[k] - start[k] for k in end}, bases


@st.composite
def agreeing(draw: Any) -> dict[str, tuple[int, int]]:
    """Figures the two parties would agree on: the same delivered, one of them owning the whole gap."""
    delivered = draw(st.integers(0, QUANTITY))
    gap = QUANTITY - delivered
    other = draw(st.integers(0, gap))
    owner = draw(st.sampled_from(sorted(PARTIES)))
    return {p: (delivered, gap if p == owner else other) for p in PARTIES}


@settings(max_examples=150, deadline=None)
@given(
    plan=st.one_of(agreeing(), st.fixed_dictionaries({"buyer": figures, "seller": figures})),
    actions=st.lists(action, max_size=14),
)
def test_any_order_of_commits_reveals_waits_and_the_dso_keeps_the_rules(
    plan: dict[str, tuple[int, int]], actions: list[tuple[Any, ...]]
) -> None:
    """Each party's moves mostly carry its plan's figures, so that commitments open, agree and dispute."""
    filled = [(a[0], a[1], plan[a[1]] if a[2] is None else a[2], a[3]) if a[0] in ("commit", "reveal") else a
              for a in actions]  # fmt: skip
    _, bases = run(filled)
    event(f"settled: {bases[0] if bases else 'no'}")


@st.composite
def protocol_run(draw: Any) -> list[tuple[Any, ...]]:
    """Each party mostly follows the protocol (commit its plan's figures, reveal them, send again later),
    sometimes not (no commitment, other figures, another salt, no reveal); the two interleave in any order,
    with waits between, and now and then the DSO settles at some point."""
    plan = draw(st.one_of(agreeing(), st.fixed_dictionaries({"buyer": figures, "seller": figures})))
    queues: dict[str, list[tuple[Any, ...]]] = {}
    for party in sorted(PARTIES):
        own = plan[party]
        deviant = draw(st.integers(0, 9)) == 9  # (Hypothesis draws small numbers most: 0 is the protocol)
        moves: list[tuple[Any, ...]] = []
        if draw(st.integers(0, 9)) < 9:
            moves.append(("commit", party, draw(figures) if deviant else own, b""))
        for _ in range(draw(st.integers(0, 3)) % 3 + 1 if draw(st.integers(0, 9)) < 9 else 0):
            moves.append(("reveal", party, own, draw(st.sampled_from([b"", b"", b"", b"x"]))))
        queues[party] = moves
    steps: list[tuple[Any, ...]] = []
    while any(queues.values()):
        party = draw(st.sampled_from(sorted(p for p, q in queues.items() if q)))
        steps.append(queues[party].pop(0))
        if draw(st.integers(0, 3)) == 0:
            steps.append(draw(wait))
    if draw(st.integers(0, 4)) == 4:
        steps.insert(draw(st.integers(0, len(steps))), draw(dso))
    return steps


@settings(max_examples=150, deadline=None)
@given(protocol_run())
def test_protocol_runs_with_deviations_keep_the_rules(steps: list[tuple[Any, ...]]) -> None:
    """The same invariants over runs that mostly follow the protocol, so that every ending is reached:
    agreed, disputed (then the DSO), lapsed (a party that never committed), withheld, none."""
    _, bases = run(steps)
    event(f"settled: {bases[0] if bases else 'no'}")


@settings(max_examples=40, deadline=None)
@given(buyer=figures, seller=figures, keeper=st.sampled_from(sorted(PARTIES)))
def test_keeping_a_reveal_back_never_nets_more_than_revealing_it(
    buyer: tuple[int, int], seller: tuple[int, int], keeper: str
) -> None:
    """Both commit; the other reveals; the keeper reveals its own (then, if the two dispute, the DSO settles
    on the keeper's figures: the keeper's statement is the truth, the other owning the rest of the gap) or
    keeps it back and the other settles alone after the deadline. Keeping it back never nets the keeper more."""
    mine = {"buyer": buyer, "seller": seller}
    other = "seller" if keeper == "buyer" else "buyer"
    base = [("commit", p, mine[p], b"") for p in ("buyer", "seller")] + [("reveal", other, mine[other], b"")]
    delivered, own = mine[keeper]
    gap = QUANTITY - delivered
    theirs = gap if own < gap else min(mine[other][1], gap)
    sides = (own, theirs) if keeper == "seller" else (theirs, own)
    dso = ("dso", (delivered, *sides), None, None)
    revealed, _ = run([*base, ("reveal", keeper, mine[keeper], b""), dso])
    kept, bases = run([*base, ("wait", WAIT, None, None), ("reveal", other, mine[other], b"")])
    assert bases == ["withheld"]
    key = PARTIES[keeper].public
    assert kept[key] <= revealed[key], (kept[key], revealed[key])
