"""Shared values for the console tests (imported as console.helpers)."""

from __future__ import annotations

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
