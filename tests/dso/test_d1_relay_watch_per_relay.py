"""D1 (session 20, review33 R33-1's residual): the relay watch judges each relay apart.

A reading that says more than the DSO chain's record was recorded once the whole reading was read twice
running (H9, R33-1). Two relays whose links drop in different reads make readings that never repeat, and
then a real, stable change of a third relay never reached the chain: a tie closed in every read, or a tie
put right (its repair said less than the record, but each finding also named a relay newly silent, so it never
counted as saying less either). Now each relay's report is taken once that relay read the same twice running
(this check's other read or a read of the last check), whatever the others did; a relay that says less than
the record is taken from the later read and judged, with the finding it makes, by H7's two checks and H8's
settling. Relays in memory moved between a check's two reads (test_h9's field).
"""

from __future__ import annotations

from peergrid_dso.services.switching_watch import WatchFinding, read_twice

from .test_h5_relay_watch import check
from .test_h9_relay_watch_unsettled import AGREE, watched
from .test_switching import BASE

CLOSED_37 = "relay watch, not adopted: s37 closed (held open)"
BOTH = "relay watch, not adopted: s36 closed (held open), s37 closed (held open)"


def test_a_tie_closed_in_every_read_is_recorded_though_two_other_relays_drop_in_turn() -> None:
    # R33's residual: the first read always 37 closed + relay 5 silent, the later ones 37 closed + relay 6
    # silent and 37 closed in turn: three readings, none read twice within the window, nothing recorded
    relays, topology, chain, watch = watched()
    check(watch, topology)
    for interval in range(8):
        later = relays.put((37,), (6,)) if interval % 2 == 0 else relays.put((37,))
        relays.hands = [relays.put((37,), (5,)), later]
        check(watch, topology)
        assert watch.alarm is not None and "branch 37 reports closed" in watch.alarm
    assert chain.actions == [CLOSED_37]  # before: [] after 8 checks
    assert relays.commands == 0


def test_a_tie_put_right_while_two_other_relays_drop_in_turn_reaches_the_chain() -> None:
    relays, topology, chain, watch = watched()
    relays.put((36, 37))()
    check(watch, topology)
    assert chain.actions == [BOTH]
    for interval in range(8):  # 36 put right; relays 5 and 6 silent in turn, each for one later read
        relays.hands = [relays.put((37,)), relays.put((37,), (5,) if interval % 2 == 0 else (6,))]
        check(watch, topology)
    # each finding named a relay newly silent (saying more) but read once: it counted for nothing, and the
    # chain said 36 closed for good (before: [BOTH]); now 36's agreement, with 37 closed, lasts two checks
    assert chain.actions == [BOTH, CLOSED_37]


def test_read_twice_takes_each_relay_read_the_same_twice_and_keeps_the_record_for_the_rest() -> None:
    recorded = WatchFinding(BASE, ((36, "closed"),)).key
    first = WatchFinding(BASE, ((36, "closed"), (37, "closed")), ((5, "no response"),))
    later = WatchFinding(BASE, ((37, "closed"),), ((6, "no response"),))
    # 37 closed twice: taken; 6 silent once: the record's word (agrees); 36 agrees now, saying less: taken
    assert read_twice(later, [first], recorded, BASE) == WatchFinding(BASE, ((37, "closed"),))
    # 36 reported otherwise (operating) once: it says more than 'closed', so the record's word stands
    moving = WatchFinding(BASE, ((36, "operating"), (37, "closed")))
    assert read_twice(moving, [first], recorded, BASE).key == (((36, "closed"), (37, "closed")), ())
    # a relay recorded unreadable that still is keeps the record's word and a reason for it
    silent = WatchFinding(BASE, (), ((5, "timeout"),))
    assert read_twice(silent, [], ((), (5,)), BASE) == silent
    # against another open set (a plan's or an adoption's) the record is that every relay agrees (Q2: before,
    # every relay had to be read twice), once a read before this one was judged against it, else None
    other = (7, 33, 34, 35, 36)
    assert read_twice(WatchFinding(other, ((37, "closed"),)), [first], recorded, BASE) is None
    again = WatchFinding(other, ((37, "closed"),))
    assert read_twice(again, [WatchFinding(other, ((37, "closed"),))], recorded, BASE) == again
    # 36 closed once, in the earlier read: it agrees, as the plan's record says (before: None)
    assert read_twice(again, [WatchFinding(other, ((37, "closed"), (36, "closed")))], recorded, BASE) == again
    # 5 silent once, 37 closed twice: 37 is taken, 5 agrees (before: None)
    once = WatchFinding(other, ((37, "closed"),), ((5, "timeout"),))
    assert read_twice(once, [again], recorded, BASE) == again


OTHER = (7, 33, 34, 35, 36)  # a radial open set a plan may reach from BASE (tie 37 closed, 7 open)


def test_after_a_plan_a_tie_closed_in_every_read_is_recorded_though_reads_miss_a_relay() -> None:
    # R34: the watch's record was judged against BASE; a plan moved the open set to OTHER and every relay
    # agrees with it (nothing to record). Then tie 36 is closed by hand and one other relay misses the later read
    # of each check, a new one each time: 36 is read closed twice in every check, so it is recorded (before the
    # fix: the record's open set was BASE's, so every relay had to be read twice and nothing was ever recorded)
    relays, topology, chain, watch = watched()
    relays.put((37,))()
    check(watch, topology)
    relays.put()()
    check(watch, topology)
    check(watch, topology)
    assert chain.actions == [CLOSED_37, AGREE]
    topology.open_set = OTHER
    relays.relays.closed.update({7: False, 37: True})
    check(watch, topology)
    assert watch.alarm is None and chain.actions == [CLOSED_37, AGREE]
    for interval in range(4):
        relays.hands = [relays.put((36, 37)), relays.put((36, 37), (5 + interval,))]
        check(watch, topology)
        assert watch.alarm is not None and "branch 36 reports closed" in watch.alarm
    assert chain.actions == [CLOSED_37, AGREE, "relay watch, not adopted: s36 closed (held open)"]
