"""The MG owner's contract rules on the MGMC chain: this MGMC posts them (`market.rules`) so the chain holds its
own trades to them (issue #7 item 3: "rules the owner presets in config and the chain enforces").

Promises: `contract_rules` is the owner's rules from edge.yaml (`market.rules`, currency per kWh and kWh) as the
controller models them, and `with_owner_rules` puts them in the scenario in place of this MG's entry, so the
agent trades by the rules it posts. `due(state, key, rules)` is the `market.rules` body to send when `rules` (the
chain's form, `dayrules.chain_rules`) do not stand on the replica for `key` from the first interval it may still
change (after the last one it took part in, `mkt/last`; 0 when it took part in none) on, None when they do.
`RulesPoster` posts that body under the key the MG trades with (its anonym: every offer, bid and move is signed
by it), once its replica caught up at the start (`start`; the trading agent's day waits for it where it runs the
day-ahead stage, which must find the chain's rules its own, else only until the post is in the pool,
`first_look`) and again at each interval's start while it is due (`run`: `starts`, then each interval `next_start`
names; the agent's poster follows its run's days so, `market.days`, to the run's last interval):
  posted: one INFO line saying what stands from which interval; nothing due at the start: one INFO line;
  refused: one WARNING line with the chain's reason. A refusal is sent again only where its reason may clear:
    a later pass that finds a different body due (a position of the MG overtook it: the contract's
    "rules can change only after interval N", so the next body starts after it), or a reason the chain may
    take back (not authorised, not known, a nonce: `replicas.FINAL_REFUSALS` are the others), at the next
    interval's start, never within one; the same refusal again is told at DEBUG, not as another WARNING;
  not final in time: looked at again at the next interval (one that landed meanwhile is told then).
Reads only the replica's committed state; signs through `own_nonce.submit_own` (the agent signs with the same
key at the same time); its clock and sleep are injected.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from peergrid_controller.dayrules import chain_rules
from peergrid_controller.model import ContractRules, Scenario
from peergrid_edge import own_nonce
from peergrid_edge.agent_day import Calendar
from peergrid_edge.replicas import FINAL_REFUSALS, Submission
from peergrid_ledger import keys
from peergrid_ledger.contracts.market import RULES_OVERTAKEN
from peergrid_ledger.contracts.market_state import last_interval_key, rules_for, rules_key
from peergrid_ledger.schema import PRICE, QUANTITY
from peergrid_ledger.state import read_obj

if TYPE_CHECKING:
    from peergrid_edge.config import OwnerRules

log = logging.getLogger("peergrid.edge.rules")
KIND = "market.rules"
FRESH_MS = 3000  # a replica whose head is younger than this caught up (`agent_day.caught_up`'s bound)
CATCH_UP_S = (
    60.0  # how long the start waits for that at most (as the agent's own wait) before it looks anyway
)


def contract_rules(rules: OwnerRules) -> ContractRules:
    """The owner's rules from edge.yaml as the controller models them (no cap, no maximum: infinite)."""
    return ContractRules(
        floor_price=rules.floor_price,
        cap_price=math.inf if rules.cap_price is None else rules.cap_price,
        max_quantity_kwh=math.inf if rules.max_quantity_kwh is None else rules.max_quantity_kwh,
        clean_only=rules.clean_only,
        clean_premium=rules.clean_premium,
    )


def with_owner_rules(scenario: Scenario, mg: str, rules: ContractRules) -> Scenario:
    """`scenario` with MG `mg`'s rules replaced by `rules` (the feeder's premium and every MG's own read them)."""
    microgrids = tuple(
        dataclasses.replace(m, rules=rules) if m.name == mg else m for m in scenario.microgrids
    )
    return dataclasses.replace(scenario, microgrids=microgrids)


def first_changeable(state: Any, key: bytes) -> int:
    """The first interval the contract lets `key` change its rules from: after the last it took part in."""
    last = read_obj(state, last_interval_key(key))
    return 0 if last is None else int(last) + 1


def due(state: Any, key: bytes, rules: Mapping[str, Any]) -> dict[str, Any] | None:
    """The `market.rules` body that puts `rules` in force for `key` from the first interval it may change, or
    None where they stand from there on already (in it, and in every later entry the chain holds)."""
    start = first_changeable(state, key)
    later = [entry for effective, entry in read_obj(state, rules_key(key)) or [] if effective > start]
    if all(dict(r) == dict(rules) for r in [rules_for(state, key, start), *later]):
        return None
    return {"rules": dict(rules), "from_interval": start}


def words(rules: Mapping[str, Any]) -> str:
    """The chain's rules in the owner's words (currency per kWh, kWh per interval)."""

    def price(micro_per_wh: int) -> str:
        return f"{micro_per_wh / 1000:.3f}/kWh"

    parts = [
        f"floor {price(rules['floor_price'])}" if rules["floor_price"] else "no floor",
        f"cap {price(rules['cap_price'])}" if rules["cap_price"] < PRICE.high else "no cap",
        f"at most {rules['max_quantity'] / 1000:g} kWh per interval"
        if rules["max_quantity"] < QUANTITY.high
        else "no maximum quantity",
        "clean energy only" if rules["clean_only"] else "any energy",
        f"clean premium {price(rules['clean_premium'])}" if rules["clean_premium"] else "no clean premium",
    ]
    return ", ".join(parts)


def _frozen(body: Mapping[str, Any]) -> tuple[int, tuple[tuple[str, Any], ...]]:
    return body["from_interval"], tuple(sorted(body["rules"].items()))


@dataclass
class RulesPoster:
    """Posts this MG's owner rules as `market.rules` under its trading key (module)."""

    ledger: Any  # replicas.EdgeLedger: the MGMC replica ("mgmc") it reads and submits to
    key: keys.Keypair  # the key the MG trades with (its anonym)
    rules: dict[str, Any]  # the owner's rules in the chain's form (`dayrules.chain_rules`)
    starts: list[float]  # wall times (s) of the intervals' starts at which it looks again
    timeout_s: float = 5.0  # how long one post waits for a final block
    wait_s: float = 3.0  # how long it waits first for a transaction of the key pending on its nonce
    now: Callable[[], float] = time.time
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    stopped: Callable[[], None] = lambda: None  # raises once the daemon stops (the agent's `_stopped`)
    # after `starts`, the next interval's start after a wall time (None: no more): the agent's later days
    next_start: Callable[[float], float | None] | None = None
    started: bool = False
    refused: set[tuple[int, tuple[tuple[str, Any], ...]]] = field(default_factory=set)  # not sent again
    told: str = ""  # the last refusal told at WARNING
    pending: dict[str, Any] | None = None  # sent, not final in its wait: it may land later
    _starting: asyncio.Lock = field(default_factory=asyncio.Lock)
    looked: asyncio.Event = field(default_factory=asyncio.Event)  # the first pass sent its body or found none

    @classmethod
    def for_agent(
        cls, agent: Any, owner: OwnerRules | None, sleep: Callable[[float], Awaitable[None]]
    ) -> RulesPoster:
        """The poster for a `MarketAgent`: the owner's rules of edge.yaml put in its scenario first, where
        given (`with_owner_rules`); then what it posts is what it trades by (`agent.mg.rules`). Its passes are
        at the starts of the configured day's intervals, then of every later day's the agent trades
        (`agent_day.Calendar.next_start`: before, a refusal the chain may take back was sent again on the first
        day only)."""
        if owner is not None:
            agent.scenario = with_owner_rules(agent.scenario, agent.mg.name, contract_rules(owner))
            agent.mg = next(m for m in agent.scenario.microgrids if m.name == agent.mg.name)
        s = agent.s
        starts = [agent._start_of(t) for t in range(s.first_interval, agent._last_interval() + 1)]
        return cls(
            agent.ledger, agent.anonym, chain_rules(agent.mg.rules), starts,
            timeout_s=s.phase_timeout_s + 2.0, wait_s=s.phase_timeout_s, sleep=sleep, stopped=agent._stopped,
            next_start=Calendar(s, agent.scenario).next_start,
        )  # fmt: skip

    def due(self) -> dict[str, Any] | None:
        return due(self.ledger.state("mgmc"), self.key.public, self.rules)

    async def start(self) -> None:
        """The first pass, once the replica caught up (at most `CATCH_UP_S`); only once, however many await it."""
        async with self._starting:
            if self.started:
                return
            replica = self.ledger.replicas["mgmc"]

            def fresh(_state: Any) -> bool:
                return bool(self.now() * 1000 - replica.app.head().timestamp_ms < FRESH_MS)

            try:
                await self.ledger.wait_for("mgmc", fresh, CATCH_UP_S)
                await self.post(first=True)
            finally:
                self.looked.set()
            self.started = True

    async def first_look(self) -> None:
        """Until the first pass sent its body to the replica's pool, or found none to send (`start` runs in
        `run`'s task): the MG's own next transaction then signs the nonce after it (`own_nonce`), so the rules
        are in force, should they land, before any offer of its first interval (the contract takes its
        sender's transactions in nonce order), without the MG waiting for a block (one that waited for its
        rules' final block, started a few seconds before its first interval, came too late to join it)."""
        await self.looked.wait()

    async def run(self) -> None:
        """`start`, then a pass at each interval's start still to come; returns after the last."""
        await self.start()
        for at in self.passes():
            left = at - self.now()
            if left <= 0:
                continue
            await self.sleep(left)
            self.stopped()
            await self.post()

    def passes(self) -> Iterator[float]:
        """The interval starts a pass is due at: `starts`, then each `next_start` after the one before (read as
        it comes, so a run day after day is followed without a list of its days)."""
        yield from self.starts
        if self.next_start is None:
            return
        at = max([*self.starts, self.now()])
        while (after := self.next_start(at)) is not None:
            yield after
            at = max(after, self.now())

    async def post(self, first: bool = False) -> Submission | None:
        """One pass: send the body if one is due and may pass; what the chain made of it (None: nothing sent)."""
        body = self.due()
        if body is None:
            if self.pending is not None:
                log.info("owner rules posted on the MGMC chain (final after the wait) under %s…: %s, from "
                         "interval %d", self.key.public.hex()[:16], words(self.rules),
                         self.pending["from_interval"])  # fmt: skip
            elif first:
                log.info("the MGMC chain holds this MG's owner rules already (%s): nothing posted",
                         words(self.rules))  # fmt: skip
            self.pending = None
            return None
        if _frozen(body) in self.refused:
            return None  # the chain refused this very body for good: told once, not sent again
        if not await own_nonce.nonce_free(self.ledger, "mgmc", self.key, self.wait_s):
            return None  # a transaction of the key is still on its way: looked at again next interval
        body = self.due()  # what was pending on the nonce may have been these rules
        if body is None or _frozen(body) in self.refused:
            return None
        # set before the signing, which puts it in the pool before this task waits for anything (`first_look`)
        self.looked.set()
        outcome = await own_nonce.submit_own(
            self.ledger, "mgmc", self.key, KIND, body, self.timeout_s, self.wait_s, self.stopped
        )
        self._tell(body, outcome)
        return outcome

    def _tell(self, body: dict[str, Any], outcome: Submission) -> None:
        start = body["from_interval"]
        if outcome.landed:
            self.pending, self.told = None, ""
            log.info("owner rules posted on the MGMC chain under %s…: %s, from interval %d",
                     self.key.public.hex()[:16], words(self.rules), start)  # fmt: skip
            return
        if not outcome.final:
            self.pending = body
            log.info("owner rules (%s, from interval %d) not final yet (%s): looked at again at the next "
                     "interval", words(self.rules), start, outcome.reason)  # fmt: skip
            return
        final = outcome.reason.startswith(FINAL_REFUSALS)
        if final:
            self.refused.add(_frozen(body))
        # the contract's words: its position there landed first, so the next pass starts after it
        if RULES_OVERTAKEN in outcome.reason:
            why = "sent again at the next interval, from the one after this MG's last position"
        elif final:
            why = "not sent again (the chain would refuse it again)"
        else:
            why = "sent again at the next interval"
        level = logging.DEBUG if outcome.reason == self.told else logging.WARNING
        self.told = outcome.reason
        log.log(level, "the MGMC chain refused this MG's owner rules (%s, from interval %d): %s; %s",
                words(self.rules), start, outcome.reason, why)  # fmt: skip
