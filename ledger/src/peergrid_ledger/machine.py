"""The deterministic state machine: `apply(state, tx, ctx) -> Accepted | Rejected`.

Promises: the result depends only on the state read, the transaction bytes and the block context (chain
genesis, height, block time, proposer); `apply` never mutates `state`, never raises for anything a
transaction can contain, and returns every state change in `Accepted.writes`. Checks run cheapest first:
size, chain id, kind, sender known and not revoked (`gov.revoke`), signature, nonce (must be exactly
last + 1), time within the genesis bounds around the block time, body shape, then the kind's rules.
Pure; no I/O, no clock, no randomness.
`execute` applies a block's transactions in order and then the end-of-block hooks of the enabled contracts.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import TYPE_CHECKING

from . import keyspace as ks
from .codec import EncodeError
from .results import Accepted, Event, Reason, Rejected, Result, RuleError
from .schema import Shape, Validator, check, compile_shape
from .state import Overlay, StateReader
from .tx import Tx

if TYPE_CHECKING:
    from .genesis import Genesis

Handler = Callable[[Overlay, Tx, "BlockContext", ks.AccountRecord], list[Event] | None]
EndBlockHook = Callable[[Overlay, "BlockContext"], list[Event]]


@dataclass(frozen=True, slots=True)
class KindSpec:
    shape: Shape
    handler: Handler
    contract: str | None = None  # None: built into every chain; else only where genesis enables it
    validate: Validator | None = None  # compiled from `shape` when the registry is built


@dataclass(frozen=True, slots=True)
class BlockContext:
    """What a transaction may know about the block it lands in."""

    genesis: Genesis
    height: int
    time: int
    proposer: bytes = b""
    verified: Container[bytes] = field(default_factory=frozenset)
    """Wire bytes of transactions whose signatures were already checked (a pure cache: validity of a signature
    depends only on those bytes)."""

    @property
    def chain(self) -> str:
        return self.genesis.chain


@lru_cache(maxsize=4096)
def account_record(raw: bytes) -> ks.AccountRecord:
    """Decoded account records, memoised by their bytes (pure, so safe to share)."""
    return ks.AccountRecord.decode(raw)


def _registry() -> dict[str, KindSpec]:
    from . import core
    from .contracts import CONTRACTS

    table = {
        kind: KindSpec(s.shape, s.handler, None, compile_shape(s.shape)) for kind, s in core.KINDS.items()
    }
    for name, module in CONTRACTS.items():
        for kind, spec in module.KINDS.items():
            if kind in table:
                raise RuntimeError(f"transaction kind {kind!r} defined twice")
            table[kind] = KindSpec(spec.shape, spec.handler, name, compile_shape(spec.shape))
    return table


_KINDS: dict[str, KindSpec] = {}


def kinds() -> dict[str, KindSpec]:
    if not _KINDS:
        _KINDS.update(_registry())
    return _KINDS


def apply(state: StateReader, tx: Tx, ctx: BlockContext) -> Result:
    """Apply one signed transaction to `state` in block context `ctx`."""
    params = ctx.genesis.params
    if len(tx.raw) > params.max_tx_bytes:
        return Rejected(Reason.OVERSIZED, f"{len(tx.raw)} bytes > {params.max_tx_bytes}", tx.txid)
    if tx.chain != ctx.genesis.chain:
        return Rejected(Reason.WRONG_CHAIN, f"for chain {tx.chain!r}, this is {ctx.genesis.chain!r}", tx.txid)
    spec = (_KINDS or kinds()).get(tx.kind)
    if spec is None or (spec.contract is not None and spec.contract not in ctx.genesis.contracts):
        return Rejected(Reason.UNKNOWN_KIND, f"no transaction kind {tx.kind!r} on this chain", tx.txid)
    raw_account = state.get(ks.account(tx.sender))
    if raw_account is None:
        return Rejected(Reason.UNKNOWN_SENDER, f"sender {tx.sender.hex()[:16]}… is not known", tx.txid)
    record = account_record(raw_account)
    if not record.authorised and state.get(ks.revoked(tx.sender)) is not None:
        return Rejected(Reason.NOT_AUTHORISED, "the sender's key was revoked", tx.txid)
    if tx.raw not in ctx.verified and not tx.signature_ok():
        return Rejected(Reason.BAD_SIGNATURE, "signature does not verify", tx.txid)
    nonce_key = ks.nonce(tx.sender)
    last = ks.decode_int(state.get(nonce_key))
    if tx.nonce <= last:
        return Rejected(Reason.REPLAYED_NONCE, f"nonce {tx.nonce} already used (last {last})", tx.txid)
    if tx.nonce != last + 1:
        return Rejected(Reason.NONCE_GAP, f"nonce {tx.nonce} out of order (expected {last + 1})", tx.txid)
    if not ctx.time - params.tx_max_age_ms <= tx.time <= ctx.time + params.tx_max_future_ms:
        return Rejected(
            Reason.TIME_OUT_OF_BOUNDS,
            f"time {tx.time} outside [{ctx.time - params.tx_max_age_ms}, {ctx.time + params.tx_max_future_ms}]",
            tx.txid,
        )
    view = Overlay(state)
    view.put(nonce_key, ks.encode_int(tx.nonce))
    try:
        if spec.validate is not None:
            spec.validate(tx.body, "body")
        else:
            check(spec.shape, tx.body)
        events = spec.handler(view, tx, ctx, record)
    except RuleError as err:
        return Rejected(err.reason, err.detail, tx.txid)
    except EncodeError as err:  # e.g. a balance pushed past 64 bits: the transaction's fault, not ours
        return Rejected(Reason.INVALID, f"result out of range: {err}", tx.txid)
    return Accepted(tx.txid, view.writes, tuple(events or ()))


def end_block_hooks(genesis: Genesis) -> list[EndBlockHook]:
    from .contracts import CONTRACTS

    return [hook for name in sorted(genesis.contracts) if (hook := CONTRACTS[name].END_BLOCK) is not None]


@dataclass(slots=True)
class BlockOutcome:
    """The result of executing a block's transactions: all writes, and each transaction's result."""

    writes: dict[bytes, bytes | None]
    accepted: list[Tx]
    results: list[Result]
    events: list[Event]


class InvalidTransaction(Exception):
    def __init__(self, index: int, result: Rejected) -> None:
        super().__init__(f"transaction {index}: {result}")
        self.index = index
        self.result = result


def execute(
    state: StateReader, txs: Sequence[Tx] | Iterable[Tx], ctx: BlockContext, strict: bool = True
) -> BlockOutcome:
    """Apply `txs` in order, then the end-of-block hooks. With `strict`, any rejection raises
    `InvalidTransaction` (a received block must hold only valid transactions); without it, rejected ones are
    left out (a proposer building a block).

    Signatures not already in `ctx.verified` are checked first, all in one tight loop, and the rules run
    afterwards: the same results as checking each inside `apply`, but the crypto and the interpreter then
    do not evict each other from the CPU caches (measured: about a tenth more transactions per second)."""
    txs = list(txs)
    checked = signatures_ok(txs, ctx.verified)
    if checked:  # a set alone where nothing was checked before (the usual): its lookup needs no Python call
        ctx = replace(ctx, verified=_Either(checked, ctx.verified) if ctx.verified else checked)
    view = Overlay(state)
    accepted: list[Tx] = []
    results: list[Result] = []
    events: list[Event] = []
    for index, tx in enumerate(txs):
        result = apply(view, tx, ctx)
        results.append(result)
        if isinstance(result, Accepted):
            view.merge(result.writes)
            accepted.append(tx)
            events.extend(result.events)
        elif strict:
            raise InvalidTransaction(index, result)
    for hook in end_block_hooks(ctx.genesis):
        events.extend(hook(view, ctx))
    return BlockOutcome(view.writes, accepted, results, events)


class _Either:
    """Membership in either of two containers, without copying a possibly large one."""

    __slots__ = ("first", "second")

    def __init__(self, first: Container[bytes], second: Container[bytes]) -> None:
        self.first, self.second = first, second

    def __contains__(self, item: object) -> bool:
        return item in self.first or item in self.second


def signatures_ok(txs: Iterable[Tx], already: Container[bytes] = frozenset()) -> set[bytes]:
    """The wire bytes of those `txs` whose signatures verify (skipping ones in `already`); a transaction
    missing from the result is then re-checked, and refused, by `apply`."""
    return {tx.raw for tx in txs if tx.raw not in already and tx.signature_ok()}


def require(condition: bool, reason: Reason, detail: str) -> None:
    """Reject the transaction with `reason` unless `condition` holds."""
    if not condition:
        raise RuleError(reason, detail)


def require_role(sender: ks.AccountRecord, roles: Iterable[str], kind: str) -> None:
    if sender.roles.isdisjoint(roles):
        raise RuleError(Reason.FORBIDDEN, f"{kind} needs one of the roles {sorted(roles)}")


def require_participant(sender: ks.AccountRecord, kind: str) -> None:
    if sender.roles.isdisjoint(ks.PARTICIPANT_ROLES):
        raise RuleError(Reason.FORBIDDEN, f"{kind} needs one of the roles {sorted(ks.PARTICIPANT_ROLES)}")
    if not sender.authorised:
        raise RuleError(Reason.NOT_AUTHORISED, f"{kind}: sender is not authorised")
