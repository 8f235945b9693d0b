"""The closed loop's DSO node inside `peergrid-dso serve` (`EmbeddedLoop`, what the config's `loop:` section
starts), and the check of that section before the web server starts (`preflight`). The node itself, assembled
and run, is `dso_node.DsoNode`.

Promises: `EmbeddedLoop(settings).start()` runs a `DsoNode` - the DSO-chain replica (an authority), the
MGMC-chain replica (a non-voting follower, through which the loop reopens intervals for re-bargaining, and with
a `disputes` section where it settles disputed trades: `dispute_node`) when configured, enrolment and the
per-interval security check, adjustments and switching through the Modbus relays, writing `record_file` exactly
as the standalone node does - on a thread of its own with its own event loop, and returns the console's
`DsoServices` built on that node (one chain, one executor, one topology), whose enrolment queue holds the
loop's MGs and revokes on both chains: the DSO, a non-voting follower of the MGMC chain, still has the `dso`
role there and gossips its `gov.revoke` to the MGMCs' mempools (`DsoNode.mgmc_recorder`). `stop()` ends
it and closes its stores. `call(fn)` runs `fn` on the node's loop (for reads of the live ledger state, which
only that loop mutates); `readiness()` reads there what is final of the node's start's postings
(`start_postings.readiness`: the MGs enrolled on the DSO chain, `tariffs_through` and the connection
`capacities` on the MGMC chain) for `/api/health`, and `ledger()` whether the node's ledger transport still
reaches the broker and its network thread runs (`live_reconnect.LedgerLink`, which starts that transport);
`chain_word(queue)` reads there which of the enrolment queue's MGMC keys are revoked and which anonyms' enrolment
landed (the console's start takes its word on the queue read back from its file: `EnrolmentService.follow_chain`;
`stored_word` reads the same from the stores on disk before the node opens them, for `serve`'s check of the loop's keys);
an MGMC counts as revoked, there and in the loop's own MGs (`loop_enrolments`), only where its revocation is
complete (`_word`): one that failed half-way stays authorised, told at WARNING once per start (the loop's MGs
as the node starts, then the queue's others as the console starts; `stored_word`, before the node, tells none:
the node tells the same over both chains), so the operator can repeat it;
`start_alarm` and `relay_alarm` are the relays' alarms while they stand (at start; after an interval:
`switching_watch.RelayWatch`). A start that fails (bad key file, a store of another chain) raises
`ConfigError` in the caller. `preflight(settings)` reads, before the web server starts, what the section names
and the node would fail on later (key, geneses, tariff file, relays, the broker's refusal): `ConfigError`
with one line (`peergrid-dso serve` and `check-config` exit 2).

Why a thread of its own rather than the web server's event loop: the consensus timers (block period, round
timeouts) and the MQTT inbox must keep time while the web server is busy (a power flow for a page, a slow
client), and the node then runs exactly as it does standalone (`asyncio.run`), so the two modes cannot drift.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from peergrid_dso.dso_node import DsoNode
from peergrid_dso.live_reconnect import loop_setting
from peergrid_dso.start_postings import readiness
from peergrid_ledger.settings import ConfigError

log = logging.getLogger("peergrid_dso.live")
T = TypeVar("T")


def preflight(settings: Any, *, broker: bool = True) -> list[str]:
    """Fail fast, before the web server starts, on what the loop section names but cannot be read: the DSO
    key, the chains' geneses (with `exchange_fee`, an MGMC chain that takes none: `fee_poster.check_chain`; with
    `disputes`, one whose settle wait leaves no time to post readings: `dispute_time.check_settle_wait`), the
    tariff file (read and checked as the node will: `tariff.load_tariff_file`),
    the feeder and the relays file (built as the node builds them: `switching_relays.check_relays`; branches
    without a relay are one WARNING), and, with `broker`, a broker that refuses the node for good (its TLS
    certificate, ACL login) (`ConfigError` with one line; `peergrid-dso serve` and `check-config` exit 2).
    Returns the warnings, for the caller to say (`cli`)."""
    from peergrid_ledger import keys
    from peergrid_ledger.consensus.node_cli import load_genesis

    loop = settings.loop
    if loop is None:
        return []
    try:
        keys.read_keyfile(loop.key_file)
    except keys.KeyFileError as exc:
        raise ConfigError(f"loop.key_file: {exc}") from None
    load_genesis(loop.dso_chain.genesis)
    if loop.mgmc_chain is not None:
        mgmc_genesis = load_genesis(loop.mgmc_chain.genesis)
        if loop.disputes is not None:  # a settle wait the MGMCs cannot post their readings within (D12)
            from peergrid_dso.dispute_time import check_settle_wait

            check_settle_wait(loop.disputes, int(mgmc_genesis.params.settle_wait_ms))
        if loop.exchange_fee is not None:  # else the node's start refuses it, inside uvicorn's
            from peergrid_dso.fee_poster import check_chain

            check_chain(mgmc_genesis)
    if loop.ties is not None and not loop.ties.is_file():
        raise ConfigError(f"loop.ties: {loop.ties}: no such file")
    if loop.tariff_file is not None:  # else the node's start fails inside uvicorn's, with a traceback
        from peergrid_dso.tariff import load_tariff_file

        load_tariff_file(loop.tariff_file, loop.mgs, loop.interval_minutes)
    from peergrid_dso.services.switching_relays import check_relays

    warnings = check_relays(loop)
    if broker:
        from peergrid_dso.broker_tls import check_broker

        check_broker(
            settings.broker.host, settings.broker.port, settings.broker.tls(), f"{settings.node_id}-check"
        )
    return warnings


def loop_enrolments(node: DsoNode, told: set[bytes] | None = None) -> dict[bytes, Any]:
    """The MGs of the loop's config as the console's enrolment queue shows them: authorised (the node enrols
    each at start), or revoked when the chains say so (a revocation outlives a restart; a complete one only,
    `_word`; a half one told as `tell_half_done` does). Call on the node's event loop (it reads the live ledger
    state)."""
    from peergrid_dso.services.enrolment import Enrolment

    pairs = {
        mg: (bytes.fromhex(e.node), bytes.fromhex(e.anonym)) for mg, e in sorted(node.settings.mgs.items())
    }
    revoked, _, half = _word(_states(node), list(pairs.values()))
    tell_half_done(half, told)
    return {
        mgmc: Enrolment(mgmc, anonym, mg, "revoked" if mgmc in revoked else "authorised")
        for mg, (mgmc, anonym) in pairs.items()
    }


def chain_word(
    node: DsoNode, queue: list[tuple[bytes, bytes]], told: set[bytes] | None = None
) -> tuple[set[bytes], set[bytes]]:
    """Of the queue's (MGMC key, anonym) pairs, the MGMC keys whose revocation is complete and the anonyms whose
    enrolment landed (`_word`, over the DSO chain and the MGMC chain the node follows; for
    `EnrolmentService.follow_chain`); a half-done revocation told as `tell_half_done` does. Call on the node's
    event loop (it reads the live state)."""
    revoked, enrolled, half = _word(_states(node), queue)
    tell_half_done(half, told)
    return revoked, enrolled


def tell_half_done(half: list[bytes], told: set[bytes] | None) -> None:
    """Say at WARNING each MGMC whose revocation failed half-way, but those in `told` (the ones this start has
    said already, added to; None: each). The node's start says the loop's MGs' and the console's start the
    whole queue's, the loop's MGs among them: one set for both (`EmbeddedLoop`) says each once (D9: twice)."""
    for mgmc in half:
        if told is not None and mgmc in told:
            continue
        log.warning(
            "the revocation of MGMC %s failed half-way (not both keys on every chain): shown authorised; "
            "revoke it again (console, Operations -> Enrolment) to finish it", mgmc.hex()[:12],
        )  # fmt: skip
        if told is not None:
            told.add(mgmc)


def _states(node: DsoNode) -> list[Any]:
    """The live states of the node's replicas, the DSO chain's first."""
    others = [r.app.state for r in node.node.replicas.values() if r is not node.replica]
    return [node.replica.app.state, *others]


def stored_word(loop: Any, queue: list[tuple[bytes, bytes]]) -> tuple[set[bytes], set[bytes]] | None:
    """`chain_word` read from the chains' stores on disk (`loop`: the loop's section) before the node opens them,
    for `peergrid-dso serve`'s check of the loop's keys (`enrolment_file.check_at_start`): each chain's committed
    state at its head, key by key, the DSO chain's first, as the node's start reads them (`_word` over both). An
    MGMC chain with no store yet is its genesis state, as the node's replica starts from it, so a revocation the
    DSO chain holds and the MGMC chain not is half-done here too (authorised), not refused. None where the DSO
    chain has no store yet (a first start) or a store cannot be opened (locked by another process, not a ledger
    store: the node's start says so in its own words); a store of another chain is `ConfigError` in the node's
    words (`node_cli.open_store`), here before the web server starts. A half-done revocation is not told here:
    the node's start tells it. Opens the stores and closes them; never creates one."""
    from peergrid_ledger.store import StoreError

    stores: list[Any] = []
    try:
        dso = _open_stored(loop.dso_chain, stores)
        if dso is None:
            return None
        states = [dso]
        if loop.mgmc_chain is not None:
            mgmc = _open_stored(loop.mgmc_chain, stores)
            states.append(mgmc if mgmc is not None else _genesis_of(loop.mgmc_chain).initial_state())
        revoked, enrolled, _ = _word(states, queue)
        return revoked, enrolled
    except StoreError:
        return None
    finally:
        for store in stores:
            store.close()


def _genesis_of(chain: Any) -> Any:
    from peergrid_ledger.consensus.node_cli import load_genesis

    return load_genesis(chain.genesis)


def _open_stored(chain: Any, opened: list[Any]) -> Any:
    """The committed state at the head of `chain`'s store (a loop `*_chain` section), the store appended to
    `opened` for the caller to close; None where there is no store yet. `StoreError` where it cannot be opened;
    `ConfigError` where it holds another chain."""
    from peergrid_ledger.store import BlockStore, StoreState

    data_dir = Path(chain.data_dir)
    if not data_dir.is_dir() or not any(data_dir.iterdir()):
        return None
    genesis = _genesis_of(chain)
    store = BlockStore.open(data_dir)
    opened.append(store)
    if store.genesis.hash != genesis.hash:
        raise ConfigError(f"{data_dir}: holds another chain's store (genesis differs)")
    return StoreState(store)


def _word(states: list[Any], queue: list[tuple[bytes, bytes]]) -> tuple[set[bytes], set[bytes], list[bytes]]:
    """Of the queue's (MGMC key, anonym) pairs, over the chains' `states` (the DSO chain's first):

    - the MGMC keys whose revocation is complete: both keys revoked on every chain given, as
      `EnrolmentService.revoke` writes them. One that only some hold failed half-way (a chain refused or timed
      out, then a restart) and is left out (shown revoked, the console would refuse to revoke it again and the
      MGMC chain would keep the MGMC as an authority); those are the third item, in the queue's order, for the
      caller to tell (`tell_half_done`);
    - the anonyms whose enrolment landed on the DSO chain: the anonym's account, not revoked, beside an MGMC
      account for the identity key, both of which `enrol` writes. An anonym's account alone may be another MG's,
      named in a request the chain refused to enrol (the anonym is public on the chain)."""
    from peergrid_ledger import keyspace as ks
    from peergrid_ledger import query
    from peergrid_ledger.core import is_revoked

    revoked, half = set(), []
    for mgmc, anonym in queue:
        said = [is_revoked(state, key) for state in states for key in (mgmc, anonym)]
        if all(said):
            revoked.add(mgmc)
        elif any(said) and mgmc not in half:
            half.append(mgmc)

    def landed(mgmc: bytes, anonym: bytes) -> bool:
        held = query.account(states[0], mgmc)
        return (
            held is not None
            and ks.ROLE_MGMC in held.roles
            and query.account(states[0], anonym) is not None
            and not is_revoked(states[0], anonym)
        )

    return revoked, {anonym for mgmc, anonym in queue if landed(mgmc, anonym)}, half


class EmbeddedLoop:
    def __init__(self, settings: Any) -> None:  # peergrid_dso.config.DsoSettings with a `loop` section
        from peergrid_dso.loop_settings import IntervalNodeSettings

        assert settings.loop is not None
        self.node_settings = IntervalNodeSettings.model_validate(
            settings.loop.model_dump()
            | {
                "feeder": settings.feeder,
                "broker_host": settings.broker.host,
                "broker_port": settings.broker.port,
                "broker_tls": settings.broker.tls(),
            }
            | loop_setting(settings.broker)
        )
        self.client_id = f"{settings.node_id}-loop"
        self.ledger_down_after_s = float(settings.loop.ledger_down_after_s)
        self.lock = threading.RLock()  # every writer to the relays holds it: the loop, operators, the API
        self.node: Any = None
        self.services: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="dso-loop", daemon=True)
        self._priced_through: int | None = None  # `readiness`'s last tariffs_through: it never goes back
        self._told_half_done: set[bytes] = set()  # half-done revocations said at this start: once each

    def start(self, timeout: float = 60.0) -> Any:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise ConfigError(f"the DSO node did not start within {timeout:.0f} s")
        if self._error is not None:
            if isinstance(self._error, ConfigError):
                raise self._error
            raise ConfigError(
                f"loop: the DSO node could not start: {type(self._error).__name__}: {self._error}"
            )
        return self.services

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        from peergrid_dso.services.container import live_services

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            self.node = DsoNode.assemble(self.node_settings, lock=self.lock, client_id=self.client_id)
            self.services = live_services(self.node)
            self.services.enrolment.mgmc_recorder = self.node.mgmc_recorder
            self.services.enrolment.revoked_on_chain = self.revoked_on_chain
            self.services.enrolment.auto = self.node_settings.auto_enrol
            self.services.enrolment.enrolments.update(loop_enrolments(self.node, self._told_half_done))
        except BaseException as exc:  # reported to start(); the thread ends
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self.node.run(self._stop)
        except Exception:
            log.exception("the DSO node stopped")

    def stop(self, timeout: float = 15.0) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and self._error is None

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run `fn` on the node's event loop (where the ledger state changes) and return its result."""
        assert self._loop is not None

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def revoked_on_chain(self, chain: int, key: bytes) -> bool:
        """Whether the DSO chain (0) or the MGMC chain (1) holds `key` revoked, as the running node's replica has it
        now (`EnrolmentService.revoke` then skips it: a repeat after a restart sends only what did not land)."""
        from peergrid_ledger.core import is_revoked

        node = self.node
        return self.call(lambda: is_revoked(_states(node)[chain], key))

    def chain_word(self, queue: list[tuple[bytes, bytes]]) -> tuple[set[bytes], set[bytes]]:
        """`chain_word` of the running node, read on its event loop."""
        node, told = self.node, self._told_half_done
        return self.call(lambda: chain_word(node, queue, told))

    def readiness(self, timeout: float = 2.0) -> dict[str, Any] | None:
        """`readiness` of the running node, read on its event loop; None while it is not running or too
        busy to answer within `timeout` (health must not hang on it)."""
        if not self.running or self.node is None:
            return None
        node, known = self.node, self._priced_through
        try:
            found = self.call(lambda: readiness(node, known), timeout)
        except (TimeoutError, RuntimeError):  # (concurrent.futures' TimeoutError is the builtin's, 3.11)
            return None
        self._priced_through = found["tariffs_through"]
        return found

    @property
    def start_alarm(self) -> str | None:
        """The node's start alarm while it stands, for `/api/health`: the relays it could not adopt at start
        (`switching_adopt.start_topology`: unreadable, moving, or not radial), which refuses every plan until an
        operator adopts the relays' positions (`Operations.adopt_relays` lifts it). None when the node adopted
        them at start or had no relay to read. Read off the console's services, not the node's event loop."""
        standing = getattr(getattr(self, "services", None), "alarms", None) or []
        return str(standing[0]) if standing else None

    @property
    def relay_alarm(self) -> str | None:
        """While it stands, what the node's read of every relay after an interval found (`switching_watch`): the
        relays that report another position than the DSO holds, or cannot be read; None when all agree."""
        watch = getattr(getattr(self.node, "loop", None), "watch", None)
        return getattr(watch, "alarm", None)

    def ledger(self) -> dict[str, Any] | None:
        """For `/api/health`: whether the node's ledger transport reaches the broker and its thread runs
        (`live_reconnect.LedgerLink`); None before the node was assembled."""
        link = getattr(self.node, "link", None)
        return None if link is None else link.health(self.ledger_down_after_s)

    def replica(self, role: str) -> Any:
        """The node's replica of the `dso` or `mgmc` chain, or None when it does not follow that chain."""
        if self.node is None:
            return None
        if role == "dso":
            return self.node.replica
        others = [r for r in self.node.node.replicas.values() if r is not self.node.replica]
        return others[0] if others else None

    @property
    def listeners(self) -> list[Callable[[dict[str, Any]], None]]:
        listeners: list[Callable[[dict[str, Any]], None]] = self.node.loop.listeners
        return listeners
