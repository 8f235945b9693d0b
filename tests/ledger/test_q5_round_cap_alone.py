"""Genesis `max_rounds` R on its own (Q5, session 22): a declared cap on any chain, not only beside the quiet rule,
so a default lab's MGMC genesis (no settle_by_both, no clock) can name the rounds its MGMCs play and the DSO's
console can say a bargaining stopped at it. `market_close_time.check_rounds` reads only the cap and the
interval's reopening record, which every chain keeps: on such a chain an offer, bid or move past its bargaining's
opening round (0, or the reopening's `round`) + R is refused `rule-violation` naming the cap, none before it;
a chain whose genesis names no cap takes every round as before. R is encoded only when not 0, so every genesis
written before keeps its bytes and hash (pinned below, computed at 962691a, before the change).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from ledger_fixtures import T0, Keys, make_genesis, reason
from test_market_close_rounds import _chain as quiet_chain_with_cap
from test_settle_cli import run

from peergrid_ledger.chain import LocalChain
from peergrid_ledger.genesis import Genesis, GenesisError, Params
from peergrid_ledger.results import Accepted, Reason, Rejected

# the default lab's MGMC params (firmware-sim lab_chains at 962691a, without `rounds`); its contracts
LAB = {
    "credit_limit": 10**15,
    "tx_max_age_ms": 600_000,
    "block_max_future_ms": 5_000,
    "max_reopens": 3,
    "cap_on_fills": 1,
    "accept_rounds": 2,
    "accept_wait_ms": 1_000,
    "accept_window_ms": 4_000,
    "anonyms_only": 1,
    "uplift_max_spread": 250,
}
CONTRACTS = ("market", "exchange", "uplift")
# the lab's settle-by-both params of SettleByBoth.for_lab(6.0, 36, 1000.5) at 962691a: the cap beside the quiet rule
LAB_BOTH = {
    "settle_by_both": 1,
    "settle_tolerance_wh": 500,
    "settle_wait_ms": 18_000,
    "settle_epoch_ms": 784_500,
    "settle_interval_ms": 6_000,
    "close_on_clock": 1,
    "close_quiet_ms": 500,
    "max_rounds": 2,
    "sealed_statements": 1,
    "seller_vouched": 1,
    "settle_tolerance_permille": 30,
    "unpaid_as_debt": 1,
}
OLD = {  # genesis hashes at 962691a
    "plain": "832dbf9236c5c4d1f8eadeb1337666b1dac4d9c91b32b5f48d7b6ec2a78b286a",
    "lab": "b7974aa1d44c94eaf3d0fed4c6e82242b337acfd1aa7632499d316db4636902e",
    "lab-settle-by-both": "6ea8b26b192382c83bc5a8b9050455e98993d8fb53e0dda6777aae6a778a4800",
    "quiet-cap": "be0ad261568cc00d2fda1196986d934e88629039cdc515d7ada5bcb6aaa23405",
}
OLD_GENESES = {
    "plain": lambda: make_genesis(params=Params(credit_limit=0)),
    "lab": lambda: make_genesis(params=Params(**LAB), contracts=CONTRACTS),
    "lab-settle-by-both": lambda: make_genesis(params=Params(**LAB, **LAB_BOTH), contracts=CONTRACTS),
    # test_market_close_rounds' chain: R 6 beside the quiet rule
    "quiet-cap": lambda: quiet_chain_with_cap().genesis,
}
K = 40
SELLER, BUYER, IDLE = Keys.p1, Keys.p2, Keys.p3
REOPEN = {"interval": K, "iteration": 1, "ref": b"\x01" * 32, "until": T0 + 10**9}


@pytest.mark.parametrize("name", sorted(OLD))
def test_every_genesis_written_before_keeps_its_bytes_and_hash(name: str) -> None:
    old = OLD_GENESES[name]()
    assert old.hash.hex() == OLD[name]
    assert Genesis.decode(old.encode()).hash == old.hash
    assert Genesis.from_json(json.loads(json.dumps(old.to_json()))).hash == old.hash


@pytest.mark.parametrize("cap", [2, 14, 1000])
def test_the_cap_alone_round_trips_and_changes_the_hash(cap: int) -> None:
    without = make_genesis(params=Params(**LAB), contracts=CONTRACTS)
    with_cap = make_genesis(params=Params(**LAB, max_rounds=cap), contracts=CONTRACTS)
    assert "max_rounds" not in without.to_value()["params"] and b"max_rounds" not in without.encode()
    assert with_cap.to_value()["params"]["max_rounds"] == cap and with_cap.hash != without.hash
    again = Genesis.decode(with_cap.encode())
    assert again.params == with_cap.params and again.hash == with_cap.hash
    assert Genesis.from_json(json.loads(json.dumps(with_cap.to_json()))).hash == with_cap.hash
    # people may spell "no cap" out in JSON: it is dropped, and the old hash stands
    doc = without.to_json()
    doc["params"]["max_rounds"] = 0
    assert Genesis.from_json(doc).hash.hex() == OLD["lab"]


def test_the_cap_alone_is_checked_as_beside_the_quiet_rule() -> None:
    for bad in (-1, 1, 1001, 2**63):
        with pytest.raises(GenesisError, match=r"max_rounds: expected 0 \(no cap\) or 2 to 1000 rounds"):
            Params(**LAB, max_rounds=bad)
    with pytest.raises(GenesisError, match="max_rounds: 0 is the default"):
        Params.from_value({**Params(**LAB).to_value(), "max_rounds": 0})
    # beside settle_by_both's clock without the quiet rule too
    clock = {k: v for k, v in LAB_BOTH.items() if k not in ("close_on_clock", "close_quiet_ms")}
    assert Params(**LAB, **clock).max_rounds == 2


def test_the_cli_writes_the_cap_alone(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["genesis", "--chain", "mgmc-lab", "--authority", "cd" * 32, "--account", "ab" * 32 + ":dso"]
    status, out, _ = run(capsys, *base)
    assert status == 0 and "max_rounds" not in json.loads(out)["params"]
    status, out, _ = run(capsys, *base, "--max-rounds", "2")
    assert status == 0 and Genesis.from_json(json.loads(out)).params.max_rounds == 2
    status, out, err = run(capsys, *base, "--max-rounds", "1")
    assert status == 2 and err.count("\n") == 1 and "max_rounds" in err and not out


def _default_chain(cap: int) -> LocalChain:
    """A chain with the default lab's rules and no settle_by_both, clock or quiet rule; `cap` 0: none."""
    params = Params(credit_limit=10**9, max_reopens=1, cap_on_fills=1, max_rounds=cap)
    return LocalChain(make_genesis(params=params), Keys.authority)


def _at(c: LocalChain, who: Any, kind: str, body: dict[str, Any]) -> Accepted | Rejected:
    """One transaction alone in a block, 200 ms after the last (the lab's block period)."""
    when = T0 + 200 * (c.height + 1)
    result = c.sign_and_submit(who, kind, body, time_ms=when)
    c.seal(when)
    return result


def _seller(round_: int, price: int) -> dict[str, Any]:
    return {"interval": K, "round": round_, "price": price, "quantity": 1000}


def _buyer(round_: int, quantity: int) -> dict[str, Any]:
    return {"interval": K, "round": round_, "demands": [{"seller": SELLER.public, "quantity": quantity}]}


def _bargain(c: LocalChain, first: int, rounds: int) -> None:
    """The edge's numbering (chain_bargaining._rounds): rounds first .. first + rounds - 1, the seller moving
    (but in round 1, its opening's) and then the buyer, prices still moving in every round."""
    for r in range(first, first + rounds):
        if r > 1:
            assert _at(c, SELLER, "move", _seller(r, 300 - r)).ok, r
        assert _at(c, BUYER, "move", _buyer(r, 100 + r)).ok, r


def _open(c: LocalChain) -> None:
    assert _at(c, SELLER, "offer", {**_seller(1, 300), "clean": False}).ok
    assert _at(c, BUYER, "bid", _buyer(0, 100)).ok
    assert _at(c, IDLE, "bid", {"interval": K, "round": 0, "demands": []}).ok  # joins, sits at round 0


@pytest.mark.parametrize("cap", [2, 3, 6])
def test_a_default_chain_with_the_cap_refuses_a_position_past_it_and_none_before(cap: int) -> None:
    c = _default_chain(cap)
    _open(c)
    _bargain(c, 1, cap)  # the lab's MGMCs play exactly the cap: every honest move taken
    over = _at(c, BUYER, "move", _buyer(cap + 1, 1))
    assert reason(over) is Reason.RULE_VIOLATION
    said = f"round {cap + 1} is past interval {K}'s bargaining: max_rounds {cap} from its opening, so at most"
    assert said in str(over)
    assert reason(_at(c, SELLER, "move", _seller(cap + 1, 1))) is Reason.RULE_VIOLATION
    late = _at(c, Keys.p4, "offer", {**_seller(cap + 1, 200), "clean": False})  # an opening past it too
    assert reason(late) is Reason.RULE_VIOLATION and f"max_rounds {cap}" in str(late)
    assert _at(c, SELLER, "trade", {"interval": K}).ok
    # the DSO reopens it at the interval's highest round: the re-bargaining plays cap rounds from there
    assert _at(c, Keys.dso, "market.reopen", REOPEN).ok
    stale = _at(c, IDLE, "move", {"interval": K, "round": 1, "demands": []})
    assert reason(stale) is Reason.RULE_VIOLATION
    assert f"re-bargaining's rounds are {cap + 1} to {2 * cap} (max_rounds {cap})" in str(stale)
    _bargain(c, cap + 1, cap)
    assert reason(_at(c, BUYER, "move", _buyer(2 * cap + 1, 1))) is Reason.RULE_VIOLATION
    assert _at(c, BUYER, "trade", {"interval": K}).ok


def test_a_default_chain_without_the_cap_takes_every_round_as_before() -> None:
    c = _default_chain(0)
    assert "max_rounds" not in c.genesis.to_value()["params"]
    _open(c)
    _bargain(c, 1, 12)
    assert _at(c, SELLER, "trade", {"interval": K}).ok
    assert _at(c, Keys.dso, "market.reopen", REOPEN).ok
    assert _at(c, IDLE, "move", {"interval": K, "round": 1, "demands": []}).ok  # no re-bargaining's rounds
    _bargain(c, 13, 12)
