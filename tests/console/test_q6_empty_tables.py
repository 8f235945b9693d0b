"""Every empty table of the console says "none", the way the Alarms card does (api.js `dataTable`), in headless
Chromium against the lab server. Before, U2 saw the Ledger view's transactions of an empty block and the Operations
view's plans, enrolment and audit tables as bare headers, which read as a view that had not loaded. The "none" is
the table's foot: the body holds data rows only (0 here), as the other console tests count them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from console.helpers import PASSWORD, ServedLab, browser_tests, watched_page

expect, pytestmark = browser_tests()

WAIT_MS = 20_000  # a bound against hanging, not a figure tested


@pytest.fixture
def lab(users_file: Path) -> Iterator[ServedLab]:
    with ServedLab(users_file, name="q6-empty-tables") as served:
        yield served


def logged_in(browser: Any, lab: ServedLab, tab: str) -> tuple[Any, list[str]]:
    page, errors = watched_page(browser)
    page.goto(f"{lab.url}/console#{tab}")
    page.fill("#username", "vera")
    page.fill("#password", PASSWORD)
    page.click("#login-button")
    page.wait_for_selector("#tabs:not([hidden])")
    return page, errors


def says_none(page: Any, table: str) -> None:
    expect(page.locator(f"{table} tfoot td")).to_have_text("none", timeout=WAIT_MS)
    expect(page.locator(f"{table} tbody tr")).to_have_count(0)
    columns = page.locator(f"{table} thead th").count()
    assert page.get_attribute(f"{table} tfoot td", "colspan") == str(columns)


def test_the_operations_views_empty_tables_say_none(browser: Any, lab: ServedLab) -> None:
    page, errors = logged_in(browser, lab, "operations")
    for table in ("#plans", "#enrolment", "#audit"):
        says_none(page, table)
    assert not errors
    page.context.close()


def test_a_block_without_transactions_says_none_and_a_table_with_rows_has_no_foot(
    browser: Any, lab: ServedLab
) -> None:
    chain = lab.app.state.dso.chain  # the lab's in-process DSO chain: sealed here, one empty block
    with lab.app.state.console.ops.lock:  # its writers' lock, which the explorer reads under
        chain.seal()
    empty = [h for h in range(1, chain.height + 1) if not chain.block(h).txs]
    page, errors = logged_in(browser, lab, "ledger")
    expect(page.locator("#blocks tbody tr").first).to_be_visible(timeout=WAIT_MS)
    assert page.locator("#blocks tfoot").count() == 0  # rows: no "none"
    assert empty, "the lab's DSO chain has no empty block to show"
    page.click(f'#blocks a[data-height="{empty[0]}"]')
    expect(page.locator("h2", has_text=f"Block {empty[0]} of dso")).to_be_visible(timeout=WAIT_MS)
    says_none(page, "#txs")
    assert not errors
    page.context.close()
