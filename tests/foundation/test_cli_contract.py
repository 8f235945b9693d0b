"""Every console script has --help; every daemon rejects a bad config with one line and a non-zero exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
SCRIPTS = [
    "peergrid-ledger",
    "peergrid-edge",
    "peergrid-dso",
    "firmware-sim",
    "peergrid-testbed",
    "peergrid-market",
]

# (script, argv with {config} where the file goes, a minimal valid config, a key whose value has a type).
DAEMONS = [
    (
        "peergrid-edge",
        ["run", "--config", "{config}"],
        "node_id: n1\nmg: mg1\n",
        "broker:\n  port: x\n",
        "broker.port",
    ),
    (
        "peergrid-dso",
        ["serve", "--config", "{config}"],
        "node_id: dso\n",
        "broker:\n  port: x\n",
        "broker.port",
    ),
    ("firmware-sim", ["run", "{config}"], "name: lab\n", "speed: fast\n", "speed"),
    (
        "peergrid-testbed",
        ["--duration", "1", "--scenario", "{config}"],
        "name: lab\n",
        "speed: fast\n",
        "speed",
    ),
]


def run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / script), *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("script", SCRIPTS)
def test_help(script: str) -> None:
    result = run(script, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout


@pytest.mark.parametrize("script,argv,valid,typed,typed_key", DAEMONS)
@pytest.mark.parametrize("case", ["missing file", "unknown key", "wrong type", "not yaml"])
def test_bad_config_is_one_line_and_nonzero(
    tmp_path: Path, script: str, argv: list[str], valid: str, typed: str, typed_key: str, case: str
) -> None:
    config = tmp_path / "config.yaml"
    body = {"unknown key": "bogus_key: 1\n", "wrong type": typed, "not yaml": "broker: [unclosed\n"}.get(case)
    if body is not None:
        config.write_text(valid + body)
    result = run(script, *[a.replace("{config}", str(config)) for a in argv])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(config) in lines[0]
    expected = {
        "missing file": "no such config",
        "unknown key": "bogus_key",
        "wrong type": typed_key,
        "not yaml": "not valid YAML",
    }[case]
    assert expected in lines[0]
