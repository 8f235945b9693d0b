"""The settle-by-both lab's clock key and epoch (`lab_clock`): a new settle-by-both lab's MGMC genesis names the
lab's clock key with role dso, so the lab may post the clock of a t0 moved at the DSO's readiness; a lab
without settle_by_both, or a lab directory whose genesis predates the key, posts nothing (its t0 stays fixed
where its genesis fixed the clock). The epoch is the genesis rule's (`SettleByBoth.for_lab`). The poster
itself runs in the lab test (`test_closedloop_dso_first`, a settle-by-both lab whose DSO starts late)."""

from __future__ import annotations

import json
from pathlib import Path

from peergrid_ledger.genesis import Genesis
from peergrid_sim.closedloop import LabChains, SettleByBoth
from peergrid_sim.lab_clock import clock_epoch_ms, clock_key

SCENARIO = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"


def test_clock_key_only_where_the_genesis_settles_by_both_and_names_it(tmp_path: Path) -> None:
    both = LabChains.create(tmp_path / "both", "ieee33", SCENARIO, SettleByBoth.for_lab(6.0, 36, 1000.5))
    key = clock_key(both)
    assert key is not None and both.clock is not None and key.public == both.clock.public
    genesis = Genesis.from_json(json.loads(both.mgmc_genesis.read_text()))
    (account,) = [a for a in genesis.accounts if a.key == key.public]
    assert account.roles == ("dso",) and account.label == "lab-clock"
    assert clock_key(LabChains.create(tmp_path / "plain", "ieee33", SCENARIO)) is None  # no settle_by_both
    # a lab directory whose settle-by-both genesis was written without the key: nothing to post with
    old = LabChains.create(tmp_path / "old", "ieee33", SCENARIO, SettleByBoth.for_lab(6.0, 36, 1000.5))
    doc = json.loads(old.mgmc_genesis.read_text())
    doc["accounts"] = [a for a in doc["accounts"] if a["label"] != "lab-clock"]
    old.mgmc_genesis.write_text(json.dumps(doc))
    assert clock_key(LabChains.create(tmp_path / "old", "ieee33", SCENARIO)) is None


def test_the_posted_epoch_is_the_genesis_rule_for_the_moved_t0() -> None:
    for t0 in (1000.5, 1_767_225_612.3456, 1_767_225_600.0):
        assert clock_epoch_ms(t0, 36, 6.0) == SettleByBoth.for_lab(6.0, 36, t0).epoch_ms
    assert clock_epoch_ms(1000.0, 0, 0.25) == 1_000_000
