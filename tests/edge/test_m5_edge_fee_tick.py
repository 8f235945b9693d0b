"""An MGMC joins a day-ahead session only at a fee of whole ticks (issue #7, sub-tick fees): the chain takes no
other since the rule (tests/ledger/test_m5_fee_whole_ticks.py), but a store from before it may hold a session
opened with one, and there the MG's answers would price a fee the tick cannot carry. Refused with the fee named."""

from __future__ import annotations

import pytest
from test_edge_dayahead_rules import KWH, rules_day

from peergrid_edge.dayahead_rules import SessionRules
from peergrid_edge.exchange_io import SessionFailed
from peergrid_ledger.state import StateTree

TICK = 10**6  # nano-currency per kWh: 1 micro-unit per Wh


@pytest.mark.parametrize("fee", [1, 750_000, TICK + 1, 10**7 + TICK])
def test_a_session_fee_off_the_tick_is_not_joined(fee: int) -> None:
    scenario = rules_day()
    mg = scenario.microgrids[0]
    rules = SessionRules(mg, scenario.interval_hours, KWH)
    with pytest.raises(
        SessionFailed,
        match=rf"refused: the session's exchange fee must be a whole number of ticks .* got {fee} \(a fee the chain"
        r" took before fees were whole ticks: the sessions opened after the DSO posts a whole-tick market\.fee run -"
        r" its operator sets loop\.exchange_fee in the DSO server's config and restarts the server, which posts it;"
        r" only a replica catching up from genesis needs the chain recreated\)$",
    ):
        rules.join(None, [b"a" * 32, b"b" * 32], b"a" * 32, 0, fee)
    assert rules.fee == 0  # nothing taken from it


def test_a_whole_tick_fee_is_taken_as_the_record_holds_it() -> None:
    scenario = rules_day()
    rules = SessionRules(scenario.microgrids[0], scenario.interval_hours, KWH)
    members = [b"a" * 32, b"b" * 32]
    rules.join(StateTree("m5"), members, members[0], 0, 2 * TICK)  # no rules on this replica: none bind
    assert rules.fee == rules.own.exchange_fee == 2 * TICK and not rules.ruled
    sell, buy = rules.fees()
    assert sell is not None and buy is not None and min(sell) >= 2 * TICK / 10**9
