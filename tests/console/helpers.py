"""Shared values for the console tests (imported as console.helpers)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from argon2 import PasswordHasher

PASSWORD = "correct horse battery staple"
USERS = {"olga": "operator", "vera": "viewer", "adam": "admin"}
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def fast_hasher() -> PasswordHasher:
    """argon2id with test-sized costs: the hashes are real, the tests stay quick."""
    return PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Headless Chromium (the system's, no download) through Playwright, closed after the block."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
