"""The lab's MGMC genesis names the rounds its MGMCs play (Q5, session 22): `LabChains.create(..., rounds=...)`
writes genesis `max_rounds` without settle_by_both too (the testbed passes `bargaining_rounds` of its interval and
block period: 2 at its default 6-s intervals), so the chain holds every position to the lab's own bargaining and
the DSO's console can say a bargaining stopped at the cap. The edge's rounds are min(its own, the cap), so no
honest move is refused; a lab directory kept from before keeps its genesis, cap or none, and is not refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from peergrid_edge.config import EdgeSettings
from peergrid_ledger.genesis import Genesis
from peergrid_sim.closedloop import LabChains, LoopTiming, edge_config
from peergrid_sim.lab_chains import SettleByBoth, bargaining_rounds

SCENARIO = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"


def _genesis(chains: LabChains) -> Genesis:
    return Genesis.from_json(json.loads(chains.mgmc_genesis.read_text(encoding="utf-8")))


def _edge_rounds(chains: LabChains, tmp_path: Path, interval_s: float) -> int | None:
    """The rounds per bargaining the lab's first MGMC plays at `interval_s` (its config as the testbed writes it)."""
    doc = edge_config(
        chains, chains.mgs[0], "ieee33", ("127.0.0.1", 1883), tmp_path / "node", [], SCENARIO,
        LoopTiming(1000.0, interval_s, 36, 4), tmp_path / "records",
    )  # fmt: skip
    market = EdgeSettings.model_validate(doc).market
    assert market is not None
    return market.max_rounds


def test_a_new_default_lab_names_the_rounds_its_mgmcs_play(tmp_path: Path) -> None:
    rounds = bargaining_rounds(6.0, 200)
    assert rounds == 2
    chains = LabChains.create(tmp_path / "keys", "ieee33", SCENARIO, rounds=rounds)
    params = _genesis(chains).params
    assert (params.max_rounds, params.settle_by_both, params.close_quiet_ms) == (2, 0, 0)
    assert _edge_rounds(chains, tmp_path, 6.0) == 2  # the edge's own 2, within the cap: nothing refused


@pytest.mark.parametrize(
    ("interval_s", "block_ms", "rounds"), [(6.0, 500, 2), (30.0, 200, 14), (900.0, 200, 50)]
)
def test_the_cap_is_the_edges_own_rounds(
    tmp_path: Path, interval_s: float, block_ms: int, rounds: int
) -> None:
    assert bargaining_rounds(interval_s, block_ms) == rounds
    chains = LabChains.create(tmp_path / "keys", "ieee33", SCENARIO, rounds=rounds)
    assert _genesis(chains).params.max_rounds == rounds
    if block_ms == 200:  # edge_config's blocks are the testbed's default 200 ms
        assert _edge_rounds(chains, tmp_path, interval_s) == rounds


def test_a_lab_without_rounds_names_no_cap_and_a_kept_genesis_is_kept(tmp_path: Path) -> None:
    old = LabChains.create(tmp_path / "keys", "ieee33", SCENARIO)  # as every lab before
    written = old.mgmc_genesis.read_bytes()
    assert "max_rounds" not in json.loads(written)["params"]
    again = LabChains.create(tmp_path / "keys", "ieee33", SCENARIO, rounds=2)  # not refused, not rewritten
    assert again.mgmc_genesis.read_bytes() == written
    assert _edge_rounds(again, tmp_path, 6.0) == 2  # its MGMCs play their own rounds, as before
    # the other way round: a kept genesis with the cap of 6-s intervals, the lab now at 30 s
    capped = LabChains.create(tmp_path / "capped", "ieee33", SCENARIO, rounds=2)
    assert LabChains.create(tmp_path / "capped", "ieee33", SCENARIO, rounds=14).mgmc_genesis.read_bytes() == (
        capped.mgmc_genesis.read_bytes()
    )
    assert _edge_rounds(capped, tmp_path, 30.0) == 2  # min(its own 14, the chain's 2)


def test_settle_by_both_names_the_same_cap(tmp_path: Path) -> None:
    both = SettleByBoth.for_lab(6.0, 36, 1000.5)
    chains = LabChains.create(tmp_path / "both", "ieee33", SCENARIO, both, rounds=bargaining_rounds(6.0, 200))
    params = _genesis(chains).params
    assert (params.max_rounds, params.settle_by_both, params.close_quiet_ms) == (2, 1, 500)
    with pytest.raises(
        ValueError, match="rounds per bargaining: 14, but its settle-by-both genesis names max_rounds 2"
    ):
        LabChains.create(tmp_path / "other", "ieee33", SCENARIO, both, rounds=14)
    assert not (tmp_path / "other" / "mgmc-genesis.json").exists()


def test_the_testbed_names_its_rounds_in_a_new_lab(tmp_path: Path) -> None:
    """`peergrid-testbed` (`lab_loop`) writes `bargaining_rounds` of its --interval-s and --block-period-ms."""
    from peergrid_sim.scenario import load_scenario
    from peergrid_sim.testbed import build_parser, lab_loop

    for argv, cap in (([], 2), (["--interval-s", "30"], 14), (["--settle-by-both"], 2)):
        args = build_parser().parse_args(["--scenario", str(SCENARIO), "--intervals", "3", *argv])
        workdir = tmp_path / "-".join(["lab", *argv])
        assert lab_loop(args, workdir, load_scenario(SCENARIO)) is not None
        params = Genesis.from_json(json.loads((workdir / "keys" / "mgmc-genesis.json").read_text())).params
        assert (params.max_rounds, params.settle_by_both) == (cap, int("--settle-by-both" in argv))
