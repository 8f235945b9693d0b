"""D9: a revocation that failed half-way across the two chains (the DSO chain holds it, the MGMC chain not) is
told at WARNING once as the server starts (`live.tell_half_done`, one set of those told per `EmbeddedLoop`).
Before, twice: once as the node took the loop's MGs (`loop_enrolments`), again as the console took the chains'
word on its queue (`chain_word`). `serve`'s read of the DSO chain's store before the node (`stored_word`) tells
none: the node tells the same over both chains.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from peergrid_dso.app import create_app
from peergrid_dso.config import DsoSettings
from peergrid_ledger import keys
from peergrid_ledger.genesis import Account, Genesis
from peergrid_ledger.keys import Keypair

from .test_d6_serve_chain_revoked import dso_chain_revoking

HALF = "failed half-way"


def test_a_revocation_half_done_across_the_chains_is_told_once_as_the_server_starts(
    tmp_path: Path, mosquitto: Any, caplog: pytest.LogCaptureFixture
) -> None:
    dso, mgmc, anonym = (Keypair.generate() for _ in range(3))
    keys.write_keyfile(tmp_path / "dso.key", dso)
    dso_genesis = dso_chain_revoking(tmp_path, dso, mgmc, anonym)  # the DSO chain revoked both keys
    mgmc_genesis = Genesis(  # the MGMC chain never heard of it: the revocation timed out there
        chain="mgmc-d9", time=int(time.time() * 1000) - 1000, authorities=(mgmc.public,),
        accounts=(Account(dso.public, ("dso",), "dso"), Account(mgmc.public, ("mgmc",), "mg-school"),
                  Account(anonym.public, ("anonym",))),
    )  # fmt: skip
    (tmp_path / "mgmc-genesis.json").write_text(json.dumps(mgmc_genesis.to_json()))
    loop = {
        "key_file": str(tmp_path / "dso.key"),
        "dso_chain": {"genesis": str(dso_genesis), "data_dir": str(tmp_path / "dso.db")},
        "mgmc_chain": {"genesis": str(tmp_path / "mgmc-genesis.json"), "data_dir": str(tmp_path / "mgmc.db")},
        "mgs": {"mg-school": {"node": mgmc.public.hex(), "anonym": anonym.public.hex(), "bus": 18}},
        "intervals": 1,
    }
    (tmp_path / "data").mkdir()
    settings = DsoSettings.model_validate(
        {
            "broker": {"host": mosquitto.host, "port": mosquitto.port},
            "console": {"users_file": str(tmp_path / "data" / "console-users.json"), "lab_market": False},
            "loop": loop,
        }
    )
    app = create_app(settings, listen=False)
    with caplog.at_level(logging.WARNING, "peergrid_dso.live"), TestClient(app):
        shown = {e.label: e.status for e in app.state.dso.enrolment.enrolments.values()}
    told = [r.getMessage() for r in caplog.records if HALF in r.getMessage()]
    assert shown == {"mg-school": "authorised"}  # half-done: shown authorised, to be revoked again
    assert len(told) == 1 and mgmc.public.hex()[:12] in told[0], told  # before: twice
