"""Enrolment in operator mode: a valid request waits; approval records it with the operator's name; bad
requests are refused; revocation takes the MGMC out of the DSO chain's authority set (real replicas)."""

from __future__ import annotations

import pytest

from peergrid_dso.services.dso_chain import ChainRecorder, ChainRejected
from peergrid_dso.services.enrolment import (
    AUTO_OPERATOR,
    EnrolmentRefused,
    EnrolmentService,
    enrolment_digest,
)
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.consensus.ledger_net import LedgerNet, ReplicaChain
from peergrid_ledger.core import authorities_at
from peergrid_ledger.genesis import Account, Genesis
from peergrid_ledger.keys import Keypair


class Recorder:
    def __init__(self) -> None:
        self.records: list[tuple[str, dict]] = []

    def submit(self, kind: str, body: dict) -> None:
        self.records.append((kind, body))


def request(
    service: EnrolmentService, mgmc: Keypair, anonym: Keypair, label: str = "mg1", token: str | None = None
):
    token = token or service.issue_token()
    sig = mgmc.sign(enrolment_digest(token, mgmc.public, anonym.public, label))
    return service.request(token, mgmc.public, anonym.public, label, sig)


def test_operator_mode_waits_for_approval() -> None:
    recorder = Recorder()
    service = EnrolmentService(recorder, auto=False, token_source=iter(["t1", "t2"]).__next__)
    mgmc, anonym = Keypair.generate(), Keypair.generate()
    e = request(service, mgmc, anonym)
    assert e.status == "pending" and recorder.records == []
    assert service.approve(mgmc.public, "alice").status == "authorised"
    body = {"mgmc": mgmc.public, "anonym": anonym.public, "label": "mg1", "operator": "alice"}
    assert recorder.records == [("enrol", body)]
    with pytest.raises(EnrolmentRefused, match="already enrolled"):
        request(service, mgmc, Keypair.generate())


def test_bad_requests_are_refused_and_keep_the_token() -> None:
    service = EnrolmentService(Recorder(), auto=True, token_source=iter(["t1"]).__next__)
    mgmc = Keypair.generate()
    token = service.issue_token()
    with pytest.raises(EnrolmentRefused, match="differ"):
        request(service, mgmc, mgmc, token=token)
    with pytest.raises(EnrolmentRefused, match="label"):
        request(service, mgmc, Keypair.generate(), label="", token=token)
    other = Keypair.generate()
    sig = other.sign(enrolment_digest(token, mgmc.public, other.public, "mg1"))  # signed by the wrong key
    with pytest.raises(EnrolmentRefused, match="signature"):
        service.request(token, mgmc.public, other.public, "mg1", sig)
    assert token in service.tokens
    with pytest.raises(EnrolmentRefused, match="no enrolment"):
        service.approve(Keypair.generate().public)


def test_auto_mode_names_its_policy_and_revocation_names_the_operator() -> None:
    recorder, mgmc_chain = Recorder(), Recorder()
    service = EnrolmentService(recorder, auto=True, mgmc_recorder=mgmc_chain)
    mgmc, anonym = Keypair.generate(), Keypair.generate()
    assert request(service, mgmc, anonym).status == "authorised"
    assert recorder.records[0][1]["operator"] == AUTO_OPERATOR
    with pytest.raises(EnrolmentRefused, match="operator must be named"):
        service.revoke(mgmc.public, "   ")
    assert service.revoke(mgmc.public, "bob").status == "revoked"
    revocations = [("gov.revoke", {"key": k, "operator": "bob"}) for k in (mgmc.public, anonym.public)]
    assert recorder.records[1:] == revocations and mgmc_chain.records == revocations
    with pytest.raises(EnrolmentRefused, match="revoked"):
        request(service, mgmc, Keypair.generate())  # a revoked identity never comes back
    with pytest.raises(EnrolmentRefused, match="revoked"):
        request(service, Keypair.generate(), anonym)  # nor does its anonym
    with pytest.raises(EnrolmentRefused, match="not authorised"):
        service.revoke(mgmc.public, "bob")


def test_on_a_local_dso_chain_the_operator_is_in_the_block() -> None:
    dso = Keypair.generate()
    genesis = Genesis(chain="dso-test", time=0, authorities=(dso.public,),
                      accounts=(Account(dso.public, ("dso",), "dso"),))  # fmt: skip
    chain = LocalChain(genesis, sealer=dso)
    service = EnrolmentService(ChainRecorder(chain, dso), auto=False)
    mgmc, anonym = Keypair.generate(), Keypair.generate()
    request(service, mgmc, anonym)
    service.approve(mgmc.public, "alice")
    service.revoke(mgmc.public, "bob")
    block, _ = chain.seal()
    bodies = [(tx.kind, tx.body.get("operator")) for tx in block.txs]
    assert bodies == [("enrol", "alice"), ("gov.revoke", "bob"), ("gov.revoke", "bob")]
    refused = chain.sign_and_submit(
        anonym, "equivalent_injection", {"interval": 1, "injection": 5, "revision": 0}
    )
    assert not refused.ok and "revoked" in refused.detail


def test_revoking_through_the_service_takes_the_mgmc_out_of_the_dso_chains_authority_set(tmp_path) -> None:
    """The DSO chain of the closed loop (the DSO and three MGMCs as co-validators) on real replicas: the
    operator's revoke through `EnrolmentService` lands as `gov.revoke`; from the next height the MGMC is out
    of the authority set, its votes and messages are refused, and the other three go on and agree."""
    dso, mgmcs = Keypair.generate(), [Keypair.generate() for _ in range(3)]
    genesis = Genesis(
        chain="dso-lab", time=1_767_225_600_000, authorities=(dso.public, *(m.public for m in mgmcs)),
        accounts=(Account(dso.public, ("dso",), "dso"), *(Account(m.public, ("mgmc",), f"mg{i}")
                  for i, m in enumerate(mgmcs))), contracts=(),
    )  # fmt: skip
    net = LedgerNet(tmp_path, genesis, [dso, *mgmcs], seed=3, stale=[3])  # the revoked one carries on
    service = EnrolmentService(ChainRecorder(ReplicaChain(net, "n0"), dso), auto=False)
    victim, anonym = mgmcs[2], Keypair.generate()
    request(service, victim, anonym, label="mg2")
    net.run(1000)
    service.approve(victim.public, "alice")
    service.revoke(victim.public, "bob")
    store = net.replicas["n0"].store
    revoked_at = max(store.locate_tx(tx.txid)[0] for tx in _txs(store, "gov.revoke"))  # type: ignore[index]
    net.run(3000)
    honest = ["n0", "n1", "n2"]
    top = min(net.replicas[n].app.tip.height for n in honest)
    assert top >= revoked_at + 5
    assert len({net.replicas[n].store.block(top).hash for n in honest}) == 1
    for name in honest:
        replica = net.replicas[name]
        assert victim.public not in authorities_at(replica.app.state, revoked_at + 1)
        assert net.stats(name)["dropped_revoked"] > 0
        for h in range(revoked_at + 1, top + 1):
            assert victim.public not in {signer for signer, _ in replica.store.certificate(h).votes}
    operators = {(tx.kind, tx.body["operator"]) for tx in _txs(store, "enrol", "gov.revoke")}
    assert operators == {("enrol", "alice"), ("gov.revoke", "bob")}


def _txs(store, *kinds: str) -> list:
    return [tx for h in range(1, store.tip().height + 1) for tx in store.block(h).txs if tx.kind in kinds]


def test_a_revocation_that_failed_half_way_can_be_repeated() -> None:
    dso = Keypair.generate()
    genesis = Genesis(chain="dso-test", time=0, authorities=(dso.public,),
                      accounts=(Account(dso.public, ("dso",), "dso"),))  # fmt: skip
    chain = LocalChain(genesis, sealer=dso)

    class Flaky(ChainRecorder):
        fail_next_anonym = True

        def submit(self, kind: str, body: dict) -> object:
            if kind == "gov.revoke" and body["key"] == anonym.public and self.fail_next_anonym:
                self.fail_next_anonym = False
                raise ChainRejected("the DSO chain is unreachable")
            return super().submit(kind, body)

    service = EnrolmentService(Flaky(chain, dso), auto=True)
    mgmc, anonym = Keypair.generate(), Keypair.generate()
    request(service, mgmc, anonym)
    with pytest.raises(ChainRejected, match="unreachable"):
        service.revoke(mgmc.public, "bob")
    assert service.enrolments[mgmc.public].status == "authorised"  # not yet: the anonym still trades
    assert service.revoke(mgmc.public, "bob").status == "revoked"
    chain.seal()
    for key in (mgmc, anonym):
        assert not chain.sign_and_submit(
            key, "equivalent_injection", {"interval": 1, "injection": 1, "revision": 0}
        ).ok


def test_the_rest_api_names_the_authenticated_operator_on_chain(operator_session) -> None:  # type: ignore[no-untyped-def]
    """POST /api/dso/enrolment/{mgmc}/approve|revoke with an operator's console session (the DSO API guard):
    the `enrol` and both `gov.revoke` records name that operator, not `unnamed`."""
    c, csrf = operator_session
    dso = c.app.state.dso  # type: ignore[attr-defined]
    dso.enrolment.auto = False  # operator mode (the pilot)
    mgmc, anonym = Keypair.generate(), Keypair.generate()
    token = c.post("/api/dso/enrolment/tokens", headers=csrf).json()["token"]
    sig = mgmc.sign(enrolment_digest(token, mgmc.public, anonym.public, "mg1"))
    body = {"token": token, "mgmc": mgmc.public.hex(), "anonym": anonym.public.hex(), "label": "mg1",
            "signature": sig.hex()}  # fmt: skip
    assert c.post("/api/dso/enrolment", json=body).json()["status"] == "pending"
    for verb in ("approve", "revoke"):
        r = c.post(f"/api/dso/enrolment/{mgmc.public.hex()}/{verb}", headers=csrf)
        assert r.status_code == 200, r.text
    records = c.get("/api/dso/ledger").json()["records"]
    assert [(rec["kind"], rec["body"]["operator"]) for rec in records] == [
        ("enrol", "olga"), ("gov.revoke", "olga"), ("gov.revoke", "olga")
    ]  # fmt: skip


def test_a_retry_after_the_mgmc_chain_failed_does_not_resubmit_what_landed() -> None:
    """A networked chain's mempool takes a duplicate gov.revoke and never finalises it (the state machine
    refuses it in the block): the retry sends only what did not land."""

    class Unreachable(Recorder):
        down = True

        def submit(self, kind: str, body: dict) -> None:
            if self.down:
                raise ChainRejected(f"{kind} rejected: timeout not final in 8.0 s")
            super().submit(kind, body)

    dso_chain, mgmc_chain = Recorder(), Unreachable()
    service = EnrolmentService(dso_chain, auto=True, mgmc_recorder=mgmc_chain)
    mgmc, anonym = Keypair.generate(), Keypair.generate()
    request(service, mgmc, anonym)
    with pytest.raises(ChainRejected, match="timeout"):
        service.revoke(mgmc.public, "bob")
    assert service.enrolments[mgmc.public].status == "authorised"
    mgmc_chain.down = False
    assert service.revoke(mgmc.public, "bob").status == "revoked"
    revocations = [("gov.revoke", {"key": k, "operator": "bob"}) for k in (mgmc.public, anonym.public)]
    assert dso_chain.records[1:] == revocations and mgmc_chain.records == revocations  # each once
