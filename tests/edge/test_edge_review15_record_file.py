"""review15 M3: one damaged line in the agent's record file no longer stops the edge.

The agent's start reads its record file (`resume.recorded_verdicts` from `agent_settlement.pick_up`,
`resume.resumed_counterfactual` from `MarketAgent.run`), outside the per-interval guard: a flipped byte
(UnicodeDecodeError), a line that is JSON null or a number (TypeError) or a conv_state without its interval
(KeyError) raised out of the agent, the daemon stopped (TaskDied) and systemd restarted it into the same raise.
Now both reads are best effort: each damaged line is skipped (or, parsed, read as it stands), logged once
with the file and its line number, and every good line is kept; a file that cannot be read, or a
counterfactual that cannot be carried, is logged and the agent starts without it. A real MarketAgent on a
real chain starts on such a file, states the sale its good verdict line confirms and trades its interval.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pytest
from edge_helpers import pv_battery_schedule, stand_in_daemon
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_edge_settle_both import both_chain, run_chain
from test_settlement import KWH, Node

from peergrid_controller.builder import MgState
from peergrid_controller.scenario import load_scenario
from peergrid_edge.config import MarketSettings
from peergrid_edge.resume import (
    PLAN_CONFIRMED,
    record_day,
    recorded_verdicts,
    resumed_counterfactual,
    stamped,
)
from peergrid_edge.trader import MarketAgent
from peergrid_ledger import query
from peergrid_ledger.keys import Keypair, write_keyfile

SCENARIO = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"
LOGGER = "peergrid.edge.trader"


def line(doc: Any) -> bytes:
    return json.dumps(doc).encode() + b"\n"


def verdict(t: int, confirmed: bool) -> bytes:
    return line({"interval": t, "mg": "mg4", PLAN_CONFIRMED: confirmed})


def conv(t: int, state: MgState) -> bytes:
    return line({"interval": t, "cost": 1.5, "conv_state": asdict(state)})


# each damage as the line(s) it leaves after the good ones, and the line numbers logged (lines 1-2 are good)
DAMAGE = {
    "a flipped byte in a string": (b'{"interval": 37, "mg": "mg\xff"}\n', [3]),
    "a flipped byte in a number": (b'{"interval": 3\xff, "plan_confirmed": true}\n', [3]),
    "a line that is JSON null": (b"null\n", [3]),
    "a line that is a number": (b"7\n", [3]),
    "a conv_state without its interval": (line({"conv_state": {}}), [3]),
    "a conv_state of another MG's shape": (line({"interval": 30, "conv_state": {"soc_kwh": [1, 2]}}), [3]),
    "a power cut tore the last line": (b'{"interval": 37, "plan_conf', [3]),
    "two damaged lines around a good one": (b"null\n" + verdict(30, False) + b"\xfe\xff\n", [3, 5]),
}


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_the_start_up_reads_skip_a_damaged_line_once_and_keep_the_good_ones(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    mg, _ = pv_battery_schedule(40)
    recorded = MgState((42.0,), (), (), ())
    tail, logged = DAMAGE[damage]
    records = tmp_path / "market.jsonl"
    records.write_bytes(verdict(36, True) + conv(36, recorded) + tail)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        verdicts = recorded_verdicts(records, range(30, 40))
        verdict_lines = lines_logged(caplog, records)
        caplog.clear()
        state = resumed_counterfactual(records, mg, 1.0, 40, 37)
        state_lines = lines_logged(caplog, records)
    assert verdicts[36] is True  # the good line kept
    assert state == recorded  # the last good conv_state before 37 (interval 36: nothing to carry)
    # the counterfactual reader names only lines that could have held a conv_state (or are damaged); the
    # verdicts reader every line that could have held a verdict; each at most once
    assert sorted(set(verdict_lines)) == verdict_lines and sorted(set(state_lines)) == state_lines
    assert set(state_lines) <= set(logged) and set(verdict_lines) <= set(logged)
    assert state_lines or verdict_lines
    if damage == "two damaged lines around a good one":
        assert verdicts == {36: True, 30: False} and verdict_lines == [3, 5]


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(st.tuples(st.integers(0, 3), st.binary(max_size=40)), max_size=6))
def test_no_damage_raises_and_no_good_line_is_lost(tmp_path: Path, damage: list[tuple[int, bytes]]) -> None:
    """Arbitrary bytes (newlines too) put between the good lines: both readers return, the good verdicts and
    the last good conv_state are kept (unless the bytes themselves read as a record of that interval)."""
    mg, _ = pv_battery_schedule(40)
    good = [verdict(35, True), conv(35, MgState((41.0,), (), (), ())), verdict(36, False), conv(36, RECORDED)]
    for at, junk in sorted(damage, key=lambda d: -d[0]):
        good.insert(at, junk + b"\n")
    records = tmp_path / "market.jsonl"
    records.write_bytes(b"".join(good))
    forged = any(b"interval" in junk for _, junk in damage)  # (random bytes hardly ever: then anything goes)
    verdicts = recorded_verdicts(records, range(30, 40))
    state = resumed_counterfactual(records, mg, 1.0, 40, 37)
    if not forged:
        assert verdicts == {35: True, 36: False} and state == RECORDED


RECORDED = MgState((42.0,), (), (), ())


def lines_logged(caplog: pytest.LogCaptureFixture, records: Path) -> list[int]:
    """The line numbers the log names for `records` (every message names the file)."""
    numbers = []
    for r in [r for r in caplog.records if r.name == LOGGER]:  # caplog also catches a stray thread's records
        message = r.getMessage()
        assert str(records) in message, message
        numbers.append(int(message.split(": line ")[1].split()[0].rstrip(":")))
    return numbers


def test_a_damaged_byte_is_named_and_the_line_read_as_it_stands(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    records = tmp_path / "market.jsonl"
    records.write_bytes(b'{"interval": 36, "mg": "mg\xff", "plan_confirmed": true}\n')
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert recorded_verdicts(records, range(30, 40)) == {36: True}  # the damage hit a string only
    (message,) = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert "line 1" in message and "not UTF-8" in message and "read as it stands" in message


def test_the_latest_conv_state_damaged_the_one_before_it_is_carried(tmp_path: Path) -> None:
    mg, _ = pv_battery_schedule(40)
    records = tmp_path / "market.jsonl"
    bad = line({"interval": 36, "conv_state": {**asdict(MgState((42.0,), (), (), ())), "soc_kwh": [None]}})
    records.write_bytes(conv(35, MgState((42.0,), (), (), ())) + bad)
    carried = resumed_counterfactual(records, mg, 1.0, 40, 37)  # from 35, carried through 36
    alone = tmp_path / "35 alone.jsonl"
    alone.write_bytes(conv(35, MgState((42.0,), (), (), ())))
    assert carried is not None and carried == resumed_counterfactual(alone, mg, 1.0, 40, 37)
    assert carried != MgState((42.0,), (), (), ())  # (carried: its PV charged the battery in 36)
    assert resumed_counterfactual(records, mg, 1.0, 40, 36) == MgState((42.0,), (), (), ())


def test_a_file_that_cannot_be_read_or_carried_is_logged_and_the_agent_starts_without_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mg, _ = pv_battery_schedule(40)
    unreadable = tmp_path / "a folder"  # read_bytes raises IsADirectoryError (an OSError): a dead card
    unreadable.mkdir()
    beyond = tmp_path / "beyond.jsonl"  # well-formed, but no schedule holds 1e9 kWh in a 200-kWh battery
    beyond.write_bytes(conv(30, MgState((1e9,), (), (), ())))
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        assert recorded_verdicts(unreadable, range(0, 40)) == {}
        assert resumed_counterfactual(unreadable, mg, 1.0, 40, 37) is None
        assert resumed_counterfactual(beyond, mg, 1.0, 40, 37) is None
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert sum("cannot be read" in m and str(unreadable) in m for m in messages) == 2
    assert any("could not be carried" in m and str(beyond) in m for m in messages)
    assert resumed_counterfactual(tmp_path / "none.jsonl", mg, 1.0, 40, 37) is None  # no file: nothing said
    assert recorded_verdicts(None, range(0, 40)) == {}


def test_the_agent_starts_on_a_damaged_record_file_states_its_sale_and_trades(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A meterless seller restarted after interval 5, whose sale of 5 its last run dispatched (its verdict
    line) but did not state; its record file also holds a flipped byte, a null line and a conv_state
    without its interval. On the previous code the agent's run raised UnicodeDecodeError before trading."""
    seller, buyer, authority = (Keypair.generate() for _ in range(3))
    write_keyfile(tmp_path / "anonym.key", seller)
    mg = next(m for m in load_scenario(SCENARIO).microgrids if m.name == "mg6")  # a battery and a genset
    initial = MgState.initial(mg)
    recorded = replace(initial, soc_kwh=tuple(soc / 2 for soc in initial.soc_kwh))
    assert recorded != initial
    records = tmp_path / "market.jsonl"
    traded: list[int] = []

    async def day(node: Node) -> tuple[MarketAgent, dict[str, Any] | None]:
        tid = await node.agree(5, seller, buyer)  # interval 5 traded by the last run: the agent joins 6
        t0 = time.time() - 0.4 + 0.3
        today = record_day(
            t0, 5
        )  # the day's last run wrote them (the agent reads its own day's: review18 K-1)

        def of_today(raw: bytes) -> bytes:
            return line(stamped(json.loads(raw), today))

        records.write_bytes(
            of_today(verdict(5, True)) + of_today(conv(5, recorded)) + b'{"interval": 5, "note": "\xff"}\n'
            + b"null\n" + of_today(line({"conv_state": {}}))
        )  # fmt: skip
        settings = MarketSettings(scenario=SCENARIO, anonym_key_file=tmp_path / "anonym.key",
                                  t0=t0, interval_s=0.4, first_interval=5,
                                  intervals=2, phase_timeout_s=0.1, record_file=records)  # fmt: skip
        daemon = stand_in_daemon(
            node.ledger, "mg6", commit_interval_s=6.0, store=NoReadings(), keypair=seller
        )
        agent = MarketAgent(daemon, settings)  # type: ignore[arg-type]

        async def run_interval(t: int) -> None:
            traded.append(t)

        async def cleared(t: int) -> None:
            return None

        agent.run_interval = run_interval  # type: ignore[method-assign]
        agent._previous_cleared = cleared  # type: ignore[method-assign]
        await asyncio.wait_for(agent.run(), 30)
        return agent, query.settlement(node.ledger.state("mgmc"), tid)

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        agent, standing = run_chain(tmp_path, both_chain(seller, buyer, authority), authority, day)
    assert traded == [6] and agent.phase == "finished"
    assert agent.recalled == {5: True} and agent.conv_state == recorded  # interval 5's, nothing to carry
    assert standing is not None and standing["state"] == "settled"
    assert standing["settlement"]["delivered"] == KWH  # the agreed quantity: its plan was confirmed
    named = [r.getMessage() for r in caplog.records if str(records) in r.getMessage()]
    for number in (3, 4, 5):
        assert any(f"line {number}" in m for m in named), (number, named)


class NoReadings:
    def leaves(self, interval: int) -> list[bytes]:
        return []

    def is_sealed(self, interval: int) -> bool:
        return False
