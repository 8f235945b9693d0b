"""What the edge's exchange agents share: the replica they use, the stage's deadline and outcome, and the
one way they submit a transaction (`dayahead_agent` for the session, `forward_agent` for its forward trades).

Promises: `submit_final` signs, submits and waits for a final block (by the rule every transaction of this MGMC's
keys follows: `own_nonce.submit_own`), and turns a refusal (or no final block in time: `NotFinal`, it may still
land) into `SessionFailed` naming it, never retried. Pure data otherwise; no clocks, no I/O of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from peergrid_edge.own_nonce import submit_own
from peergrid_edge.replicas import Submission
from peergrid_ledger import keys

ROLE = "mgmc"


class Replica(Protocol):
    """What the agent uses of `replicas.EdgeLedger`."""

    replicas: Mapping[str, Any]  # by role: its chain's replica (the genesis: `.app.genesis`)

    def state(self, role: str) -> Any: ...

    def next_nonce(self, role: str, sender: bytes) -> int: ...

    def sign(
        self, role: str, keypair: keys.Keypair, kind: str, body: dict[str, Any], nonce: int
    ) -> bytes: ...

    async def submit(self, role: str, raw: bytes, timeout_s: float) -> Submission: ...

    async def wait_for(self, role: str, predicate: Callable[[Any], bool], timeout_s: float) -> bool: ...

    def transaction(self, role: str, txid: bytes) -> Any | None: ...


@dataclass(frozen=True)
class Deadline:
    """The day-ahead stage's time before the first interval it trades (trader.py computes it): `close_s`
    (wall s) is when the coordinator closes the session however far it got; `clear_ms` (block time) is the
    session's deadline on the chain (`exchange.open`'s), after which any member may clear it: before it the
    coordinator clears once the accept rounds settle, after it once the members that accepted settled, or at
    its hard stop however far they got (forward_agent.py)."""

    close_s: float
    clear_ms: int


@dataclass(frozen=True)
class SessionOutcome:
    session: str
    completed: bool
    reason: str  # why the stage failed ("" when it completed): the MGMC trades intraday as before
    coordinator: bool
    # ADMM iterations stepped after the first responses (a value stop's verdict round, posted and abandoned
    # by the close, is not one: `allocate` counts it, so its `iterations` is one more)
    iterations: int
    stop: str  # "kwh", "value", "cap", or "" when it failed
    prices: tuple[int, ...]  # the chain's prices when it ended (nano-currency per kWh)
    positions: tuple[int, ...]  # this MG's last stepped positions (Wh, + sell); its last posted on a failure
    fee: int = 0  # the session's exchange fee as its record holds it (nano per kWh per side; 0: none)


class SessionFailed(Exception):
    """The stage cannot go on; the message says why."""


class NotFinal(SessionFailed):
    """A transaction was not in a final block in time: it may still land (the caller may wait for it)."""


async def submit_final(
    ledger: Replica,
    key: keys.Keypair,
    kind: str,
    body: dict[str, Any],
    timeout_s: float,
    before_submit: Callable[[], None],
) -> None:
    """Sign, submit and wait for a final block; a refusal (or no final block in time) is SessionFailed
    naming it: never retried, but for the one rule of this MGMC's own nonces (`own_nonce.submit_own`: a
    transaction of the same key pending in the pool waited for up to `timeout_s` first, one lost to it signed
    again once)."""
    outcome = await submit_own(ledger, ROLE, key, kind, body, timeout_s, timeout_s, before_submit)
    if not outcome.landed:
        at = f" of iteration {body['iteration']}" if "iteration" in body else ""
        failed = SessionFailed if outcome.final else NotFinal
        raise failed(f"the chain refused this MGMC's {kind}{at}: {outcome.reason}")


def short(value: Any) -> str:
    if isinstance(value, bytes):
        return value.hex()[:16] + "…"
    if isinstance(value, list):
        return "[" + ", ".join(short(v) for v in value) + "]"
    return repr(value)
