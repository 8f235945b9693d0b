"""The DSO posts the day-ahead exchange fee its config names (`loop.exchange_fee`) as `market.fee` on the MGMC chain.

Promises: `FeePoster.from_settings` turns the entry (fee in nano-currency per kWh per side, whole ticks, checked at
load by `market_fee.check_fee`; `fund_cap` micro-units; `coordinators` MG names of `loop.mgs`) into the contract's
body, the coordinators resolved to their MGs' anonyms; an MGMC chain whose genesis lacks the exchange or uplift
contract (`market.fee` is the uplift contract's kind, and only `exchange.open` takes the fee) is a `ConfigError`
at start saying so (`check_chain`, for `live.preflight` to say before the server starts too). `FeePoster.run`
posts the body once where the fee, fund cap and coordinators standing on the chain (read as the contract reads
them: the DSO's latest `market.fee`, else the genesis', `standing_fee`) are not the config's: a restart, or a
genesis that already names them, sends nothing; a changed config posts again. Posted: one INFO line saying what
stands now; nothing due: one INFO line saying so (one sent earlier that landed after the adapter's wait is
told as posted, not as nothing posted); refused: one ERROR line with the chain's reason, not sent again by this
process; not final in time: sent again after `posting_passes.PASS_S`, the same body (the adapter adopts the pending
one). `standing_fee` is also what `/api/health`'s loop section says (`start_postings`).
Never blocks the event loop; reads only the replica's committed state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from peergrid_dso.posting_passes import passes
from peergrid_ledger import keys
from peergrid_ledger import keyspace as ks
from peergrid_ledger.contracts.market_fee import FEE_TICK, coordinators_in_force, fee_in_force
from peergrid_ledger.settings import ConfigError
from peergrid_ledger.state import read_obj

log = logging.getLogger("peergrid_dso.fee_poster")
NEEDED_CONTRACTS = ("exchange", "uplift")  # market.fee is uplift's kind; exchange.open copies the fee


def check_chain(genesis: Any) -> None:
    """`ConfigError` when the MGMC chain of `genesis` cannot take `loop.exchange_fee` (module)."""
    missing = [c for c in NEEDED_CONTRACTS if c not in genesis.contracts]
    if missing:
        raise ConfigError(
            f"loop.exchange_fee: the MGMC chain ({genesis.chain}) has no {' or '.join(missing)} contract, so it"
            " takes no exchange fee (market.fee is the uplift contract's, for the exchange's day-ahead sessions):"
            " remove loop.exchange_fee, or run a chain whose genesis has both"
        )


@dataclass(frozen=True)
class StandingFee:
    """The exchange fee a session opened now takes on a chain: its fee (nano-currency per kWh per side), fund
    cap (micro-units) and sanctioned openers (sorted keys), and whether the DSO posted it (`market.fee`) or it
    is the genesis'."""

    fee: int
    fund_cap: int
    coordinators: tuple[bytes, ...]
    posted: bool

    def same(self, body: Mapping[str, Any]) -> bool:
        """Whether a `market.fee` body sets what stands already."""
        wanted = (body["fee"], body["fund_cap"], tuple(sorted(body.get("coordinators", ()))))
        return (self.fee, self.fund_cap, self.coordinators) == wanted


def standing_fee(app: Any) -> StandingFee:
    """What stands on the replica `app` (its `state` and `genesis`), read as `exchange.open` reads it."""
    fee, cap = fee_in_force(app.state, app.genesis.params)
    coordinators = tuple(sorted(coordinators_in_force(app.state, app.genesis)))
    return StandingFee(fee, cap, coordinators, read_obj(app.state, ks.MARKET_FEE) is not None)


@dataclass
class FeePoster:
    """Posts `loop.exchange_fee` as `market.fee` through the DSO's MGMC-chain adapter (module)."""

    # the market.fee body: fee, fund_cap, and with a fee the coordinators' anonyms (sorted)
    body: dict[str, Any]
    coordinators: list[
        str
    ]  # the MGs those anonyms are, as the config names them (sorted): the logs say these
    adapter: Any  # node_chains.ChainAdapter on the MGMC chain
    dso_key: keys.Keypair
    refused: bool = False  # the chain refused this body: not sent again by this process
    said: bool = False  # the one INFO line on what stands was logged
    # sent and not final in the adapter's wait: should it stand at the next pass, it is this post (R40-1)
    pending: bool = False

    @classmethod
    def from_settings(cls, s: Any, adapter: Any, dso_key: keys.Keypair) -> FeePoster | None:
        """The poster for `LoopSettings` `s` (None without `exchange_fee`); `ConfigError` on a chain that has no
        uplift or exchange contract (`check_chain`)."""
        entry = s.exchange_fee
        if entry is None:
            return None
        check_chain(adapter.node.replicas[adapter.chain].app.genesis)
        body: dict[str, Any] = {"fee": entry.fee, "fund_cap": entry.fund_cap}
        if entry.fee:
            body["coordinators"] = sorted(bytes.fromhex(s.mgs[mg].anonym) for mg in entry.coordinators)
        return cls(body, sorted(entry.coordinators), adapter, dso_key)

    @property
    def app(self) -> Any:
        return self.adapter.node.replicas[self.adapter.chain].app

    def standing(self) -> StandingFee:
        return standing_fee(self.app)

    def due(self) -> bool:
        """Whether the config's fee is not what stands on the chain (and the chain has not refused it)."""
        return not self.refused and not self.standing().same(self.body)

    def _words(self) -> str:
        """The config's fee in the operator's words, for the logs."""
        fee = self.body["fee"]
        if not fee:
            return "no exchange fee (0)"
        return (
            f"an exchange fee of {fee:,} nano-currency per kWh per side ({fee // FEE_TICK} micro-unit/Wh),"
            f" fund cap {self.body['fund_cap']:,} micro-units, coordinators {', '.join(self.coordinators)}"
        )

    async def post(self) -> bool:
        """One pass: post the body if it is due. True when nothing is left pending (it landed, stands already,
        or was refused: logged, not sent again)."""
        if not self.due():
            if self.pending and not self.refused:  # the post sent at an earlier pass landed after its wait
                self.said, self.pending = True, False
                log.info("market.fee posted on the MGMC chain (final after the wait): %s, for the day-ahead "
                         "sessions opened from now on", self._words())  # fmt: skip
            elif not self.said and not self.refused:
                self.said = True
                log.info(
                    "the MGMC chain's standing exchange fee is the config's, %s: nothing posted",
                    self._words(),
                )
            return True
        result = await self.adapter.submit(self.dso_key, "market.fee", self.body, precheck=True)
        if result.ok:
            self.said, self.pending = True, False
            log.info("market.fee posted on the MGMC chain: %s, for the day-ahead sessions opened from now on",
                     self._words())  # fmt: skip
            return True
        if result.reason == "refused":
            self.refused = True
            log.error(
                "the MGMC chain refuses market.fee (%s): %s; not sent again", self._words(), result.detail
            )
            return True
        # the first not final at INFO, as the capacities and enrolments (72a3286, 21d487c): the MGMC chain makes
        # no block until the MGMCs, its validators, run, and the lab starts them after the DSO
        level = logging.WARNING if self.pending else logging.INFO
        self.pending = True
        log.log(level, "market.fee not final yet: %s %s", result.reason, result.detail)
        return False

    async def run(self, stop: asyncio.Event) -> None:
        """Post at once, then again every `PASS_S` while not final, until done or `stop` (`posting_passes.passes`)."""
        await passes(stop, self.post, "posting the exchange fee")
