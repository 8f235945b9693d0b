"""A real chain for the make-whole claim's tests (imported as `uplift_chain`): the market, exchange and uplift
contracts, settle_by_both, two anonym MGs (SOLO and PEER) and the DSO, whose cover prices every interval of
both MGs at retail 0.30 / feed-in 0.05. What a test trades on it is its own."""

from __future__ import annotations

from typing import NamedTuple

from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts import market
from peergrid_ledger.genesis import Account, Genesis, Params
from peergrid_ledger.keys import Keypair
from peergrid_ledger.results import Accepted, Rejected

RETAIL, FEED_IN = 300, 50  # micro-units per Wh


class Parties(NamedTuple):
    authority: Keypair
    dso: Keypair
    solo: Keypair
    peer: Keypair


def ok(result: Accepted | Rejected) -> Accepted:
    assert isinstance(result, Accepted), result
    return result


def covered_chain(name: str, parties: Parties, max_quantity_wh: int, intervals: int) -> LocalChain:
    """The chain `name`, each MG's `max_quantity` rule `max_quantity_wh`, the DSO's cover for `intervals`
    intervals from 0 posted (every trade may be settled at once: settle_interval_ms 1)."""
    authority, dso, solo, peer = parties
    rules = {**market.NO_RULES, "max_quantity": max_quantity_wh}
    genesis = Genesis(
        chain=name, time=0, authorities=(authority.public,),
        accounts=(Account(dso.public, ("dso",), "dso"),
                  Account(solo.public, ("anonym",), "solo", balance=10**9, rules=rules),
                  Account(peer.public, ("anonym",), "peer", balance=10**9, rules=rules)),
        contracts=("market", "exchange", "uplift"), params=Params(credit_limit=0, settle_by_both=1, settle_wait_ms=60_000, settle_interval_ms=1),
    )  # fmt: skip
    chain = LocalChain(genesis, authority)
    for k in (solo, peer):
        cover = {"account": k.public, "first_interval": 0, "retail": [RETAIL] * intervals,
                 "feed_in": [FEED_IN] * intervals}  # fmt: skip
        ok(chain.sign_and_submit(dso, "market.tariff", cover))
    return chain
