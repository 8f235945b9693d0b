"""H9 (session 19): a check whose two reads disagree is judged by the later read.

A reading that differs from the DSO chain's record is read once more before it is recorded (H5). Before, when
the read again found something else again (a relay moved, or a link dropped, between the two reads), `check`
returned without taking either: the alarm, `/api/health` and the console kept the previous check's finding
for an interval (15 minutes in the field), so a tie closed by hand went unalarmed, or a tie put right stayed
alarmed, and a reading that says less than the record waited one check more to be recorded. Now the later
read is the check's finding: the alarm follows it at once, it counts towards H7's two checks running and
H8's receding checks, and a reading that says more than the record is recorded once it has been read twice
running (within one check, or at this check and the one before), not from one read - since D1 (session 20)
relay by relay: a relay's report read twice is recorded whatever another relay did between the reads
(test_d1_relay_watch_per_relay). Relays in memory moved by hand between a check's two reads
(tests/dso/test_h5_relay_watch.py's field and chain).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace

from peergrid_dso.drivers.relay_memory import InMemoryRelays
from peergrid_dso.services.switching_watch import RelayWatch

from .test_h5_relay_watch import Chain, Field, check
from .test_switching import BASE

CLOSED_37 = "relay watch, not adopted: s37 closed (held open)"
AGREE = "relay watch: every relay reads as the DSO holds it (open [33, 34, 35, 36, 37])"


@dataclass
class Moving(Field):
    """The field, with a hand that moves it as each read starts: `hands[0]` runs before the next read (a read
    names the relays once: `branches`), then is gone. A hand left over after a check: no second read came."""

    hands: list[Callable[[], None]] = field(default_factory=list)

    def branches(self) -> tuple[int, ...]:
        if self.hands:
            self.hands.pop(0)()
        return super().branches()

    def put(self, closed: tuple[int, ...] = (), silent: tuple[int, ...] = ()) -> Callable[[], None]:
        """A hand that leaves ties 36 and 37 closed where `closed` says and the relays `silent` silent."""

        def move() -> None:
            self.relays.closed.update({b: b in closed for b in (36, 37)})
            self.silent.clear()
            self.silent.update(silent)

        return move


def watched() -> tuple[Moving, SimpleNamespace, Chain, RelayWatch]:
    relays = Moving(InMemoryRelays({b: b not in BASE for b in range(1, 38)}))
    topology, chain = SimpleNamespace(open_set=BASE), Chain()
    return relays, topology, chain, RelayWatch(relays, threading.RLock(), chain.submit)


def test_a_tie_closed_by_hand_is_alarmed_though_another_relay_answered_one_read_of_two() -> None:
    relays, topology, chain, watch = watched()
    check(watch, topology)
    relays.hands = [relays.put((37,), (5,)), relays.put((37,))]  # relay 5's link drops for the first read
    found = check(watch, topology)
    assert relays.hands == [] and found is not None  # read twice
    assert watch.alarm is not None and "branch 37 reports closed" in watch.alarm  # before: None
    assert "branch 5" not in watch.alarm  # the later read's
    assert chain.actions == [CLOSED_37]  # 37 closed in both reads; relay 5 silent in one: not recorded (D1)
    check(watch, topology)
    assert chain.actions == [CLOSED_37]


def test_a_tie_put_right_is_no_longer_alarmed_and_is_recorded_at_the_next_check() -> None:
    relays, topology, chain, watch = watched()
    relays.put((37,))()
    check(watch, topology)
    assert chain.actions == [CLOSED_37]
    relays.hands = [relays.put((), (5,)), relays.put()]  # put right; relay 5 silent for the first read only
    check(watch, topology)
    assert watch.alarm is None  # before: 'branch 37 reports closed' for another interval
    assert chain.actions == [CLOSED_37]  # says less than the record: waits for the next check (H7)
    check(watch, topology)
    assert chain.actions == [CLOSED_37, AGREE]  # before: only at the check after


def test_a_reading_that_says_more_read_once_at_two_checks_running_is_recorded() -> None:
    relays, topology, chain, watch = watched()
    check(watch, topology)
    for _ in range(2):  # relay 5's link drops for each first read; 37 stays closed by hand
        relays.hands = [relays.put((37,), (5,)), relays.put((37,))]
        check(watch, topology)
    assert chain.actions == [CLOSED_37]  # before: nothing while the pattern lasted
    assert watch.alarm is not None and "branch 5" not in watch.alarm


def test_a_report_is_not_recorded_from_one_read() -> None:
    # (before D1 whole readings were compared: 37, closed in both reads of the first check, waited too)
    relays, topology, chain, watch = watched()
    check(watch, topology)
    relays.hands = [relays.put((37,)), relays.put((36, 37))]  # 36 closed by hand between the reads
    check(watch, topology)
    assert chain.actions == [CLOSED_37]  # 37 read closed twice running; 36 once: not recorded
    assert watch.alarm is not None and "branch 36 reports closed" in watch.alarm  # the later read's
    relays.hands = [relays.put((37,), (5,)), relays.put((37,), (6,))]  # 36 opened again; 5 and 6 silent once
    check(watch, topology)
    assert chain.actions == [CLOSED_37]  # none of 36, 5 and 6 read twice running
    relays.hands = [relays.put((36, 37)), relays.put((37,), (6,))]
    check(watch, topology)  # 6 silent at the last check's later read and at this one's: twice running
    assert chain.actions[1:] == ["relay watch, not adopted: s37 closed (held open), s6 unreadable"]


def test_a_reading_of_the_last_checks_first_read_and_this_checks_later_is_recorded() -> None:
    # R33: 37 closed in every read, relay 5 silent in the later read of one check and the first of the next:
    # each check's finding differs from its first read and from the last check's finding, never recorded
    relays, topology, chain, watch = watched()
    check(watch, topology)
    relays.hands = [relays.put((37,)), relays.put((37,), (5,))]
    check(watch, topology)
    assert chain.actions == [CLOSED_37]  # 37 read closed twice (R33: at the next check; before: never)
    relays.hands = [relays.put((37,), (5,)), relays.put((37,))]
    check(watch, topology)
    assert chain.actions == [CLOSED_37]
