"""The DSO prices the cover: each enrolled MG's retail and feed-in on the MGMC chain (`market.tariff`).

Promises: `load_tariff_file(path, mgs, interval_minutes)` reads the tariff file the DSO's settings name
(`loop.tariff_file`, format in docs/closed-loop.md "Who prices the cover"): per MG one retail and one feed-in
price per interval of the day, in currency per kWh, and converts them once (`micro_per_wh`) to what
`market.tariff` takes, micro-units per Wh. A file that does not say every MG, says one it does not know,
has a negative, non-finite or too large price, or a list of the wrong length is a `ConfigError` naming the
file and the key, at start: never a silent 0. `CoverPricer` posts, on a `settle_by_both` chain only, each
MG's anonym's prices for the loop's upcoming intervals, a day at a time (the next day's half a day before it
starts, `pricing_window`), for the intervals the chain has neither closed nor priced yet (`unpriced_runs`: a
restart reads what is set and sends nothing twice), all of a pass at once (the adapter pipelines them). A
tariff the chain refuses is logged once with its reason and those intervals are never sent again by this
process (no retry loop); one not final in time is sent again, the same body, at the next pass (the adapter
waits for the pending one, never signs it twice).
`CapacityPoster` and `capacity_wh` (each MG's connection capacity, `market.capacity`) live in
`capacity_poster` and are named here too; the pass loop the posters share is `posting_passes`.
Assumes chain interval t is interval t mod (intervals per day) of the day, as in the lab (interval 0 starts
at midnight). Never blocks the event loop; the window and the runs are pure.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peergrid_dso.capacity_poster import CapacityPoster, capacity_wh
from peergrid_dso.posting_passes import PASS_S, passes, span
from peergrid_ledger import keys
from peergrid_ledger.contracts import market
from peergrid_ledger.contracts.market_state import MAX_TARIFF_INTERVALS, price_tick
from peergrid_ledger.results import Reason
from peergrid_ledger.schema import PRICE
from peergrid_ledger.settings import ConfigError, YamlTextError, read_yaml_file

log = logging.getLogger("peergrid_dso.tariff")
MINUTES_PER_DAY = 1440


def micro_per_wh(price_per_kwh: float) -> int:
    """Currency per kWh (the scenario's and the tariff file's unit) on the market contract's tick, micro-units
    per Wh: the ledger's `market_state.price_tick`, the one the MGMCs' controller uses too."""
    return price_tick(price_per_kwh)


@dataclass(frozen=True)
class CoverTariff:
    """Each MG's cover prices per interval of the day, micro-units per Wh: (retail, feed-in) lists."""

    interval_minutes: float
    prices: Mapping[str, tuple[tuple[int, ...], tuple[int, ...]]]

    @property
    def per_day(self) -> int:
        return round(MINUTES_PER_DAY / self.interval_minutes)

    def body(self, mg: str, account: bytes, run: range) -> dict[str, Any]:
        """The `market.tariff` body pricing `account` (the MG's anonym) for chain intervals `run`."""
        retail, feed_in = self.prices[mg]
        return {
            "account": account,
            "first_interval": run.start,
            "retail": [retail[t % self.per_day] for t in run],
            "feed_in": [feed_in[t % self.per_day] for t in run],
        }


def load_tariff_file(path: Path, mgs: Iterable[str], interval_minutes: float) -> CoverTariff:
    """The tariff file, checked against the loop's MGs and interval length (see the module docstring)."""
    try:
        raw = read_yaml_file(path)  # strictly: an MG given twice is an error, not its second prices
    except OSError as exc:
        raise ConfigError(f"loop.tariff_file: {path}: cannot read: {exc.strerror}") from None
    except YamlTextError as exc:
        raise ConfigError(f"loop.tariff_file: {path}: {exc}") from None
    return parse_tariff(raw, mgs, interval_minutes, f"loop.tariff_file: {path}")


def parse_tariff(raw: Any, mgs: Iterable[str], interval_minutes: float, where: str) -> CoverTariff:
    def bad(key: str, why: str) -> ConfigError:
        return ConfigError(f"{where}: '{key}': {why}")

    if not isinstance(raw, dict) or set(raw) != {"interval_minutes", "mgs"}:
        keys_ = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
        raise ConfigError(f"{where}: expected the keys interval_minutes and mgs, got {keys_}")
    minutes = raw["interval_minutes"]
    if not isinstance(minutes, int | float) or isinstance(minutes, bool) or minutes != interval_minutes:
        raise bad("interval_minutes", f"{minutes!r}, but the loop's intervals are {interval_minutes} minutes")
    per_day = MINUTES_PER_DAY / interval_minutes
    if per_day != round(per_day):
        raise bad("interval_minutes", f"{interval_minutes} minutes do not divide a day")
    entries = raw["mgs"]
    if not isinstance(entries, dict):
        raise bad("mgs", "expected a mapping of MG name to its prices")
    wanted = set(mgs)
    missing, unknown = sorted(wanted - set(entries)), sorted(set(entries) - wanted)
    if missing:
        raise bad("mgs", f"no prices for {', '.join(missing)}: every MG of the loop needs its own")
    if unknown:
        raise bad("mgs", f"{', '.join(map(str, unknown))} is not an MG of the loop")
    prices = {}
    for mg in sorted(wanted):
        entry = entries[mg]
        if not isinstance(entry, dict) or set(entry) != {"retail", "feed_in"}:
            raise bad(f"mgs.{mg}", "expected exactly retail and feed_in")
        lists = []
        for side in ("retail", "feed_in"):
            values = entry[side]
            if not isinstance(values, list) or len(values) != round(per_day):
                got = len(values) if isinstance(values, list) else type(values).__name__
                raise bad(
                    f"mgs.{mg}.{side}", f"expected {round(per_day)} prices (one per interval), got {got}"
                )
            lists.append(tuple(_price(v, bad, f"mgs.{mg}.{side}.{k}") for k, v in enumerate(values)))
        prices[mg] = (lists[0], lists[1])
    return CoverTariff(float(interval_minutes), prices)


def _price(value: Any, bad: Callable[[str, str], ConfigError], key: str) -> int:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise bad(key, f"{value!r} is not a price (currency per kWh)")
    if value < 0:
        raise bad(key, f"{value} is negative: a cover price is what the DSO charges or pays, at least 0")
    micro = micro_per_wh(value)
    if micro > PRICE.high:  # the contract's bound
        raise bad(key, f"{value} per kWh is beyond the chain's largest price")
    return micro


def pricing_window(first: int, end: int | None, current: int | None, per_day: int) -> range:
    """The intervals to be priced now: from the one being worked on (`current`; None: the loop's first) to the
    end of the loop's day whose start is at most half a day ahead (days counted from `first`), never past
    `end` (exclusive; None: the loop has no last interval, so only the day bounds it). So a day's prices go
    out together, half a day before it starts."""
    start = first if current is None else max(first, current)
    day = (start - first + per_day // 2) // per_day
    stop = first + (day + 1) * per_day
    return range(start, stop if end is None else min(end, stop))


def unpriced_runs(state: Any, account: bytes, window: range, skip: Iterable[int] = ()) -> list[range]:
    """The runs of consecutive intervals of `window` that the chain has neither closed nor priced for
    `account` (nor in `skip`), each at most the contract's `MAX_TARIFF_INTERVALS` long."""
    skipped = set(skip)
    due = [
        t
        for t in window
        if t not in skipped and not market.closed(state, t) and market.tariff(state, account, t) is None
    ]
    runs: list[range] = []
    for t in due:
        if runs and runs[-1].stop == t and len(runs[-1]) < MAX_TARIFF_INTERVALS:
            runs[-1] = range(runs[-1].start, t + 1)
        else:
            runs.append(range(t, t + 1))
    return runs


@dataclass
class CoverPricer:
    """Posts `market.tariff` for every MG of the loop through the DSO's MGMC-chain adapter (see module)."""

    tariff: CoverTariff
    accounts: Mapping[str, bytes]  # MG -> its anonym, the account that trades
    adapter: Any  # node_chains.ChainAdapter on the MGMC chain
    dso_key: keys.Keypair
    first: int
    end: int | None  # the loop's last interval + 1; None: no last interval (`loop.intervals: null`)
    refused: dict[bytes, set[int]] = field(default_factory=dict)  # per account: never sent again
    # per account, intervals seen priced or closed on the chain: not read again at every pass (a day of
    # intervals for 30 MGs every 2 s is thousands of state reads, all answered once and for good)
    known: dict[bytes, set[int]] = field(default_factory=dict)

    @property
    def state(self) -> Any:
        return self.adapter.node.replicas[self.adapter.chain].app.state

    def settles_by_both(self) -> bool:
        app = self.adapter.node.replicas[self.adapter.chain].app
        return bool(app.genesis.params.settle_by_both)

    async def price(self, current: int | None) -> int:
        """One pass: post every MG's unpriced runs of the window: the first alone, then, if it was final or
        refused, the rest all at once (the adapter pipelines them on consecutive nonces: a block or two, not
        one each); a pass ends at any not final in time. Returns how many landed."""
        window = pricing_window(self.first, self.end, current, self.tariff.per_day)
        due: list[tuple[str, bytes, range]] = []
        for mg, account in sorted(self.accounts.items()):
            refused = self.refused.setdefault(account, set())
            known = {t for t in self.known.get(account, ()) if t >= window.start}  # the past is done
            runs = unpriced_runs(self.state, account, window, refused | known)
            unpriced = {t for run in runs for t in run}
            self.known[account] = known | {t for t in window if t not in unpriced and t not in refused}
            due += [(mg, account, run) for run in runs]
        landed = 0
        for batch in (due[:1], due[1:]):  # the first alone: a chain not taking it takes none of the rest
            results = await asyncio.gather(
                *(self.adapter.submit(self.dso_key, "market.tariff", self.tariff.body(mg, account, run),
                                      precheck=True) for mg, account, run in batch)
            )  # fmt: skip
            landed += self._took(batch, results)
            if any(not r.ok and r.reason != "refused" for r in results):
                return landed  # the next pass sends the same bodies (the adapter adopts the pending ones)
        return landed

    def _took(self, sent: list[tuple[str, bytes, range]], results: list[Any]) -> int:
        """Log what the chain refused (never sent again) or has not made final; returns how many landed."""
        landed = 0
        for (mg, account, run), result in zip(sent, results, strict=True):
            if result.ok:
                landed += 1
            elif result.reason == "refused":
                given_up = self._given_up(run, result.detail)
                self.refused[account].update(given_up)
                log.error("the MGMC chain refuses %s's cover prices for intervals %d-%d: %s; not sent "
                          "again for %s", mg, run.start, run.stop - 1, result.detail,
                          span(given_up))  # fmt: skip
            else:  # not final in time: the next pass sends the same body (the adapter adopts it)
                log.warning("%s's cover prices for intervals %d-%d not final yet: %s %s", mg, run.start,
                            run.stop - 1, result.reason, result.detail)  # fmt: skip
        return landed

    def _given_up(self, run: range, detail: str) -> list[int]:
        """The intervals a refused run gives up: the whole run, unless an interval closed meanwhile (`closed`):
        then those the replica shows closed (the rest goes in the next pass), at least the run's first, so
        every refusal retires one interval or more and a pass can never repeat a refused body for ever."""
        if not detail.startswith(Reason.CLOSED.value):
            return list(run)
        closed = [t for t in run if market.closed(self.state, t)]
        return closed or [run.start]

    async def run(self, stop: asyncio.Event, current: Callable[[], int | None]) -> None:
        """Price the loop's intervals until `stop` (or until cancelled: the loop ended): at once, then a pass
        every `PASS_S`. Nothing at all on a chain without `settle_by_both` (the contract refuses it there: no
        trade on it carries a compensation)."""
        if not self.settles_by_both():
            log.info("the MGMC chain does not settle by both: no cover prices (market.tariff) are posted")
            return

        async def one_pass() -> bool:
            await self.price(current())
            return False  # the window moves on: priced again next pass

        await passes(stop, one_pass, "pricing the cover")


__all__ = [  # CapacityPoster and capacity_wh moved to capacity_poster; importers of tariff still find them
    "PASS_S",
    "CapacityPoster",
    "CoverPricer",
    "CoverTariff",
    "capacity_wh",
    "load_tariff_file",
    "micro_per_wh",
    "parse_tariff",
    "pricing_window",
    "unpriced_runs",
]
