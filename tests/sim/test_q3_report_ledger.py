"""The report's ledger figures (`report_ledger`, split from report.py) on real stores: two replicas of an MGMC-like
chain with four settled trades agree on their head, every settlement's inclusion proof verifies, and
`peergrid-ledger verify` passes every store."""

from __future__ import annotations

import shutil
from pathlib import Path

from test_report_uplift import _settled_day

from peergrid_sim.report_ledger import ledger_figures, stores, verify_stores


def test_two_replicas_agree_their_settlements_prove_and_every_store_verifies(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    _settled_day(tmp_path)  # nodes/dso/mgmc.db
    nodes = tmp_path / "nodes"
    shutil.copytree(nodes / "dso" / "mgmc.db", nodes / "mgmc-mg1" / "mgmc.db")  # a replica on the same head
    shutil.copytree(
        nodes / "dso" / "mgmc.db", nodes / "dso" / "dso.db"
    )  # (any chain stands in for the DSO's)
    paths = stores(tmp_path)
    assert paths == {
        "mgmc": [nodes / "dso" / "mgmc.db", nodes / "mgmc-mg1" / "mgmc.db"],
        "dso": [nodes / "dso" / "dso.db"],
    }
    figures, proofs = ledger_figures(paths)
    mgmc = figures["mgmc"]
    assert set(mgmc["heads"]) == {"dso", "mgmc-mg1"} and len(set(mgmc["heads"].values())) == 1
    assert mgmc["identical_heads"] and mgmc["agree_at_lowest_head"] and mgmc["head_spread"] == 0
    assert mgmc["lowest_head"] == len(mgmc["block_times_series"]) + 1  # a gap between each two blocks
    assert proofs == {"settled": 4, "verified": 4, "failed": []}  # the buyers settled the four trades
    assert verify_stores(paths) == {"dso/mgmc.db": "ok", "mgmc-mg1/mgmc.db": "ok", "dso/dso.db": "ok"}


def test_a_chain_without_any_store_is_reported_as_such_not_an_error(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    _settled_day(tmp_path)  # nodes/dso/mgmc.db only: no replica of the DSO chain
    paths = stores(tmp_path)
    assert paths["dso"] == []
    figures, proofs = ledger_figures(paths)
    assert figures["dso"]["no_store"] and figures["dso"]["heads"] == {}
    assert not figures["dso"]["identical_heads"] and not figures["dso"]["agree_at_lowest_head"]
    assert figures["mgmc"]["identical_heads"] and "no_store" not in figures["mgmc"]
    assert proofs["settled"] == proofs["verified"] == 4
