"""Enrolment in operator mode: a valid request waits; approval records it; bad requests are refused."""

from __future__ import annotations

import pytest

from peergrid_dso.services.enrolment import EnrolmentRefused, EnrolmentService, enrolment_digest
from peergrid_ledger.keys import Keypair


class Recorder:
    def __init__(self) -> None:
        self.records: list[tuple] = []

    def enrol(self, mgmc: bytes, anonym: bytes, label: str) -> None:
        self.records.append(("enrol", mgmc, anonym, label))

    def authorise(self, key: bytes, authorised: bool) -> None:
        self.records.append(("authorise", key, authorised))


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
    assert service.approve(mgmc.public).status == "authorised"
    assert recorder.records == [("enrol", mgmc.public, anonym.public, "mg1")]
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
