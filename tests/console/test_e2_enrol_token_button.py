"""Operations -> Enrolment's 'Issue an enrolment token' (U3-8): an operator names the MG, clicks, and reads the
token once on the page; the DSO keeps it (its hash) in the data directory's store beside the console's user file,
bound to that MG. A viewer's button is disabled. The lab server on a loopback port, real Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from console.helpers import ServedLab, browser_tests
from console.test_browser import logged_in
from peergrid_dso.services.enrolment_tokens import TokenStore, token_hash

expect, pytestmark = browser_tests()


@pytest.fixture
def lab(users_file: Path) -> Iterator[ServedLab]:
    with ServedLab(users_file) as server:
        yield server


def test_an_operator_issues_a_token_and_reads_it_once(browser: Any, lab: ServedLab, users_file: Path) -> None:
    page = logged_in(browser, lab, "olga")
    page.evaluate("location.hash = '#operations'")
    page.wait_for_selector("#enrol-token-issue")
    page.fill("#enrol-token-label", "mg-school")
    page.click("#enrol-token-issue")
    shown = page.locator("#enrol-token-issued")
    expect(shown).to_contain_text("Token for mg-school (shown once")
    token = shown.locator("code").inner_text()
    (digest, record), *_ = TokenStore.open(users_file.parent / "enrolment-tokens.json").records().items()
    assert digest == token_hash(token) and record.label == "mg-school"
    assert not page.errors
    page.context.close()


def test_a_viewer_cannot_issue_one(browser: Any, lab: ServedLab) -> None:
    page = logged_in(browser, lab, "vera")
    page.evaluate("location.hash = '#operations'")
    page.wait_for_selector("#enrol-token-issue")
    expect(page.locator("#enrol-token-issue")).to_be_disabled()
    assert not page.errors
    page.context.close()
