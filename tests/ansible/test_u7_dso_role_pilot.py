"""The dso_server role's `loop:` section agrees with the MGMCs the edge role renders (U7's pilot):
- both chains at the MGMCs' block period (the edge's `ChainSettings.block_period_ms`, which the edge role leaves
  at its default): the role rendered 1000 ms against the MGMCs' 200, so the DSO refused every MGMC's block as
  `invalid_proposal` (a block closer than its period to the head) and the DSO chain, whose authorities they
  share, made blocks only after round timeouts;
- `disputes` once the inventory gives the market epoch (step 6): a settle-by-both genesis, as the README's,
  leaves every trade whose statements differ and every vouched one to the DSO node; without the section every
  such trade stayed unsettled for good and the MGMCs' readings were refused 'this DSO settles no disputes'.
Real Ansible templating with the pilot inventory (`render-dso.yml`); the server's strict model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from peergrid_ansible_harness import render_dso

from peergrid_dso.config import DsoSettings
from peergrid_edge.config import ChainSettings
from peergrid_ledger.settings import load_settings

MGS = {"mg-school": {"node": "11" * 32, "anonym": "22" * 32, "bus": 18}}
GENESES = {"peergrid_dso_genesis": "/srv/pki/dso-genesis.json", "peergrid_mgmc_genesis": "/srv/pki/mgmc.json"}
EPOCH = 1_798_761_600


def loop(tmp_path: Path, **extra: Any) -> Any:
    settings = load_settings(render_dso(tmp_path, {"dso_server_mgs": MGS, **GENESES, **extra}), DsoSettings)
    assert settings.loop is not None
    return settings.loop


def test_both_chains_at_the_mgmcs_block_period(tmp_path: Path) -> None:
    edge = ChainSettings(genesis=Path("g.json")).block_period_ms
    rendered = loop(tmp_path)
    assert rendered.mgmc_chain is not None
    assert rendered.dso_chain.block_period_ms == rendered.mgmc_chain.block_period_ms == edge


def test_disputes_on_the_market_clock_once_the_epoch_is_given(tmp_path: Path) -> None:
    disputes = loop(tmp_path, peergrid_market_epoch=EPOCH).disputes
    assert disputes is not None
    assert (disputes.t0, disputes.interval_s, disputes.commit_interval_s, disputes.max_gap_s) == (
        EPOCH,
        900,
        60,
        3,
    )
    assert disputes.record_file == Path("/var/lib/peergrid/dso/disputes.jsonl")
    (tmp_path / "fast").mkdir()
    fast = loop(tmp_path / "fast", peergrid_market_epoch=EPOCH, peergrid_market_interval_s=20).disputes
    assert fast is not None and fast.interval_s == 20


def test_no_disputes_before_the_epoch(tmp_path: Path) -> None:
    assert loop(tmp_path).disputes is None
