"""R35 (on 81c23dc): a plan recorded between a check's two reads - the read before it is taken as read twice
with the one after it."""

from __future__ import annotations

from .test_h5_relay_watch import check
from .test_h9_relay_watch_unsettled import watched


def test_a_read_before_a_plan_between_a_checks_reads_is_not_read_twice_with_one_after() -> None:
    relays, topology, chain, watch = watched()
    check(watch, topology)
    assert chain.actions == []

    def plan_in_between() -> None:  # 36 was put right, a plan read every relay and ran, 36 closed again
        relays.put((36,))()
        watch.plan_recorded()

    relays.hands = [relays.put((36,)), plan_in_between]
    check(watch, topology)
    # 36 read closed once before the plan and once after it: by W1's promise not yet read twice
    assert chain.actions == [], chain.actions
    check(watch, topology)  # 36 closed in both reads after the plan: recorded
    assert chain.actions == ["relay watch, not adopted: s36 closed (held open)"]
