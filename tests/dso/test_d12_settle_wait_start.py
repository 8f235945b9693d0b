"""D12: a DSO whose MGMC chain's settle wait leaves the MGMCs no time to post their sealed readings does not start:
`serve` and `check-config` refuse it in one line before the web server (`live.preflight`), and so does the
standalone node as it is assembled (`dso_node.DsoNode.assemble`); both by `dispute_time.check_settle_wait`.
Drill U7's pilot (60-s commitment intervals, a 60-s settle wait) ran, and settled interval 51's trade at 0 of
30,000 Wh. The README's 45-min wait starts."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from peergrid_dso.config import DsoSettings
from peergrid_dso.dso_node import DsoNode
from peergrid_dso.live import preflight
from peergrid_dso.loop_settings import IntervalNodeSettings
from peergrid_ledger import keys
from peergrid_ledger.genesis import Account, Genesis, Params
from peergrid_ledger.settings import ConfigError

DISPUTES = {"t0": 0, "interval_s": 20.0, "commit_interval_s": 60.0, "max_gap_s": 3.0}  # the Ansible role's


def settings(tmp_path: Path, wait_ms: int) -> DsoSettings:
    dso = keys.Keypair.generate()
    keys.write_keyfile(tmp_path / "dso.key", dso)
    mgs, now = {}, int(time.time() * 1000) - 1000
    accounts = [Account(dso.public, ("dso",), "dso")]
    for i, mg in enumerate(("mg1", "mg2")):
        node, anonym = keys.Keypair.generate(), keys.Keypair.generate()
        mgs[mg] = {"node": node.public.hex(), "anonym": anonym.public.hex(), "bus": 18 + i}
        accounts.append(Account(node.public, ("mgmc",), mg))
    for name, params in (
        ("dso", Params()),
        ("mgmc", Params(settle_by_both=1, settle_wait_ms=wait_ms, settle_interval_ms=20_000)),
    ):
        genesis = Genesis(chain=f"{name}-d12", time=now, authorities=(dso.public,), accounts=tuple(accounts),
                          params=params)  # fmt: skip
        (tmp_path / f"{name}-genesis.json").write_text(json.dumps(genesis.to_json()))
    return DsoSettings.model_validate({
        "node_id": "dso",
        "broker": {"host": "127.0.0.1", "port": 9},
        "console": {"lab_market": False, "lab_drift": False},
        "loop": {
            "key_file": str(tmp_path / "dso.key"),
            "dso_chain": {"genesis": str(tmp_path / "dso-genesis.json"), "data_dir": str(tmp_path / "dso.db")},
            "mgmc_chain": {"genesis": str(tmp_path / "mgmc-genesis.json"), "data_dir": str(tmp_path / "mgmc.db")},
            "mgs": mgs, "intervals": 1, "disputes": {**DISPUTES, "record_file": str(tmp_path / "d.jsonl")},
        },
    })  # fmt: skip


def test_serve_refuses_u7s_settle_wait_before_the_web_server(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        preflight(settings(tmp_path, 60_000), broker=False)
    said = str(refused.value)
    assert "\n" not in said and said.startswith("loop.disputes: the MGMC chain's settle_wait_ms 60000")
    readme = tmp_path / "readme"
    readme.mkdir()
    assert preflight(settings(readme, 2_700_000), broker=False) == []  # the README's genesis


def test_the_standalone_node_refuses_it_as_it_is_assembled(tmp_path: Path) -> None:
    """The lab's node (`peergrid-dso-node`) runs no preflight: its assembly refuses, before anything runs."""
    doc = settings(tmp_path, 60_000).loop
    assert doc is not None
    node = IntervalNodeSettings.model_validate(
        {**doc.model_dump(mode="json", exclude_unset=True), "feeder": "lab", "broker_port": 9}
    )

    async def assemble() -> None:
        DsoNode.assemble(node)

    with pytest.raises(ConfigError, match=r"^loop\.disputes: the MGMC chain's settle_wait_ms 60000 "):
        asyncio.run(assemble())
