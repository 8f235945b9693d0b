"""The lab's chains: its keys, the two geneses and the DSO's tariff file, written once under one directory.

Promises: `LabChains.create(dir, feeder, scenario)` writes (once; reused on a second start) one node key and
one anonym key per MG and the DSO key, all 0600, and two geneses: the MGMC chain (authorities: the MGMCs;
accounts: the DSO, each MGMC, each anonym with its owner's market rules preset from the scenario) and the
DSO chain (authorities: the DSO and every MGMC as co-validator; the DSO enrols each MGMC's anonym on it when
its node starts). The MGMC chain carries the market, exchange and uplift contracts (the day-ahead session,
its forward trades and their make-whole: with `--dayahead` each MGMC claims after the clear and the chain pays
after the day; no `uplift_claim_ms`, so the settle waits for the trades only), and only the anonyms it names
trade (`anonyms_only`: no MGMC trades through its node key). With `rounds` (the testbed passes
`bargaining_rounds` of its interval and block period: 2 at its default 6-s intervals) the MGMC genesis names
`max_rounds`, the rounds its MGMCs play per bargaining: the chain refuses a position past them (no honest one:
the edge's rounds are at most the genesis cap) and the DSO's console says a bargaining stopped at the cap.
With `SettleByBoth`
(`peergrid-testbed --settle-by-both` passes it) the MGMC genesis names `settle_by_both`: a trade settles on
both parties' metered statements. `tariff.yaml` beside the keys holds each MG's retail and feed-in from the
scenario (the prices its MGMC schedules with), in the DSO's tariff-file format (docs/closed-loop.md "Who
prices the cover"), rewritten at every start. `capacity_kw` holds each MG's connection capacity for the DSO
config (`connection_kw`: its scenario's limits, else its devices' rating; the DSO node posts it as
`market.capacity`, the bound of its make-whole claim). With `SettleByBoth` the genesis' interval clock is
provisional: the lab posts the clock of its t0 once fixed under `lab-clock.key` (`lab_clock`; an account of
role `clock` alone, not authorised to trade: it may post `market.clock` and nothing else, none of the DSO's
powers; review23 F2). With `ExchangeFee` (`peergrid-testbed --exchange-fee`, `--uplift-fund-cap`) the
MGMC genesis names `exchange_fee` and `uplift_fund_cap`: every day-ahead session opens with that fee, which
funds its make-whole (ledger `uplift_fund`; the lab's coordinator named as the one whose sessions take it,
`fee_coordinators`); fee 0, the default, writes the genesis of a lab without it. A
genesis already there is never rewritten: its chain id and history hold (a fee asked for that it does not
carry is refused, `LabGenesisMismatch`, rather than run silently with the old one; a round cap it does not
carry is not: the lab runs as it did, its MGMCs' rounds their own, and its console names no cap; one it carries
that is not the rounds of the lab's interval and block period is refused by `same_rounds`, which the testbed calls
before `create`: its MGMCs would play the old cap's rounds). `bargaining_rounds`, `SettleByBoth` and
`ExchangeFee`, what each option sets in the genesis, are `lab_params`', re-exported here. Split from
closedloop.py (the daemons' configs), which re-exports these names. Starts nothing.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from peergrid_ledger import keys
from peergrid_ledger.genesis import Account, Genesis, GenesisError, Params

# the genesis options (`lab_params`), re-exported: closedloop, the testbed and tests import them here
from peergrid_sim.lab_params import DSO_ITERATIONS as DSO_ITERATIONS
from peergrid_sim.lab_params import ExchangeFee as ExchangeFee
from peergrid_sim.lab_params import SettleByBoth as SettleByBoth
from peergrid_sim.lab_params import bargaining_rounds as bargaining_rounds

CREDIT_LIMIT = 10**15  # micro-units: MGs settle with the DSO off-chain; the chain only moves balances


class LabGenesisMismatch(ValueError):
    """A lab directory's MGMC genesis, which is never rewritten, says other than the option asked for."""


def _key(path: Path) -> keys.Keypair:
    if not path.exists():
        keys.write_keyfile(path, keys.Keypair.generate())
    return keys.read_keyfile(path)


@dataclass
class LabChains:
    root: Path
    mgs: list[str]
    nodes: dict[str, keys.Keypair]
    anonyms: dict[str, keys.Keypair]
    dso: keys.Keypair
    mgmc_genesis: Path
    dso_genesis: Path
    tariff_file: Path | None = None  # each MG's cover prices for the DSO (`write_tariff_file`)
    interval_minutes: float = 15.0  # the scenario's trading interval
    # MG -> its connection capacity for the DSO (`connection_kw`: its scenario's limits, else its devices')
    capacity_kw: dict[str, float] = field(default_factory=dict)
    # the key that posts the interval clock once t0 is fixed (`lab_clock`), role `clock` on a settle_by_both
    # MGMC chain: its own nonces, so it never races the DSO node's postings under the DSO key, and none of the
    # DSO's other powers (capacity, tariff, reopen, gov.*: a pilot copying the lab gets no second governance key)
    clock: keys.Keypair | None = None

    @classmethod
    def create(
        cls,
        root: Path,
        feeder: str,
        scenario_path: Path,
        settle_by_both: SettleByBoth | None = None,
        fee: ExchangeFee | None = None,
        rounds: int = 0,
    ) -> LabChains:
        """`rounds`: the rounds per bargaining the lab's MGMCs play (`bargaining_rounds` of the lab's interval
        and block period), written as the new MGMC genesis' `max_rounds`; 0 names no cap. With `settle_by_both`
        its own `max_rounds`, where set, must be the same (ValueError): the one genesis parameter has one value.
        A genesis already there keeps whatever cap it names, or none."""
        from peergrid_controller.chain_venue import chain_rules
        from peergrid_controller.scenario import load_scenario
        from peergrid_controller.uplift import widest_spread

        held = settle_by_both.max_rounds if settle_by_both is not None else 0
        if held and rounds and held != rounds:
            raise ValueError(
                f"the lab's rounds per bargaining: {rounds}, but its settle-by-both genesis names max_rounds "
                f"{held}; both are the rounds its MGMCs play"
            )
        root.mkdir(parents=True, exist_ok=True)
        scenario = load_scenario(scenario_path)
        mgs = [mg.name for mg in scenario.microgrids]
        nodes = {mg: _key(root / f"mgmc-{mg}.key") for mg in mgs}
        anonyms = {mg: _key(root / f"anonym-{mg}.key") for mg in mgs}
        dso = _key(root / "dso.key")
        clock = _key(root / "lab-clock.key")
        mgmc_genesis, dso_genesis = root / "mgmc-genesis.json", root / "dso-genesis.json"
        if mgmc_genesis.exists() and fee is not None:
            _same_fee(mgmc_genesis, fee)
        if not mgmc_genesis.exists():
            now = int(time.time() * 1000) - 1000
            params = Params(credit_limit=CREDIT_LIMIT, tx_max_age_ms=600_000, block_max_future_ms=5_000)
            # the DSO may reopen an interval for re-bargaining (design step 6) once per security iteration;
            # a buyer's maximum caps what the market allocates it, not its requests (cap_on_fills: a capped
            # buyer asking rationed sellers is still filled up to it; the edge agent reads it from here); a
            # day-ahead clear waits until every member re-checked the clear's cut of its accept (accept rounds;
            # a silent member stands on its last accept after 1 s: half the lab's shortest phase timeout), and
            # every member has at least 4 s after the close to accept, whatever deadline the coordinator set
            # (review9 F4; two of the shortest phase timeouts: the edge's own close-to-deadline gap at its
            # shortest, trader.ACCEPTS_BEFORE, so an honest session's deadline is never moved)
            mgmc_params = replace(
                params,
                max_reopens=DSO_ITERATIONS,
                cap_on_fills=1,
                accept_rounds=2,
                accept_wait_ms=1_000,
                accept_window_ms=4_000,
                # only the anonyms the genesis names trade (review17 K-B: no MGMC trades with itself through its
                # node key to set the price the others forecast from); the lab's edges trade as anonym-<mg>
                anonyms_only=1,
                # the make-whole bound's spread where the DSO prices no cover (review18 U-1: every interval of
                # a chain without settle_by_both): the scenario's widest retail - feed-in
                uplift_max_spread=widest_spread(scenario.microgrids),
                # the rounds its MGMCs play (`bargaining_rounds`): a declared cap the chain holds every position
                # to and the DSO's console reads ("agreed at the round cap"); the edges' own rounds are at most it
                max_rounds=rounds,
            )
            if settle_by_both is not None:  # each party states what its PCC meter says (edge settlement.py)
                mgmc_params = replace(mgmc_params, **settle_by_both.params())
            if fee is not None:  # the day-ahead sessions' fee funds their make-whole (ledger uplift_fund)
                mgmc_params = replace(mgmc_params, **fee.params())
            rules = {mg.name: chain_rules(mg.rules) for mg in scenario.microgrids}
            mgmc = Genesis(
                chain=f"mgmc-{feeder}"[:64],
                time=now,
                authorities=tuple(nodes[mg].public for mg in mgs),
                accounts=(
                    Account(dso.public, ("dso",), "dso"),
                    *((Account(clock.public, ("clock",), "lab-clock", authorised=False),)
                      if settle_by_both is not None else ()),
                    *(Account(nodes[mg].public, ("mgmc",), mg) for mg in mgs),
                    *(Account(anonyms[mg].public, ("anonym",), f"anonym-{i}", rules=rules[mg])
                      for i, mg in enumerate(mgs)),
                ),
                # exchange: the day-ahead session and its forward trades (`LoopTiming.dayahead`); uplift: their
                # make-whole (edge day_stages.run_uplift_claim after the clear, run_uplift after the day)
                contracts=("market", "exchange", "uplift"),
                params=mgmc_params,
                **fee_coordinators(fee, [anonyms[mg].public for mg in mgs]),
            )  # fmt: skip
            dso_chain = Genesis(
                chain=f"dso-{feeder}"[:64],
                time=now,
                authorities=(dso.public, *(nodes[mg].public for mg in mgs)),
                accounts=(Account(dso.public, ("dso",), "dso"), *(Account(nodes[mg].public, ("mgmc",), mg) for mg in mgs)),
                contracts=(),
                params=params,
            )  # fmt: skip
            mgmc_genesis.write_text(json.dumps(mgmc.to_json()), encoding="utf-8")
            dso_genesis.write_text(json.dumps(dso_chain.to_json()), encoding="utf-8")
        tariff = write_tariff_file(root / TARIFF_FILE, scenario)
        minutes = scenario.interval_hours * 60
        capacity = {mg.name: kw for mg in scenario.microgrids if (kw := connection_kw(mg)) is not None}
        return cls(
            root, mgs, nodes, anonyms, dso, mgmc_genesis, dso_genesis, tariff, minutes, capacity, clock
        )


def fee_coordinators(fee: ExchangeFee | None, anonyms: list[bytes]) -> dict[str, tuple[bytes, ...]]:
    """The genesis' `fee_coordinators` a fee needs, where this ledger's genesis knows them (the openers whose
    sessions the fee reaches, review26 R26-1): the lab's one day-ahead coordinator, its session's lowest member
    key (edge `dayahead_view`; every lab MG is a member, so the lowest anonym key). None without a fee."""
    if fee is None or not fee.fee or "fee_coordinators" not in {f.name for f in fields(Genesis)}:
        return {}
    return {"fee_coordinators": (min(anonyms),)}


def _kept_params(path: Path) -> Params:
    """The parameters of the lab directory's existing MGMC genesis. A genesis this code no longer takes (one
    written before a rule, such as a fee off the tick: GenesisError), or a file that is no genesis at all (not
    JSON: a lab stopped while `create` wrote it, which is not atomic; unreadable), is refused
    (`LabGenesisMismatch`), naming why, rather than raised as a traceback out of the testbed (R40-2: `same_rounds`
    reads it at every start of a kept directory)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: not JSON, or not UTF-8
        raise LabGenesisMismatch(
            f"{path} is no genesis (it does not read as JSON: {exc}): a lab's genesis is never rewritten; use a "
            "new --workdir"
        ) from None
    try:
        return Genesis.from_json(doc).params
    except GenesisError as exc:
        raise LabGenesisMismatch(
            f"{path} is a genesis this lab can no longer run ({exc}): a lab's genesis is never rewritten; use a "
            "new --workdir"
        ) from None


def _same_fee(path: Path, fee: ExchangeFee) -> None:
    """Refuse a fee the lab directory's existing MGMC genesis does not carry: the genesis is kept (its chain id
    and history hold), so the lab would run with the old fee while the option said another."""
    params = _kept_params(path)
    held = ExchangeFee(int(params.exchange_fee), int(params.uplift_fund_cap))
    if held != fee:
        raise LabGenesisMismatch(
            f"{path} was written with exchange fee {held.fee} and fund cap {held.fund_cap}, not {fee.fee} and "
            f"{fee.fund_cap}: a lab's genesis is never rewritten; use a new --workdir for another fee"
        )


def same_rounds(path: Path, interval_s: float, block_period_ms: int) -> None:
    """Refuse (`LabGenesisMismatch`) a kept MGMC genesis at `path` whose round cap (`max_rounds`) is not the
    rounds the lab's MGMCs play at `interval_s` and `block_period_ms` (`bargaining_rounds`). The genesis is
    never rewritten and each edge plays min(its own rounds, the cap), so a directory made at 6-s intervals (cap
    2) and started again at 30 s played 2 rounds, not 14, and nothing said so (R38-3). Nothing to refuse where
    no genesis is there yet (`create` writes the lab's own) or where it names no cap (written before the lab
    named one: its MGMCs play their own rounds, as documented in docs/ledger-format.md)."""
    if not path.exists():
        return
    held = int(_kept_params(path).max_rounds)
    rounds = bargaining_rounds(interval_s, block_period_ms)
    if held and held != rounds:
        raise LabGenesisMismatch(
            f"{path} caps a bargaining at {held} rounds (genesis max_rounds, the rounds of the interval and block "
            f"period it was made for), but --interval-s {interval_s:g} with --block-period-ms {block_period_ms} "
            f"plays {rounds}: its MGMCs would play {held}. A lab's genesis is never rewritten; use a new --workdir, "
            f"or an --interval-s and --block-period-ms that play {held} rounds (the ones it was made with)"
        )


def connection_kw(mg: Any) -> float | None:
    """The MG's connection capacity the DSO posts (`market.capacity`, bounding its make-whole claim and, on
    the chain, every position it takes), kW: the larger of what its connection carries each way (a deviation
    trade goes either way), each way its scenario's max import or export where finite, else the most its
    devices can put across the PCC that way over the scenario's day (`device_limits`: the controller's own
    P2P limits, so no position its MGMC plans is above it), rounded up to a whole kW as a connection rating
    is stated (and so that a solver's last digit never meets it). None where neither way carries anything:
    the chain takes no 0. Why from the devices: the lab's scenarios limit neither way (the controller's
    scenario file has no per-MG limit, and a finite one turns the day-ahead session's value stop off,
    `dayahead.limited`: schedules would move), so without it the DSO posted no capacity, the make-whole had
    no bound and every lab claim was 0 (review18 U-1)."""
    export_kw, import_kw = device_limits(mg)
    limits = (float(mg.tariff.max_import_kw), float(mg.tariff.max_export_kw))
    import_kw = limits[0] if math.isfinite(limits[0]) else import_kw
    export_kw = limits[1] if math.isfinite(limits[1]) else export_kw
    kw = max(import_kw, export_kw)
    return float(math.ceil(round(kw, 6))) if kw > 0 else None


def device_limits(mg: Any) -> tuple[float, float]:
    """(export, import) kW: the most the MG's devices can put across its PCC each way in any interval of the
    scenario's day: PV available, every battery discharging and every genset at full output; every load at
    its full demand and every battery charging (`builder.p2p_sell_limit` / `p2p_buy_limit`, the bounds of the
    MGMC's own P2P columns)."""
    from peergrid_controller.builder import p2p_buy_limit, p2p_sell_limit

    days = range(len(mg.tariff.retail))
    return (
        max((p2p_sell_limit(mg, t) for t in days), default=0.0),
        max((p2p_buy_limit(mg, t) for t in days), default=0.0),
    )


TARIFF_FILE = "tariff.yaml"


def write_tariff_file(path: Path, scenario: Any) -> Path:
    """The DSO's tariff file (dso-server `tariff`) from the controller's scenario: each MG's retail and feed-in
    per interval of the day, currency per kWh, the prices its MGMC schedules with; rewritten at every start."""
    import yaml

    doc = {
        "interval_minutes": scenario.interval_hours * 60,
        "mgs": {
            mg.name: {"retail": list(mg.tariff.retail), "feed_in": list(mg.tariff.feed_in)}
            for mg in scenario.microgrids
        },
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False, default_flow_style=None), encoding="utf-8")
    return path
