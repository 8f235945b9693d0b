"""The DSO prices the cover: each enrolled MG's retail and feed-in for the MGMC chain (`market.tariff`).

Promises: `load_tariff_file(path, mgs, interval_minutes)` reads the tariff file the DSO's settings name
(`loop.tariff_file`, format in docs/closed-loop.md "Who prices the cover"): per MG one retail and one feed-in
price per interval of the day, in currency per kWh, and converts them once (`micro_per_wh`) to what
`market.tariff` takes, micro-units per Wh. A file that does not say every MG, says one it does not know,
has a negative, non-finite or too large price, or a list of the wrong length is a `ConfigError` naming the
file and the key, at start: never a silent 0. Assumes chain interval t is interval t mod (intervals per day)
of the day, as in the lab (interval 0 starts at midnight). Pure but for reading the file.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from peergrid_ledger.schema import PRICE
from peergrid_ledger.settings import ConfigError

MINUTES_PER_DAY = 1440


def micro_per_wh(price_per_kwh: float) -> int:
    """Currency per kWh (the scenario's and the tariff file's unit) on the market contract's tick, micro-units
    per Wh: the one conversion of a cover price (the controller's `market.micro_per_wh`, the MGMCs' tick)."""
    return round(price_per_kwh * 1000)


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
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"loop.tariff_file: {path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError:
        raise ConfigError(f"loop.tariff_file: {path}: not valid YAML") from None
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
