"""An enrolment not final at the first try is told at INFO, a later one at WARNING (D2): every lab's dso.log opened
with six 'enrolment of mgN not final yet: enrol not final in 8.0 s' WARNINGs (U3's run 2, and D2's own
`--dayahead` lab), though each landed at the next try, 34.5 s before the first interval: the DSO chain makes no
block until its co-validators, the MGMCs, run, and the lab starts them after the DSO."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest

from peergrid_dso import interval_node
from peergrid_dso.interval_node import DsoLoop
from peergrid_dso.node_chains import Submitted
from peergrid_ledger.keys import Keypair


def enrol_after(timeouts: int, monkeypatch: pytest.MonkeyPatch) -> int:
    """`DsoLoop.enrol` of one MG whose enrolment times out `timeouts` times, then lands; returns the tries."""
    enrolled: set[bytes] = set()
    tries = 0

    async def submit(key: Keypair, kind: str, body: dict[str, Any]) -> Submitted:
        nonlocal tries
        tries += 1
        if tries <= timeouts:
            return Submitted(False, "timeout", f"{kind} not final in 8.0 s")
        enrolled.add(body["anonym"])
        return Submitted(True)

    async def wait(timeout: float) -> None:
        return None

    monkeypatch.setattr(interval_node.query, "account", lambda state, key: {} if key in enrolled else None)
    monkeypatch.setattr("peergrid_ledger.core.is_revoked", lambda state, key: False)
    entry = SimpleNamespace(node="01" * 32, anonym="02" * 32)
    replica = SimpleNamespace(app=SimpleNamespace(state=None))
    changed = SimpleNamespace(wait=wait)
    loop = DsoLoop(SimpleNamespace(mgs={"mg1": entry}), replica, SimpleNamespace(submit=submit), changed,  # type: ignore[arg-type]
                   *[None] * 4, Keypair.generate(), None, None)  # fmt: skip
    asyncio.run(loop.enrol())
    return tries


def test_the_first_try_not_final_is_info_a_later_one_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, "peergrid_dso.interval_node"):
        assert enrol_after(1, monkeypatch) == 2
    said = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert said == [
        ("INFO", "enrolment of mg1 not final yet: enrol not final in 8.0 s; sent again")
    ]  # before: WARNING
    caplog.clear()
    with caplog.at_level(logging.INFO, "peergrid_dso.interval_node"):
        assert enrol_after(2, monkeypatch) == 3
    assert [r.levelname for r in caplog.records] == ["INFO", "WARNING"]
