"""A chain's genesis parameters (`Params`): the limits every replica enforces, their defaults, their checks and
their canonical form (split from genesis.py, which re-exports `Params` and `GenesisError`).

Promises: a `Params` is valid once built (else `GenesisError`, one line, naming the parameter); `to_value`
writes a parameter added after format version 1 only when it differs from its default, so every genesis
written before it keeps its bytes and hash; `from_value` refuses unknown keys, non-integers, values outside
[0, 2**63) and a late parameter spelled out at its default. Pure; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from .contracts.exchange_rounds import ACCEPT_WAIT_MS
from .contracts.market_fee import MAX_FUND_CAP, check_fee

# added after format version 1: encoded only when not the default
LATE_PARAMS = frozenset(
    {
        "max_reopens",
        "cap_on_fills",
        "settle_by_both",
        "settle_tolerance_wh",
        "settle_wait_ms",
        "settle_epoch_ms",
        "settle_interval_ms",
        "sealed_statements",
        "owed_limit",
        "close_on_clock",
        "close_after_ms",
        "close_quiet_ms",
        "max_rounds",
        "unpaid_as_debt",
        "settle_tolerance_permille",
        "seller_vouched",
        "accept_rounds",
        "accept_wait_ms",
        "accept_window_ms",
        "uplift_claim_ms",
        "anonyms_only",
        "uplift_max_spread",
        "exchange_fee",
        "uplift_fund_cap",
    }
)
FLAG_PARAMS = frozenset(  # 0 or 1
    {
        "cap_on_fills",
        "settle_by_both",
        "sealed_statements",
        "close_on_clock",
        "unpaid_as_debt",
        "seller_vouched",
        "anonyms_only",
    }
)
# meaningful only with settle_by_both 1
SETTLE_PARAMS = (
    "settle_tolerance_wh",
    "settle_wait_ms",
    "settle_epoch_ms",
    "settle_interval_ms",
    "sealed_statements",
    "owed_limit",  # debts arise only from priced settlements, so only with settle_by_both
    "close_on_clock",  # a close rule on the interval clock, which only settle_by_both chains have
    "close_after_ms",
    "close_quiet_ms",
    "unpaid_as_debt",  # a settlement's energy payment on credit: only settle_by_both settles on statements
    "settle_tolerance_permille",
    "seller_vouched",
)
ACCEPT_ROUNDS = (1, 2)  # a settled round 2 already means every member re-checked the accepts cleared
MAX_ACCEPT_WAIT_MS = 24 * 3600 * 1000  # a day: a day-ahead stage has no use for a longer round
MAX_SETTLE_WAIT_MS = 366 * 24 * 3600 * 1000  # a year: a deadline (block time + wait) stays far inside 64 bits
MAX_SETTLE_INTERVAL_MS = 24 * 3600 * 1000  # a day: no market interval is longer
MAX_ROUNDS = 1000  # rounds one bargaining may take (the edge's own cap is at most 200, market.max_rounds)
MAX_OWED_LIMIT = 10**15  # micro-units: far beyond any MG's credit, far inside 64 bits
MAX_SPREAD = 10**12  # micro-units per Wh: the market's largest price (schema PRICE)


class GenesisError(ValueError):
    """A genesis document that is malformed or inconsistent."""


@dataclass(frozen=True, slots=True)
class Params:
    """Limits every replica enforces. Times in milliseconds, sizes in bytes."""

    tx_max_age_ms: int = 120_000  # a transaction's time may lag its block's time by at most this
    tx_max_future_ms: int = 5_000  # ... and lead it by at most this
    block_max_future_ms: int = 5_000  # a block's time may lead the validator's clock by at most this
    max_tx_bytes: int = 64 * 1024
    max_block_txs: int = 10_000
    max_block_bytes: int = 8 * 1024 * 1024
    credit_limit: int = 0  # how far below zero a balance may go (currency micro-units)
    authority_change_delay: int = 1  # a governance change in block h governs blocks from h + delay
    # how often the DSO may reopen one trading interval for re-bargaining (market.reopen); 0: never. The
    # default is 0 so that a chain whose genesis predates the parameter keeps exactly its old rules (see
    # docs/ledger-format.md, "Adopting market.reopen"): a chain that wants re-bargaining says so in genesis.
    max_reopens: int = 0
    # 1: a buyer's `max_quantity` caps what it is allocated when the interval closes (in its own effective-price
    # order; the rule is `market_state.allocate`, docs/ledger-format.md section 4), not the sum of its requests, so it may ask several sellers and be filled up to its maximum. 0 (the
    # default, and every genesis written before the parameter): the sum of its requests is capped, as before.
    cap_on_fills: int = 0
    # 1: a trade settles on what both parties metered (`settle` is each party's statement, once; they agree
    # within `settle_tolerance_wh` and the lower is paid, or the trade is disputed and only the DSO settles
    # it; one statement alone settles it when its party sends it again `settle_wait_ms` after it landed).
    # Needs a `dso` account (Genesis) and the interval clock below. 0 (the default, and every genesis written
    # before it): the first `settle` pays. Rules in docs/ledger-format.md section 4, "Settlement on both
    # parties' statements".
    settle_by_both: int = 0
    settle_tolerance_wh: int = 0  # Wh the two statements may differ by and still agree (default: exactly)
    # > 0: the tolerance is relative-capped, min(settle_tolerance_wh, this ‰ of the trade's agreed Wh), and the
    # undelivered Wh nobody's statement owns must be exactly 0 on a priced trade: an absolute allowance was
    # one side's to take (a trade <= the tolerance settled for nothing, its compensation waived; review13
    # F3). 0 (the default, and every genesis written before it): the absolute tolerance for both. Only with
    # settle_by_both; at most 1000.
    settle_tolerance_permille: int = 0
    settle_wait_ms: int = 3_600_000  # after the first statement, how long the other party has to state
    # the market interval clock (required with settle_by_both): interval k ends at epoch + (k + 1) * interval
    # (block time, ms), and no `settle` of an interval's trade lands before it ended, so a word given before
    # the delivery cannot start the other party's wait (review9 F1). 0: no clock (only without settle_by_both).
    settle_epoch_ms: int = 0
    settle_interval_ms: int = 0
    # 1: each party's statement is sealed first (`settle` {trade, seal}: a hash of what it will state and a
    # secret salt) and revealed only once both sealed or the first seal's `settle_wait_ms` passed
    # (`market_sealed`), so the second party cannot tailor its statement to the first (review12 F1). Only
    # with settle_by_both. 0 (the default, and every genesis written before it): statements are public.
    sealed_statements: int = 0
    # a member owing more than this (micro-units: a priced settlement's unpaid `owed`) may not buy - a bid with
    # demands, a move raising a demand, an exchange purchase (`funds.refuse_debtor`). 0 (the default, and every
    # genesis written before it): any debt. Only with settle_by_both; encoded only when not the default.
    owed_limit: int = 0
    # 1: no `trade` closes interval k before it starts on the interval clock (epoch + k x interval), plus
    # `close_after_ms`, the bargaining window (restarted by a `market.reopen`, whose record then keeps its
    # block time `at`), so no key pre-closes a future interval with a 1-Wh offer (review13 F1b), nor closes a
    # reopened one before anyone re-bargained. 0 (the default, and every genesis written before it): `trade`
    # at any time, as before. Only with settle_by_both (the clock); each encoded only when not the default.
    close_on_clock: int = 0
    close_after_ms: int = 0
    # > 0 (with close_on_clock): no `trade` either while interval k's book changed (its start, a reopening, any
    # offer, bid or move) within the last close_quiet_ms of block time, until its end on the clock (a late
    # reopening: once, for close_quiet_ms), so nobody closes it while the MGMCs still move
    # (`market_close_time`). 0 (the default, and every genesis written before it): no such rule.
    close_quiet_ms: int = 0
    # > 0: the rounds one bargaining of an interval may take - an offer, bid or move at a round past its
    # opening's (0, or a reopening's `round`) + max_rounds is refused, and a re-bargaining's moves are numbered
    # on from the reopening's round (`market_close_time.check_rounds`). A declared cap on any chain: the MGMCs'
    # own cap (edge market.max_rounds) must not exceed it, and the DSO's console can say a bargaining stopped
    # at it. With close_quiet_ms it also bounds the quiet rule: one key moving once per close_quiet_ms holds an
    # interval's close at most max_rounds + 1 quiet periods past the honest MGMCs' last move, not to its end
    # (review13 F1b residual). At least 2 (the fewest an edge's bargaining stops on), at most MAX_ROUNDS.
    # 0 (the default, and every genesis written before it): no cap beyond the schema's.
    max_rounds: int = 0
    # 1: a settlement the buyer cannot pay in full within its credit still settles: the rest of the energy
    # payment is the buyer's debt to the seller (`settle_pay.pay`, `funds`), so an agreeing statement is not
    # refused and lost, and the debtor stops buying (review13 F6). 0 (the default, and every genesis written
    # before it): the whole settlement is refused (`insufficient-funds`). Only with settle_by_both.
    unpaid_as_debt: int = 0
    # 1: two agreeing statements do not pay at once: the agreed figures wait `settle_wait_ms` for the DSO's
    # word on the seller's side (its `settle` then is final), then either party's repeated statement pays them
    # (`market_vouch`; review13 F2: the buyer's PCC meter cannot show that the seller delivered). 0 (the
    # default, and every genesis written before it): agreeing statements pay. Only with settle_by_both.
    seller_vouched: int = 0
    # the exchange contract's accept round a clear needs settled (`exchange_clearing`): 1 (the default, and
    # every genesis written before it) clears round 1 at once, as before rounds; 2: every member still
    # trading re-checked the clear's pro-rata cut of exactly the accepts cleared (round 2 or later, nobody
    # changed in the last) - before the deadline and after it, among the members present then (one that
    # never accepted counts as declined) - and an open without a deadline is refused. What the coordinator
    # still sets is the deadline: `accept_window_ms` bounds how early it may fall after the close.
    accept_rounds: int = 1
    # with accept_rounds 2, after the session's deadline: how long a round stays open for a member still
    # trading before it stands on its latest accept as unchanged (so a silent member cannot hold the clear
    # for ever; exchange_rounds.py). Only with accept_rounds 2; encoded only when not the default.
    accept_wait_ms: int = ACCEPT_WAIT_MS
    # with accept_rounds 2: the least time (ms) every member has after the close to post its first accept
    # before the deadline counts it declined - `exchange.close` raises a session's deadline to its own block
    # time + this when the open's falls earlier (review9 F4: a coordinator that set a deadline already past
    # at the close let any member clear what stood before the others could accept). 0 (the default, and every
    # genesis written before it): no floor, the open's deadline as it is. Only with accept_rounds 2.
    accept_window_ms: int = 0
    # the uplift contract's claim window (`contracts/uplift.py`): a member's `uplift.claim` lands no later than
    # this after its exchange session's deadline, and `uplift.settle` need not wait for a silent member's claim
    # after it. 0 (the default, and every genesis written before it): no time limit - claims are taken until the
    # session's uplift is settled, which then waits for every member's claim only until the day's trades are
    # settled (a session without a deadline is always so). Encoded only when not the default.
    uplift_claim_ms: int = 0
    # 1: only an MGMC's anonym trades - offers, bids, moves, an exchange session's members, positions and accepts
    # (`market_state.require_anonym`) - as on every settle_by_both chain, here without it too: on a chain whose
    # genesis names each MGMC's anonym a node key that traded could only be an MGMC trading with itself and
    # setting the price the others forecast from (review17 K-B). 0 (the default, and every genesis written
    # before it): every participant trades unless settle_by_both. A consensus rule, so chosen by genesis only: a
    # chain whose history holds a node key's trade would replay to a different state. Encoded only when 1.
    anonyms_only: int = 0
    # the uplift contract's spread (micro-units per Wh) where the DSO priced no cover for a member's interval
    # (`uplift.gain_bound`): its make-whole gain there is at most its max_quantity x this. Set it to the widest
    # retail - feed-in the DSO charges its MGs (a closing price between them leaves a deviating MG no more per
    # Wh). 0 (the default, and every genesis written before it): an unpriced interval bounds the gain by 0 - the
    # chain pays no gain it cannot bound (review18 U-1; before, one unpriced interval left it unbounded).
    # A consensus rule, so chosen by genesis only. Encoded only when not the default.
    uplift_max_spread: int = 0
    # the exchange fee (nano-currency per kWh per side of every day-ahead trade; 10^6 is one tick, 1 micro-unit
    # per Wh) each exchange session opened before the DSO's first `market.fee` takes (`exchange.open` copies it
    # into the session), paid at `uplift.settle` into the uplift fund, which alone then pays the make-whole
    # (`uplift_fund`; the payers' claimed surplus no longer counts). Needs the exchange and uplift contracts.
    # 0 (the default, and every genesis written before it): no fee, the payers' surplus funds it as before.
    # A whole number of ticks, at most 10^7 (`market_fee.check_fee`). Encoded only when not the default.
    exchange_fee: int = 0
    # with exchange_fee > 0: the most the uplift fund keeps after a session's payout (micro-units); above it the
    # session's fee payers are refunded in proportion to the fees they paid (0: the fund carries nothing over).
    # At most 10^15. Encoded only when not the default.
    uplift_fund_cap: int = 0

    def __post_init__(self) -> None:
        for name in FLAG_PARAMS:
            if getattr(self, name) not in (0, 1):
                raise GenesisError(f"params.{name}: expected 0 or 1")
        for name in SETTLE_PARAMS:
            if not self.settle_by_both and getattr(self, name) != _DEFAULTS[name]:
                raise GenesisError(f"params.{name}: only with settle_by_both 1")
        if self.accept_rounds not in ACCEPT_ROUNDS:
            raise GenesisError(f"params.accept_rounds: expected one of {list(ACCEPT_ROUNDS)}")
        if self.accept_rounds == 1 and self.accept_wait_ms != ACCEPT_WAIT_MS:
            raise GenesisError("params.accept_wait_ms: only with accept_rounds 2")
        if not 1 <= self.accept_wait_ms <= MAX_ACCEPT_WAIT_MS:
            raise GenesisError(f"params.accept_wait_ms: expected 1 to {MAX_ACCEPT_WAIT_MS} ms")
        if self.accept_rounds == 1 and self.accept_window_ms:
            raise GenesisError("params.accept_window_ms: only with accept_rounds 2")
        if not 0 <= self.accept_window_ms <= MAX_ACCEPT_WAIT_MS:
            raise GenesisError(f"params.accept_window_ms: expected 0 to {MAX_ACCEPT_WAIT_MS} ms")
        if not 0 <= self.uplift_claim_ms <= MAX_SETTLE_WAIT_MS:
            raise GenesisError(f"params.uplift_claim_ms: expected 0 to {MAX_SETTLE_WAIT_MS} ms")
        if not 0 <= self.uplift_max_spread <= MAX_SPREAD:
            raise GenesisError(f"params.uplift_max_spread: expected 0 to {MAX_SPREAD} micro-units per Wh")
        try:  # the chain's one fee check, as market.fee's
            check_fee(self.exchange_fee, "params.exchange_fee")
        except ValueError as exc:
            raise GenesisError(str(exc)) from None
        if not 0 <= self.uplift_fund_cap <= MAX_FUND_CAP:
            raise GenesisError(f"params.uplift_fund_cap: expected 0 to {MAX_FUND_CAP} micro-units")
        if self.uplift_fund_cap and not self.exchange_fee:
            raise GenesisError(
                "params.uplift_fund_cap: only with exchange_fee > 0 (the DSO's market.fee carries its own cap)"
            )
        if not 0 <= self.settle_tolerance_permille <= 1000:
            raise GenesisError("params.settle_tolerance_permille: expected 0 to 1000")
        if self.close_after_ms and not self.close_on_clock:
            raise GenesisError("params.close_after_ms: only with close_on_clock 1")
        if not 0 <= self.close_after_ms <= MAX_SETTLE_INTERVAL_MS:
            raise GenesisError(f"params.close_after_ms: expected 0 to {MAX_SETTLE_INTERVAL_MS} ms")
        if self.close_quiet_ms and not self.close_on_clock:
            raise GenesisError("params.close_quiet_ms: only with close_on_clock 1")
        if not 0 <= self.close_quiet_ms <= self.settle_interval_ms:  # longer: every close after its interval
            raise GenesisError(
                f"params.close_quiet_ms: expected 0 to the interval, settle_interval_ms ({self.settle_interval_ms})"
            )
        if self.max_rounds and not 2 <= self.max_rounds <= MAX_ROUNDS:
            raise GenesisError(f"params.max_rounds: expected 0 (no cap) or 2 to {MAX_ROUNDS} rounds")
        if not 0 <= self.owed_limit <= MAX_OWED_LIMIT:
            raise GenesisError(f"params.owed_limit: expected 0 to {MAX_OWED_LIMIT} micro-units")
        if not 1 <= self.settle_wait_ms <= MAX_SETTLE_WAIT_MS:
            raise GenesisError(f"params.settle_wait_ms: expected 1 to {MAX_SETTLE_WAIT_MS} ms")
        if not 0 <= self.settle_epoch_ms < 2**63:  # as from_value reads it: a genesis written is one read
            raise GenesisError("params.settle_epoch_ms: expected an integer in [0, 2**63)")
        if self.settle_epoch_ms and not self.settle_interval_ms:
            raise GenesisError("params.settle_epoch_ms: only with settle_interval_ms")
        if not 0 <= self.settle_interval_ms <= MAX_SETTLE_INTERVAL_MS:
            raise GenesisError(f"params.settle_interval_ms: expected 1 to {MAX_SETTLE_INTERVAL_MS} ms")
        if self.settle_by_both and not self.settle_interval_ms:
            # without the clock a statement made before delivery starts the other party's wait, and the
            # early party's lone word settles against an honest one stating after its meter read (review9 F1)
            raise GenesisError(
                "params.settle_by_both: needs the market interval clock, settle_interval_ms (1 to "
                f"{MAX_SETTLE_INTERVAL_MS} ms) and settle_epoch_ms (when interval 0 starts; default 0)"
            )

    def interval_start(self, interval: int) -> int | None:
        """When (block time, ms) trading interval `interval` starts on the genesis' clock; None without one."""
        if not self.settle_interval_ms:
            return None
        return self.settle_epoch_ms + interval * self.settle_interval_ms

    def interval_end(self, interval: int) -> int | None:
        """When (block time, ms) trading interval `interval` ends on the genesis' clock; None without one."""
        if not self.settle_interval_ms:
            return None
        return self.settle_epoch_ms + (interval + 1) * self.settle_interval_ms

    def to_value(self) -> dict[str, Any]:
        # a parameter added after format version 1 is encoded only when it differs from its default, so every
        # genesis written before it keeps its bytes and hash
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in LATE_PARAMS or getattr(self, f.name) != f.default
        }

    @staticmethod
    def from_value(value: Any) -> Params:
        if type(value) is not dict:
            raise GenesisError("params: expected a map")
        known = {f.name for f in fields(Params)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise GenesisError(f"params: unknown keys {unknown}")
        for name, v in value.items():
            if type(v) is not int or not 0 <= v < 2**63:
                raise GenesisError(f"params.{name}: expected an integer in [0, 2**63)")
            if name in LATE_PARAMS and v == _DEFAULTS[name]:
                raise GenesisError(f"params.{name}: {v} is the default; omit it (it is not encoded)")
        return replace(Params(), **value)


_DEFAULTS = {f.name: f.default for f in fields(Params)}
