"""The DSO posts each MG's connection capacity on the MGMC chain (`market.capacity`).

Promises: `CapacityPoster` posts, once at start, each MG's connection capacity its `loop.mgs` entry names
(`capacity_kw`, as `market.capacity` Wh per interval, rounded up by `capacity_wh`: never below what the
connection carries) on an MGMC chain with the uplift contract (any chain: it settles nothing), from the first
interval after the anonym's last traded one (and not before the loop's first), where the capacity standing
there is not that figure (absent, or an older one): a restart sends nothing twice. Refused: logged with its
reason, not sent again, but for one refusal: where the MG's own position in the capacity's interval went into a
block before it (the contract takes a capacity only from an interval after the account's last position), it is
sent again at once, for the interval after that position, once per MG, with a WARNING naming the intervals that
went without it (`_overtaken`, D3); not final in time: sent again after `PASS_S`, told once at INFO, and at
WARNING only once its MG took a position in an interval the capacity was meant to bind (`_pending`). A figure
beyond the chain's largest quantity is a `ConfigError` at start. Never blocks the event loop. Split out of
tariff.py (which still names `CapacityPoster` and `capacity_wh`); it logs under tariff's logger, as before.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from peergrid_dso.posting_passes import passes, span
from peergrid_ledger import keys
from peergrid_ledger.contracts import market
from peergrid_ledger.contracts.market_capacity import OVERTAKEN
from peergrid_ledger.contracts.market_state import last_interval_key
from peergrid_ledger.schema import QUANTITY
from peergrid_ledger.settings import ConfigError
from peergrid_ledger.state import read_obj

log = logging.getLogger("peergrid_dso.tariff")  # the name its lines had before the split (operators grep it)


def capacity_wh(kw: float, interval_minutes: float, where: str) -> int:
    """A connection's capacity in kW as Wh per interval (what `market.capacity` takes), rounded up so the bound
    is never below what the connection carries (to the micro-Wh first: 5 kW x 15 min is 1250, not 1251). A
    figure beyond the chain's largest quantity is a `ConfigError` naming `where`."""
    wh = math.ceil(round(kw * 1000 * interval_minutes / 60, 6))
    if not 1 <= wh <= QUANTITY.high:
        raise ConfigError(f"{where}: {kw} kW is {wh} Wh per interval, outside the chain's 1..{QUANTITY.high}")
    return wh


@dataclass
class CapacityPoster:
    """Posts `market.capacity` for every MG whose entry names one, through the MGMC-chain adapter (module)."""

    capacities: Mapping[str, int]  # MG -> Wh per interval
    accounts: Mapping[str, bytes]  # MG -> its anonym
    adapter: Any  # node_chains.ChainAdapter on the MGMC chain
    dso_key: keys.Keypair
    first: int  # the loop's first interval: no capacity is posted from before it
    refused: set[str] = field(default_factory=set)  # MGs whose capacity the chain refused: not sent again
    resent: set[str] = field(default_factory=set)  # MGs whose capacity a position overtook: sent again once
    pending_from: dict[str, int] = field(default_factory=dict)  # MG -> the interval its pending one was for
    told: set[tuple[str, bool]] = field(default_factory=set)  # (MG, late): a pending capacity told

    @classmethod
    def from_settings(cls, s: Any, adapter: Any, dso_key: keys.Keypair) -> CapacityPoster | None:
        """The poster for `LoopSettings` `s` (None when no MG names a capacity); a bad figure: `ConfigError`."""
        caps = {
            mg: capacity_wh(e.capacity_kw, s.interval_minutes, f"loop.mgs.{mg}.capacity_kw")
            for mg, e in s.mgs.items()
            if e.capacity_kw is not None
        }
        accounts = {mg: bytes.fromhex(s.mgs[mg].anonym) for mg in caps}
        return cls(caps, accounts, adapter, dso_key, s.first_interval) if caps else None

    @property
    def state(self) -> Any:
        return self.adapter.node.replicas[self.adapter.chain].app.state

    def applies(self) -> bool:
        """The chain bounds a make-whole claim (the uplift contract) and takes the kind (the market contract)."""
        contracts = self.adapter.node.replicas[self.adapter.chain].app.genesis.contracts
        return "uplift" in contracts and "market" in contracts

    def due(self, only: Collection[str] | None = None) -> list[tuple[str, dict[str, Any]]]:
        """(MG, `market.capacity` body) for each MG (of `only`, where given) whose capacity does not stand on
        the chain from the first interval it may still change in."""
        out = []
        for mg, wh in sorted(self.capacities.items()):
            account = self.accounts[mg]
            if mg in self.refused or (only is not None and mg not in only):
                continue
            last = read_obj(self.state, last_interval_key(account))
            start = max(self.first, 0 if last is None else int(last) + 1)
            if market.capacity(self.state, account, start) != wh:
                out.append((mg, {"account": account, "from_interval": start, "wh": wh}))
        return out

    async def post(self, only: Collection[str] | None = None) -> bool:
        """One pass: every due capacity (of `only`, where given) at once (the adapter pipelines them). True
        when none is left pending (each landed or was refused: logged, not sent again, but for one its MG's
        position overtook: sent again at once, in this pass, `_overtaken`)."""
        due = self.due(only)
        results = await asyncio.gather(
            *(self.adapter.submit(self.dso_key, "market.capacity", body, precheck=True) for _, body in due)
        )
        pending = False
        again = []
        for (mg, body), result in zip(due, results, strict=True):
            if result.reason == "refused" and self._overtaken(mg, body, str(result.detail)):
                again.append(mg)
                continue
            if result.ok or result.reason == "refused":  # nothing pending for it now
                self.pending_from.pop(mg, None)
            if result.ok:
                log.info("%s's connection capacity posted: %d Wh per interval from interval %d", mg,
                         body["wh"], body["from_interval"])  # fmt: skip
            elif result.reason == "refused":
                self.refused.add(mg)
                log.error("the MGMC chain refuses %s's connection capacity (%d Wh from interval %d): %s; not "
                          "sent again", mg, body["wh"], body["from_interval"], result.detail)  # fmt: skip
            else:
                pending = True
                self._pending(mg, body, f"{result.reason} {result.detail}")
        if again:  # `resent` holds them now: this goes one level deep at most
            pending = not await self.post(again) or pending
        return not pending

    def _overtaken(self, mg: str, body: dict[str, Any], detail: str) -> bool:
        """Whether a refused capacity is one its MG's position overtook (the refusal says so in the contract's
        words, `market_capacity.OVERTAKEN`, and the chain shows a position of the account at or after
        `from_interval`; any other refusal is one for good, review R42-7) and was not sent again yet: then it
        is said at WARNING, and `due` sends it for the interval after that position (the last closing note: a
        capacity sent before the first interval and final only after the MG's first position there was refused
        and never sent again, leaving that MG bound by its own rules alone all day)."""
        last = read_obj(self.state, last_interval_key(self.accounts[mg]))
        if OVERTAKEN not in detail or mg in self.resent or last is None or int(last) < body["from_interval"]:
            return False
        self.resent.add(mg)
        self.pending_from.setdefault(mg, body["from_interval"])  # a resend not final yet is told as late
        log.warning("the MGMC chain refused %s's connection capacity (%d Wh from interval %d): %s took a position "
                    "in interval(s) %s before it was final (%s); sent again, once, from interval %d", mg, body["wh"],
                    body["from_interval"], mg, span(list(range(body["from_interval"], int(last) + 1))), detail,
                    int(last) + 1)  # fmt: skip
        return True

    def _pending(self, mg: str, body: dict[str, Any], why: str) -> None:
        """Tell a capacity not final yet once, and at WARNING only where it matters: since it was first sent its
        MG took a position in an interval it was meant to bind (the chain takes a capacity for an interval only
        until the MG's first position there: `due` sends it from the next). Before that it is the start's
        normal course: the MGMC chain makes no block until the MGMCs, its validators, run, and they start after
        the DSO (U3: six WARNINGs at a day-ahead lab's start for capacities that all stood 35 s before the
        first interval)."""
        meant = self.pending_from.setdefault(mg, body["from_interval"])
        late = body["from_interval"] > meant
        if (mg, late) in self.told:
            return
        self.told.add((mg, late))
        if late:
            log.warning("%s's connection capacity (%d Wh) not final yet (%s): %s traded without it in interval(s) "
                        "%s; sent again from interval %d", mg, body["wh"], why, mg,
                        span(list(range(meant, body["from_interval"]))), body["from_interval"])  # fmt: skip
        else:
            log.info("%s's connection capacity (%d Wh from interval %d) not final yet (%s): sent again until it "
                     "is; it binds from %s's first position there", mg, body["wh"], body["from_interval"], why,
                     mg)  # fmt: skip

    async def run(self, stop: asyncio.Event) -> None:
        """Post at once, then again every `PASS_S` while one is not final, until done or `stop`. Nothing on a
        chain without the uplift contract (no claim there for a capacity to bound)."""
        if not self.applies():
            log.info("the MGMC chain has no uplift contract: no connection capacity (market.capacity) posted")
            return
        await passes(stop, self.post, "posting the connection capacities")
