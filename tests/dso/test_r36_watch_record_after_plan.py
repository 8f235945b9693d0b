"""R36 (on 81c23dc): a check that recorded after a plan told between its reads records the same again at the next
check: follow_plans forgets the watch's own record, though it landed after the plan's."""

from __future__ import annotations

from .test_h5_relay_watch import check
from .test_h9_relay_watch_unsettled import watched


def test_a_record_made_after_a_plan_between_a_checks_reads_is_not_made_again() -> None:
    relays, topology, chain, watch = watched()
    check(watch, topology)

    def plan_in_between() -> None:  # 36 put right, a plan read every relay and ran, 36 closed again
        relays.put((36,))()
        watch.plan_recorded()

    relays.hands = [relays.put((36,)), plan_in_between]
    check(watch, topology)
    check(watch, topology)  # 36 still closed in both reads: nothing new
    check(watch, topology)
    assert chain.actions.count("relay watch, not adopted: s36 closed (held open)") == 1, chain.actions
