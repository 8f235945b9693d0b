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

# (script, argv before --config, a minimal valid config) for each command that runs a daemon from a file.
DAEMONS = [
    ("peergrid-edge", ["run"], "node_id: n1\nmg: mg1\n"),
    ("peergrid-dso", ["serve"], "node_id: dso\n"),
]


def run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / script), *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("script", SCRIPTS)
def test_help(script: str) -> None:
    result = run(script, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout


BAD_CONFIGS = {
    "missing file": None,
    "unknown key": "bogus_key: 1\n",
    "wrong type": "broker:\n  port: not-a-port\n",
    "not yaml": "broker: [unclosed\n",
}


@pytest.mark.parametrize("script,argv,valid", DAEMONS)
@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_is_one_line_and_nonzero(
    tmp_path: Path, script: str, argv: list[str], valid: str, case: str
) -> None:
    config = tmp_path / "config.yaml"
    if BAD_CONFIGS[case] is not None:
        config.write_text(valid + BAD_CONFIGS[case])
    result = run(script, *argv, "--config", str(config))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(config) in lines[0]
    expected = {
        "missing file": "no such config",
        "unknown key": "bogus_key",
        "wrong type": "broker.port",
        "not yaml": "not valid YAML",
    }[case]
    assert expected in lines[0]
