"""R43: an operator's approval that landed on the DSO chain but not in the enrolment file is still recorded.

`EnrolmentService.approve` (and `revoke`) raises once the chain took it and the file could not (a full disk), so
the console tells the operator the queue will read as before after a restart. Before, the console's
`enrolment_action` read that as a refusal: no `operator_action` named who approved, the audit trail kept no line,
and on the lab console's chain (sealed by the console's actions) the `enrol` stayed unsealed until some later,
unrelated action sealed it. Now it is sealed and recorded as done, marked not kept in the file, and the operator
is still told why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from peergrid_dso.console.operations import OperationError
from peergrid_dso.console.settings import ConsoleSettings
from peergrid_dso.console.state import build_console
from peergrid_dso.services.container import build_dso_services
from peergrid_dso.services.enrolment import enrolment_digest
from peergrid_dso.services.enrolment_file import EnrolmentFile, EnrolmentFileError
from peergrid_ledger.keys import Keypair


def test_an_approval_the_file_missed_is_sealed_and_named_in_the_audit_trail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = ConsoleSettings.model_validate(
        {"users_file": str(tmp_path / "data" / "console-users.json"), "lab_market": False, "lab_drift": False}
    )
    dso = build_dso_services({"mg1": 18}, auto_enrol=False)
    state = build_console(settings, dso)
    mgmc, anonym = Keypair.generate(), Keypair.generate()
    token = dso.enrolment.issue_token("mg1")
    signature = mgmc.sign(enrolment_digest(token, mgmc.public, anonym.public, "mg1"))
    dso.enrolment.request(token, mgmc.public, anonym.public, "mg1", signature)

    def full_disk(self: EnrolmentFile, enrolments: Any) -> None:
        raise EnrolmentFileError(f"{self.path}: cannot write the enrolment file (No space left on device)")

    monkeypatch.setattr(EnrolmentFile, "write", full_disk)
    with pytest.raises(OperationError, match="approved on the DSO chain, but the enrolment file could not"):
        state.ops.enrolment_action(mgmc.public.hex(), "approve", "olga")

    chain = dso.chain
    assert chain.pending == []  # before: the enrol left unsealed
    sealed = [tx for h in range(1, chain.height + 1) for tx in chain.block(h).txs]
    (enrol,) = [tx for tx in sealed if tx.kind == "enrol"]
    (record,) = [tx for tx in sealed if tx.kind == "operator_action"]
    assert record.body["operator"] == "olga" and record.body["txs"] == [enrol.txid]
    assert "not kept in the enrolment file" in record.body["action"]
    (line,) = state.ops.audit  # before: none
    assert line["user"] == "olga" and line["txids"] == [enrol.txid.hex()]
