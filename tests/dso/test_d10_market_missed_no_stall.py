"""D10: the node's word of a missed interval (`LiveMarket.note_missed`, on the node's loop) never waits for a Market
view report, which holds the view's lock while it waits on the node's loop (`call`).

Found beside D10's read-back: D9's `note_missed` took the lock `report` holds across `call`, so a report under
way when the node recorded a missed interval (the console's SSE tells every open page to reload the view at each
interval) stalled the node's loop until the report's call timed out (10 s in the server), and that report failed.
Here the report's `call` hands its function to a stand-in for the node's loop that is busy telling the view of a
miss first; D9's market contract on a LocalChain stands in for the MGMC-chain replica.
"""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any

from dso.test_d9_market_missed import Market
from peergrid_dso.interval_missed import DOWN

TIMEOUT_S = 5.0  # the server's is 10 s: only the stall's bound, never reached when nothing stalls


def test_a_missed_interval_noted_while_a_report_waits_on_the_node_neither_stalls_nor_fails() -> None:
    market = Market()
    market.bargain(12)
    view = market.view
    node = concurrent.futures.ThreadPoolExecutor(1)  # the node's loop: one thing at a time

    def call(fn: Any) -> Any:
        """`EmbeddedLoop.call`, with the node's loop busy noting interval 13 missed when the report asks."""
        node.submit(view.note_missed, 13, DOWN)
        return node.submit(fn).result(TIMEOUT_S)

    view.call = call
    try:
        report = view.report()  # before: TimeoutError, the node's loop held up in note_missed meanwhile
    finally:
        node.shutdown(wait=False, cancel_futures=True)
    assert report["status"] == "ready"
    view.call = lambda fn: fn()
    shown = {iv["interval"]: iv["missed"] for iv in view.report()["intervals"]}
    assert shown == {12: None, 13: DOWN}  # the note made during the report is in the next one (same head)


def test_a_note_from_another_thread_is_in_the_next_report_of_the_same_head() -> None:
    market = Market()
    market.bargain(12)
    view = market.view
    assert [iv["interval"] for iv in view.report()["intervals"]] == [12]
    noted = threading.Thread(target=view.note_missed, args=(14, DOWN))
    noted.start()
    noted.join(TIMEOUT_S)
    assert {iv["interval"]: iv["missed"] for iv in view.report()["intervals"]} == {12: None, 14: DOWN}
