"""The exchange fee's rules outside the settle: genesis `exchange_fee` and `uplift_fund_cap` (bounded, encoded only
when set, the fee a whole number of ticks and only with the exchange and uplift contracts, the cap only with a
fee), the CLI's options, the DSO-only `market.fee` (each refusal named), and `exchange.open` copying the fee in
force into the session - one figure fixed at the open, absent at fee 0."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ledger_fixtures import Keys, make_genesis, reason
from test_ledger_cli import run
from uplift_fee_fixtures import (
    P1,
    TICK_FEE,
    claim_and_deliver,
    fee_chain,
    fund,
    ok,
    open_session,
    run_session,
    settle,
)

from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts import exchange_state, market_fee
from peergrid_ledger.genesis import Genesis, GenesisError, Params
from peergrid_ledger.results import Reason


def test_the_genesis_fee_and_cap_are_bounded_and_encoded_only_when_set() -> None:
    assert "exchange_fee" not in Params().to_value() and "uplift_fund_cap" not in Params().to_value()
    params = Params(exchange_fee=2_000_000, uplift_fund_cap=30_000)
    assert params.to_value()["exchange_fee"] == 2_000_000 and params.to_value()["uplift_fund_cap"] == 30_000
    assert Params.from_value(params.to_value()) == params
    for bad, match in (
        ({"exchange_fee": 10**7 + 1}, "exchange_fee must be a whole number of ticks .* got 10000001"),
        ({"exchange_fee": -1}, r"exchange_fee must be .* in \[0, 10,000,000\], got -1"),
        ({"exchange_fee": 750_000}, r"multiples of 1,000,000 nano-currency per kWh, 1 micro-unit per Wh\)"),
        (
            {"exchange_fee": TICK_FEE, "uplift_fund_cap": 10**15 + 1},
            "uplift_fund_cap: expected 0 to 1000000000000000 micro-units",
        ),
        ({"uplift_fund_cap": 5}, "uplift_fund_cap: only with exchange_fee > 0"),
    ):
        with pytest.raises(GenesisError, match=match):
            Params(**bad)
    with pytest.raises(GenesisError, match="exchange_fee: 0 is the default"):
        Params.from_value({**Params().to_value(), "exchange_fee": 0})
    with pytest.raises(GenesisError, match=r"exchange_fee: expected an integer"):
        Params.from_value({**Params().to_value(), "exchange_fee": 1.5})
    # a genesis naming the default fee explicitly is the genesis without it, byte for byte
    plain = make_genesis(contracts=("market", "exchange", "uplift"))
    assert (
        make_genesis(contracts=("market", "exchange", "uplift"), params=Params(exchange_fee=0)).hash
        == plain.hash
    )
    doc = plain.to_json()
    assert Genesis.from_json({**doc, "params": {**doc["params"], "exchange_fee": 0}}).hash == plain.hash
    for bad in (10**7 + 1, 250_000):  # as a node loads it
        with pytest.raises(GenesisError, match=rf"params\.exchange_fee must be a whole number .* got {bad}$"):
            Genesis.from_json({**doc, "params": {**doc["params"], "exchange_fee": bad}})


@pytest.mark.parametrize("contracts", [("market",), ("market", "exchange"), ("market", "uplift")])
def test_a_fee_without_the_exchange_and_uplift_contracts_is_refused(contracts: tuple[str, ...]) -> None:
    with pytest.raises(GenesisError, match="exchange_fee: needs the exchange and uplift contracts"):
        make_genesis(contracts=contracts, params=Params(exchange_fee=TICK_FEE))


def test_the_cli_writes_the_fee_and_cap_only_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["genesis", "--chain", "mgmc-pilot", "--authority", "cd" * 32, "--contract", "market"]
    uplift = ["--contract", "exchange", "--contract", "uplift", "--uplift-max-spread", "250"]
    status, old, _ = run(capsys, *base, *uplift)
    assert status == 0 and not {"exchange_fee", "uplift_fund_cap"} & set(json.loads(old)["params"])
    named = ["--account", "ab" * 32 + ":anonym", "--fee-coordinator", "ab" * 32]
    fee = ["--exchange-fee", "1000000", "--uplift-fund-cap", "40000"]
    status, out, _ = run(capsys, *base, *uplift, *fee, *named)
    genesis = Genesis.from_json(json.loads(out))
    assert status == 0 and (genesis.params.exchange_fee, genesis.params.uplift_fund_cap) == (
        1_000_000,
        40_000,
    )
    assert genesis.fee_coordinators == (bytes.fromhex("ab" * 32),)
    for argv, words in (
        ([*base, "--exchange-fee", "1000000", *named], "needs the exchange and uplift contracts"),
        ([*base, *uplift, "--exchange-fee", str(10**7 + 1), *named], "params.exchange_fee must be a whole"),
        (
            [*base, *uplift, "--exchange-fee", "250000", *named],
            "params.exchange_fee must be a whole number of ticks (multiples of 1,000,000 nano-currency per kWh, 1"
            " micro-unit per Wh) in [0, 10,000,000], got 250000",
        ),
        ([*base, *uplift, "--uplift-fund-cap", "5"], "uplift_fund_cap: only with exchange_fee > 0"),
        ([*base, *uplift, *fee], "fee_coordinators: params.exchange_fee needs 1 to 16 keys"),
        ([*base, *uplift, *fee, "--fee-coordinator", "ab" * 32], "each is the key of one of the genesis'"),
        ([*base, *uplift, *named], "fee_coordinators: only with params.exchange_fee > 0"),
    ):
        status, _, err = run(capsys, *argv)
        assert status == 2 and err.count("\n") == 1 and words in err, err


def test_market_fee_is_the_dsos_and_refused_naming_why() -> None:
    chain, clock = fee_chain(fee=0)
    body = {"fee": 2_000_000, "fund_cap": 20_000, "coordinators": [P1.public]}
    for who in (P1, Keys.stranger, Keys.authority):
        result = clock.send(who, body, "market.fee")
        assert reason(result) is Reason.FORBIDDEN and "needs one of the roles ['dso']" in str(result)
    for bad in (
        {**body, "fee": 10**7 + 1},
        {**body, "fee": -1},
        {**body, "fund_cap": 10**15 + 1},
        {**body, "fee": "2000000"},
        {"fee": 2_000_000},
        {**body, "extra": 1},
        {**body, "coordinators": [b"\x01" * 31]},
        {**body, "coordinators": [P1.public] * 17},
    ):
        assert reason(clock.send(Keys.dso, bad, "market.fee")) is Reason.MALFORMED, bad
    for sub_tick in (1, 250_000, TICK_FEE + 1, 10**7 - 1):  # in bounds, off the tick: the rule's refusal
        refused = clock.send(Keys.dso, {**body, "fee": sub_tick}, "market.fee")
        assert reason(refused) is Reason.INVALID and "fee must be a whole number of ticks" in str(refused)
        assert f"in [0, 10,000,000], got {sub_tick}" in str(refused)
    assert chain.state.get(b"upl/fee") is None
    assert market_fee.fee_in_force(chain.state, chain.genesis.params) == (0, 0)
    result = ok(clock.send(Keys.dso, body, "market.fee"))
    assert result.events == (("market_fee", body),)
    assert market_fee.fee_in_force(chain.state, chain.genesis.params) == (2_000_000, 20_000)
    bounds = {"fee": 10**7, "fund_cap": 10**15, "coordinators": [P1.public]}
    ok(clock.send(Keys.dso, bounds, "market.fee"))  # the bounds themselves


def test_market_fee_is_no_kind_on_a_chain_without_the_uplift_contract() -> None:
    chain = LocalChain(make_genesis(contracts=("market", "exchange")), Keys.authority)
    result = chain.sign_and_submit(Keys.dso, "market.fee", {"fee": TICK_FEE, "fund_cap": 0})
    assert reason(result) is Reason.UNKNOWN_KIND


def test_a_session_takes_the_fee_in_force_at_its_open_and_keeps_it() -> None:
    """The genesis fee until the DSO posts one; a `market.fee` stands for the sessions opened after it, never
    for one already open (its members priced their answers with the old figure)."""
    chain, clock = fee_chain(fee=TICK_FEE, cap=7_000)
    open_session(clock, "day-1", 100)
    ok(clock.send(Keys.dso, {"fee": 2_000_000, "fund_cap": 0, "coordinators": [P1.public]}, "market.fee"))
    open_session(clock, "day-2", 200)
    first, second = (exchange_state.session(chain.state, n) for n in ("day-1", "day-2"))
    assert first is not None and (first["fee"], first["fund_cap"]) == (TICK_FEE, 7_000)
    assert second is not None and (second["fee"], second["fund_cap"]) == (2_000_000, 0)
    ok(clock.send(Keys.dso, {"fee": 0, "fund_cap": 0}, "market.fee"))
    open_session(clock, "day-3", 300)
    third = exchange_state.session(chain.state, "day-3")
    assert third is not None and "fee" not in third and "fund_cap" not in third


def test_a_fee_posted_during_a_session_does_not_change_what_it_collects() -> None:
    chain, clock = fee_chain(fee=TICK_FEE, cap=10**6)
    open_session(clock, "day-1", 100)  # opened at one tick
    ok(clock.send(Keys.dso, {"fee": 3_000_000, "fund_cap": 0, "coordinators": [P1.public]}, "market.fee"))
    claim_and_deliver(chain, clock, "day-1", 100)
    first = settle(chain, clock, "day-1")[0].events[0][1]
    assert (first["collected"], first["refunded"], fund(chain)) == (6_000, 0, 6_000)  # 1 x 6000 Wh, cap 10^6
    second = run_session(chain, clock, "day-2", 200).events[0][1]  # opened after: 3 ticks, cap 0
    assert (second["collected"], second["refunded"], fund(chain)) == (18_000, 18_000, 6_000)
