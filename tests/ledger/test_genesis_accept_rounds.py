"""Genesis `accept_rounds` (the exchange contract's accept round a clear before the deadline needs settled):
1 is the default and is not encoded, so every genesis written before it keeps its bytes and hash; 2 is
encoded and changes the hash; anything else is refused, in Params, in the canonical form, in JSON and on the
ledger CLI (one line, exit 2). The contract's rule itself: test_exchange_accept_rounds.py (whose one-round
session's state root, pinned before rounds existed, is the default's)."""

from __future__ import annotations

import json

import pytest
from ledger_fixtures import make_genesis
from test_settle_cli import run

from peergrid_ledger.genesis import Genesis, GenesisError, Params

# hashes computed before the parameter existed (at ea0ff45): the test chains' genesis, plain and with the
# exchange contract
OLD = {
    "plain": "832dbf9236c5c4d1f8eadeb1337666b1dac4d9c91b32b5f48d7b6ec2a78b286a",
    "exchange": "b6086d45890e9770493e539e305104d11535ae8788bc4a6f35c25fd38adb1b0e",
}


def genesis(params: Params, exchange: bool = False) -> Genesis:
    if not exchange:
        return make_genesis(params=params)
    return make_genesis(contracts=("market", "exchange"), params=params)


def test_the_default_keeps_the_old_genesis_bytes_and_hash() -> None:
    plain = genesis(Params(credit_limit=0))
    assert plain.params.accept_rounds == 1 and plain.hash.hex() == OLD["plain"]
    assert "accept_rounds" not in plain.to_value()["params"] and b"accept_rounds" not in plain.encode()
    exchange = genesis(Params(credit_limit=10**12), exchange=True)
    assert exchange.hash.hex() == OLD["exchange"]
    assert Genesis.decode(exchange.encode()).params.accept_rounds == 1


def test_two_is_encoded_and_round_trips() -> None:
    two = genesis(Params(credit_limit=10**12, accept_rounds=2), exchange=True)
    assert two.to_value()["params"]["accept_rounds"] == 2 and two.hash.hex() != OLD["exchange"]
    assert Genesis.decode(two.encode()).params == two.params and Genesis.decode(two.encode()).hash == two.hash
    assert Genesis.from_json(json.loads(json.dumps(two.to_json()))).hash == two.hash
    # people may spell out the default in JSON: it is dropped, and the old hash stands
    doc = genesis(Params(credit_limit=10**12), exchange=True).to_json()
    doc["params"]["accept_rounds"] = 1
    assert Genesis.from_json(doc).hash.hex() == OLD["exchange"]


@pytest.mark.parametrize("bad", [0, 3, 100])
def test_other_values_are_refused(bad: int) -> None:
    with pytest.raises(GenesisError, match=r"params\.accept_rounds: expected one of \[1, 2\]"):
        Params(accept_rounds=bad)
    with pytest.raises(GenesisError, match=r"params\.accept_rounds"):
        Params.from_value({"accept_rounds": bad})


def test_the_default_in_the_canonical_form_is_refused() -> None:
    # it is never encoded, so a canonical genesis that carries it is not one this code wrote
    with pytest.raises(GenesisError, match=r"params\.accept_rounds: 1 is the default; omit it"):
        Params.from_value({"accept_rounds": 1})
    value = genesis(Params(credit_limit=0)).to_value()
    value["params"]["accept_rounds"] = 1
    with pytest.raises(GenesisError, match="omit it"):
        Genesis.from_value(value)


def test_the_cli_writes_it_only_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["genesis", "--chain", "mgmc-pilot", "--authority", "cd" * 32, "--contract", "exchange"]
    status, old, _ = run(capsys, *base)
    assert status == 0 and "accept_rounds" not in json.loads(old)["params"]
    status, same, _ = run(capsys, *base, "--accept-rounds", "1")
    assert status == 0 and same == old
    status, two, err = run(capsys, *base, "--accept-rounds", "2")
    assert status == 0 and json.loads(two)["params"]["accept_rounds"] == 2
    assert Genesis.from_json(json.loads(two)).params.accept_rounds == 2
    assert Genesis.from_json(json.loads(two)).hash.hex() in err
    for bad in ("0", "3"):
        status, out, err = run(capsys, *base, "--accept-rounds", bad)
        assert status == 2 and out == "" and err.count("\n") == 1 and "params.accept_rounds" in err


# ---------------------------------------------------------------------------------- genesis accept_wait_ms


def test_the_wait_is_encoded_only_with_accept_rounds_2_and_only_when_not_the_default() -> None:
    two = genesis(Params(credit_limit=10**12, accept_rounds=2), exchange=True)
    assert two.params.accept_wait_ms == 300_000 and "accept_wait_ms" not in two.to_value()["params"]
    short = genesis(Params(credit_limit=10**12, accept_rounds=2, accept_wait_ms=20_000), exchange=True)
    assert short.to_value()["params"]["accept_wait_ms"] == 20_000 and short.hash != two.hash
    assert Genesis.decode(short.encode()).params == short.params
    assert Genesis.from_json(json.loads(json.dumps(short.to_json()))).hash == short.hash
    # the default spelled out in the canonical form is refused, as for every late parameter
    with pytest.raises(GenesisError, match=r"params\.accept_wait_ms: 300000 is the default; omit it"):
        Params.from_value({"accept_rounds": 2, "accept_wait_ms": 300_000})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"accept_wait_ms": 20_000}, r"params\.accept_wait_ms: only with accept_rounds 2"),
        ({"accept_rounds": 2, "accept_wait_ms": 0}, r"params\.accept_wait_ms: expected 1 to 86400000 ms"),
        ({"accept_rounds": 2, "accept_wait_ms": 86_400_001}, r"params\.accept_wait_ms: expected 1 to"),
    ],
)
def test_a_wait_without_rounds_or_out_of_range_is_refused(fields: dict[str, int], message: str) -> None:
    with pytest.raises(GenesisError, match=message):
        Params(**fields)
    with pytest.raises(GenesisError, match=message):
        Params.from_value(fields)


def test_the_cli_writes_the_wait_only_with_accept_rounds_2(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["genesis", "--chain", "mgmc-pilot", "--authority", "cd" * 32, "--contract", "exchange"]
    status, out, _ = run(capsys, *base, "--accept-rounds", "2", "--accept-wait-ms", "20000")
    assert status == 0 and json.loads(out)["params"]["accept_wait_ms"] == 20_000
    status, out, _ = run(capsys, *base, "--accept-rounds", "2", "--accept-wait-ms", "300000")
    assert status == 0 and "accept_wait_ms" not in json.loads(out)["params"]  # the default: not encoded
    status, out, err = run(capsys, *base, "--accept-wait-ms", "20000")
    assert status == 2 and out == "" and "--accept-wait-ms: only with --accept-rounds 2" in err
    status, out, err = run(capsys, *base, "--accept-rounds", "2", "--accept-wait-ms", "0")
    assert status == 2 and out == "" and err.count("\n") == 1 and "params.accept_wait_ms" in err


# -------------------------------------------------------------------------------- genesis accept_window_ms


def test_the_window_is_encoded_only_when_set_and_keeps_the_old_bytes_otherwise() -> None:
    two = genesis(Params(credit_limit=10**12, accept_rounds=2), exchange=True)
    assert two.params.accept_window_ms == 0 and "accept_window_ms" not in two.to_value()["params"]
    assert b"accept_window_ms" not in two.encode()
    assert genesis(Params(credit_limit=10**12), exchange=True).hash.hex() == OLD["exchange"]
    window = genesis(Params(credit_limit=10**12, accept_rounds=2, accept_window_ms=600_000), exchange=True)
    assert window.to_value()["params"]["accept_window_ms"] == 600_000 and window.hash != two.hash
    assert Genesis.decode(window.encode()).params == window.params
    assert Genesis.from_json(json.loads(json.dumps(window.to_json()))).hash == window.hash
    with pytest.raises(GenesisError, match=r"params\.accept_window_ms: 0 is the default; omit it"):
        Params.from_value({"accept_rounds": 2, "accept_window_ms": 0})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"accept_window_ms": 60_000}, r"params\.accept_window_ms: only with accept_rounds 2"),
        ({"accept_rounds": 2, "accept_window_ms": 86_400_001}, r"params\.accept_window_ms: expected 0 to"),
    ],
)
def test_a_window_without_rounds_or_out_of_range_is_refused(fields: dict[str, int], message: str) -> None:
    with pytest.raises(GenesisError, match=message):
        Params(**fields)
    with pytest.raises(GenesisError, match=message):
        Params.from_value(fields)
    with pytest.raises(GenesisError, match=r"params\.accept_window_ms: expected an integer"):
        Params.from_value({"accept_rounds": 2, "accept_window_ms": -1})


def test_the_cli_writes_the_window_only_with_accept_rounds_2(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["genesis", "--chain", "mgmc-pilot", "--authority", "cd" * 32, "--contract", "exchange"]
    status, out, _ = run(capsys, *base, "--accept-rounds", "2", "--accept-window-ms", "600000")
    assert status == 0 and json.loads(out)["params"]["accept_window_ms"] == 600_000
    status, out, err = run(capsys, *base, "--accept-window-ms", "600000")
    assert status == 2 and out == "" and "--accept-window-ms: only with --accept-rounds 2" in err
    status, out, err = run(capsys, *base, "--accept-wait-ms", "1", "--accept-window-ms", "600000")
    assert status == 2 and "--accept-wait-ms, --accept-window-ms: only with --accept-rounds 2" in err
    status, out, err = run(capsys, *base, "--accept-rounds", "2", "--accept-window-ms", "86400001")
    assert status == 2 and out == "" and err.count("\n") == 1 and "params.accept_window_ms" in err
