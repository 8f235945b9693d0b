"""`peergrid-edge run` with a key or scenario file it cannot use stops with one line naming the file, exit status 2
(a config error's), no traceback (review25 F7, the edge's part): before, the node key, the anonym key and the
scenario came out as a traceback, and a scenario without this MG as a bare `StopIteration` naming nothing.

In process, through the real CLI (`cli.main`) with `EdgeDaemon.run` replaced by a failure: everything the daemon's
`__init__` opens is opened for real (its store, its node key, the trading agent's scenario and anonym key).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from peergrid_edge import cli
from peergrid_edge.daemon import EdgeDaemon
from peergrid_ledger.genesis import Account, Genesis
from peergrid_ledger.keys import KEYFILE_TYPE, Keypair, write_keyfile

SCENARIO = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"


def config(tmp_path: Path, mg: str = "mg1", scenario: Path = SCENARIO) -> Path:
    """An edge config trading as `mg` of `scenario` on its two chains, with good keys (the cases damage one)."""
    node = Keypair.generate()
    write_keyfile(tmp_path / "node.key", node)
    write_keyfile(tmp_path / "anonym.key", Keypair.generate())
    for chain in ("mgmc", "dso"):
        genesis = Genesis(
            chain=chain, time=0, authorities=(node.public,), accounts=(Account(node.public, ("mgmc",)),)
        )
        (tmp_path / f"{chain}.genesis.json").write_text(json.dumps(genesis.to_json()))
    path = tmp_path / "edge.yaml"
    path.write_text(
        f"node_id: mgmc-1\nmg: {mg}\ndata_dir: {tmp_path / 'data'}\n"
        f"ledger:\n  key_file: {tmp_path / 'node.key'}\n  replicas:\n"
        f"    mgmc: {{genesis: {tmp_path / 'mgmc.genesis.json'}}}\n    dso: {{genesis: {tmp_path / 'dso.genesis.json'}}}\n"
        f"market:\n  scenario: {scenario}\n  anonym_key_file: {tmp_path / 'anonym.key'}\n"
        "  t0: 0.0\n  interval_s: 900.0\n"
    )
    return path


def run_fails(path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """`peergrid-edge run` must stop with exit 2 before the daemon runs; its stderr's lines."""

    async def never(self: EdgeDaemon) -> None:
        raise AssertionError("the daemon ran with a file it cannot use")

    monkeypatch.setattr(EdgeDaemon, "run", never)
    with pytest.raises(SystemExit) as exited:
        cli.main(["run", "--config", str(path)])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.splitlines()


def test_the_control_a_good_config_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ran: list[str] = []

    async def run(self: EdgeDaemon) -> None:
        ran.append(self.agent.mg.name if self.agent is not None else "")
        if self.ledger is not None:
            self.ledger.close()
        self.store.close()

    monkeypatch.setattr(EdgeDaemon, "run", run)
    assert cli.main(["run", "--config", str(config(tmp_path))]) == 0
    assert ran == ["mg1"]


@pytest.mark.parametrize("key", ["node.key", "anonym.key"])
def test_a_truncated_key_file_is_one_line_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], key: str
) -> None:
    path = config(tmp_path)
    damaged = tmp_path / key
    damaged.write_text(damaged.read_text()[:40])  # as a power cut mid-write leaves it
    assert run_fails(path, monkeypatch, capsys) == [
        f"peergrid-edge: config error: {damaged}: not a {KEYFILE_TYPE} key file"
    ]


def test_a_key_file_readable_by_others_is_one_line_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config(tmp_path)
    os.chmod(tmp_path / "anonym.key", 0o644)
    (line,) = run_fails(path, monkeypatch, capsys)
    assert line.startswith(f"peergrid-edge: config error: {tmp_path / 'anonym.key'}: permissions 0o644")


def test_a_missing_anonym_key_is_one_line_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config(tmp_path)
    (tmp_path / "anonym.key").unlink()
    assert run_fails(path, monkeypatch, capsys) == [
        f"peergrid-edge: config error: {tmp_path / 'anonym.key'}: no such key file"
    ]


def test_a_missing_scenario_is_one_line_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "scenario.yaml"
    (line,) = run_fails(config(tmp_path, scenario=missing), monkeypatch, capsys)
    assert line == f"peergrid-edge: config error: {missing}: cannot read scenario: No such file or directory"


def test_a_scenario_without_this_mg_names_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_fails(config(tmp_path, mg="mgX"), monkeypatch, capsys) == [
        f"peergrid-edge: config error: {SCENARIO}: no mg 'mgX' (it has mg1, mg2, mg3, mg4, mg5, mg6)"
    ]
