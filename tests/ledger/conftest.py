"""Fixtures for the ledger tests: fixed keys, a small genesis, and a LocalChain factory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from ledger_fixtures import Keys, make_genesis

from peergrid_ledger.chain import LocalChain
from peergrid_ledger.genesis import Genesis


@pytest.fixture
def keys() -> type[Keys]:
    return Keys


@pytest.fixture
def genesis() -> Genesis:
    return make_genesis()


@pytest.fixture
def chain(genesis: Genesis) -> LocalChain:
    return LocalChain(genesis, Keys.authority)


@pytest.fixture
def make_chain() -> Callable[..., LocalChain]:
    def factory(**overrides: Any) -> LocalChain:
        return LocalChain(make_genesis(**overrides), Keys.authority)

    return factory
