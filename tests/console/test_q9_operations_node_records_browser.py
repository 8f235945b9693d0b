"""The Operations view's audit table shows the DSO node's own lines (U3-7) with their chain reference, in headless
Chromium against the lab server: a reconfiguration plan of the node's with its transactions, and a relay watch
record (which names no transaction) with its own record's txid, where before its cell was empty."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from console.helpers import PASSWORD, ServedLab, browser_tests, watched_page
from peergrid_dso.console.node_records import NODE, NodeRecords
from peergrid_dso.services.switching import RelayOperation, StepRecord, SwitchingPlan

expect, pytestmark = browser_tests()

WAIT_MS = 20_000  # a bound against hanging, not a figure tested


@pytest.fixture
def lab(users_file: Path) -> Iterator[ServedLab]:
    with ServedLab(users_file, name="q9-node-records") as served:
        yield served


def test_the_audit_table_shows_the_nodes_lines_with_their_chain_reference(
    browser: Any, lab: ServedLab
) -> None:
    state, dso = lab.app.state.console, lab.app.state.dso
    with state.ops.lock:  # the lab chain's writers' lock
        plan = SwitchingPlan(
            "interval-7", 7, (33,), (7,), (RelayOperation(33, True), RelayOperation(7, False))
        )
        steps = [StepRecord(33, True, True, status="closed"), StepRecord(7, False, True, status="open")]
        dso.recorder.plan(plan)
        for index, step in enumerate(steps):
            dso.recorder.step(plan, index, step)
        dso.recorder.result(plan, steps)
        watch = dso.recorder.submit(
            "operator_action", {"operator": NODE, "action": "relays agree again", "txs": []}
        )
        dso.chain.seal()
        state.node_records = NodeRecords(dso.chain)
        state.read_node_records()
    page, errors = watched_page(browser)
    page.goto(f"{lab.url}/console#operations")
    page.fill("#username", "vera")
    page.fill("#password", PASSWORD)
    page.click("#login-button")
    rows = page.locator("#audit tbody tr")
    expect(rows).to_have_count(2, timeout=WAIT_MS)
    newest, oldest = (rows.nth(k).locator("td").all_text_contents() for k in range(2))
    assert newest == [oldest[0], NODE, "relays agree again", f"{watch.txid.hex()[:12]}…"]
    assert oldest[1:3] == [NODE, "reconfigure for interval 7 (interval-7): close s33, open s7"]
    assert len(oldest[3].split()) == 4  # the plan, its two steps, its result
    assert not errors
    page.context.close()
