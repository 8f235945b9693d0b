"""Revocation and operator records in the state machine: `gov.revoke` takes a key out of the authority set
from the next height and refuses everything it signs afterwards; enrolment, authorisation, revocation and
`operator_action` carry the operator who decided them."""

from __future__ import annotations

import hashlib

from ledger_fixtures import Keys, key, make_genesis, reason

from peergrid_ledger import keyspace as ks
from peergrid_ledger import query
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.codec import decode
from peergrid_ledger.results import Accepted, Reason
from peergrid_ledger.state import read_obj

ROOT = hashlib.sha256(b"readings").digest()


def der(interval: int = 1) -> dict[str, object]:
    return {"interval": interval, "root": ROOT, "readings": 96}


def two_authorities() -> LocalChain:
    genesis = make_genesis(authorities=(Keys.authority.public, Keys.authority2.public))
    return LocalChain(genesis, Keys.authority, cosigners=[Keys.authority2])


def test_revoking_an_authority_removes_it_from_the_next_height_on() -> None:
    chain = two_authorities()
    both = sorted([Keys.authority.public, Keys.authority2.public])
    revoke = {"key": Keys.authority2.public, "operator": "alice"}
    assert reason(chain.sign_and_submit(Keys.p1, "gov.revoke", revoke)) is Reason.FORBIDDEN
    result = chain.sign_and_submit(Keys.dso, "gov.revoke", revoke)
    assert isinstance(result, Accepted)
    assert result.events == (
        ("revoked", {"key": Keys.authority2.public, "operator": "alice", "effective": 2}),
    )
    block, _ = chain.seal()
    assert block.height == 1
    assert query.authorities_at(chain.state, 1) == both  # the block that revoked is still decided by both
    assert query.authorities_at(chain.state, 2) == [Keys.authority.public]
    record = read_obj(chain.state, ks.revoked(Keys.authority2.public))
    assert record == {"height": 1, "operator": "alice", "txid": result.txid}
    account = query.account(chain.view, Keys.authority2.public)
    assert account is not None and "authority" not in account.roles and not account.authorised
    assert reason(chain.sign_and_submit(Keys.dso, "gov.revoke", revoke)) is Reason.DUPLICATE


def test_a_revoked_key_signs_nothing_any_more() -> None:
    chain = LocalChain(make_genesis(), Keys.authority)
    assert chain.sign_and_submit(Keys.p1, "der_commitment", der(1)).ok
    assert chain.sign_and_submit(Keys.dso, "gov.revoke", {"key": Keys.p1.public, "operator": "bob"}).ok
    refused = chain.sign_and_submit(Keys.p1, "der_commitment", der(2))
    assert reason(refused) is Reason.NOT_AUTHORISED and "revoked" in refused.detail  # type: ignore[union-attr]
    # not even evidence, which any known key may otherwise send
    body = {"signer": Keys.authority.public, "height": 1, "round": 0, "step": "prepare"}
    vote = {"block": bytes(32), "sig": bytes(64)}
    assert reason(chain.sign_and_submit(Keys.p1, "evidence", {**body, "first": vote, "second": vote})) is (
        Reason.NOT_AUTHORISED
    )
    chain.seal()
    assert reason(chain.sign_and_submit(Keys.p1, "der_commitment", der(3))) is Reason.NOT_AUTHORISED


def test_a_revoked_key_is_never_enrolled_authorised_or_made_an_authority_again() -> None:
    chain = LocalChain(make_genesis(), Keys.authority)
    mgmc, anonym = key("mgmc-r"), key("anonym-r")
    enrol = {"mgmc": mgmc.public, "anonym": anonym.public, "label": "mg-r", "operator": "alice"}
    assert chain.sign_and_submit(Keys.dso, "enrol", enrol).ok
    for k in (mgmc, anonym):
        assert chain.sign_and_submit(Keys.dso, "gov.revoke", {"key": k.public, "operator": "alice"}).ok
    again = {"mgmc": mgmc.public, "anonym": key("anonym-new").public, "label": "mg-r"}
    assert reason(chain.sign_and_submit(Keys.dso, "enrol", again)) is Reason.FORBIDDEN
    back = {"key": anonym.public, "authorised": True, "operator": "alice"}
    assert reason(chain.sign_and_submit(Keys.dso, "authorise", back)) is Reason.FORBIDDEN
    assert reason(chain.sign_and_submit(Keys.dso, "gov.add_authority", {"key": mgmc.public})) is (
        Reason.FORBIDDEN
    )
    rotate = {"old": Keys.authority.public, "new": mgmc.public}
    assert reason(chain.sign_and_submit(Keys.dso, "gov.rotate_authority", rotate)) is Reason.FORBIDDEN
    # a fresh identity key with a fresh anonym is fine
    fresh = {"mgmc": key("mgmc-new").public, "anonym": key("anonym-new").public, "label": "mg-r"}
    assert chain.sign_and_submit(Keys.dso, "enrol", fresh).ok


def test_revocation_refuses_the_impossible() -> None:
    chain = LocalChain(make_genesis(), Keys.authority)
    last = {"key": Keys.authority.public, "operator": "alice"}
    assert reason(chain.sign_and_submit(Keys.dso, "gov.revoke", last)) is Reason.INVALID
    own = {"key": Keys.dso.public, "operator": "alice"}
    assert reason(chain.sign_and_submit(Keys.dso, "gov.revoke", own)) is Reason.INVALID
    nobody = {"key": Keys.stranger.public, "operator": "alice"}
    assert reason(chain.sign_and_submit(Keys.dso, "gov.revoke", nobody)) is Reason.NOT_FOUND
    for body in ({"key": Keys.p1.public}, {"key": Keys.p1.public, "operator": ""}, {"key": Keys.p1.public,
                 "operator": "x" * 65}):  # fmt: skip
        assert reason(chain.sign_and_submit(Keys.dso, "gov.revoke", body)) is Reason.MALFORMED


def test_enrolment_and_authorisation_name_the_operator_and_stay_valid_without() -> None:
    chain = LocalChain(make_genesis(), Keys.authority)
    mgmc, anonym = key("mgmc-o"), key("anonym-o")
    body = {"mgmc": mgmc.public, "anonym": anonym.public, "label": "mg-o", "operator": "alice"}
    result = chain.sign_and_submit(Keys.dso, "enrol", body)
    assert isinstance(result, Accepted) and result.events[0][1]["operator"] == "alice"
    off = chain.sign_and_submit(
        Keys.dso, "authorise", {"key": anonym.public, "authorised": False, "operator": "bob"}
    )
    assert isinstance(off, Accepted) and off.events == (
        ("deauthorised", {"key": anonym.public, "operator": "bob"}),
    )
    assert chain.sign_and_submit(Keys.dso, "authorise", {"key": anonym.public, "authorised": True}).ok
    older = {"mgmc": key("m2").public, "anonym": key("a2").public, "label": "mg-2"}
    assert chain.sign_and_submit(Keys.dso, "enrol", older).ok  # the body without an operator still applies
    extra = {**older, "anonym": key("a3").public, "by": "alice"}
    assert reason(chain.sign_and_submit(Keys.dso, "enrol", extra)) is Reason.MALFORMED
    block, _ = chain.seal()
    on_chain = [decode(tx.payload)["body"].get("operator") for tx in block.txs]
    assert on_chain == ["alice", "bob", None, None]


def test_operator_action_records_who_did_what() -> None:
    chain = LocalChain(make_genesis(), Keys.authority)
    plan = chain.sign_and_submit(
        Keys.dso,
        "switching_plan",
        {"plan": "plan-1", "interval": 1, "actions": [{"switch": "s7", "close": False}]},
    )
    assert isinstance(plan, Accepted)
    body = {"operator": "alice", "action": "approve and execute plan-1", "txs": [plan.txid]}
    assert reason(chain.sign_and_submit(Keys.p1, "operator_action", body)) is Reason.FORBIDDEN
    twice = {**body, "txs": [plan.txid, plan.txid]}
    assert reason(chain.sign_and_submit(Keys.dso, "operator_action", twice)) is Reason.INVALID
    result = chain.sign_and_submit(Keys.dso, "operator_action", body)
    assert isinstance(result, Accepted)
    assert result.events == (("operator-action", body),)
    block, _ = chain.seal()
    assert decode(block.txs[-1].payload)["body"] == body
