"""The DSO node of the closed loop: embedded by `peergrid-dso serve` (its `loop:` section, see `peergrid_dso.live`)
or standalone as `python -m peergrid_dso.interval_node --config FILE`.

Promises: runs the DSO's replica of the DSO chain (an authority, beside the MGMCs as co-validators) over its
own MQTT connection, enrols each MGMC with its anonym on that chain at start (once), and then, per trading
interval: waits for the MGs' equivalent injections in final blocks (all of them, or `wait_s` after the first),
runs the security check, reconfiguration and least adjustment (`services.interval`) off the event loop, sends
sealed adjustment contracts, reopens the interval on the MGMC chain (`market.reopen`: only the DSO may) so the
MGMCs re-bargain (not an interval a day-ahead clear closed: the contract refuses that, and the MGMCs re-plan
with the forward trades kept; nor, at once, one nobody offered in: nothing is closed there to reopen), and waits
for the revised injections (each iteration's record says how the MGMCs answered: `answer`), executes the
switching plan through the Modbus relays of firmware-sim with read-back and rollback (plan and result recorded
on the DSO chain), and publishes its verdict on `peergrid/<feeder>/dso/verdict`. One JSON line per interval goes
to `record_file`. A missing MGMC counts as zero injection; the DSO never stalls on one, and no longer waits for
one revoked on the DSO chain. Exit 2 on a bad config.
With `mgmc_chain` it also follows the MGMC chain as a non-voting replica (its key is an account there, not an
authority: the engine never votes with it, but its key holds the `dso` role there), which the console's
market view reads and through which it reopens intervals; without it the MGMCs re-plan within their limits
with their trades kept. Switching holds `lock`
(shared with the console's operator actions: one writer per relay) from planning from the confirmed topology
to read-back; the topology lives in `live.open_set`, which operators may change between intervals. It starts
from the positions the relays report where they can be adopted (`dso_node`), recorded on the DSO chain
(`start_records`) beside the enrolment, before the first interval. After each interval, a plan or none, it
reads every relay against that topology (`watch`, `services.switching_watch`): alarmed and recorded on the
DSO chain once per change, never adopted.
With `tariff_file` (and an MGMC chain that settles by both) it prices each MG's cover on the MGMC chain
(`market.tariff`, a day ahead at a time, `tariff.CoverPricer`) beside the intervals, from the start; with
`exchange_fee` it posts that fee as `market.fee` there where the chain's standing one differs (`fee_poster`).
Its settings are `loop_settings`; the feeder and relays they name, `loop_feeder`; submitting to its chains and
the coordinated stop, `node_chains`; the re-bargaining iterations of an interval's security loop,
`security_rounds`; reopening an interval on the MGMC chain, whether nobody offered in it and how the MGMCs
answered, `interval_reopen` (split out, D5, Q8); enrolling the MGs and which of them it waits for,
`interval_enrol` (D3); the intervals it skips as missed, `interval_skips`. This module still names `build_feeder`, `relay_driver` and `SecurityRounds`.
Its loop runs `intervals` intervals from `first_interval`, or with `intervals: null` (D10) has no last one and runs
for as long as the node does (a pilot's, as the edges' `market.days: null`: before, a year's count ran out, and
a node restarted after it said every interval was finished and checked none again while the MGMCs traded on).
A restarted node resumes at the first interval its records do not hold as finished, saying where in one line, and
resumes a half-done interval from what the DSO chain holds of it, never issuing its contracts or switching again
(`interval_resume`, D7: before, it ran its loop again from `first_interval`). An interval already over on the
market's clock before the node's run started (it was down) and that the MGMCs have gone past (one of them sent its
injection for the next: they wait for the DSO while it is down, so they are behind the clock at its return) is
recorded as missed, one line for the run, with no analysis, contract or switching (`interval_missed`, D8: before, a pilot's node back after an hour
sent contracts and switched relays for four intervals past); one already started is acted on. So is, while it
runs too, one over that no MGMC sent an injection for once they went on (`interval_missed.left_behind`, D11: U7's
node sat at 2 while the MGMCs traded 24). The market's clock is the loop's `market_clock` (a pilot's), else the
MGMC chain's posted `market.clock`; without either every interval is acted on, as before.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peergrid_dso import interval_enrol, interval_missed, interval_resume, security_rounds
from peergrid_dso.broker_tls import check_broker
from peergrid_dso.interval_reopen import REOPEN_WAIT_S, Reopening, answer, forward_traded
from peergrid_dso.interval_skips import SkipsMissed
from peergrid_dso.loop_feeder import build_feeder, relay_driver
from peergrid_dso.loop_settings import IntervalNodeSettings, loop_end
from peergrid_dso.node_chains import ChainAdapter, Changed, Throttled
from peergrid_dso.security_rounds import SecurityRounds
from peergrid_ledger import keys, query
from peergrid_ledger.consensus.shutdown import cancel_until_done
from peergrid_ledger.records import append_record
from peergrid_ledger.settings import ConfigError, exit_with_config_error, load_settings

PROGRAM = "peergrid-dso-node"
log = logging.getLogger("peergrid_dso.interval_node")


async def serve(settings: IntervalNodeSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    from peergrid_dso.dso_node import DsoNode

    client_id = f"dso-node-{settings.feeder}-check"
    await asyncio.to_thread(
        check_broker, settings.broker_host, settings.broker_port, settings.broker_tls, client_id
    )
    await DsoNode.assemble(settings).run(stop)


@dataclass
class DsoLoop(SkipsMissed):
    settings: IntervalNodeSettings
    replica: Any
    adapter: ChainAdapter
    changed: Changed
    transport: Any
    recorder: Any
    switching: Any
    planner: Any
    dso_key: keys.Keypair
    live: Any  # LiveTopology or the console's DsoServices: open_set, injections
    lock: Any  # held while switching; operators hold it too
    listeners: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)  # each interval's record
    current: int | None = None  # the interval being worked on
    mgmc: ChainAdapter | None = None  # the MGMC chain (non-voting), where the DSO reopens intervals
    said: Throttled = field(default_factory=lambda: Throttled(log))  # retries' warnings, once per few s
    pricer: Any = None  # tariff.CoverPricer, with `tariff_file` (read at start: a bad file stops it there)
    capacity: Any = None  # capacity_poster.CapacityPoster, where an MG of `mgs` names its `capacity_kw`
    fee: Any = None  # fee_poster.FeePoster, with `exchange_fee` (a chain that takes none: ConfigError)
    start_records: list[Any] = field(default_factory=list)  # switching_adopt: the start's adoption
    watch: Any = None  # switching_watch.RelayWatch: every relay read after each interval, a plan or none
    resume: interval_resume.Resume | None = None  # where it starts: read from `record_file` as it is built
    clock: Callable[[], float] = time.time  # wall s, against the market's clock (`ends_at`)
    # when each interval ends on the market's clock (`interval_missed.loop_clock`, built here); None: no clock
    ends_at: interval_missed.EndsAt | None = None

    def __post_init__(self) -> None:
        s = self.settings
        if getattr(s, "record_file", None) is not None:  # an unreadable file stops the start (ConfigError)
            end = loop_end(s.first_interval, s.intervals)
            self.resume = interval_resume.resume_at(s.record_file, s.first_interval, end)
        if self.ends_at is None:  # (a test's stand-in settings may have no `market_clock`)
            self.ends_at = interval_missed.loop_clock(self.mgmc, getattr(s, "market_clock", None))
        if self.mgmc is not None and self.pricer is None and s.tariff_file is not None:
            from peergrid_dso.tariff import CoverPricer, load_tariff_file

            tariff = load_tariff_file(s.tariff_file, s.mgs, s.interval_minutes)
            accounts = {mg: bytes.fromhex(entry.anonym) for mg, entry in s.mgs.items()}
            end = loop_end(s.first_interval, s.intervals)
            self.pricer = CoverPricer(tariff, accounts, self.mgmc, self.dso_key, s.first_interval, end)
        if self.mgmc is not None and self.capacity is None:
            from peergrid_dso.capacity_poster import CapacityPoster

            self.capacity = CapacityPoster.from_settings(s, self.mgmc, self.dso_key)
        if self.mgmc is not None and self.fee is None:
            from peergrid_dso.fee_poster import FeePoster

            self.fee = FeePoster.from_settings(s, self.mgmc, self.dso_key)

    def publish(self, doc: dict[str, Any]) -> None:
        # retained: an MGMC that (re)connects learns at once how far the DSO got
        topic = f"peergrid/{self.settings.feeder}/dso/verdict"
        self.transport.client.publish(topic, json.dumps(doc), qos=1, retain=True)

    async def enrol(self) -> None:
        """Enrol each configured MG's anonym on the DSO chain, once, all at once (`interval_enrol.enrol`)."""
        state = lambda: self.replica.app.state  # noqa: E731
        await interval_enrol.enrol(
            self.settings.mgs, self.adapter, self.dso_key, state, self.changed, self.said
        )

    def active_mgs(self) -> set[str]:
        """The MGs the DSO waits for: its config's, less those revoked on the DSO chain (`interval_enrol.active`)."""
        return interval_enrol.active(self.settings.mgs, self.replica.app.state)

    def injections(self, t: int) -> dict[str, tuple[int, int]]:
        found = {}
        for mg, entry in self.settings.mgs.items():
            record = query.equivalent_injection(self.replica.app.state, bytes.fromhex(entry.node), t)
            if record is not None:
                found[mg] = (int(record["injection"]), int(record["revision"]))
        return found

    async def gather(
        self, t: int, revision: int, who: set[str], wait_s: float, first_wait: float, leaves: bool = False
    ) -> dict[str, tuple[int, int]]:
        """t's injections at `revision` or later: up to `first_wait` for the first, then `wait_s` for the rest of
        `who`; `leaves`: `interval_missed.LeftBehind` once the MGMCs left t behind, not an hour's wait (U7)."""
        deadline = time.monotonic() + first_wait
        while time.monotonic() < deadline:
            if any(rev >= revision for mg, (_, rev) in self.injections(t).items() if mg in who):
                break
            if leaves and self.left_behind(t, None) is not None:
                raise interval_missed.LeftBehind(t)
            await self.changed.wait(0.5)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            got = self.injections(t)
            if all(mg in got and got[mg][1] >= revision for mg in who):
                break
            await self.changed.wait(0.5)
        return self.injections(t)

    async def run(self, stop: asyncio.Event) -> None:
        # the cover prices, the connection capacities and the exchange fee go out beside the enrolment (another
        # chain)
        pricing = [asyncio.create_task(self.pricer.run(stop, lambda: self.current))] if self.pricer else []
        for poster in (self.capacity, getattr(self, "fee", None)):  # (a test's stand-in loop may have no fee)
            if poster is not None:
                pricing.append(asyncio.create_task(poster.run(stop)))
        try:
            s = self.settings
            end = loop_end(s.first_interval, s.intervals)  # None: no last interval (a pilot's, for years)
            resume = getattr(self, "resume", None)  # (a test's stand-in loop may have none, as for `fee`)
            start, said = resume or interval_resume.resume_at(None, s.first_interval, end)
            (log.info if start == s.first_interval else log.warning)("%s", said)
            await asyncio.gather(self.enrol(), self.record_start())  # both before the first plan
            started, t = getattr(self, "clock", time.time)(), start  # (as `fee`: a stand-in may have none)
            while end is None or t < end:
                if stop.is_set():
                    return
                missed = self.skip_missed(t, end, started) or self.skip_left_behind(t, end)
                if missed:
                    t += missed
                    continue
                self.current = t
                try:
                    await self.interval(t)
                except interval_missed.LeftBehind:  # while it waited: recorded missed at the next turn
                    continue
                except Exception:  # keep serving the next interval; the record says it failed
                    log.exception("DSO interval %d failed", t)
                    self.record({"interval": t, "error": "failed; see the DSO node log"})
                if self.watch is not None:  # a tie closed by hand is found now, not at the next plan
                    await self.watch.check(self.live)
                t += 1
        finally:
            if pricing:
                await cancel_until_done(pricing)

    async def record_start(self) -> None:
        """The relays' positions the node adopted at start, on the DSO chain (`switching_adopt`)."""
        if self.start_records:
            from peergrid_dso.services.switching_adopt import record_adoption

            state = lambda: self.replica.app.state  # noqa: E731
            try:
                await record_adoption(self.adapter, self.dso_key, self.start_records, state, self.changed)
            except Exception:  # never stops the node: the topology is adopted all the same
                log.exception("the relays' positions adopted at start were not recorded")

    def switch(self, t: int, target: tuple[int, ...], planned_from: tuple[int, ...], injections: Any) -> Any:
        """Under the relays' lock: plan from the topology the relays confirmed now (operators may have moved
        it since the analysis; a loop that wanted no change leaves theirs alone), execute, adopt the result."""
        with self.lock:
            current = tuple(sorted(self.live.open_set))
            self.planner.open_set = current
            if tuple(sorted(target)) == tuple(sorted(planned_from)):
                target = current
            plan = self.planner.switching_plan(t, target, injections)
            result = self.switching.submit(plan) if plan is not None else None
            if result is not None:
                self.planner.open_set = self.live.open_set = tuple(sorted(result.final_open))
            return plan, result

    async def interval(self, t: int) -> None:
        s = self.settings
        mgs = self.active_mgs()
        got = await self.gather(t, 0, mgs, s.wait_s, 3600.0, leaves=True)
        nodes = {mg: bytes.fromhex(entry.node) for mg, entry in s.mgs.items()}
        # nothing, but after a restart; where each contract and answer lies on the chain orders them (R45)
        locate = getattr(getattr(self.replica, "store", None), "locate_tx", None)
        prior = interval_resume.on_chain(self.replica.app.state, nodes, t, locate)
        if prior.resumed:
            log.info("interval %d resumed after a restart: the DSO chain holds %s", t, prior.record())
            if prior.plan is None:  # the MGs' answers to its last iteration, where still on their way
                got = await self.gather(t, prior.iterations, mgs & set(got), s.wait_s, s.rebargain_wait_s)
        received = time.time()
        injections = {mg: (got.get(mg, (0, 0))[0] / 1e6, 0.0) for mg in sorted(mgs)}
        self.live.injections[t] = dict(injections)
        self.planner.open_set = planned_from = tuple(sorted(self.live.open_set))
        analysis = await asyncio.to_thread(self.planner.analyse, t, injections)
        if prior.plan is not None:  # its switching began before the stop, so its security loop had ended
            loop = SecurityRounds(dict(injections), analysis.unmet, iterations=prior.iterations + 1)
        else:  # an MG with no injection at all is down: the re-bargaining iterations do not wait for it either
            loop = await self.security_loop(t, mgs & set(got), injections, analysis, prior.iterations)
        injections = loop.injections
        for old in sorted(self.live.injections)[:-8]:
            del self.live.injections[old]
        analysed = time.time()
        plan_doc: dict[str, Any] | None = None
        try:
            if prior.plan is None:
                plan, result = await asyncio.to_thread(
                    self.switch, t, analysis.target_open, planned_from, injections
                )
            else:  # planned once (its id once per chain); the relays' positions were adopted at start
                plan, result = None, None
                plan_doc = {"id": interval_resume.plan_id(t), "before_restart": True}
        except Exception as exc:
            plan, result, plan_doc = None, None, {"error": f"{type(exc).__name__}: {exc}"[:300]}
        if plan is not None and result is not None:
            plan_doc = {
                "id": plan.plan_id, "ok": result.ok, "alarm": result.alarm, "final_open": list(result.final_open),
                "operations": [{"branch": st.branch, "close": st.close, "ok": st.ok, "rollback": st.rollback}
                               for st in result.steps],
            }  # fmt: skip
        switched = time.time()
        from peergrid_dso.services.interval import profile

        open_now = tuple(sorted(self.live.open_set))
        after = await asyncio.to_thread(profile, self.planner.feeder, open_now, injections)
        secure = not after["violations"]
        unmet = loop.unmet if not secure else None
        if not secure and unmet is None:
            unmet = f"still violated after {loop.iterations - 1} re-bargaining iterations: {after['violations'][0]}"
        self.publish({"interval": t, "iteration": loop.iterations, "final": True, "secure": secure,
                      "open": list(open_now), "unmet": unmet})  # fmt: skip
        self.record(
            {
                "interval": t, "injections_kw": {mg: p * 1000 for mg, (p, _) in injections.items()},
                "missing": sorted(mgs - set(got)), "revoked": sorted(set(s.mgs) - mgs),
                "before": analysis.before, "after": after,
                "reconfiguration": analysis.reconfiguration, "plan": plan_doc, "adjustments": loop.adjustments,
                "rebargain": loop.rounds, "unmet": unmet, "secure": secure, "iterations": loop.iterations,
                "imbalance_kw": sum(p for p, _ in injections.values()) * 1000,
                "times": {"injections": received, "analysed": analysed, "switched": switched, "end": time.time()},
                "height": self.replica.app.head().height,
                **({"resumed": prior.record()} if prior.resumed else {}),
            }
        )  # fmt: skip

    async def security_loop(
        self,
        t: int,
        mgs: set[str],
        injections: dict[str, tuple[float, float]],
        analysis: Any,
        already: int = 0,
    ) -> SecurityRounds:
        """Design step 6, the re-bargaining iterations of interval t (`security_rounds.security_loop`)."""
        return await security_rounds.security_loop(self, t, mgs, injections, analysis, already)

    async def reopen(self, t: int, ref: bytes, mgs: Iterable[str] = ()) -> Reopening:
        """Reopen interval t on the MGMC chain for an iteration's re-bargaining (`security_rounds.reopen`)."""
        return await security_rounds.reopen(self, t, ref, mgs)

    def record(self, doc: dict[str, Any]) -> None:
        if self.settings.record_file is not None:
            append_record(self.settings.record_file, doc)
        for listener in self.listeners:
            try:
                listener(doc)
            except Exception:  # a console listener never stops the loop
                log.exception("interval listener failed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROGRAM, description="the DSO node of the lab testbed's closed loop"
    )
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        settings = load_settings(args.config, IntervalNodeSettings)
        asyncio.run(serve(settings))
    except ConfigError as exc:
        exit_with_config_error(PROGRAM, exc)
    return 0


__all__ = [
    "REOPEN_WAIT_S",
    "DsoLoop",
    "Reopening",
    "SecurityRounds",
    "answer",
    "build_feeder",
    "forward_traded",
    "main",
    "relay_driver",
    "serve",
]


if __name__ == "__main__":
    sys.exit(main())
