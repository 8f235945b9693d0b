"""An MG without a PCC meter states, after a restart, the trades it dispatched before it (review10 F5).

Such an MG states a trade's agreed quantity only where dispatch read-back confirmed the interval's plan in
full. The verdict lived only in memory (`MgMetering.confirmed`), so a restarted MGMC never stated the trades
of the intervals it had dispatched: the counterparty's lone statement settled them (for a seller, possibly at
the buyer's 0). The trader now keeps the verdict with the interval's record (`resume.PLAN_CONFIRMED`) and
reads it back before it picks the trades up; a record it cannot read is an error in the log and that
interval has no verdict, so nothing is stated for it (never a guess).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from edge_helpers import stand_in_daemon
from hypothesis import given
from hypothesis import strategies as st
from test_edge_settle_both import both_chain, run_chain
from test_settlement import KWH, Node

from peergrid_edge.pcc_readings import MgMetering
from peergrid_edge.resume import PLAN_CONFIRMED, record_day, recorded_verdicts, stamped, verdicts_of
from peergrid_edge.settle_book import PendingSettle
from peergrid_ledger import query
from peergrid_ledger.keys import Keypair

ME, OTHER = b"m" * 32, b"o" * 32
TRADES = {7: [(b"t" * 32, {"seller": ME, "buyer": OTHER, "quantity": 400, "interval": 7})]}


class NoReadings:
    def leaves(self, interval: int) -> list[bytes]:
        return []

    def is_sealed(self, interval: int) -> bool:
        return False


def meterless() -> MgMetering:
    return MgMetering(NoReadings(), 0.0, 60.0, lambda t: (t * 6000, (t + 1) * 6000),
                      lambda t: TRADES.get(t, []), ME, b"n" * 32, None)  # fmt: skip


def record(t: int, verdict: Any, day: str | None = None) -> str:
    """Interval t's record line with its dispatch verdict, stamped with `day` where given (as the agent writes)."""
    doc = {"interval": t, "mg": "mg4", "dispatch_confirmed": 3, PLAN_CONFIRMED: verdict}
    return json.dumps(doc if day is None else stamped(doc, day))


def test_a_fresh_metering_states_what_the_recorded_verdict_confirms(tmp_path: Path) -> None:
    # the review's evidence (/work/notes/r10/meterless_restart.py): before the restart 400, after it None
    pending = PendingSettle(7, b"t" * 32, None, party="seller")
    before = meterless()
    before.confirmed[7] = True
    assert before.statement(pending) == 400
    records = tmp_path / "market.jsonl"
    records.write_text(
        "\n".join([record(6, False), record(7, True), '{"interval": 7, "settlement": {}}']) + "\n"
    )
    after = meterless()
    assert after.statement(pending) is None  # nothing read back: it states nothing
    after.confirmed.update(recorded_verdicts(records, range(5, 8)))
    assert after.confirmed == {6: False, 7: True}
    assert after.statement(pending) == 400
    assert recorded_verdicts(records, range(5, 7)) == {6: False}  # only the intervals asked for
    assert recorded_verdicts(tmp_path / "none.jsonl", range(5, 8)) == {}
    assert recorded_verdicts(None, range(5, 8)) == {}


@pytest.mark.parametrize(
    ("lines", "why"),
    [
        ([record(7, True)[:-9]], "is not JSON"),  # a line torn by a crash mid-write
        (["[7, true]"], "not a JSON object"),
        ([record(7, "yes")], "not true or false"),
        ([record(7, 1)], "not true or false"),
        ([record(7, True), record(7, False)], "contradicts"),
        ([json.dumps({"interval": "7", PLAN_CONFIRMED: True})], "not an interval number"),
    ],
)
def test_an_unreadable_verdict_is_an_error_and_nothing_is_stated(
    tmp_path: Path, lines: list[str], why: str, caplog: pytest.LogCaptureFixture
) -> None:
    records = tmp_path / "market.jsonl"
    records.write_text("\n".join(lines) + "\n")
    metering = meterless()
    with caplog.at_level(logging.INFO, logger="peergrid.edge.trader"):
        metering.confirmed.update(recorded_verdicts(records, range(0, 10)))
        assert metering.statement(PendingSettle(7, b"t" * 32, None, party="seller")) is None
    errors = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.ERROR and r.name == "peergrid.edge.trader"
    ]
    assert errors and why in errors[0]
    assert any("no dispatch verdict" in r.getMessage() for r in caplog.records)


JUNK = st.sampled_from(
    ["", "{", "null", "[]", '"x"', '{"interval": 3}', '{"interval": 3, "plan_confirmed": 0}']
)


@given(
    st.lists(
        st.one_of(
            st.tuples(
                st.integers(0, 5), st.one_of(st.booleans(), st.none(), st.integers(), st.text(max_size=3))
            ),
            JUNK,
        ),
        max_size=20,
    )
)
def test_a_verdict_is_read_back_only_where_every_record_of_its_interval_says_it(lines: list[Any]) -> None:
    text = [item if isinstance(item, str) else record(*item) for item in lines]
    verdicts, errors = verdicts_of(text, range(0, 6))
    said: dict[int, list[Any]] = {}
    for item in lines:
        if not isinstance(item, str):
            said.setdefault(item[0], []).append(item[1])
        elif item == '{"interval": 3, "plan_confirmed": 0}':
            said.setdefault(3, []).append(0)
    for t in range(6):
        values = said.get(t, [])
        whole = bool(values) and all(isinstance(v, bool) for v in values) and len(set(values)) == 1
        assert verdicts.get(t) == (values[0] if whole else None)
    unreadable = any(item in ("{", "null", "[]", '"x"') for item in lines)
    spoilt = any(t not in verdicts for t in said)
    assert bool(errors) == (unreadable or spoilt)


def restarted_meterless_seller(
    tmp_path: Path, recorded: Callable[[str], str]
) -> tuple[Any, dict[str, Any] | None]:
    """The agent itself (its run loop) as a seller MG without a PCC meter, restarted after interval 5, whose
    sale its last run dispatched (its record `recorded(day)`, the agent's day) but did not state; the buyer stays silent. The
    agent's records and the trade's settlement on chain after its day."""
    from peergrid_edge.config import MarketSettings
    from peergrid_edge.trader import MarketAgent
    from peergrid_ledger.keys import write_keyfile

    seller, buyer, authority = (Keypair.generate() for _ in range(3))
    write_keyfile(tmp_path / "anonym.key", seller)
    scenario = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"
    records = tmp_path / "market.jsonl"
    t0 = time.time() - 100
    records.write_text(recorded(record_day(t0, 5)) + "\n")  # its own day's (review18 K-1)

    async def restart(node: Node) -> tuple[MarketAgent, dict[str, Any] | None]:
        tid = await node.agree(5, seller, buyer)
        settings = MarketSettings(scenario=scenario, anonym_key_file=tmp_path / "anonym.key",
                                  t0=t0, interval_s=3.0, first_interval=5, intervals=1,
                                  phase_timeout_s=0.2, record_file=records)  # fmt: skip
        daemon = stand_in_daemon(node.ledger, commit_interval_s=6.0, store=NoReadings(), keypair=seller)
        agent = MarketAgent(daemon, settings)  # type: ignore[arg-type]
        await agent.run()
        return agent, query.settlement(node.ledger.state("mgmc"), tid)

    agent, standing = run_chain(tmp_path, both_chain(seller, buyer, authority), authority, restart)
    assert agent.settler.by_both and agent.phase == "finished" and not agent.settler.book.pending
    return [json.loads(line) for line in records.read_text().splitlines()[1:]], standing


def test_a_restarted_meterless_seller_states_the_sale_its_record_says_was_dispatched(tmp_path: Path) -> None:
    [ended], standing = restarted_meterless_seller(tmp_path, lambda day: record(5, True, day))
    assert ended["settlement"]["settled"] and ended["settlement"]["party"] == "seller"
    assert ended["settlement"]["delivered"] == KWH  # the agreed quantity: its plan was confirmed
    assert standing is not None and standing["state"] == "settled"


def test_a_restarted_meterless_seller_whose_record_is_torn_states_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="peergrid.edge.trader"):
        [ended], standing = restarted_meterless_seller(tmp_path, lambda day: record(5, True, day)[:-7])
    assert any("is not JSON" in r.getMessage() for r in caplog.records)
    assert not ended["settlement"]["settled"] and ended["settlement"]["delivered"] is None
    assert standing is not None and "seller" not in standing.get("statements", {})
