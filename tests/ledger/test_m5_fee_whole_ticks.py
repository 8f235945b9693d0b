"""A fee is a whole number of ticks on the chain (issue #7, sub-tick fees): `market.fee` and the genesis take a fee
exactly when it is a multiple of the tick (10^6 nano-currency per kWh, 1 micro-unit per Wh) in [0, 10^7], through
the one check every entry makes (`market_fee.check_fee`); and what a store written before the rule does: a
`market.fee` off the tick no longer replays (`verify` names its height), a genesis off the tick no longer opens.
Nothing replays to another state."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_fixtures import Keys, reason
from test_settle_both import Clock
from uplift_fee_fixtures import P1, TICK_FEE, fee_chain, ok

from peergrid_ledger import genesis_params
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts import market_fee
from peergrid_ledger.genesis import GenesisError, Params
from peergrid_ledger.results import Accepted, Reason
from peergrid_ledger.store import BlockStore, StoreCorrupt
from peergrid_ledger.verify import verify_store

MAX_FEE = market_fee.MAX_FEE
FEES = st.one_of(
    st.integers(0, MAX_FEE // TICK_FEE).map(lambda ticks: ticks * TICK_FEE),  # every whole-tick fee in range
    st.integers(0, MAX_FEE),  # mostly off the tick
    st.integers(-(10**8), -1) | st.integers(MAX_FEE + 1, 10**8),  # out of range, on the tick or not
)


def whole_ticks_in_range(fee: int) -> bool:
    return 0 <= fee <= MAX_FEE and fee % TICK_FEE == 0


@settings(max_examples=120, deadline=None)
@given(fee=FEES)
def test_every_fee_the_chain_takes_is_whole_ticks_and_every_whole_tick_fee_in_range_is_taken(
    fee: int,
) -> None:
    chain, clock = fee_chain(fee=0)
    named = {"coordinators": [P1.public]} if fee else {}
    result = clock.send(Keys.dso, {"fee": fee, "fund_cap": 0, **named}, "market.fee")
    assert isinstance(result, Accepted) is whole_ticks_in_range(fee), (fee, result)
    if isinstance(result, Accepted):
        assert market_fee.fee_in_force(chain.state, chain.genesis.params) == (fee, 0)
    elif 0 <= fee <= MAX_FEE:  # in the schema's bounds: the rule's refusal, naming the value and the rule
        assert reason(result) is Reason.INVALID and "whole number of ticks" in str(result)
        assert f"got {fee}" in str(result) and market_fee.fee_in_force(chain.state, chain.genesis.params) == (
            0,
            0,
        )
    else:
        assert reason(result) is Reason.MALFORMED
    try:
        params = Params(exchange_fee=fee, uplift_fund_cap=0)
    except GenesisError as refused:
        assert not whole_ticks_in_range(fee)
        assert str(refused) == (
            "params.exchange_fee must be a whole number of ticks (multiples of 1,000,000 nano-currency per kWh,"
            f" 1 micro-unit per Wh) in [0, 10,000,000], got {fee}"
        )
    else:
        assert whole_ticks_in_range(fee) and Params.from_value(params.to_value()) == params


@pytest.mark.parametrize("fee", [True, 1.0, "1000000", None])
def test_a_fee_that_is_no_int_is_refused_by_the_one_check(fee: object) -> None:
    with pytest.raises(ValueError, match=r"^exchange_fee must be a whole number of ticks .* got "):
        market_fee.check_fee(fee)
    assert market_fee.check_fee(3 * TICK_FEE, "fee") == 3 * TICK_FEE


def off_tick_store(path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """A store as the code before the rule wrote it: a `market.fee` of 750,000 nano/kWh accepted at height 2.
    Returns that height."""
    with monkeypatch.context() as before:
        before.setattr(market_fee, "check_fee", lambda fee, what="exchange_fee": fee)
        plain, _ = fee_chain(fee=0)
        store = BlockStore.create(path, plain.genesis)
        chain = LocalChain(plain.genesis, Keys.authority, store)
        clock = Clock(chain)
        ok(clock.send(Keys.dso, {"fee": TICK_FEE, "fund_cap": 0, "coordinators": [P1.public]}, "market.fee"))
        ok(clock.send(Keys.dso, {"fee": 750_000, "fund_cap": 0, "coordinators": [P1.public]}, "market.fee"))
        height = store.head_height()
        store.close()
    return height


def test_a_store_holding_a_fee_off_the_tick_no_longer_replays_and_says_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    height = off_tick_store(tmp_path / "chain", monkeypatch)
    store = BlockStore.open(tmp_path / "chain")
    try:
        report = verify_store(store)
    finally:
        store.close()
    assert not report.ok and report.first_bad == height and report.verified == height - 1
    assert "whole number of ticks" in report.reason and "got 750000" in report.reason, report.reason


def test_a_stored_genesis_with_a_fee_off_the_tick_no_longer_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as before:
        before.setattr(genesis_params, "check_fee", lambda fee, what="exchange_fee": fee)
        chain, _ = fee_chain(fee=750_000)
        BlockStore.create(tmp_path / "chain", chain.genesis).close()
    with pytest.raises(StoreCorrupt) as refused:
        BlockStore.open(tmp_path / "chain")
    assert str(refused.value) == (  # what it is, not "corrupt": a valid old chain, to be recreated (R37-8)
        f"{tmp_path / 'chain'}: the stored genesis holds an exchange_fee of 750,000 nano-currency per kWh, not a"
        " whole number of ticks (1,000,000): a fee taken when this chain was created, refused since fees must be"
        " whole ticks, so this software cannot open it; recreate the chain with a whole-tick fee"
    )
