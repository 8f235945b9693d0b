"""Q12 (review R43): decisions on one enrolment are taken one at a time. Before, `approve` and `revoke` were not
under any lock: two approvals of one request at once (two operators, one in the console and one through the REST
API, or an operator and auto mode) both found it pending and both sent `enrol`; the chain refused the second
('anonym already known') and its operator got a failure for an approval that had landed. An operator who approved
between a request and its automatic approval made the lab log an ERROR worded as a file failure. Two revocations
at once sent each `gov.revoke` twice. Now the later decision waits for the earlier one and is told plainly that it
was made ('enrolment is already authorised').

The two-thread tests hold the first decision at the chain until the second one arrives there too (or a second
has passed: then it was kept out, as it now is)."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from peergrid_dso.services.dso_chain import ChainRecorder
from peergrid_dso.services.enrolment import (
    AUTO_OPERATOR,
    UNNAMED,
    AlreadyDecided,
    Enrolment,
    EnrolmentRefused,
    EnrolmentService,
    enrolment_digest,
)
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.genesis import Account, Genesis
from peergrid_ledger.keys import Keypair

HOLD_S = 1.0  # how long the first decision waits at the chain for a second one (not a bound on anything)


class HeldRecorder(ChainRecorder):
    """A DSO chain recorder whose first submission waits for a second decision to reach the chain too."""

    def __init__(self, chain: LocalChain, dso: Keypair) -> None:
        super().__init__(chain, dso)
        self.both = threading.Barrier(2, timeout=HOLD_S)

    def submit(self, kind: str, body: dict[str, Any]) -> Any:
        try:
            self.both.wait()
        except threading.BrokenBarrierError:
            pass  # the other decision is not there: kept out (or this is a later submission)
        return super().submit(kind, body)


def dso_chain() -> tuple[LocalChain, Keypair]:
    dso = Keypair.generate()
    genesis = Genesis(chain="dso-test", time=0, authorities=(dso.public,),
                      accounts=(Account(dso.public, ("dso",), "dso"),))  # fmt: skip
    return LocalChain(genesis, sealer=dso), dso


def request(service: EnrolmentService, mgmc: Keypair, anonym: Keypair) -> Enrolment:
    token = service.issue_token("mg1")
    signature = mgmc.sign(enrolment_digest(token, mgmc.public, anonym.public, "mg1"))
    return service.request(token, mgmc.public, anonym.public, "mg1", signature)


def at_once(decide: Any, mgmc: bytes, operators: list[str]) -> tuple[list[Enrolment], list[Exception]]:
    """`decide(mgmc, operator)` by each operator in its own thread at once: the enrolments returned, the errors."""
    done: list[Enrolment] = []
    failed: list[Exception] = []

    def act(operator: str) -> None:
        try:
            done.append(decide(mgmc, operator))
        except Exception as exc:
            failed.append(exc)

    threads = [threading.Thread(target=act, args=(operator,)) for operator in operators]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return done, failed


def kinds_sealed(chain: LocalChain) -> list[str]:
    block, _ = chain.seal()
    return [tx.kind for tx in block.txs]


def test_two_approvals_at_once_send_one_enrol_and_the_second_is_told_it_was_done() -> None:
    chain, dso = dso_chain()
    recorder = HeldRecorder(chain, dso)
    service = EnrolmentService(recorder, auto=False)
    mgmc = Keypair.generate()
    request(service, mgmc, Keypair.generate())
    done, failed = at_once(service.approve, mgmc.public, ["alice", "bob"])
    # before: both sent enrol; the chain refused one ('enrol rejected: ... anonym already known'), a failure
    assert [e.status for e in done] == ["authorised"]
    assert [type(exc) for exc in failed] == [AlreadyDecided]
    assert str(failed[0]) == "enrolment is already authorised, not pending"
    assert [kind for kind, _ in recorder.submitted] == ["enrol"]
    assert kinds_sealed(chain) == ["enrol"]


def test_two_revocations_at_once_revoke_each_key_once() -> None:
    chain, dso = dso_chain()
    service = EnrolmentService(ChainRecorder(chain, dso), auto=False)
    mgmc = Keypair.generate()
    request(service, mgmc, Keypair.generate())
    service.approve(mgmc.public, "alice")
    service.recorder = recorder = HeldRecorder(chain, dso)
    done, failed = at_once(service.revoke, mgmc.public, ["alice", "bob"])
    assert [e.status for e in done] == ["revoked"]
    assert [str(exc) for exc in failed] == ["enrolment is already revoked, not authorised"]
    # before: both revocations sent them (each key twice, or one refused for its nonce)
    assert [kind for kind, _ in recorder.submitted] == ["gov.revoke", "gov.revoke"]


class OperatorFirst(EnrolmentService):
    """Auto mode in which an operator approves a request just before its automatic approval runs."""

    def approve(self, mgmc: bytes, operator: str = UNNAMED) -> Enrolment:
        if operator == AUTO_OPERATOR and self.enrolments[mgmc].status == "pending":
            super().approve(mgmc, "alice")
        return super().approve(mgmc, operator)


def test_an_operator_approving_before_the_automatic_approval_is_no_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    chain, dso = dso_chain()
    recorder = ChainRecorder(chain, dso)
    service = OperatorFirst(recorder, auto=True)
    with caplog.at_level(logging.INFO, "peergrid_dso.enrolment"):
        assert request(service, Keypair.generate(), Keypair.generate()).status == "authorised"
    # before: 'enrolment of mg1: enrolment is authorised, not pending' at ERROR, as if the file had failed
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert [body["operator"] for _, body in recorder.submitted] == ["alice"]


def test_a_decision_on_a_key_the_queue_never_held_is_refused_and_leaves_nothing_behind() -> None:
    chain, dso = dso_chain()
    service = EnrolmentService(ChainRecorder(chain, dso), auto=False)
    for decide in (service.approve, service.revoke):
        with pytest.raises(EnrolmentRefused, match="no enrolment for this MGMC"):
            decide(bytes(32), "alice")
    assert service._deciding == {}
