"""An interval is not taken for one nobody offered in while an MG's injection is late (review41 R41-5): 6870809
asked only the MGs whose injection came whether they joined as buyers, so a seller whose injection was late and
whose offer was not yet in a block the replica holds was not waited for, and the record said 'nothing traded'. The
MGs of the loop's config must all have joined as buyers (one revoked on the MGMC chain never joins again)."""

from __future__ import annotations

import asyncio

from dso.test_d2_nothing_to_reopen import join_empty, with_mgs
from dso.test_rebargain_reopen import NOW_MS, T, setup


def test_a_late_sellers_offer_still_on_its_way_is_waited_for() -> None:
    chain, adapter, loop, _, seller, buyer = setup()
    with_mgs(loop, mg1=seller, mg2=buyer)
    loop.settings.rebargain_wait_s = 0.05  # type: ignore[attr-defined]
    join_empty(chain, buyer)  # mg2 joined and sent its injection; mg1's injection is late
    offer = {"interval": T, "round": 1, "price": 200, "quantity": 900, "clean": True}
    assert chain.sign_and_submit(seller, "offer", offer, NOW_MS).ok  # not in a block the replica holds yet
    assert asyncio.run(loop.reopen(T, b"r" * 32, {"mg2"})) == (None, "not closed")  # before: "no offer in it"
    assert adapter.waits > 0


def test_an_mg_revoked_on_the_mgmc_chain_is_not_waited_for() -> None:
    chain, adapter, loop, dso, gone, buyer = setup()
    with_mgs(loop, mg1=gone, mg2=buyer)
    assert chain.sign_and_submit(dso, "gov.revoke", {"key": gone.public, "operator": "op"}, NOW_MS).ok
    join_empty(chain, buyer)
    done = asyncio.run(loop.reopen(T, b"r" * 32, {"mg2"}))
    assert done == (None, "no offer in it: nothing traded, nothing closed to reopen") and adapter.waits == 0
