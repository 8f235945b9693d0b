"""review14 K3b, the contract's side (P7's /work/notes/p7_contract.md): two commitments and no reveal in the
window is the DSO's to meter (peergrid_ledger.takeup.unrevealed_since); a party's first reveal after the
window is refused `closed`. Before, a late reveal followed at once by its repeat took the other committer at its
worst (`withheld`): a buyer that saw its seller could not reveal (salt file lost) took the energy for nothing
and the seller owned the whole quantity short. A reveal against a party that never committed keeps its rule
(test_settle_sealed: a lone committer reveals after the commit deadline). Real contract (LocalChain).
"""

from __future__ import annotations

import pytest
from ledger_fixtures import Keys, reason
from sealed_fixtures import commit, reveal, sealed_setup, state
from test_settle_both import BUYER, PRICE, SELLER, WAIT, balances, events

from peergrid_ledger import query
from peergrid_ledger.results import Reason

QUANTITY = 400


@pytest.mark.parametrize("late", ["buyer", "seller"])
def test_after_the_window_neither_committer_reveals_and_the_dso_settles(late: str) -> None:
    c, clock, tid, _ = sealed_setup()
    before = balances(c)
    assert commit(clock, SELLER, tid, QUANTITY, 0).ok
    assert commit(clock, BUYER, tid, QUANTITY, 0).ok
    deadline = int(query.settlement(c.state, tid)["deadline"])  # type: ignore[index]
    assert deadline == clock.now + WAIT
    clock.now = deadline - 1  # the next block lands at the deadline
    who = BUYER if late == "buyer" else SELLER
    refused = reveal(clock, who, tid, QUANTITY, 0)
    assert reason(refused) is Reason.CLOSED
    assert f"neither party revealed by {deadline}" in str(refused) and "the DSO settles it" in str(refused)
    where = query.settlement(c.state, tid)
    assert where is not None and where["state"] == "open" and where["statements"] == {}
    assert reason(state(clock, who, tid, QUANTITY)) is Reason.RULE_VIOLATION  # a plain statement: seal first
    paid = clock.send(Keys.dso, {"trade": tid, "delivered": 350, "seller_short": 50, "buyer_short": 0})
    settled = events(paid)[0][1]
    assert (settled["delivered"], settled["basis"]) == (350, "dso")
    assert balances(c)[SELLER.public] - before[SELLER.public] == PRICE * 350 - settled["compensation"]


def test_a_reveal_in_the_last_block_of_the_window_is_taken() -> None:
    c, clock, tid, _ = sealed_setup()
    assert commit(clock, SELLER, tid, QUANTITY, 0).ok
    assert commit(clock, BUYER, tid, QUANTITY, 0).ok
    deadline = int(query.settlement(c.state, tid)["deadline"])  # type: ignore[index]
    clock.now = deadline - 2  # block time deadline - 1
    assert reveal(clock, SELLER, tid, QUANTITY, 0).ok
    # the buyer's reveal at the deadline: the seller revealed, so it is the statement after the deadline
    late = reveal(clock, BUYER, tid, QUANTITY, 0)
    assert reason(late) is Reason.CLOSED and "after the deadline" in str(late)
