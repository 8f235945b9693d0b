"""R43: a request naming an anonym another MGMC's enrolment holds is refused when it is taken.

The anonym is public on the DSO chain. Before, `EnrolmentService.request` never checked it: such a request sat
pending (the chain refuses to enrol an anonym twice, so no approval could land) and in auto mode was answered 500
and left pending; the next start of the closed loop read the anonym's account as its approval having landed
(`follow_chain`) and showed it authorised, the injection gate then taking its key for its MG.
"""

from __future__ import annotations

from typing import Any

import pytest

from peergrid_dso.services.enrolment import EnrolmentRefused, EnrolmentService, enrolment_digest
from peergrid_ledger.keys import Keypair


class Recorder:
    def __init__(self) -> None:
        self.records: list[tuple[str, dict[str, Any]]] = []

    def submit(self, kind: str, body: dict[str, Any]) -> None:
        self.records.append((kind, body))


def ask(service: EnrolmentService, mgmc: Keypair, anonym: Keypair, label: str) -> None:
    token = service.issue_token(label)
    signature = mgmc.sign(enrolment_digest(token, mgmc.public, anonym.public, label))
    service.request(token, mgmc.public, anonym.public, label, signature)


@pytest.mark.parametrize("auto", [True, False])
def test_an_anonym_another_mgmc_holds_is_refused_and_its_token_stays_unused(auto: bool) -> None:
    service = EnrolmentService(Recorder(), auto=auto)
    victim, anonym, rogue = Keypair.generate(), Keypair.generate(), Keypair.generate()
    ask(service, victim, anonym, "mg1")
    token = service.issue_token("mg2")
    signature = rogue.sign(enrolment_digest(token, rogue.public, anonym.public, "mg2"))
    with pytest.raises(EnrolmentRefused, match="this anonym is another MGMC's"):  # before: pending
        service.request(token, rogue.public, anonym.public, "mg2", signature)
    assert rogue.public not in service.enrolments
    # with an anonym of its own, the same token enrols it
    fresh = Keypair.generate()
    signature = rogue.sign(enrolment_digest(token, rogue.public, fresh.public, "mg2"))
    assert service.request(token, rogue.public, fresh.public, "mg2", signature).label == "mg2"
