"""H8 (review31 R31-5): another relay's flapping never keeps a real change off the DSO chain.

H7's rule (20632ad) records a finding that says less than the chain's last record only when the next check
finds it too. With ties 36 and 37 recorded closed, 36 put right while 37's link drops every other interval
gives '37 closed' and '37 unreadable' in turn, each saying less, neither twice running: before, after a field
day the chain still said 36 closed. Now after `RECEDING_CHECKS` such checks in a row the record is brought
down, relay by relay, to what they read (`settled`): 36 agrees, 37 keeps 'closed' (read so at every other
check). Relays in memory (tests/dso/test_h5_relay_watch.py's field and chain).
"""

from __future__ import annotations

from peergrid_dso.services.switching_watch import RECEDING_CHECKS, WatchFinding, settled

from .test_h5_relay_watch import check, watched
from .test_switching import BASE

BOTH = "relay watch, not adopted: s36 closed (held open), s37 closed (held open)"


def test_a_tie_put_right_while_another_flaps_reaches_the_chain() -> None:
    relays, topology, chain, watch = watched()
    relays.relays.closed.update({36: True, 37: True})
    check(watch, topology)
    relays.relays.closed[36] = False  # put right: from now on 36 reads where the DSO holds it
    alarms = []
    for interval in range(96):  # a field day of 15-minute intervals; 37's link drops every other one
        (relays.silent.add if interval % 2 else relays.silent.discard)(37)
        check(watch, topology)
        alarms.append(watch.alarm is not None and "branch 36" not in watch.alarm)
        if interval == RECEDING_CHECKS - 2:  # three checks saying less: nothing recorded yet
            assert chain.actions == [BOTH]
    assert chain.actions == [BOTH, "relay watch, not adopted: s37 closed (held open)"]  # before: [BOTH]
    assert all(alarms) and relays.commands == 0  # the alarm follows every read throughout
    relays.silent.discard(37)
    relays.relays.closed[37] = False  # and 37 put right too: recorded when it lasts two checks
    check(watch, topology)
    check(watch, topology)
    assert chain.actions[2:] == [
        "relay watch: every relay reads as the DSO holds it (open [33, 34, 35, 36, 37])"
    ]


def test_two_relays_flapping_out_of_step_are_recorded_once_and_a_repair_among_them_when_it_lasts() -> None:
    relays, topology, chain, watch = watched()
    relays.relays.closed.update({36: True, 37: True})
    check(watch, topology)
    for interval in range(12):  # 36 and 37 silent in turn: each reads closed, as recorded, every other check
        relays.silent.clear()
        relays.silent.add(36 if interval % 2 else 37)
        check(watch, topology)
        assert watch.alarm is not None and f"branch {36 if interval % 2 else 37} unreachable" in watch.alarm
    assert chain.actions == [BOTH]  # nothing the chain says went unread for four checks: no record
    relays.relays.closed[36] = False  # 36 put right while both links still drop in turn
    for interval in range(RECEDING_CHECKS):
        relays.silent.clear()
        relays.silent.add(36 if interval % 2 else 37)
        check(watch, topology)
    # 36 agreed or was unreadable (its last known position: as held), 37 was read closed: settled. The next
    # check that finds 36 silent says more than that record (a relay it does not name): recorded at once,
    # as H7 records any such finding; then every finding is the record or says less, and nothing more comes
    assert chain.actions[1:] == [
        "relay watch, not adopted: s37 closed (held open)",
        "relay watch, not adopted: s37 closed (held open), s36 unreadable",
    ]
    for interval in range(12):
        relays.silent.clear()
        relays.silent.add(36 if interval % 2 else 37)
        check(watch, topology)
    assert len(chain.actions) == 3


def test_settled_keeps_what_a_check_confirmed_and_names_nothing_none_read() -> None:
    record = WatchFinding(BASE, ((36, "closed"), (37, "closed"))).key
    closed37 = WatchFinding(BASE, ((37, "closed"),))
    silent37 = WatchFinding(BASE, (), ((37, "no response"),))
    assert settled(record, [closed37, silent37, closed37, silent37]) == closed37  # 36 agrees; 37 confirmed
    silent_both = WatchFinding(BASE, (), ((36, "no response"), (37, "no response")))
    assert settled(record, [silent37, silent_both]).key == ((), (37,))  # 36: agrees, then not known
    assert settled(record, [silent_both, silent_both]).key == ((), (36, 37))
    assert settled(record, [silent37, silent37]).unreadable == ((37, "no response"),)
    operating = WatchFinding(BASE, ((37, "operating"),))
    assert settled(((), ()), [closed37, operating]).unreadable == ((37, "reported operating"),)
    assert settled(record, [closed37, WatchFinding(BASE)]) == closed37  # 37 read closed once: kept
    assert settled(record, [WatchFinding(BASE), silent37]).key == ((), ())  # 37 never read closed
    assert settled(record, [WatchFinding(BASE), WatchFinding(BASE)]).key == ((), ())
    assert settled(record, [closed37]).held_open == BASE
