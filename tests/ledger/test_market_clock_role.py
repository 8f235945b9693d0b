"""The `clock` role (review23 F2): a key that may post the interval clock (`market.clock`) and nothing the DSO
alone may do. The lab posts its clock under a key of its own (its own nonces, never racing the DSO node's);
with role `dso` that key could also cut a member's capacity, price its cover, reopen an interval, enrol,
authorise, revoke and change the authority set. With role `clock` its `market.clock` lands and every other
DSO kind is refused `forbidden`, changing nothing (`submit_checked`). Genesis takes the role; an unknown role
is still refused; a genesis that names no `clock` account encodes as before."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from ledger_fixtures import T0, Keys, key, make_genesis, reason, submit_checked
from test_settle_both import WAIT, accounts

from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts import market_clock
from peergrid_ledger.genesis import Account, Genesis, GenesisError, Params
from peergrid_ledger.results import Reason

INTERVAL = 900_000
CLOCK = key("lab-clock")
NEWCOMER = key("newcomer")


def clock_chain(authorised: bool = True) -> LocalChain:
    """A settle_by_both chain (genesis clock at T0) naming the DSO, p1 … p4 and a `clock`-role account."""
    params = Params(
        credit_limit=0, settle_by_both=1, settle_wait_ms=WAIT, settle_epoch_ms=T0, settle_interval_ms=INTERVAL,
        max_reopens=2,
    )  # fmt: skip
    clock = Account(CLOCK.public, ("clock",), "lab-clock", authorised=authorised)
    genesis = make_genesis(accounts=(*accounts(), clock), params=params, contracts=("market",))
    return LocalChain(genesis, Keys.authority)


def dso_only_kinds() -> list[tuple[str, dict[str, Any]]]:
    """Each kind only the DSO may send, with a body its schema takes (the refusal is then the role's)."""
    p1 = Keys.p1.public
    return [
        ("market.capacity", {"account": p1, "from_interval": 0, "wh": 1}),
        ("market.tariff", {"account": p1, "first_interval": 50, "retail": [300], "feed_in": [50]}),
        ("market.reopen", {"interval": 1, "iteration": 1, "ref": hashlib.sha256(b"r").digest(), "until": T0}),
        ("gov.add_authority", {"key": NEWCOMER.public}),
        ("gov.remove_authority", {"key": Keys.authority.public}),
        ("gov.rotate_authority", {"old": Keys.authority.public, "new": NEWCOMER.public}),
        ("gov.revoke", {"key": p1, "operator": "lab-clock"}),
        ("enrol", {"mgmc": NEWCOMER.public, "anonym": key("newcomer-anonym").public, "label": "mg9"}),
        ("authorise", {"key": p1, "authorised": False}),
    ]


@pytest.mark.parametrize("authorised", [True, False])
def test_a_clock_key_posts_the_clock(authorised: bool) -> None:
    # the lab names its clock key unauthorised (it never trades): the clock is no trade, so it lands either way
    c = clock_chain(authorised)
    assert submit_checked(c, CLOCK, "market.clock", {"epoch_ms": T0 + 1_234})
    c.seal()
    assert market_clock.posted_epoch(c.state) == T0 + 1_234
    # the DSO's post still replaces it
    assert submit_checked(c, Keys.dso, "market.clock", {"epoch_ms": T0 + 5_678})
    c.seal()
    assert market_clock.posted_epoch(c.state) == T0 + 5_678


@pytest.mark.parametrize(("kind", "body"), dso_only_kinds(), ids=[kind for kind, _ in dso_only_kinds()])
def test_a_clock_key_holds_none_of_the_dsos_other_powers(kind: str, body: dict[str, Any]) -> None:
    c = clock_chain()
    assert not submit_checked(c, CLOCK, kind, body)
    result = c.sign_and_submit(CLOCK, kind, body)
    assert reason(result) is Reason.FORBIDDEN and "needs one of the roles ['dso']" in str(result)


def test_the_same_bodies_from_the_dso_are_taken() -> None:
    # the refusals above are the role's: the DSO's own capacity, tariff and authority change land
    c = clock_chain()
    for kind, body in dso_only_kinds()[:2] + dso_only_kinds()[3:4]:
        assert submit_checked(c, Keys.dso, kind, body), kind
        c.seal()


def test_the_clock_role_is_no_participants() -> None:
    c = clock_chain()
    offer = {"interval": 3, "round": 0, "price": 250, "quantity": 100, "clean": False}
    assert not submit_checked(c, CLOCK, "offer", offer)
    result = c.sign_and_submit(CLOCK, "offer", offer)
    assert reason(result) is Reason.FORBIDDEN and "needs one of the roles" in str(result)


def test_genesis_takes_the_clock_role_and_still_refuses_an_unknown_one() -> None:
    genesis = clock_chain().genesis
    assert Genesis.from_json(genesis.to_json()).encode() == genesis.encode()
    for roles in (("clocks",), ("clock", "timekeeper")):
        with pytest.raises(GenesisError, match="unknown roles"):
            make_genesis(accounts=(*accounts(), Account(CLOCK.public, roles, "lab-clock")))


def test_the_clock_role_alone_does_not_make_a_settle_by_both_genesis() -> None:
    # only the DSO settles a dispute: a clock key is no stand-in for the dso account such a chain needs
    params = Params(credit_limit=0, settle_by_both=1, settle_interval_ms=INTERVAL)
    only_clock = (Account(CLOCK.public, ("clock",), "lab-clock"), Account(Keys.p1.public, ("anonym",), "p1"))
    with pytest.raises(GenesisError, match="needs an account with role dso"):
        make_genesis(accounts=only_clock, params=params, contracts=("market",))
