"""The Market view's title counts the reopenings (D2, U3-3): U3's interval 40, reopened twice by the DSO, was titled
'agreed at the round cap (2 rounds after a reopening, 6 in all)'. The live market gives how many times the DSO
reopened an interval (`reopens`, from the chain's reopening record) and market.js's `outcome` says 'after the
last of 2 reopenings' (run in Node, the module as the console serves it)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

STATIC = Path(__file__).parents[2] / "dso-server/src/peergrid_dso/console/static"


def test_the_live_market_says_how_many_times_an_interval_was_reopened(monkeypatch: Any) -> None:
    from peergrid_dso.console.live_market import LiveMarket
    from peergrid_ledger import query
    from peergrid_ledger.contracts import market_state

    a = b"\x0a" * 32

    def tx(kind: str, sender: bytes, **body: Any) -> Any:
        return SimpleNamespace(kind=kind, sender=sender, body=body)

    blocks = [[tx("offer", a, interval=t, round=1, price=150, quantity=20_000, clean=True)] for t in (40, 41)]
    store = SimpleNamespace(
        head_height=lambda: len(blocks), block=lambda h: SimpleNamespace(txs=blocks[h - 1])
    )
    monkeypatch.setattr(query, "trades", lambda state, t: [])
    reopened = {40: {"round": 4, "reopens": 2, "iteration": 2}}
    monkeypatch.setattr(market_state, "reopening", lambda state, t: reopened.get(t))
    genesis = SimpleNamespace(params=SimpleNamespace(max_rounds=2))
    replica = SimpleNamespace(store=store, app=SimpleNamespace(state=None, genesis=genesis))
    twice, never = LiveMarket(replica, lambda fn: fn(), {a.hex(): "mg1"}, 0.25).report()["intervals"]
    assert (twice["reopened_at"], twice["reopens"]) == (4, 2)
    assert (never["reopened_at"], never["reopens"]) == (None, 0)


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node to run market.js")
def test_the_title_counts_the_reopenings() -> None:
    base = {"trades": [{}], "converged": False, "round_cap": 2}
    cases = [
        {**base, "rounds": 6, "reopened_at": 4, "reopens": 2},
        {**base, "rounds": 4, "reopened_at": 2, "reopens": 1},
        {**base, "rounds": 4, "reopened_at": 2},  # a record from before `reopens`
    ]
    script = (
        f"import {{ outcome }} from {json.dumps((STATIC / 'market.js').as_uri())};"
        f"for (const iv of {json.dumps(cases)}) console.log(outcome(iv));"
    )
    out = subprocess.run(
        ["node", "--input-type=module", "-e", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert (
        out.stdout.splitlines()
        == [
            "agreed at the round cap (2 rounds after the last of 2 reopenings, 6 in all)",  # before: 'after a reopening'
            "agreed at the round cap (2 rounds after a reopening, 4 in all)",
            "agreed at the round cap (2 rounds after a reopening, 4 in all)",
        ]
    )
