"""A revoked MGMC cannot send its own used token again after a DSO restart (review41 R41-1): the restart empties
the enrolment queue of MGs the loop's config does not name, and the token store let a token's own key use it
again, so the revoked key was pending again under its MG's name and the replacement Pi's request was refused
('mg3 is already enrolled (pending, ...)'). Revoking now retires its token in the store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from peergrid_dso.services.enrolment import EnrolmentRefused, EnrolmentService, enrolment_digest
from peergrid_dso.services.enrolment_tokens import TokenStore
from peergrid_ledger.keys import Keypair


class Recorder:
    def submit(self, kind: str, body: dict[str, Any]) -> None:
        pass


def ask(service: EnrolmentService, token: str, mgmc: Keypair, anonym: Keypair, label: str = "mg3") -> Any:
    signature = mgmc.sign(enrolment_digest(token, mgmc.public, anonym.public, label))
    return service.request(token, mgmc.public, anonym.public, label, signature)


def test_a_revoked_key_cannot_use_its_token_again_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "enrolment-tokens.json"
    service = EnrolmentService(Recorder(), auto=False, store=TokenStore.open(path))
    old_token = service.issue_token("mg3")
    stolen, stolen_anonym = Keypair.generate(), Keypair.generate()
    ask(service, old_token, stolen, stolen_anonym)
    service.approve(stolen.public, "op")
    service.revoke(stolen.public, "op")
    new_token = service.issue_token("mg3")  # for the replacement Pi
    restarted = EnrolmentService(Recorder(), auto=False, store=TokenStore.open(path))
    with pytest.raises(EnrolmentRefused, match="this key was revoked"):
        ask(restarted, old_token, stolen, stolen_anonym)
    assert restarted.enrolments == {}
    assert ask(restarted, new_token, Keypair.generate(), Keypair.generate()).status == "pending"
    kept = json.loads(path.read_text())["tokens"]
    assert sum(entry["retired_at"] is not None for entry in kept.values()) == 1


def test_a_token_file_from_before_retiring_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "enrolment-tokens.json"
    digest = "ab" * 32
    path.write_text(
        json.dumps(
            {
                "type": "peergrid-enrolment-tokens-v1",
                "tokens": {digest: {"label": "mg1", "issued_at": 1.0, "used_by": None, "used_at": None}},
            }
        )
    )
    assert TokenStore.open(path).records()[digest].retired_at is None
