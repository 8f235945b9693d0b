"""D10: a restarted DSO server's console reads back the intervals its node missed before (its record file's recent
end) into the Feeder view's alarms and the Market view, as it shows those it hears of live.

D9's notes: the console heard of a miss only through the node's listener (`ConsoleState.on_interval`), so after a
restart the Feeder view's alarm ('intervals 13-14: missed, ...') and the Market view's `missed` of the intervals
missed before it were gone, though the node's record file keeps them. The console's start (`build_console`) here
gets a stand-in for the embedded node whose MGMC-chain replica holds a real market contract (D9's) and whose
`loop.record_file` holds an earlier run's records; `missed_records.read_back` is read pure too (its window, torn
lines, a file it cannot read).
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from dso.test_d9_market_missed import Market
from peergrid_dso.console.missed_records import read_back
from peergrid_dso.console.settings import ConsoleSettings
from peergrid_dso.console.state import ConsoleState, build_console
from peergrid_dso.interval_missed import DOWN, missed_record
from peergrid_dso.services.container import build_dso_services


def said(span: str) -> str:
    """The missed run's alarm; `span` names it with its day and clock time (C7: the loop gives 15 minutes)."""
    return f"{span}: missed, {DOWN}: not checked, no contract, no switching"


class StandInLoop:
    """The embedded node as `build_console` uses it: its settings (MGs, record file), its MGMC-chain replica (the
    market contract's LocalChain) and its listeners."""

    def __init__(self, market: Market, record_file: Path) -> None:
        chain = market.chain
        mgs = {mg: SimpleNamespace(node="00" * 32, anonym=key.public.hex())
               for mg, key in (("mg1", market.seller), ("mg2", market.buyer))}  # fmt: skip
        self.node_settings = SimpleNamespace(
            mgs=mgs, interval_minutes=15.0, mgmc_records=None, record_file=record_file
        )
        store = SimpleNamespace(head_height=lambda: chain.height, block=chain.block, genesis=chain.genesis)
        self.mgmc = SimpleNamespace(store=store, app=SimpleNamespace(genesis=chain.genesis))
        self.chain = chain
        self.lock, self.running = threading.RLock(), False
        self.listeners: list[Any] = []

    def replica(self, name: str) -> Any:
        self.mgmc.app.state = self.chain.state  # the replica's committed state
        return self.mgmc if name == "mgmc" else None

    def call(self, fn: Any) -> Any:
        return fn()

    def hear(self, record: dict[str, Any]) -> None:
        """The node records an interval (`DsoLoop.record`): each listener is told."""
        for listener in self.listeners:
            listener(record)


def write_records(path: Path, docs: list[dict[str, Any]], torn: str = "") -> Path:
    path.write_text("".join(json.dumps(doc) + "\n" for doc in docs) + torn)
    return path


def restarted(tmp_path: Path, market: Market, record_file: Path) -> tuple[ConsoleState, StandInLoop]:
    settings = ConsoleSettings.model_validate(
        {"users_file": str(tmp_path / "console-users.json"), "lab_market": False, "lab_drift": False}
    )
    loop = StandInLoop(market, record_file)
    state = build_console(settings, build_dso_services({"mg1": 18, "mg2": 25}), loop)
    state.stop_node_records()
    return state, loop


def missed_alarms(state: ConsoleState) -> list[str]:
    return [a for a in state.grid.snapshot()["alarms"] if "missed" in a]


def market_missed(state: ConsoleState) -> dict[int, Any]:
    view = state.market_view()
    assert view["status"] == "ready", view
    return {iv["interval"]: iv["missed"] for iv in view["intervals"]}


def test_the_intervals_missed_before_a_restart_are_shown_again(tmp_path: Path) -> None:
    market = Market()
    market.bargain(12)
    market.bargain(14)  # traded while the node was down: its trades went through unchecked
    records = write_records(
        tmp_path / "dso.jsonl",
        [{"interval": 12, "secure": True, "missing": []}, missed_record(13, 1_000.0, 1_200.0),
         missed_record(14, 1_000.0, 1_200.0), {"interval": 15, "secure": True, "missing": ["mg2"]},
         missed_record(18, 1_500.0, 1_600.0)],
        torn='{"interval": 19, "missed": "the DSO no',  # a writer killed mid-line
    )  # fmt: skip
    state, loop = restarted(tmp_path, market, records)
    assert missed_alarms(state) == [
        said("intervals 13-14 (day 0, 03:15–03:45)"),
        said("interval 18 (day 0, 04:30–04:45)"),
    ]  # before: none
    assert market_missed(state) == {12: None, 13: DOWN, 14: DOWN, 18: DOWN}  # before: {12: None, 14: None}

    # the node, running on, records 18 again (read back and heard: the start's race) and then misses 19
    loop.hear(missed_record(18, 1_500.0, 1_600.0))
    assert missed_alarms(state) == [
        said("intervals 13-14 (day 0, 03:15–03:45)"),
        said("interval 18 (day 0, 04:30–04:45)"),
    ]  # told once
    loop.hear(missed_record(19, 1_600.0, 1_700.0))
    assert missed_alarms(state) == [
        said("intervals 13-14 (day 0, 03:15–03:45)"),
        said("intervals 18-19 (day 0, 04:30–05:00)"),
    ]
    assert market_missed(state)[19] == DOWN


def test_a_first_start_and_a_node_without_a_record_file_read_back_nothing(tmp_path: Path) -> None:
    market = Market()
    state, _ = restarted(tmp_path, market, tmp_path / "none-yet.jsonl")
    assert missed_alarms(state) == [] and state.market_view()["intervals"] == []
    assert read_back(None) == []


def test_the_read_back_is_bounded_to_the_files_recent_end(tmp_path: Path, caplog: Any) -> None:
    lines = [json.dumps(missed_record(t, 1_000.0, 1_200.0)) + "\n" for t in range(100)]
    records = tmp_path / "dso.jsonl"
    records.write_text("".join(lines))
    size = len(lines[-1])  # 97-99's lines are as long
    assert [r["interval"] for r in read_back(records, back=3 * size)] == [
        97,
        98,
        99,
    ]  # whole at the window's start
    assert [r["interval"] for r in read_back(records, back=3 * size - 1)] == [98, 99]  # 97 cut: passed over
    assert [r["interval"] for r in read_back(records, back=3 * size + 1)] == [97, 98, 99]
    assert len(read_back(records)) == 100
    records.write_text('[1]\n{"interval": "13", "missed": "x"}\n{"interval": 14, "missed": null}\nnot json\n')
    assert read_back(records) == []
    folder = tmp_path / "folder.jsonl"
    folder.mkdir()
    with caplog.at_level(logging.WARNING, "peergrid_dso.console"):
        assert read_back(folder) == []  # the console starts without them, and says so
    assert any("could not be read" in m and str(folder) in m for m in caplog.messages)


def test_a_record_the_node_makes_while_the_start_reads_back_waits(tmp_path: Path) -> None:
    """`on_interval` (the node's thread) waits while the console's start holds the lock it reads back under."""
    market = Market()
    records = write_records(tmp_path / "dso.jsonl", [missed_record(t, 1_000.0, 1_200.0) for t in (13, 14)])
    state, loop = restarted(tmp_path, market, records)
    heard = threading.Thread(target=loop.hear, args=(missed_record(15, 1_000.0, 1_200.0),))
    with state._hearing:
        heard.start()
        heard.join(0.2)
        assert heard.is_alive()  # held back while the lock is held
    heard.join(5)
    assert missed_alarms(state) == [said("intervals 13-15 (day 0, 03:15–04:00)")]
