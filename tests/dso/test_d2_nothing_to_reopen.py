"""An interval nobody offered in goes on at once (D2, U3's run 1: after an operator opened branch 28 by hand the DSO
sent its contracts for interval 75, which had no trades, then waited for a closing that never comes - 'interval 75
is not closed on the MGMC chain: nothing to reopen' - and the interval overran by 12.7 s).

Each MG sends its injection after its bargaining, and an interval without a seller is never closed
(`peergrid_edge.chain_closing`): once every MG that sent one joined the interval as a buyer and nobody offered,
`DsoLoop.reopen` sends nothing and waits for nothing; the contracts stay on the DSO chain and the MGMCs re-plan.
While the replica lacks an MG's join, or someone offered, the bounded wait for a closing stands. Each iteration's
record says how the MGMCs answered (`interval_node.answer`).
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from dso.test_rebargain_reopen import NOW_MS, T, close, setup
from peergrid_dso.interval_node import Reopening, answer
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.keys import Keypair

WAIT_S = 3.0  # the loop's rebargain_wait_s here: what the interval would overrun by


def join_empty(chain: LocalChain, *buyers: Keypair) -> None:
    """Each MG with nothing to sell joins with an empty bid (`chain_bargaining.bargain`)."""
    for buyer in buyers:
        assert chain.sign_and_submit(buyer, "bid", {"interval": T, "round": 0, "demands": []}, NOW_MS).ok
    chain.seal(NOW_MS)


def with_mgs(loop: object, **anonyms: Keypair) -> None:
    loop.settings = SimpleNamespace(  # type: ignore[attr-defined]
        rebargain_wait_s=WAIT_S, mgs={mg: SimpleNamespace(anonym=k.public.hex()) for mg, k in anonyms.items()}
    )


def test_an_interval_nobody_offered_in_is_not_waited_for() -> None:
    chain, adapter, loop, _, mg1, mg2 = setup()
    with_mgs(loop, mg1=mg1, mg2=mg2)
    join_empty(chain, mg1, mg2)
    done = asyncio.run(loop.reopen(T, b"r" * 32, {"mg1", "mg2"}))
    assert done == (None, "no offer in it: nothing traded, nothing closed to reopen")
    assert adapter.sent == [] and adapter.waits == 0  # before: WAIT_S of waits, then 'not closed'
    assert answer(done) == "re-planned, nothing traded"


def test_the_wait_for_a_closing_stands_while_an_offer_may_still_close_it() -> None:
    chain, adapter, loop, _, seller, buyer = setup()
    with_mgs(loop, mg1=seller, mg2=buyer)
    loop.settings.rebargain_wait_s = 0.05  # type: ignore[attr-defined]
    join_empty(chain, buyer)  # the seller's join not on the replica yet: it may have offered
    assert asyncio.run(loop.reopen(T, b"r" * 32, {"mg1", "mg2"})) == (None, "not closed")
    assert adapter.waits > 0
    offer = {"interval": T, "round": 1, "price": 200, "quantity": 900, "clean": True}
    assert chain.sign_and_submit(seller, "offer", offer, NOW_MS).ok  # an offer: its closing is waited for
    chain.seal(NOW_MS)
    adapter.waits = 0
    assert asyncio.run(loop.reopen(T, b"r" * 32, {"mg1", "mg2"})) == (None, "not closed")
    assert adapter.waits > 0
    close(chain, buyer)
    reopened = asyncio.run(loop.reopen(T, b"r" * 32, {"mg1", "mg2"}))
    assert reopened.iteration == 1 and answer(reopened) == "re-bargained"


def test_each_answer_says_what_the_mgmcs_kept() -> None:
    assert answer(Reopening(None, "forward-traded by exchange session 'day-1'")) == (
        "re-planned, forward trades kept"
    )
    assert answer(Reopening(None, "not closed")) == "re-planned, trades kept"
    assert answer(Reopening(None, "refused: limit: at most 1 reopening")) == "re-planned, trades kept"
    assert answer(Reopening(2)) == "re-bargained"
