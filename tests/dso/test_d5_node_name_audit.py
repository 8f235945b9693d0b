"""D5: the DSO node's own name is one constant (`node_name.NODE_NAME`) for its records, its audit lines and the
user store's refusal, and no user is made or remade under it; the Operations audit trail in memory keeps the last
`AUDIT_KEPT` lines (the node adds lines every interval it switches in, for months), and the view's version still
moves when a line is added to a full trail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

from peergrid_dso.auth.cli import main as user_main
from peergrid_dso.auth.users import UserError, UserStore
from peergrid_dso.console import node_records
from peergrid_dso.console.operations import AUDIT_KEPT, Operations
from peergrid_dso.console.state import ConsoleState
from peergrid_dso.node_chains import FILLER_OPERATOR
from peergrid_dso.node_name import NODE_NAME
from peergrid_dso.services.switching_watch import WATCH_OPERATOR

PASSWORD = "a long enough password"


def test_one_name_for_the_node_and_no_user_made_or_remade_under_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from peergrid_dso.auth import users

    assert NODE_NAME == "dso-node"
    assert users.NODE_NAME is NODE_NAME and node_records.NODE is NODE_NAME
    assert FILLER_OPERATOR is NODE_NAME and WATCH_OPERATOR is NODE_NAME
    store = UserStore(tmp_path / "users.json", hasher=PasswordHasher(time_cost=1, memory_cost=8 * 1024))
    store.add("olga", "operator", PASSWORD)
    for replace in (False, True):  # `--replace` is the only way a user is remade; there is no rename
        with pytest.raises(UserError, match="is the DSO node's own name"):
            store.add(NODE_NAME, "admin", PASSWORD, replace=replace)
    assert [u.name for u in store.users()] == ["olga"]
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    code = user_main(
        ["--users", str(tmp_path / "users.json"), "add", NODE_NAME, "--role", "admin", "--replace",
         "--password-stdin"]
    )  # fmt: skip
    assert code != 0 and "DSO node's own name" in capsys.readouterr().err


def line(height: int, user: str = NODE_NAME) -> dict[str, Any]:
    return {"user": user, "action": f"interval-{height}", "height": height}


def test_the_audit_trail_keeps_its_last_lines_and_counts_every_one() -> None:
    ops = Operations(None, None)  # type: ignore[arg-type]
    for height in range(1, AUDIT_KEPT + 301):  # a node's lines, read from the chain in height order
        ops.add_audit(line(height), by_height=True)
    assert len(ops.audit) == AUDIT_KEPT and ops.audit_added == AUDIT_KEPT + 300  # before: 1,300 and growing
    assert [e["height"] for e in ops.audit] == list(range(301, AUDIT_KEPT + 301))  # the newest kept, in order
    ops.add_audit(line(AUDIT_KEPT + 300, "olga"))  # an operator's line at the head's height goes last
    ops.add_audit(line(AUDIT_KEPT + 299), by_height=True)  # a late node line goes among its height
    assert ops.audit[-1]["user"] == "olga" and ops.audit[-3]["height"] == AUDIT_KEPT + 299
    assert len(ops.audit) == AUDIT_KEPT

    class Enrolment:
        enrolments: dict[bytes, Any] = {}

    class Dso:
        enrolment = Enrolment()

    state = ConsoleState.__new__(ConsoleState)  # only what operations_version reads
    state.ops, state.dso, state.node_records = ops, Dso(), None
    before = state.operations_version()
    ops.add_audit(line(AUDIT_KEPT + 301))  # the trail is full: its length stays, the version must not
    assert len(ops.audit) == AUDIT_KEPT and state.operations_version() != before
