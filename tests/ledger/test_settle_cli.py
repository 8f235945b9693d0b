"""The ledger CLI writes genesis `settle_by_both` (and its tolerance, wait and interval clock) only when asked,
so a genesis written without the flags keeps the old bytes; the numbers without the flag, or out of range, and
the rule without a DSO account, are a one-line usage error (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from peergrid_ledger.cli import main
from peergrid_ledger.genesis import Genesis


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        status = main(list(argv))
    except SystemExit as exc:
        status = int(exc.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


def test_the_cli_writes_the_parameter_only_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["genesis", "--chain", "mgmc-pilot", "--authority", "cd" * 32, "--account", "ab" * 32 + ":dso"]
    clock = ["--settle-interval-ms", "900000"]  # the interval clock the rule needs (review9 F1)
    status, old, _ = run(capsys, *base)
    assert status == 0 and not {"settle_by_both", "settle_wait_ms"} & set(json.loads(old)["params"])
    out = tmp_path / "g.json"
    status, _, _ = run(
        capsys, *base, "--settle-by-both", *clock, "--settle-tolerance-wh", "2", "--out", str(out)
    )
    assert status == 0
    doc = json.loads(out.read_text())
    assert doc["params"]["settle_by_both"] == 1 and doc["params"]["settle_tolerance_wh"] == 2
    assert "settle_wait_ms" not in doc["params"]  # its default
    genesis = Genesis.from_json(doc)
    assert (
        genesis.params.settle_wait_ms == 3_600_000 and genesis.hash != Genesis.from_json(json.loads(old)).hash
    )
    status, out_text, _ = run(capsys, *base, "--settle-by-both", *clock, "--settle-wait-ms", "900000")
    assert status == 0 and json.loads(out_text)["params"]["settle_wait_ms"] == 900_000
    # the numbers alone, or out of range: one line, exit 2, nothing written
    status, _, err = run(capsys, *base, "--settle-wait-ms", "5")
    assert status == 2 and err.count("\n") == 1 and "only with --settle-by-both" in err
    status, _, err = run(capsys, *base, "--settle-by-both", *clock, "--settle-tolerance-wh", "-1")
    assert status == 2 and err.count("\n") == 1 and "settle_tolerance_wh" in err
    status, _, err = run(capsys, *base, "--settle-by-both", *clock, "--settle-wait-ms", "0")
    assert status == 2 and err.count("\n") == 1 and "settle_wait_ms" in err
    # sealed statements: written only when asked, and only with the rule
    status, out_text, _ = run(capsys, *base, "--settle-by-both", *clock, "--sealed-statements")
    sealed = Genesis.from_json(json.loads(out_text))
    assert status == 0 and sealed.params.sealed_statements == 1 and sealed.hash != genesis.hash
    status, _, err = run(capsys, *base, "--sealed-statements")
    assert status == 2 and err.count("\n") == 1 and "--sealed-statements: only with --settle-by-both" in err
    # review13's rules: each written only when asked, only with the rule, refused out of range
    asked = ["--seller-vouched", "--close-on-clock", "--close-after-ms", "4000", "--unpaid-as-debt",
             "--settle-tolerance-permille", "30", "--owed-limit", "7"]  # fmt: skip
    status, out_text, _ = run(capsys, *base, "--settle-by-both", *clock, *asked)
    p = Genesis.from_json(json.loads(out_text)).params
    assert status == 0 and (p.seller_vouched, p.close_on_clock, p.close_after_ms, p.unpaid_as_debt) == (
        1,
        1,
        4000,
        1,
    )
    assert (p.settle_tolerance_permille, p.owed_limit) == (30, 7)
    status, _, err = run(capsys, *base, "--seller-vouched", "--owed-limit", "7")
    assert (
        status == 2
        and err.count("\n") == 1
        and "--seller-vouched, --owed-limit: only with --settle-by-both" in err
    )
    status, _, err = run(capsys, *base, "--settle-by-both", *clock, "--settle-tolerance-permille", "1001")
    assert status == 2 and err.count("\n") == 1 and "settle_tolerance_permille" in err
    # the rule without the interval clock: one line naming both clock parameters, nothing written
    status, out_text, err = run(capsys, *base, "--settle-by-both", "--settle-tolerance-wh", "2")
    assert status == 2 and err.count("\n") == 1 and not out_text
    assert "settle_interval_ms" in err and "settle_epoch_ms" in err


def test_the_cli_writes_the_interval_clock_and_refuses_the_rule_without_a_dso(
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = ["genesis", "--chain", "mgmc-pilot", "--authority", "cd" * 32]
    dso = ["--account", "ab" * 32 + ":dso"]
    clock = ["--settle-epoch-ms", "1767225600000", "--settle-interval-ms", "900000"]
    status, out, _ = run(capsys, *base, *dso, "--settle-by-both", *clock)
    assert status == 0
    params = Genesis.from_json(json.loads(out)).params
    assert params.interval_end(0) == 1_767_225_600_000 + 900_000
    status, _, err = run(capsys, *base, *dso, *clock)
    assert (
        status == 2 and err.count("\n") == 1 and "--settle-epoch-ms, --settle-interval-ms: only with" in err
    )
    status, _, err = run(capsys, *base, *dso, "--settle-by-both", "--settle-epoch-ms", "5")
    assert status == 2 and err.count("\n") == 1 and "settle_epoch_ms: only with settle_interval_ms" in err
    status, out, err = run(capsys, *base, "--settle-by-both", *clock)  # F6: a dispute stays unpaid for ever
    assert status == 2 and err.count("\n") == 1 and "needs an account with role dso" in err and not out
