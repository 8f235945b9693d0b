"""From P4's notes, on an MGMC trading day after day (`market.days`): between days the Settler gives up what is
still refused of the days before once their last statements had their time, as at the run's end (before, a
retry refused days ago backed off in its book for as long as the agent ran), and the owner-rules poster looks
again at every interval start of the agent's later days, not of its first day only. The runs are P4's
(`test_p4_days`): a real MarketAgent of mg1 on a real single-authority MGMC chain, each interval stubbed;
orders are asserted, never times.
"""

from __future__ import annotations

import asyncio
import json
import time
from itertools import islice
from pathlib import Path

from edge_helpers import stand_in_daemon
from test_p4_days import FIRST, INTERVAL_S, N, scenario_file, settings
from test_p5_day_cost import agent_of
from test_settlement import Node, chain_of

from peergrid_controller.scenario import load_scenario
from peergrid_edge.agent_day import Calendar
from peergrid_edge.chain_bargaining import position
from peergrid_edge.rules_poster import RulesPoster
from peergrid_edge.trader import MarketAgent
from peergrid_ledger.keys import Keypair, write_keyfile


def test_between_days_the_settler_gives_up_what_the_days_before_left_refused(tmp_path: Path) -> None:
    """mg1 buys in intervals 22 (day 0) and 24 (day 1) with nothing to pay with (no credit): each settle is refused
    for funds and retried. Trading on from 22 to 26, the agent gives up 22's purchase once day 0 ended for its
    Settler (an interval into day 1, recorded 'the trading day ended'), and keeps 24's, which day 1 still owns.
    Before, nothing was given up until the run's end: 22's retries backed off in the book for every later day."""
    seller, me, third, authority = (Keypair.generate() for _ in range(4))
    write_keyfile(tmp_path / "anonym.key", me)
    book: dict[int, list[int]] = {}
    records = tmp_path / "market.jsonl"

    async def main() -> None:
        node = Node(tmp_path, chain_of(seller, me, third, authority), authority)
        node.ledger.start()
        try:
            market = settings(tmp_path, time.time() + 0.5, first_interval=FIRST, intervals=5, interval_s=1.5)
            agent = agent_of(node, market, me)

            async def interval(t: int) -> None:
                book[t] = sorted(p.interval for p in agent.settler.book.pending.values())
                if t in (22, 24):
                    await node.agree(t, seller, me)
                    mine, _, _ = position(agent.ledger.state("mgmc"), t, me.public)
                    assert await agent.settler.settle(t, mine, me.public) == 0  # refused: no funds

            async def cleared(t: int) -> None:
                return None

            agent.run_interval = interval  # type: ignore[method-assign]
            agent._previous_cleared = cleared  # type: ignore[method-assign]
            await asyncio.wait_for(agent.run(), 90)
        finally:
            node.ledger.close()

    asyncio.run(main())
    assert book[23] == [22] and book[24] == [22]  # day 0's purchase retried into day 1's first interval
    assert book[26] == [24]  # given up once day 0 ended for the Settler; day 1's own kept
    ended = [json.loads(line) for line in records.read_text().splitlines()]
    (day0,) = [doc["settlement"] for doc in ended if doc.get("interval") == 22]
    assert not day0["settled"] and day0["reason"].startswith("the trading day ended")
    assert day0["attempts"] >= 2  # retried first, as within a day


def test_the_rules_poster_looks_again_at_every_interval_start_of_the_agents_later_days(
    tmp_path: Path,
) -> None:
    """`RulesPoster.for_agent` on an agent that trades from interval 22 for two days (`market.days`): its passes
    are at 22's and 23's starts (the configured day's, as before) and then at every start of day 1, 24 to 47,
    and none after; day after day they go on. Before, the passes ended with the configured day's last interval,
    so a refusal the chain may take back was never sent again on a later day."""
    write_keyfile(tmp_path / "anonym.key", Keypair.generate())
    t0 = 1_800_000_000.0

    def poster_of(days: int | None) -> tuple[RulesPoster, list[float]]:
        """The agent's poster on a clock of its own (its sleep moves it on), each pass's post noted."""
        market = settings(tmp_path, t0, intervals=None, days=days)
        agent = MarketAgent(stand_in_daemon(object(), "mg1"), market)  # type: ignore[arg-type]
        clock = [t0 - 1.0]  # before the first interval

        async def sleep(seconds: float) -> None:
            clock[0] += seconds

        poster = RulesPoster.for_agent(agent, None, sleep)
        poster.now, poster.started = (lambda: clock[0]), True  # its first pass (the chain's) not run here
        return poster, clock

    def number(at: float) -> int:
        return round((at - t0) / INTERVAL_S) + FIRST

    def posted(days: int) -> list[int]:
        poster, clock = poster_of(days)
        seen: list[int] = []

        async def post(first: bool = False) -> None:
            seen.append(number(clock[0]))

        poster.post = post  # type: ignore[method-assign]
        asyncio.run(poster.run())
        return seen

    assert posted(2) == list(range(FIRST, 2 * N))  # two days: 22-23 of day 0, then day 1's every start
    assert posted(1) == [22, 23]  # one day, as before
    poster, _ = poster_of(None)  # day after day
    assert [number(at) for at in islice(poster.passes(), 100)] == list(range(FIRST, FIRST + 100))
    calendar = Calendar(settings(tmp_path, t0, intervals=None), load_scenario(scenario_file(tmp_path)))
    assert calendar.next_start(t0 - 5.0) == t0 and calendar.next_start(t0) == t0 + INTERVAL_S
    assert calendar.next_start(t0 + (N - FIRST) * INTERVAL_S - 0.01) == t0 + (N - FIRST) * INTERVAL_S
