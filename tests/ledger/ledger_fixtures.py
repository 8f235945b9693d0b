"""Helpers shared by the ledger tests: fixed keys and a small genesis (imported as `ledger_fixtures`)."""

from __future__ import annotations

import hashlib
from typing import Any

from peergrid_ledger.chain import LocalChain
from peergrid_ledger.genesis import Account, Genesis, Params
from peergrid_ledger.keys import Keypair
from peergrid_ledger.results import Accepted, Reason, Rejected

T0 = 1_767_225_600_000


def key(name: str) -> Keypair:
    return Keypair.from_seed(hashlib.sha256(b"test/" + name.encode()).digest())


class Keys:
    authority = key("authority")
    authority2 = key("authority2")
    dso = key("dso")
    p1 = key("p1")
    p2 = key("p2")
    p3 = key("p3")
    p4 = key("p4")
    stranger = key("stranger")


def make_genesis(**overrides: Any) -> Genesis:
    accounts = (
        Account(Keys.dso.public, ("dso",), "dso"),
        *(
            Account(k.public, ("anonym",), f"p{i}", balance=1000)
            for i, k in enumerate([Keys.p1, Keys.p2, Keys.p3, Keys.p4], 1)
        ),
    )
    fields: dict[str, Any] = {
        "chain": "test-chain",
        "time": T0,
        "authorities": (Keys.authority.public,),
        "accounts": accounts,
        "params": Params(credit_limit=0),
    }
    fields.update(overrides)
    return Genesis(**fields)


def reason(result: Accepted | Rejected) -> Reason:
    """The reason of a result that must be a rejection."""
    assert isinstance(result, Rejected), f"expected a rejection, got {result}"
    return result.reason


def submit_checked(chain: LocalChain, signer: Keypair, kind: str, body: dict[str, Any]) -> bool:
    """Sign and submit one transaction; whether the chain took it. A rejection must change nothing."""
    before = dict(chain._pending_view.writes)
    result = chain.sign_and_submit(signer, kind, body)
    if not result.ok:
        assert dict(chain._pending_view.writes) == before, f"a rejected {kind} changed state: {result}"
    return result.ok
