"""The peergrid-ledger CLI end to end on a demo chain, plus inclusion proofs checked without the database."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from peergrid_ledger.cli import main
from peergrid_ledger.genesis import Genesis
from peergrid_ledger.proof import ProofError, check_proof
from peergrid_ledger.store import BlockStore, header_key
from peergrid_ledger.store_copy import CopyError, opened_copy


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        status = main(list(argv))
    except SystemExit as exc:
        status = int(exc.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def demo_db(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, dict[str, str]]:
    db = tmp_path / "chain"
    status, out, _ = run(capsys, "demo", "--db", str(db), "--blocks", "5")
    assert status == 0
    txids = dict(line.split() for line in out.splitlines()[1:])
    return db, txids


def test_console_script_has_help() -> None:
    exe = Path(sys.executable).parent / "peergrid-ledger"
    result = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for command in ("keygen", "genesis", "show", "verify", "prove", "verify-proof", "export", "demo"):
        assert command in result.stdout


def test_demo_holds_every_kind_and_verifies(
    demo_db: tuple[Path, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    db, txids = demo_db
    from peergrid_ledger.machine import kinds

    assert set(txids) == set(kinds())
    status, out, _ = run(capsys, "verify", "--db", str(db))
    assert status == 0 and out.startswith("OK: 5 blocks")
    status, out, _ = run(capsys, "show", "--db", str(db), "--tx", txids["settle"])
    shown = json.loads(out)
    assert status == 0 and shown["kind"] == "settle" and shown["txid"] == txids["settle"]
    status, out, _ = run(capsys, "show", "--db", str(db), "--height", "2")
    assert status == 0 and json.loads(out)["header"]["height"] == 2
    status, out, _ = run(capsys, "show", "--db", str(db))
    assert json.loads(out)["header"]["height"] == 5
    status, out, _ = run(capsys, "show", "--db", str(db), "--genesis")
    assert json.loads(out)["chain"] == "peergrid-demo"
    status, out, _ = run(capsys, "export", "--db", str(db))
    lines = [json.loads(line) for line in out.splitlines()]
    assert status == 0 and len(lines) == 6 and lines[-1]["height"] == 5


def test_verify_names_the_first_bad_height(
    demo_db: tuple[Path, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    db, _ = demo_db
    with BlockStore.open(db) as store:
        raw = store.raw_get(header_key(3))
        assert raw is not None
        store.raw_put(header_key(3), raw[:40] + bytes([raw[40] ^ 0x10]) + raw[41:])
    status, _, err = run(capsys, "verify", "--db", str(db))
    assert status == 1 and "FAIL at height 3" in err


def test_prove_and_verify_proof(
    demo_db: tuple[Path, dict[str, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, txids = demo_db
    proof_file = tmp_path / "proof.json"
    status, _, _ = run(capsys, "prove", "--db", str(db), "--tx", txids["trade"], "--out", str(proof_file))
    assert status == 0
    status, out, _ = run(capsys, "verify-proof", str(proof_file))
    assert status == 0 and txids["trade"] in out
    doc = json.loads(proof_file.read_text())
    status, _, err = run(capsys, "verify-proof", str(proof_file), "--header-hash", "00" * 32)
    assert status == 1 and "trusted" in err
    keys_dir = Path(f"{db}-keys")
    a, b = (json.loads((keys_dir / f"authority-{n}.key").read_text())["public"] for n in "ab")
    assert json.loads(proof_file.read_text())["height"] == 2  # governed by authorities a and b
    trusted = ("--header-hash", doc["header_hash"])
    status, _, _ = run(capsys, "verify-proof", str(proof_file), *trusted, "--authority", a, "--authority", b)
    assert status == 0
    status, _, err = run(capsys, "verify-proof", str(proof_file), *trusted, "--authority", a)
    assert status == 1 and "non-authority" in err
    # every field matters: tamper with each and the check fails
    for field in ("tx", "header", "seal", "certificate"):
        bad = dict(doc)
        raw = bytearray(bytes.fromhex(doc[field]))
        raw[len(raw) // 2] ^= 0x01
        bad[field] = raw.hex()
        with pytest.raises(ProofError):
            check_proof(bad)
    if doc["path"]:
        bad = dict(
            doc, path=[("00" if doc["path"][0][:2] != "00" else "11") + doc["path"][0][2:], *doc["path"][1:]]
        )
        with pytest.raises(ProofError):
            check_proof(bad)
    with pytest.raises(ProofError):
        check_proof(dict(doc, index=doc["index"] + 1))
    with pytest.raises(ProofError):
        check_proof({"type": "something else"})


def test_keygen_and_genesis(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key_file = tmp_path / "authority.key"
    status, out, _ = run(capsys, "keygen", "--out", str(key_file))
    assert status == 0 and len(out.strip()) == 64
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert (
        out.strip() not in (tmp_path / "authority.key").read_text().split('"seed"')[1]
    )  # seed is not the public key
    status, _, err = run(capsys, "keygen", "--out", str(key_file))
    assert status == 2 and "refusing to overwrite" in err
    member = "ab" * 32
    genesis_file = tmp_path / "genesis.json"
    status, _, _ = run(
        capsys,
        "genesis",
        "--chain",
        "mgmc-lab",
        "--authority",
        str(key_file),
        "--account",
        f"{member}:anonym:500",
        "--out",
        str(genesis_file),
        "--db",
        str(tmp_path / "db"),
    )
    assert status == 0
    doc = json.loads(genesis_file.read_text())
    assert doc["chain"] == "mgmc-lab" and doc["authorities"] == [out.strip()]
    status, out, _ = run(capsys, "verify", "--db", str(tmp_path / "db"))
    assert status == 0 and "OK: 0 blocks" in out


def test_genesis_turns_re_bargaining_on_only_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    authority = "cd" * 32
    base = ["genesis", "--chain", "mgmc-pilot", "--authority", authority]
    status, out, _ = run(capsys, *base)
    assert status == 0 and "max_reopens" not in json.loads(out)["params"]  # old chains keep their bytes
    status, out, _ = run(capsys, *base, "--max-reopens", "3")
    assert status == 0 and json.loads(out)["params"]["max_reopens"] == 3
    status, _, err = run(capsys, *base, "--max-reopens", "-1")
    assert status == 2 and err.count("\n") == 1 and "max_reopens" in err


def test_genesis_caps_allocations_not_requests_only_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    authority = "cd" * 32
    base = ["genesis", "--chain", "mgmc-pilot", "--authority", authority, "--contract", "market"]
    status, old, _ = run(capsys, *base)
    assert status == 0 and "cap_on_fills" not in json.loads(old)["params"]  # old chains keep their bytes
    status, _, _ = run(
        capsys, *base, "--cap-on-fills", "--max-reopens", "3", "--out", str(tmp_path / "g.json")
    )
    assert status == 0
    doc = json.loads((tmp_path / "g.json").read_text())
    assert doc["params"]["cap_on_fills"] == 1 and doc["params"]["max_reopens"] == 3
    # the document loads back as a genesis whose contract caps allocations, and it is another chain's genesis
    genesis = Genesis.from_json(doc)
    assert genesis.params.cap_on_fills == 1
    assert genesis.hash != Genesis.from_json(json.loads(old)).hash
    # a flag: it takes no value (argparse's one-line usage error, exit 2)
    status, _, err = run(capsys, *base, "--cap-on-fills=2")
    assert status == 2 and "--cap-on-fills" in err


def test_usage_errors_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "verify", "--db", str(tmp_path / "nothing"))
    assert status == 2 and err.count("\n") == 1 and "no such ledger store" in err
    status, _, err = run(capsys, "genesis", "--chain", "x", "--authority", "not-a-key")
    assert status == 2 and "neither a hex public key nor a key file" in err
    bad_proof = tmp_path / "bad.json"
    bad_proof.write_text("{not json")
    status, _, err = run(capsys, "verify-proof", str(bad_proof))
    assert status == 2


def test_verify_a_locked_store_through_a_copy(
    demo_db: tuple[Path, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    db, _ = demo_db
    with BlockStore.open(db):  # a running node holds the lock
        status, _, err = run(capsys, "verify", "--db", str(db))
        assert status == 2 and "cannot open" in err
        status, out, _ = run(capsys, "verify", "--db", str(db), "--copy")
        assert status == 0 and out.startswith("OK: 5 blocks")


def test_a_copy_that_cannot_be_taken_is_one_line_for_verify_and_rules(
    demo_db: tuple[Path, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    """Q11: `verify --copy` let shutil.copytree's error out as a traceback; `rules --copy` said it in one line.
    Both copy through `store_copy.opened_copy` now and say the same words (a named pipe in the store's folder:
    copytree refuses special files, as root too)."""
    db, _ = demo_db
    os.mkfifo(db / "stray.fifo")
    with BlockStore.open(db):
        for argv in (["verify", "--db", str(db), "--copy"], ["rules", "--db", str(db), "--copy", "ab" * 32]):
            status, out, err = run(capsys, *argv)
            assert status == 2 and out == "" and err.count("\n") == 1, argv
            assert "cannot copy the store (stray.fifo: " in err and "named pipe" in err, argv


def test_an_opened_copy_is_read_then_removed(demo_db: tuple[Path, dict[str, str]]) -> None:
    db, _ = demo_db
    with BlockStore.open(db) as held, opened_copy(db) as store:  # a running node holds the lock
        copy = store.path
        assert copy.parent != db.parent and store.head_height() == held.head_height() == 5
    assert not copy.exists() and not copy.parent.exists()
    with pytest.raises(CopyError, match="none: cannot copy the store"), opened_copy(db.parent / "none"):
        pass


def test_genesis_takes_anonyms_only_the_claim_window_and_the_spread_only_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """K4's genesis `anonyms_only`, U1's `uplift_claim_ms` and U5's `uplift_max_spread` from the CLI: absent, the
    old bytes; asked, in the document; an anonyms_only chain nobody could trade on (no anonym, no DSO to enrol
    one) is refused, and so is a spread that is negative or above the market's largest price."""
    authority, anonym = "cd" * 32, "ab" * 32
    base = ["genesis", "--chain", "mgmc-pilot", "--authority", authority, "--contract", "market"]
    status, old, _ = run(capsys, *base)
    asked = {"anonyms_only", "uplift_claim_ms", "uplift_max_spread"}
    assert status == 0 and not asked & set(json.loads(old)["params"])
    status, out, _ = run(capsys, *base, "--contract", "exchange", "--contract", "uplift", "--account",
                         f"{anonym}:anonym", "--anonyms-only", "--uplift-claim-ms", "60000",
                         "--uplift-max-spread", "250")  # fmt: skip
    assert status == 0
    genesis = Genesis.from_json(json.loads(out))
    params = genesis.params
    assert (params.anonyms_only, params.uplift_claim_ms, params.uplift_max_spread) == (1, 60000, 250)
    uplift = ["--contract", "exchange", "--contract", "uplift"]
    status, _, err = run(capsys, *base, *uplift)  # review19 F6: no gain could ever be paid on it
    assert status == 0 and "warning: the uplift contract" in err and "--uplift-max-spread" in err
    status, _, err = run(capsys, *base, *uplift, "--uplift-max-spread", "1")
    assert status == 0 and "warning" not in err
    status, _, err = run(capsys, *base, "--anonyms-only")
    assert status == 2 and err.count("\n") == 1 and "params.anonyms_only: needs an account" in err
    status, _, err = run(capsys, *base, "--uplift-claim-ms", "-1")
    assert status == 2 and err.count("\n") == 1 and "uplift_claim_ms" in err
    for bad in ("-1", str(10**12 + 1)):
        status, _, err = run(capsys, *base, "--uplift-max-spread", bad)
        assert status == 2 and err.count("\n") == 1 and "params.uplift_max_spread" in err
