"""The day-ahead exchange on the venue's MGMC chain (chain_venue.ChainVenue.exchange): the exchange ADMM's
recorder (dayexchange.ExchangeRecorder, on the ledger's exchange contract) and, after the close, the forward
trades' clearing (forward.ForwardClearing).

Promises: each MG signs its own positions (with its settled verdict when it says so, and its judgement of its
own rules when it has one: `judgements` reads them back as the contract keeps them), the first MG in scenario
order opens the session and steps it, one block is sealed per step, and the prices and the count of verdicts
returned are the contract's (the session reader's), never our own. After the close each MG signs its
`exchange.accept`, the coordinator `exchange.clear`, and the trades returned are the ones the contract
computed and recorded as the market contract's (read from the clear's events; `cleared` counts them). Every
seal checks the block kept every transaction accepted on submit (`seal_left_out`: a refusal here, a
SealError in the venue's own seals). It keeps a clean book (`clean_book`, dayexchange.CleanRecorder): a
clean session opens with `clean_prices`, every post and accept carries `clean_positions`. No sockets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from peergrid_controller.dayjudge import Judgement, decode, encode
from peergrid_controller.market import Accepted, Rejected, Trade, Verdict
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts import exchange as exchange_contract
from peergrid_ledger.contracts.exchange_clearing import cleared
from peergrid_ledger.results import Accepted as ChainAccepted

if TYPE_CHECKING:
    from peergrid_controller.chain_venue import ChainVenue


class SealError(RuntimeError):
    """A transaction accepted on submit was left out of the sealed block (refused at the block's time)."""


def seal_left_out(chain: LocalChain) -> str:
    """Why the last seal left transactions out ("" if it left none)."""
    if not chain.dropped:
        return ""
    tx, why = chain.dropped[0]
    return f"chain: sealing left out {len(chain.dropped)} transactions, the first {tx.kind}: {why}"


class ChainExchange:
    """The day-ahead exchange ADMM's moves on the venue's chain (dayahead.ExchangeRecorder). A session per
    allocation, named from the scenario and the day (the venue's count of sessions opened); its intervals are
    the forward trades' chain intervals, from 0."""

    def __init__(self, venue: ChainVenue, scenario: str) -> None:
        self.venue = venue
        self.scenario = scenario
        self.days = 0  # sessions opened on this venue
        self.session = ""
        self.coordinator = ""
        self.cleared = 0  # forward trades the contract cleared, over every session of this venue

    clean_book = True  # the exchange contract keeps a clean session (dayexchange.keeps_clean)

    def open(
        self, names: Sequence[str], prices: Sequence[int], rho: int, clean_prices: Sequence[int] | None = None
    ) -> Verdict:
        """Open the session; with `clean_prices` a clean session (a second book, cleanbook.py)."""
        strangers = [name for name in names if name not in self.venue.keys]
        if strangers:
            return Rejected(f"chain: {strangers[0]} has no account on this chain")
        # the contract's own limits, named before any MG has solved anything
        if len(names) > exchange_contract.MAX_MEMBERS:
            return Rejected(
                f"chain: {len(names)} MGs, an exchange session holds {exchange_contract.MAX_MEMBERS}"
            )
        if len(prices) > exchange_contract.MAX_INTERVALS:
            return Rejected(
                f"chain: {len(prices)} intervals, an exchange session holds {exchange_contract.MAX_INTERVALS}"
            )
        self.session = f"dayahead/{self.days}/{self.scenario}"[:64]
        self.days += 1
        self.coordinator = names[0]
        body = {
            "session": self.session,
            "first_interval": 0,
            "members": [self.venue.keys[name].public for name in names],
            "prices": list(prices),
            "rho": rho,
        }
        if clean_prices is not None:
            body["clean_prices"] = list(clean_prices)
        return self.venue._do(self.coordinator, "exchange.open", body)

    def position(
        self,
        name: str,
        iteration: int,
        positions_wh: Sequence[int],
        settled: bool = False,
        judged: Judgement | None = None,
        clean_positions: Sequence[int] | None = None,
        clean: bool = False,
    ) -> Verdict:
        """`name`'s positions at `iteration`; `settled`, its verdict on the iteration before, goes on the
        chain only when true, and `judged`, its judgement of its own rules on it, only when there is one
        (absent is none: a day without either keeps its transactions' bytes). On a clean session its
        `clean_positions` too, and `clean` (its declaration that it sells clean) when true."""
        body: dict[str, Any] = {
            "session": self.session,
            "iteration": iteration,
            "positions": list(positions_wh),
        }
        if settled:
            body["settled"] = True
        if judged is not None:
            body["judged"] = encode(judged)
        if clean_positions is not None:
            body["clean_positions"] = list(clean_positions)
            if clean:
                body["clean"] = True
        return self.venue._do(name, "exchange.position", body)

    def judgements(self, iteration: int) -> list[Judgement | None] | Rejected:
        """Each member's judgement posted at `iteration`, the session's current one, as the contract keeps
        it (`exchange.judgements`), in member order."""
        record = exchange_contract.session(self.venue.chain.view, self.session)
        if record is None:
            return Rejected(f"chain: no exchange session {self.session!r}")
        if record["iteration"] != iteration:
            return Rejected(f"chain: the session is at iteration {record['iteration']}, not {iteration}")
        posted = exchange_contract.judgements(self.venue.chain.view, self.session) or []
        return [None if body is None else decode(body) for body in posted]

    def settled(self, iteration: int) -> int | Rejected:
        """How many posts of `iteration`, the session's current one, said settled (the contract's count)."""
        record = exchange_contract.session(self.venue.chain.view, self.session)
        if record is None:
            return Rejected(f"chain: no exchange session {self.session!r}")
        if record["iteration"] != iteration:
            return Rejected(f"chain: the session is at iteration {record['iteration']}, not {iteration}")
        count: int = record["settled"]
        return count

    def step(self, iteration: int, rho: int) -> tuple[int, ...] | Rejected:
        """Step the session and seal the iteration's block; the prices the contract computed (on a clean
        session the general book's, then the clean book's)."""
        body = {"session": self.session, "iteration": iteration, "rho": rho}
        verdict = self.venue._do(self.coordinator, "exchange.step", body)
        if isinstance(verdict, Rejected):
            return verdict
        sealed = self._seal()
        if isinstance(sealed, Rejected):
            return sealed
        record = exchange_contract.session(self.venue.chain.view, self.session)
        assert record is not None  # opened above, and a session is never deleted
        prices: tuple[int, ...] = record["prices"]
        return (*prices, *record["clean_prices"]) if record.get("clean") else prices

    def close(self, iteration: int) -> Verdict:
        verdict = self.venue._do(
            self.coordinator, "exchange.close", {"session": self.session, "iteration": iteration}
        )
        return verdict if isinstance(verdict, Rejected) else self._seal()

    def ready(self) -> bool:
        """Whether this venue's last session is closed on the chain and not yet cleared (an allocation made
        without this recorder left none: its forward trades go through the market contract instead)."""
        if not self.session:
            return False
        record = exchange_contract.session(self.venue.chain.view, self.session)
        return bool(record and record["closed"]) and cleared(self.venue.chain.view, self.session) is None

    def accept(
        self,
        name: str,
        positions_wh: Sequence[int],
        clean: bool,
        clean_positions: Sequence[int] | None = None,
    ) -> Verdict:
        """`name` accepts its forward positions (whole Wh per interval, zeros to decline) on the closed
        session; on a clean session its clean book's too."""
        body: dict[str, Any] = {"session": self.session, "positions": list(positions_wh), "clean": clean}
        if clean_positions is not None:
            body["clean_positions"] = list(clean_positions)
        return self.venue._do(name, "exchange.accept", body)

    def clear(self) -> tuple[tuple[Trade, ...], ...] | Rejected:
        """The coordinator clears the closed session, one block per part (a session bigger than the
        contract's MAX_CLEAR_CELLS is cleared in parts); the trades the contract computed, per interval of
        the session (its chain intervals from `first_interval`), each sorted by (seller, buyer)."""
        events: list[tuple[str, Any]] = []
        done = False
        while not done:  # at least once: a session already cleared is the contract's refusal
            result = self.venue.chain.sign_and_submit(
                self.venue.keys[self.coordinator], "exchange.clear", {"session": self.session}
            )
            self.venue.transactions += 1
            if not isinstance(result, ChainAccepted):
                return Rejected(f"chain: {result}")
            sealed = self._seal()
            if isinstance(sealed, Rejected):
                return sealed
            events += result.events
            done = cleared(self.venue.chain.view, self.session) is not None
        record = exchange_contract.session(self.venue.chain.view, self.session)
        assert record is not None  # a session is never deleted
        out: list[list[Trade]] = [[] for _ in range(record["intervals"])]
        for trade in self.venue.trades(events, first=record["first_interval"]):
            out[trade.interval].append(trade)
            self.cleared += 1
        return tuple(tuple(day) for day in out)

    def _seal(self) -> Verdict:
        """Seal the pending moves; one the block left out (accepted, then stale) is a refusal, not lost."""
        self.venue.chain.seal()
        left_out = seal_left_out(self.venue.chain)
        return Rejected(left_out) if left_out else Accepted()
