"""The report's anonym names: a key file of an MG's anonym that is missing or not a key is named, with why, on the
page and in the log, where before that MG's sellers and buyers turned to hex without a word."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from peergrid_ledger import keys
from peergrid_sim import report
from peergrid_sim.report_anonyms import anonym_names, read_anonyms
from peergrid_sim.scenario import load_scenario

LAB = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"
MG1 = keys.Keypair.generate()


def _keys(keys_dir: Path) -> None:
    """mg1's key readable, mg2's missing, mg3's not a key, mg4's readable by others."""
    keys_dir.mkdir(parents=True, exist_ok=True)
    keys.write_keyfile(keys_dir / "anonym-mg1.key", MG1)
    (keys_dir / "anonym-mg3.key").write_text("garbage")
    (keys_dir / "anonym-mg3.key").chmod(0o600)
    keys.write_keyfile(keys_dir / "anonym-mg4.key", keys.Keypair.generate())
    (keys_dir / "anonym-mg4.key").chmod(0o644)


def test_each_key_file_not_read_is_named_with_why(tmp_path: Path) -> None:
    _keys(tmp_path)
    anonyms = read_anonyms(tmp_path, ["mg1", "mg2", "mg3"])
    assert anonyms.names == {MG1.public: "mg1"}
    assert anonyms.unread == [
        "anonym-mg2.key not read (no such key file)",
        "anonym-mg3.key not read (not a peergrid-ed25519-v1 key file)",
        "anonym-mg4.key not read (permissions 0o644 are too open; a key file must be 0600)",
    ]
    assert anonym_names(tmp_path) == {MG1.public: "mg1"}  # the names alone, as the uplift section reads them


def test_a_lab_report_says_on_its_page_and_in_its_log_which_key_it_did_not_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lab directory with no records: the report is still written, and names each file it did not read. (Its
    chains and the centralised optimum are not this test's: stood in for.)"""
    monkeypatch.setattr(
        report, "ledger_figures", lambda paths: ({}, {"settled": 0, "verified": 0, "failed": []})
    )
    monkeypatch.setattr(report, "verify_stores", lambda paths: {})
    monkeypatch.setattr(report, "central_welfare", lambda *args: None)
    _keys(tmp_path / "keys")
    (tmp_path / "records").mkdir()
    loop = SimpleNamespace(first_interval=36, intervals=1, interval_s=6.0, timing=None)
    bed = SimpleNamespace(workdir=tmp_path, scenario_path=LAB, scenario=load_scenario(LAB), loop=loop)
    with caplog.at_level(logging.WARNING, logger="peergrid_sim.report"):
        page = report.write_report(bed, tmp_path / "report").read_text()
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))
    for mg, why in (("mg2", "no such key file"), ("mg3", "not a peergrid-ed25519-v1 key file")):
        line = f"anonym-{mg}.key not read ({why})"
        assert f"{line}: its MG's sellers and buyers are shown by anonym." in text
        assert any(
            line in r.getMessage() and str(tmp_path / "keys") in r.getMessage() for r in caplog.records
        )
    assert "anonym-mg1.key" not in text  # read: nothing to say
    # each file once: mg2's and the scenario's other MGs' (mg5, mg6: no key file here at all), mg3's, mg4's
    assert sum(r.getMessage().count("not read") for r in caplog.records) == 5
