"""Genesis `owed_limit` (N5's debts, funds.refuse_debtor): a member owing more than it may not buy. Only with
`settle_by_both` (debts come only from priced settlements), 0 … 10^15 micro-units, encoded only when not the
default 0, so every genesis written before it keeps its bytes and hash."""

from __future__ import annotations

import pytest
from ledger_fixtures import make_genesis

from peergrid_ledger.genesis import Genesis, GenesisError, Params

BOTH = {"settle_by_both": 1, "settle_interval_ms": 900_000}


def test_the_default_is_not_encoded_and_a_limit_round_trips() -> None:
    plain = make_genesis(params=Params(**BOTH))
    assert "owed_limit" not in plain.params.to_value()
    limited = make_genesis(params=Params(owed_limit=5_000, **BOTH))
    assert limited.params.to_value()["owed_limit"] == 5_000
    assert Genesis.decode(limited.encode()).params.owed_limit == 5_000
    assert limited.hash != plain.hash
    assert Genesis.from_json(limited.to_json()).params.owed_limit == 5_000


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"owed_limit": 1}, "owed_limit: only with settle_by_both"),
        ({"owed_limit": 10**15 + 1, **BOTH}, "owed_limit: expected 0 to"),
    ],
)
def test_bad_limits_are_refused_with_one_line(params: dict[str, int], words: str) -> None:
    with pytest.raises(GenesisError, match=words):
        Params(**params)


def test_a_genesis_that_encodes_the_default_is_refused() -> None:
    with pytest.raises(GenesisError, match="owed_limit: 0 is the default"):
        Params.from_value({**Params(**BOTH).to_value(), "owed_limit": 0})
