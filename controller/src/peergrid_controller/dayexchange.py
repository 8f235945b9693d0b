"""The exchange ADMM's public arithmetic and each MG's private side for the day-ahead allocation (dayahead.py
runs its phases, dayrounds.py its rounds).

In the chain's units, so that the exchange contract (peergrid_ledger.contracts.exchange) computes the very
same prices: each MG's answer is rounded to the whole Wh before anything public uses it (only the MG's own
proximal anchor keeps its unrounded answer: `anchor` says why), prices are int nano-currency per
kWh updated by the contract's own `next_prices`, ρ int nano per kWh² (residual balancing within the
contract's [ceil(ρ/2), 2ρ]); the MG models get them ÷ 10**9. Measured (96 quarter-hours, share of the
central gain): seed 1, 6 / 20 / 100 MGs 20 / 34 / 27 iterations before and after, 0.99854 / 0.99817 /
0.9991 → 0.99857 / 0.99818 / 0.99914; the 20-MG owner-rules days, seeds 1 / 2 / 3, 897 / 941 / 1037 → 591 / 635 / 499 iterations,
0.9916 / 0.9995 / 0.8625 → 0.9806 / 0.9995 / 0.8521 (such days are path-dependent: to the mWh, seed 1
gives 0.9888 in 658). With a
`recorder` (`ExchangeRecorder`; the MGMC chain's in chain_venue.py) every move is posted as it is made:
iteration 0 (the first responses), each MG's positions every iteration, a step after each, a close at the
end; after each step the recorder's prices are compared with ours and any difference, like any refusal,
stops the allocation with DayAheadError (a chain that disagrees is never silently followed). An allocation
that stops on any error closes its session where it stands (the unfinished iteration abandoned), so none is
left open; a refusal of that close is added to the error. Without a recorder nothing changes.
Public and private apart (so that each MGMC can run its own side from the chain: edge dayahead_agent.py):
`Book` is what anyone computes from the chain alone (positions posted, prices, ρ: the mean, the residuals,
the price update, ρ's balancing, the kWh stop); `answer` and `anchor` are one MG's private side (its own
DayModel within its own bounds and fees, its proximal anchor from its own unrounded answer, its answer
rounded to the Wh, and its verdict for the value stop: `settled`, from `Book`'s public moves and
imbalance ratios and its own tariff spread and positions); the owners' rules are judged apart too
(dayjudge.py: each MG's own `OwnRules`, their public `Coordination`). `dayrounds.Exchange` is all of them
for the simulation, where one process holds every MG, and says who judges what when. The value stop needs
nothing private from the coordinator: on a recorder every MG posts its verdict on an iteration with its
next position (the exchange contract's `settled`, from iteration 2 on, where the value stop is judged),
the recorder's count of them is checked against ours before every step, and once every MG's verdict on
iteration k is settled the MGs post iteration k+1 with them and the session closes without stepping it
(abandoned by the contract), so the allocation is iteration k's, as without a recorder: one round and one
solve per MG more. Each MG's judgement of its own rules goes with the same posts (`judged`).
The stops (`dayrounds.Exchange.run`): both residuals within a kWh tolerance, or, where `allocate` allows
it, the value stop (`at_stake`, `settled`), either only where the owners' rules judged at the prices found
change nothing.
Deterministic (HiGHS single-threaded, MGs in scenario order). Never reads clocks or I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeGuard

from peergrid_controller import exchange_fee
from peergrid_controller.dayjudge import Judgement
from peergrid_controller.dayjudge import on_tick as on_tick  # re-exported: the edge imports it from here
from peergrid_controller.daymodel import DayModel
from peergrid_controller.dayrules import Fees
from peergrid_controller.market import PRICE_TICK, Rejected, Verdict, wh
from peergrid_ledger.contracts.exchange import MAX_RHO, next_prices, rho_bounds

NANO = 10**9  # nano-currency per currency unit: the chain's prices (per kWh) and ρ (per kWh²) are in nanos


def nano(value: float) -> int:
    """Currency (per kWh, or per kWh²) in whole nano-currency, as the exchange contract keeps it."""
    return round(value * NANO)


Stop = Literal["kwh", "value", "cap"]


class DayAheadError(ValueError):
    """Input the day-ahead stage cannot work with (names the field), or a chain that refused or disagreed."""


class ExchangeRecorder(Protocol):
    """Where every ADMM move goes as it is made (the exchange contract on the MGMC chain: chain_venue.py).
    Units are the chain's: positions in whole Wh (+ sell), prices in nano-currency per kWh, ρ in nano per kWh².
    Iteration 0 is every MG's first response at the opening prices; `step` ends an iteration (all MGs
    posted) and returns the prices the recorder computed; `close` is given the next iteration (unposted, or
    on a value stop, or a stop where the rules were judged, the final round that posted every MG's verdict
    and judgement, abandoned). `settled` on a position is the MG's verdict on the iteration before
    (`settled`, false unless it says so); the recorder's `settled` counts how many posts of the current
    iteration said so. `judged` on a position is the MG's judgement of its own rules on the iteration before
    (dayjudge.py; None: nothing to say); the recorder's `judgements` are the current iteration's, in member
    order, as it recorded them."""

    def open(self, names: Sequence[str], prices: Sequence[int], rho: int) -> Verdict: ...

    def position(
        self,
        name: str,
        iteration: int,
        positions_wh: Sequence[int],
        settled: bool = False,
        judged: Judgement | None = None,
    ) -> Verdict: ...

    def settled(self, iteration: int) -> int | Rejected: ...

    def judgements(self, iteration: int) -> Sequence[Judgement | None] | Rejected: ...

    def step(self, iteration: int, rho: int) -> tuple[int, ...] | Rejected: ...

    def close(self, iteration: int) -> Verdict: ...


@dataclass(frozen=True)
class DayAheadConfig:
    rho: float = 0.005  # currency per kWh²: proximal weight, and the price step per kWh of mean imbalance
    max_iterations: int = 1200  # all phases together (20-MG owner-rules days: 80–166, once 474–958)
    relaxed_iterations: int = 400  # of those, at most this many on the LP relaxation (see `allocate`)
    tolerance_kwh: float = 0.01  # primal (worst interval's imbalance) and dual (largest move) residual
    # the relaxed phase's stop (its prices only decide genset on/off; at tolerance_kwh: the method before)
    relaxed_tolerance_kwh: float = 0.1
    # the final stop on a day where no owner floor or cap is in force; opt-in (see the module contract)
    free_tolerance_kwh: float = 0.01
    # on such a day (and with unlimited DSO connections), also stop once what is still moving is worth no
    # more to any MG than `value_per_kwh` per kWh of its positions (`Exchange.at_stake`): by default one
    # tick, the stability check's default tolerance (`BargainingConfig.price_tolerance`, a separate
    # setting); 0 turns it off
    value_per_kwh: float = PRICE_TICK
    # ... of its positions, or of this many kWh where it trades fewer (`settled`): a small MG's allowance
    # (1 kWh before) was mostly spent on the mean's motion, and one such MG alone held the 20-MG rules day of
    # seed 1 five iterations that moved its share by 0.0001 (docs/market.md, M7)
    # (in the session's last phase only: before a commitment or a switch decision the prices found decide a
    # MILP, and there the floor moved a clean seller's switch on seed 3's day, 0.9971 -> 0.9956)
    value_floor_kwh: float = 100.0
    # the owners' rules are judged once both residuals are within this (0.1 before the fee margin: a fee
    # dropped a tick above its rule came back, ~300 a day; with the margin almost none do, so judging early
    # overlaps the re-settling with the first convergence: 20-MG rules day seed 1, 177 -> 80 iterations)
    rules_within_kwh: float = 3.0
    # a rule's fee is dropped only where the price found clears the rule by this much (`OwnRules.fee_change`)
    fee_margin: float = 5 * PRICE_TICK
    # residual balancing (Boyd §3.4.1): ρ doubles when the imbalance dominates, halves when the moves do
    adapt_every: int = 10
    rho_max: float = 0.5
    # on a fee day (the session's fee above 0) ρ also halves, every iteration and below the config's ρ down to
    # this, while the fee's drift lasts (`Book.follow_fee`: every MG trading less, the moves over the
    # imbalance): each side's fee moves its MG by only fee/ρ per iteration there (the lab's fee day: 135
    # iterations at ρ 0.005, 39 with it; test_ctl_fee_scenario's midday day 221 -> 45); never on a fee-0 day,
    # which runs as before to the byte
    fee_rho_min: float = 0.000625
    recommits: int = 1  # times genset on/off is decided at the prices found (a MILP per genset MG)
    commit_weight: float = 0.25  # the proximal weight of that decision, as a fraction of ρ
    resolution_kwh: float = 0.01  # the proximal square is exact at ±resolution·2^j (DayModel.proximal)
    # a clean book beside the general one on a day with a clean-only member (cleanbook.py; dayahead.py says
    # when it runs); off: such a day runs the general book alone, clean-only buyers buying nothing. Off by
    # default although it lifts the 20-MG rules days (seeds 1-8, whole day: mean share 0.9485 -> 0.9936, all
    # stable with the uplift at clean_decisions 3): rounds +118 %, and the edge plays a clean session only
    # with clean_decisions 1 (seeds 1 and 4 then unstable), so turning it on is a decision of its own
    clean_book: bool = False
    # how a clean seller's switch (sells clean, or may buy general) is decided: once after the relaxed
    # phase ("fixed"), or a MILP in every solve ("exact")
    clean_side: str = "fixed"
    # "fixed": times each seller decides its switch (again at the prices found, while any changes): 20-MG rules
    # day seed 3, 1 -> 3 decisions, worst deviation gain 9.23 -> 2.12 (today 0.89), share 0.9949 -> 0.9984
    clean_decisions: int = 3
    # the exchange fee (exchange_fee.py; the chain's genesis `exchange_fee`, the session's `fee`): nano-currency
    # per kWh on each side of every day-ahead trade, in every MG's model (its answers, commitment, switch,
    # accept check and deviation); 0: none, every day as before to the byte
    exchange_fee: int = 0
    # the simulation's trading windows: (MG name, first, last), session intervals, as an MGMC states its window
    # on the chain with its first forward accept (`exchange.accept`'s `window`): that MG answers the session as a
    # day that trades P2P only in [first, last] (its day solved with nothing traded outside: dayjudge.OwnRules),
    # for it can trade nowhere else and positions there would move the prices with energy that never clears. An
    # MG not named trades the whole session; none named: every day as before, to the byte. An edge MGMC answers
    # within its own (`DayAheadAgent`'s `window`), not this
    windows: tuple[tuple[str, int, int], ...] = ()

    def window_of(self, mg: str) -> range | None:
        """The session intervals MG `mg` trades in (`windows`); None: all of them."""
        return next((range(first, last + 1) for name, first, last in self.windows if name == mg), None)

    def __post_init__(self) -> None:
        try:
            exchange_fee.check(self.exchange_fee)
        except ValueError as exc:
            raise DayAheadError(str(exc)) from None
        if not (math.isfinite(self.rho) and nano(self.rho) >= 1):
            raise DayAheadError(
                f"rho must be finite and >= 1e-9 (the chain keeps it in nanos), got {self.rho}"
            )
        if not (math.isfinite(self.rho_max) and self.rho <= self.rho_max <= MAX_RHO / NANO):
            raise DayAheadError(
                f"rho_max must be finite, >= rho and <= {MAX_RHO / NANO:g} (the exchange contract's limit), "
                f"got {self.rho_max}"
            )
        if not (math.isfinite(self.fee_rho_min) and nano(self.fee_rho_min) >= 1):
            raise DayAheadError(f"fee_rho_min must be finite and >= 1e-9, got {self.fee_rho_min}")
        if self.max_iterations < 1:
            raise DayAheadError(f"max_iterations must be >= 1, got {self.max_iterations}")
        if not 0 <= self.relaxed_iterations < self.max_iterations:
            raise DayAheadError(
                f"relaxed_iterations must be in [0, max_iterations), got {self.relaxed_iterations}"
            )
        for name in ("tolerance_kwh", "free_tolerance_kwh", "relaxed_tolerance_kwh", "rules_within_kwh"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise DayAheadError(f"{name} must be finite and > 0, got {value}")
        if not (math.isfinite(self.fee_margin) and self.fee_margin >= 0):
            raise DayAheadError(f"fee_margin must be finite and >= 0, got {self.fee_margin}")
        if not (math.isfinite(self.value_per_kwh) and self.value_per_kwh >= 0):
            raise DayAheadError(f"value_per_kwh must be finite and >= 0, got {self.value_per_kwh}")
        if not (math.isfinite(self.value_floor_kwh) and self.value_floor_kwh > 0):
            raise DayAheadError(f"value_floor_kwh must be finite and > 0, got {self.value_floor_kwh}")
        if not (math.isfinite(self.resolution_kwh) and self.resolution_kwh > 0):
            raise DayAheadError(f"resolution_kwh must be finite and > 0, got {self.resolution_kwh}")
        if self.recommits < 1:
            raise DayAheadError(f"recommits must be >= 1, got {self.recommits}")
        if not (math.isfinite(self.commit_weight) and self.commit_weight > 0):
            raise DayAheadError(f"commit_weight must be finite and > 0, got {self.commit_weight}")
        if self.clean_side not in ("fixed", "exact"):
            raise DayAheadError(f"clean_side must be 'fixed' or 'exact', got {self.clean_side!r}")
        if self.clean_decisions < 1:
            raise DayAheadError(f"clean_decisions must be >= 1, got {self.clean_decisions}")
        if self.adapt_every < 0:
            raise DayAheadError(f"adapt_every must be >= 0, got {self.adapt_every}")
        for window in self.windows:
            if not (
                isinstance(window, tuple)
                and len(window) == 3
                and isinstance(window[0], str)
                and all(type(v) is int for v in window[1:])
                and 0 <= window[1] <= window[2]
            ):
                raise DayAheadError(
                    f"a window is (MG name, first, last) with 0 <= first <= last whole intervals, got {window!r}"
                )
        names = [window[0] for window in self.windows]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise DayAheadError(f"windows names {twice[0]!r} more than once: an MG states one window")


class Book:
    """The exchange's public arithmetic: what anyone computes from the chain alone (the positions posted, the
    prices, ρ), so a coordinator and every member compute the same integers. Positions in whole Wh (and `q`
    the same in kWh), the per-interval mean, the residuals, the price update (the exchange contract's own
    `next_prices`), ρ's residual balancing (and on a fee day its following of the fee's drift) and the kWh
    stop. Nothing here knows an MG's DER data, bounds, tariff or unrounded answer (those are `answer`'s and
    the MG's own)."""

    def __init__(self, cfg: DayAheadConfig, prices_nano: Sequence[int], members: int, fee: int = 0) -> None:
        self.cfg = cfg
        self.members = members
        self.n = len(prices_nano)
        self.prices = list(prices_nano)
        self.rho = self.rho_min = nano(cfg.rho)
        self.rho_max = nano(cfg.rho_max)
        # the session's exchange fee (nano/kWh per side: the chain's record, `market_fee.session_fee`, never a
        # member's config) decides whether ρ follows a fee's drift (`follow_fee`)
        self.fee = fee
        self.fee_rho_min = min(nano(cfg.fee_rho_min), self.rho_min)  # a config's ρ below it: never below that
        # the imbalance (kWh) when a fee's drift first took ρ below the config's (`follow_fee`); None until it
        # does. The value stop waits for half of it (`lowered`). Not in the chain's state: an MGMC's restart
        # takes it from its checkpoint (dayahead_restart), a book rebuilt from the chain alone reads it back
        # from the session's blocks (dayahead_rejoin.drift_from: the posts of the first step below that ρ)
        self.drift_from: float | None = None
        self.iterations = 0  # the ADMM iterations after the first responses (iteration 0)
        self.stop_primal = 0.0  # the last `advance`'s kWh stop on the imbalance (its tolerance and rounding)
        self.primal = self.dual = math.inf
        self.q_wh: list[tuple[int, ...]] = []
        self.q: list[tuple[float, ...]] = []  # the same positions in kWh
        self.mean: list[float] = [0.0] * self.n
        # the session's last phase: no genset commitment or clean switch decision follows it (public, by
        # count: both drivers set it); only there is a verdict's allowance floored at `value_floor_kwh`
        self.final_phase = False

    @property
    def price_floats(self) -> list[float]:
        """λ_t in currency per kWh, as the MG models take them."""
        return [p / NANO for p in self.prices]

    @property
    def rho_float(self) -> float:
        return self.rho / NANO

    @staticmethod
    def imbalance(sums_wh: Sequence[int]) -> float:
        """The primal residual (kWh) of an iteration whose posted positions sum to `sums_wh` per interval
        (`take`): its worst interval's imbalance. A rejoin reads `drift_from` back from the chain with it
        (edge dayahead_rejoin), so both are this one expression."""
        return max(abs(s) for s in sums_wh) / 1000

    def take(self, positions_wh: Sequence[tuple[int, ...]]) -> list[int]:
        """Make `positions_wh` (every member's, as posted) the current positions; the per-interval sums (Wh)."""
        sums = [sum(qi[t] for qi in positions_wh) for t in range(self.n)]
        self.q_wh = list(positions_wh)
        self.q = [tuple(v / 1000 for v in qi) for qi in positions_wh]
        self.mean = [s / (1000 * len(positions_wh)) for s in sums]
        return sums

    def advance(
        self, positions_wh: Sequence[tuple[int, ...]], tolerance: float
    ) -> tuple[bool, list[list[float]]]:
        """One ADMM iteration's public half, from every member's posted positions: the residuals, the new
        prices, and ρ for the next iteration (balanced every `adapt_every` iterations unless converged). True
        once both residuals are within `tolerance` (kWh) beyond what rounding every answer to the Wh can
        make; and every member's move relative to the mean (kWh per interval: its part of the dual residual)."""
        cfg, n = self.cfg, self.n
        self.iterations += 1
        old_q, old_mean = self.q, self.mean
        sums = self.take(positions_wh)
        new_q, new_mean = self.q, self.mean
        self.primal = self.imbalance(sums)
        moves = [
            [(a[t] - b[t]) - (new_mean[t] - old_mean[t]) for t in range(n)]
            for a, b in zip(new_q, old_q, strict=True)
        ]
        self.dual = max(abs(m) for mg_moves in moves for m in mg_moves)
        self.prices = list(next_prices(self.prices, sums, len(positions_wh), self.rho))
        # each posted position is its MG's answer rounded to the Wh, so the posted sum can be up to half a Wh
        # per MG off the answers' own sum, and a posted move up to a Wh off the answer's: what rounding alone
        # makes is no residual (100 MGs left 24 Wh of imbalance and never stopped at 10; a 100-MG rules day
        # stopped at the cap with moves of 10.1 Wh)
        rounding = len(positions_wh) / 2 / 1000
        self.stop_primal = tolerance + rounding  # the kWh stop's imbalance: `lowered` never waits for less
        converged = self.primal <= self.stop_primal and self.dual <= tolerance + 0.001
        if not converged and cfg.adapt_every and self.iterations % cfg.adapt_every == 0:
            self.balance_rho()
        elif not converged and self.fee:
            # nobody trades more in any interval, beyond what the dual's stop lets a move be
            grew = max(abs(a[t]) - abs(b[t]) for a, b in zip(new_q, old_q, strict=True) for t in range(n))
            self.follow_fee(grew <= tolerance + 0.001)
        return converged, moves

    def rules_near(self) -> bool:
        """Whether both residuals are within `rules_within_kwh`: the owners' rules are judged from there on
        (dayjudge.judge_own)."""
        near = self.cfg.rules_within_kwh
        return self.primal <= near and self.dual <= near

    def imbalance_ratios(self) -> list[float]:
        """Per interval, the imbalance over the mean of the two sides' volumes, (sold + bought) / 2: the same for
        every MG, so it is worked out once per step (0 where nothing is traded, which leaves no imbalance
        either). Public: from the positions posted."""
        ratios = []
        for t in range(self.n):
            volume = sum(abs(qj[t]) for qj in self.q) / 2  # at least the short side's volume
            ratios.append(abs(self.mean[t]) * len(self.q) / volume if volume > 0 else 0.0)
        return ratios

    def balance_rho(self) -> None:
        """Residual balancing: ρ doubles when the imbalance dominates, halves when the moves do, within
        [ρ of the config, rho_max] (or keeps a lower ρ a fee's drift left, `follow_fee`) and within the
        contract's rule for a step's new ρ, [ceil(ρ/2), 2ρ]."""
        low, high = rho_bounds(self.rho)
        if self.primal > 10 * self.dual:
            self.rho = min(high, self.rho_max)
        elif self.dual > 10 * self.primal:
            # below the config's ρ (`follow_fee`) the moves dominating keep it where it is: raising it to
            # the config's could be more than the contract's doubling
            self.rho = max(low, min(self.rho, self.rho_min))

    def follow_fee(self, trading_less: bool) -> None:
        """On a fee day, between the balancing iterations. With the imbalance dominating (primal over 10×
        dual, the balancing's own test) ρ doubles back towards the config's (the contract's 2ρ), if below it.
        Otherwise, while the fee's drift lasts, ρ halves (the contract's ceil(ρ/2)), down to `fee_rho_min`:
        the moves are at least the imbalance (dual ≥ primal) and every MG is `trading_less` (no position grew
        in any interval beyond the kWh stop's tolerance). The fee makes the trades that were worth nothing
        without it (an MG's own use sold at its retail) worth less than nothing, and every MG unwinds them by
        at most fee/ρ per iteration (the proximal term's step) while the price barely moves: a smaller ρ takes
        bigger steps. The drift is not told by the kWh stop: the proximal term is exact only at
        ±resolution·2^j (`DayModel.proximal`), so MGs drifting at fee/ρ = 0.2 kWh move 0.16 or 0.32 and leave
        up to 0.32 kWh unmatched (test_ctl_fee_scenario's midday day: never within the kWh stop in 221
        iterations). Nor by the imbalance alone: halving wherever the imbalance moved no price by more than
        the fee also halved ρ while the book was still converging and took a 4-MG rules day from 33 to 79
        iterations; with an MG trading more, or the imbalance over the moves, this is no drift. Once the
        drift has run out the imbalance left dominates and ρ returns to the config's, where the value stop
        is taken once the imbalance is back under half what it was when ρ first halved (`lowered`)."""
        if self.primal > 10 * self.dual:
            self.rho = max(self.rho, min(rho_bounds(self.rho)[1], self.rho_min))
        elif trading_less and self.primal <= self.dual:
            rho = max(rho_bounds(self.rho)[0], min(self.rho, self.fee_rho_min))
            # the first halving below the config's (one from above it, where balancing raised ρ, is not a drift)
            if rho < self.rho_min and self.drift_from is None:
                self.drift_from = self.primal
            self.rho = rho

    @property
    def lowered(self) -> bool:
        """Whether a fee's drift still holds the book (`follow_fee`): ρ below the config's, or, once a drift
        took it there, the imbalance over half what it was when ρ first halved (`drift_from`) and over the kWh
        stop's own (`stop_primal`). No MG says settled then: the value stop waits.
        Below the config's ρ the steps are the drift's, up to 8× a step at the config's ρ, and the imbalance
        they leave is priced out up to 8× slower: taken there, test_ctl_fee_scenario's midday day stopped
        after 39 iterations with 0.31 of its fee-0 gain of 103.02 unmatched (102.71); waiting, after 45 with
        0.02 (103.00). The drift can also leave more imbalance than it found (case136ma-30mg at one tick: ρ/8
        for 120 iterations while the imbalance grew to 12.7 kWh): taken as soon as ρ was back, the value stop
        left 0.78 kWh unmatched after 213 iterations (share of the central gain 0.99960, 0.99994 before the
        rule); waiting for half the imbalance ρ first halved on, the kWh stop after 225 (0.99995)."""
        if self.rho < self.rho_min:
            return True
        # never for less than the kWh stop's own imbalance: a drift that began on a balanced book (drift_from
        # near 0) would otherwise leave the value stop only within what rounding alone leaves (R36)
        return self.drift_from is not None and self.primal > max(self.drift_from / 2, self.stop_primal)


class CleanRecorder(ExchangeRecorder, Protocol):
    """A recorder that also keeps a clean book (the chain's: chain_exchange.py), saying so with `clean_book`:
    on a clean session (cleanbook.py) it is opened with the clean book's prices, each position carries the
    MG's clean positions and its declaration that it sells clean, and `step` returns both books' prices,
    general then clean."""

    clean_book: bool

    def open(
        self, names: Sequence[str], prices: Sequence[int], rho: int, clean_prices: Sequence[int] | None = None
    ) -> Verdict: ...

    def position(
        self,
        name: str,
        iteration: int,
        positions_wh: Sequence[int],
        settled: bool = False,
        judged: Judgement | None = None,
        clean_positions: Sequence[int] | None = None,
        clean: bool = False,
    ) -> Verdict: ...


def keeps_clean(recorder: object) -> TypeGuard[CleanRecorder]:
    """Whether `recorder` keeps a clean book (says so with `clean_book = True`); no recorder keeps none."""
    return recorder is not None and getattr(recorder, "clean_book", False) is True


def unfollowed(chain: Sequence[int], ours: Sequence[int], iteration: int, whose: str) -> str | None:
    """Why the prices the chain gave after stepping `iteration` are not `ours` to the nano (None: they are);
    `whose` names our side in the reason ("this MGMC computes", "the coordinator's is"). The coordinator's
    recorder and every member's replica check a step with it."""
    if len(chain) != len(ours):
        return f"the chain gave {len(chain)} prices after iteration {iteration} for {len(ours)} intervals"
    for t, (theirs, own) in enumerate(zip(chain, ours, strict=True)):
        if theirs != own:
            return (
                f"the chain's price for interval {t} after iteration {iteration} is {theirs} nano/kWh where "
                f"{whose} {own}: not followed"
            )
    return None


def at_stake(
    spread: Sequence[float],
    moves: Sequence[float],
    position: Sequence[float],
    ratios: Sequence[float],
    worth: Sequence[float] | None = None,
) -> float:
    """What is still moving, valued for one MG, per interval: its move relative to the mean (`moves`, its part
    of the dual residual, `Book.advance`) plus |its position| (kWh) times `ratios` (`Book.imbalance_ratios`:
    the imbalance, the primal residual, over the mean of the two sides' volumes), each kWh at its `spread`,
    its retail less its feed-in (the most a P2P kWh is worth to it against the DSO while its DSO connection is
    unlimited: `allocate` applies the value stop only then). Private: the spread is the MG's own tariff.
    Deliberately conservative: matching.match cuts only the long side, in proportion to its own volume, so a
    long-side MG is charged up to twice its cut and a short-side MG is charged although it is not cut (exact
    pro-rata stopped the test's 8-MG day at 19 iterations instead of 21). What this iteration still changes
    for the MG, at its own worth: not what it would gain from the iterations to come, which the stability
    check after the commitment measures. `worth` (per interval, ≤ spread; None: the spread) values the move
    alone: with an exchange fee, a move that only unwinds the MG's position is worth its own margin
    (exchange_fee.unwinding_worth)."""
    moved = spread if worth is None else worth
    return sum(
        moved[t] * abs(moves[t]) + spread[t] * abs(position[t]) * ratios[t] for t in range(len(position))
    )


def settled(
    spread: Sequence[float],
    moves: Sequence[float],
    position: Sequence[float],
    ratios: Sequence[float],
    value_per_kwh: float,
    tolerance_kwh: float = 0.0,
    rounding_kwh: float = 0.0,
    floor_kwh: float = 1.0,
    worth: Sequence[float] | None = None,
) -> bool:
    """One MG's verdict on a stepped iteration, computed by the MG alone (the public `moves` and `ratios` of
    `Book`, its own `spread` and `position`): what is still moving is worth no more than `value_per_kwh` per
    kWh of its positions, or of `floor_kwh` where it trades fewer (`DayAheadConfig.value_floor_kwh`), by
    `at_stake`. It posts the verdict with its next position (the exchange contract's `settled`); the value
    stop is every MG's verdict settled. The floor: `at_stake` charges every MG the mean's motion at its own
    spread, the same kWh for all, so a small MG's allowance went mostly on it (seed 1's 20-MG rules day: mg005,
    67 kWh a day, 0.02 of its 0.067) and it alone held the stop while nothing it did moved the share
    (docs/market.md, M7). Or it alone meets the kWh stop (its moves within `tolerance_kwh` and its share of
    each imbalance within it plus `rounding_kwh`): with a floor of 1 kWh, an MG trading under a kWh all day
    was allowed one tick, less than one proximal step of 0.01 kWh in one interval at its spread, and such an
    MG (a clean-only buyer of seed 3's 20-MG rules day) kept the value stop off for ever. `worth`: `at_stake`'s."""
    allowance = value_per_kwh * max(sum(map(abs, position)), floor_kwh)
    if at_stake(spread, moves, position, ratios, worth) <= allowance:
        return True
    return (
        tolerance_kwh > 0
        and max(map(abs, moves)) <= tolerance_kwh + 0.001
        and max(abs(v) * r for v, r in zip(position, ratios, strict=True)) <= tolerance_kwh + rounding_kwh
    )


def anchor(own: Sequence[float], mean: Sequence[float]) -> list[float]:
    """An MG's proximal anchor (private: only the MG knows `own`): its own last answer, unrounded, less the
    posted mean. Anchored at its rounded position instead, every MG that stays put answers q_i − q̄ and rounds
    away the same fraction of a Wh: Σ_i round(q_i − S/N) = S − N·round(S/N), the same imbalance (up to N/2
    Wh) iteration after iteration, which the proximal step never projects out and the price follows by a
    drift without end; that left the 20-MG owner-rules days of seeds 1 and 2 at 0.884 and 0.861 of the
    central gain (0.992 and 0.999 before rounding, 0.989 and 0.999 rounded to the mWh). Anchored at its own
    answer, what MGs that stay put post telescopes: the true sum becomes minus the last rounding error, the
    posted imbalances sum to at most N Wh over any number of iterations."""
    return [own[t] - mean[t] for t in range(len(mean))]


def answer(
    model: DayModel,
    prices: Sequence[float],
    bounds: tuple[Sequence[float], Sequence[float]],
    fees: Fees,
    proximal: tuple[float, Sequence[float], float] | None = None,
) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """One MG's private answer at public prices (currency per kWh): its own day (`model`) within its own
    `bounds` (kW) and owner-rule `fees`, with the proximal term `(ρ, anchor, resolution)` after iteration 0;
    its unrounded answer (kWh: its next anchor, kept to itself) and the position it posts (whole Wh)."""
    model.trade(prices, *bounds, *fees)
    if proximal is not None:
        rho, at, resolution = proximal
        model.proximal(prices, rho, at, resolution)
    own = model.solve()
    return own, tuple(wh(v) for v in own)
