"""A second key cannot enrol under an MG name another enrolment holds (U3, session 23).

In the lab a request signed by a fresh key with label "mg1" was authorised beside mg1's own MGMC: the Operations
view listed two "mg1" rows, and the injection gate names any authorised key by its label, so the second key's
injections counted as mg1's. In operator mode it waited as a second pending "mg1" with nothing to tell them apart.
A key whose enrolment under that name was revoked leaves the name free (a replaced Pi enrols under it again).
"""

from __future__ import annotations

import pytest

from peergrid_dso.services.enrolment import EnrolmentRefused, EnrolmentService, enrolment_digest
from peergrid_ledger.keys import Keypair


class Recorder:
    def submit(self, kind: str, body: dict[str, object]) -> None:
        pass


def ask(service: EnrolmentService, label: str) -> tuple[str, bytes]:
    """A signed request of a fresh key under `label`: (its token, its key), refused or not."""
    mgmc, anonym, token = Keypair.generate(), Keypair.generate(), service.issue_token()
    sig = mgmc.sign(enrolment_digest(token, mgmc.public, anonym.public, label))
    service.request(token, mgmc.public, anonym.public, label, sig)
    return token, mgmc.public


@pytest.mark.parametrize("auto", [True, False])
def test_a_name_taken_by_an_enrolment_that_stands_is_refused(auto: bool) -> None:
    service = EnrolmentService(Recorder(), auto=auto)
    _, first = ask(service, "mg1")
    with pytest.raises(EnrolmentRefused, match=rf"mg1 is already enrolled \(\w+, MGMC {first.hex()[:12]}\)"):
        ask(service, "mg1")
    assert [e.label for e in service.enrolments.values()] == ["mg1"]
    assert len(service.tokens) == 1  # the refused request's token stays unused
    ask(service, "mg2")  # another name enrols
    if not auto:
        service.approve(first, "olga")
    service.revoke(first, "olga")
    ask(service, "mg1")  # revoked: the name is free for a new key
    assert sorted((e.label, e.status) for e in service.enrolments.values())[:2] == [
        ("mg1", "authorised" if auto else "pending"),
        ("mg1", "revoked"),
    ]
