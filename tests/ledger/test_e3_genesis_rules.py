"""`peergrid-ledger genesis --rules` presets an account's owner rules (U4 F2: a pilot's genesis could not), and
`peergrid-ledger rules` reads back what a chain holds for a key; bad values are one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from peergrid_ledger.cli import main
from peergrid_ledger.contracts.market_state import NO_RULES
from peergrid_ledger.keys import Keypair

SCHOOL, DEPOT, AUTHORITY = (Keypair.from_seed(bytes([n]) * 32).public.hex() for n in (1, 2, 3))


def genesis(tmp_path: Path, *extra: str) -> list[str]:
    return ["genesis", "--chain", "mgmc-e3", "--authority", AUTHORITY, "--dso", AUTHORITY,
            "--account", f"{SCHOOL}:anonym", "--account", f"{DEPOT}:anonym:5000", *extra,
            "--out", str(tmp_path / "genesis.json"), "--db", str(tmp_path / "mgmc.db")]  # fmt: skip


def read_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, *extra: str) -> dict:
    capsys.readouterr()
    assert main(["rules", "--db", str(tmp_path / "mgmc.db"), key, *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_genesis_presets_the_rules_and_the_chain_holds_them_from_interval_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = genesis(tmp_path, "--rules", f"{SCHOOL}:150,250,15000,false,20", "--rules", f"{DEPOT}:,,,yes,")
    assert main(args) == 0
    accounts = {a["key"]: a for a in json.loads((tmp_path / "genesis.json").read_text())["accounts"]}
    school = {
        "floor_price": 150,
        "cap_price": 250,
        "max_quantity": 15000,
        "clean_only": False,
        "clean_premium": 20,
    }
    assert accounts[SCHOOL]["rules"] == school
    assert accounts[DEPOT]["rules"] == {**NO_RULES, "clean_only": True} and accounts[DEPOT]["balance"] == 5000
    doc = read_rules(tmp_path, capsys, SCHOOL)
    assert doc["entries"] == [{"from_interval": 0, "rules": school}] and doc["standing"] == school
    assert (doc["last_interval"], doc["interval"], doc["height"]) == (None, 0, 0)
    assert read_rules(tmp_path, capsys, DEPOT, "--interval", "7")["standing"] == {
        **NO_RULES,
        "clean_only": True,
    }


def test_a_key_without_rules_stands_on_none(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(genesis(tmp_path)) == 0
    doc = read_rules(tmp_path, capsys, SCHOOL, "--copy")
    assert doc["entries"] == [] and doc["standing"] == dict(NO_RULES)


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        (f"{SCHOOL}:150,250,15000,false", "expected KEY:FLOOR,CAP,MAX,CLEAN_ONLY,PREMIUM"),
        (f"{SCHOOL}150,250,15000,false,20", "expected KEY:FLOOR,CAP,MAX,CLEAN_ONLY,PREMIUM"),
        (f"{SCHOOL}:0.15,250,15000,false,20", "floor_price '0.15' is not a whole number"),
        (f"{SCHOOL}:150,250,-1,false,20", "rules.max_quantity: -1 outside [0, 1000000000000]"),
        (f"{SCHOOL}:150,250,15000,maybe,20", "CLEAN_ONLY 'maybe': expected true or false"),
        (f"{AUTHORITY}:150,250,15000,false,20", "the key must be given with --account as a participant"),
        (f"{'ab' * 32}:150,250,15000,false,20", "the key must be given with --account as a participant"),
        ("nokey:150,250,15000,false,20", "'nokey' is neither a hex public key nor a key file"),
    ],
)
def test_bad_rules_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], spec: str, says: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(genesis(tmp_path, "--rules", spec))
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1, err
    assert not (tmp_path / "genesis.json").exists()  # nothing written


def test_rules_twice_for_one_key_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(genesis(tmp_path, "--rules", f"{SCHOOL}:1,,,no,0", "--rules", f"{SCHOOL}:2,,,no,0"))
    assert "rules for this key were given already" in capsys.readouterr().err


def test_the_rules_command_refuses_a_negative_interval_and_a_missing_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(genesis(tmp_path)) == 0
    for extra, says in ((["--interval", "-1"], "an interval is 0 or more"), ([], "")):
        db = str(tmp_path / ("mgmc.db" if extra else "none.db"))
        with pytest.raises(SystemExit) as exit_:
            main(["rules", "--db", db, SCHOOL, *extra])
        assert exit_.value.code == 2 and says in capsys.readouterr().err
