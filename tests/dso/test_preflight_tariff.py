"""`peergrid-dso serve` with a `loop.tariff_file` that the node cannot use stops before the web server starts,
with one line naming the file and the key (exit 2), as for the key file, the geneses and the broker
(`live.preflight`). Before, the file was read only when the node started inside uvicorn's startup, which
failed with a traceback. A good file passes preflight (against a real broker: the last check).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from peergrid_dso.cli import main as dso_main
from peergrid_dso.config import DsoSettings
from peergrid_dso.live import preflight
from peergrid_ledger import keys
from peergrid_ledger.genesis import Account, Genesis, Params
from peergrid_ledger.settings import ConfigError

DAY = 96  # 15-minute intervals


def tariff(mgs: tuple[str, ...] = ("mg1", "mg2")) -> dict[str, Any]:
    return {
        "interval_minutes": 15,
        "mgs": {mg: {"retail": [0.25] * DAY, "feed_in": [0.05] * DAY} for mg in mgs},
    }


def settings_doc(tmp_path: Path, port: int, tariff_doc: Any) -> dict[str, Any]:
    dso = keys.Keypair.generate()
    keys.write_keyfile(tmp_path / "dso.key", dso)
    mgs, now = {}, int(time.time() * 1000) - 1000
    accounts = [Account(dso.public, ("dso",), "dso")]
    for i, mg in enumerate(("mg1", "mg2")):
        node, anonym = keys.Keypair.generate(), keys.Keypair.generate()
        mgs[mg] = {"node": node.public.hex(), "anonym": anonym.public.hex(), "bus": 18 + i}
        accounts.append(Account(node.public, ("mgmc",), mg))
    for name, params in (("dso", Params()), ("mgmc", Params())):
        genesis = Genesis(chain=f"{name}-pf", time=now, authorities=(dso.public,), accounts=tuple(accounts),
                          params=params)  # fmt: skip
        (tmp_path / f"{name}-genesis.json").write_text(json.dumps(genesis.to_json()))
    path = tmp_path / "tariff.yaml"
    path.write_text(tariff_doc if isinstance(tariff_doc, str) else yaml.safe_dump(tariff_doc))
    return {
        "node_id": "dso",
        "broker": {"host": "127.0.0.1", "port": port},
        "console": {"lab_market": False, "lab_drift": False},
        "loop": {
            "key_file": str(tmp_path / "dso.key"),
            "dso_chain": {"genesis": str(tmp_path / "dso-genesis.json"), "data_dir": str(tmp_path / "dso.db")},
            "mgmc_chain": {"genesis": str(tmp_path / "mgmc-genesis.json"), "data_dir": str(tmp_path / "mgmc.db")},
            "mgs": mgs,
            "intervals": 1,
            "tariff_file": str(path),
        },
    }  # fmt: skip


BAD = {
    "an MG without prices": (tariff(("mg1",)), "'mgs': no prices for mg2"),
    "a negative price": (
        {**tariff(), "mgs": {**tariff()["mgs"], "mg2": {"retail": [-0.1] * DAY, "feed_in": [0.05] * DAY}}},
        "'mgs.mg2.retail.0': -0.1 is negative",
    ),
    "the wrong interval length": ({**tariff(), "interval_minutes": 30}, "'interval_minutes': 30"),
    "not YAML": ("mgs: [unclosed", "not valid YAML"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_tariff_file_stops_serve_with_one_line(tmp_path: Path, capsys: Any, case: str) -> None:
    doc, says = BAD[case]
    # port 9 (discard): no broker there, and preflight must fail on the file before it tries one
    settings = settings_doc(tmp_path, 9, doc)
    with pytest.raises(ConfigError, match=r"loop\.tariff_file: ") as raised:
        preflight(DsoSettings.model_validate(settings))
    assert says in str(raised.value), raised.value
    config = tmp_path / "dso.yaml"
    config.write_text(yaml.safe_dump(settings))
    with pytest.raises(SystemExit) as exited:
        dso_main(["serve", "--config", str(config)])  # without the check: uvicorn started, then a traceback
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert says in err and "tariff.yaml" in err and len(err.splitlines()) == 1, err


def test_a_missing_tariff_file_stops_serve_with_one_line(tmp_path: Path, capsys: Any) -> None:
    settings = settings_doc(tmp_path, 9, tariff())
    (tmp_path / "tariff.yaml").unlink()
    with pytest.raises(ConfigError, match="cannot read"):
        preflight(DsoSettings.model_validate(settings))


def test_a_good_tariff_file_passes_preflight(tmp_path: Path, mosquitto: Any) -> None:
    preflight(DsoSettings.model_validate(settings_doc(tmp_path, mosquitto.port, tariff())))
