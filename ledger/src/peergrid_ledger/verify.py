"""Tamper evidence: re-derive a whole store from genesis and name the first height that does not match.

Promises: `verify_store` trusts nothing stored except the genesis it starts from. For every height it
re-decodes the signed header and body, re-checks link, time, proposer, seal, transaction root, every
transaction (signature, nonce, rules) and the state root by replaying, then the commit certificate against
the authority set of that height and the transaction index. Finally it compares the stored state with the
replayed one; a differing entry is blamed on the height that last wrote it. Returns a `VerifyReport`; never
raises for corrupt data (only for an unopenable store). Reads only.
"""

from __future__ import annotations

from dataclasses import dataclass

from .block import InvalidBlock, Tip, validate_block, verify_certificate
from .codec import encode
from .core import authorities_at
from .store import HEAD_KEY, BlockStore, StoreCorrupt, header_key


@dataclass(frozen=True, slots=True)
class VerifyReport:
    ok: bool
    head: int  # the head height the store claims (or -1 if unreadable)
    verified: int  # heights verified from genesis without fault
    first_bad: int | None = None
    reason: str = ""
    head_hash: bytes = b""

    def summary(self) -> str:
        if self.ok:
            return (
                f"OK: {self.verified} blocks verified from genesis, head {self.head} {self.head_hash.hex()}"
            )
        return f"FAIL at height {self.first_bad}: {self.reason}"


def verify_store(store: BlockStore) -> VerifyReport:
    genesis = store.genesis
    try:
        head = store.head_height()
    except StoreCorrupt as exc:
        return VerifyReport(False, -1, 0, 0, str(exc))
    state = genesis.initial_state()
    last_write: dict[bytes, int] = dict.fromkeys(state.as_dict(), 0)
    tip = Tip.of_genesis(genesis)

    def bad(height: int, reason: str) -> VerifyReport:
        return VerifyReport(False, head, height - 1, height, reason)

    for height in range(1, head + 1):
        try:
            block = store.block(height)
            outcome = validate_block(state, tip, genesis, block)
            verify_certificate(store.certificate(height), block.header, authorities_at(state, height))
        except KeyError:
            return bad(height, "block missing below the head")
        except (StoreCorrupt, InvalidBlock) as exc:
            reason = exc.reason if isinstance(exc, InvalidBlock) else str(exc)
            return bad(height, reason)
        for index, tx in enumerate(block.txs):
            if store.locate_tx(tx.txid) != (height, index):
                return bad(height, f"transaction index entry for {tx.txid.hex()} is missing or wrong")
        state.commit(outcome.writes)
        for key in outcome.writes:
            last_write[key] = height
        tip = Tip.of(block.header)

    if store.raw_get(header_key(head + 1)) is not None:
        return bad(head + 1, "a block is stored beyond the recorded head")
    stored = dict(store.state_items())
    replayed = state.as_dict()
    blamed: list[tuple[int, bytes]] = []
    for key in stored.keys() | replayed.keys():
        if stored.get(key) != replayed.get(key):
            blamed.append((last_write.get(key, head), key))
    if blamed:
        height, key = min(blamed)
        what = "missing" if key not in stored else "unexpected" if key not in replayed else "altered"
        return VerifyReport(False, head, height - 1, height, f"stored state entry {key!r} is {what}")
    head_value = store.raw_get(HEAD_KEY)
    if head_value != encode([head, tip.hash]):
        return bad(head, "head record does not name the head block's hash")
    return VerifyReport(True, head, head, None, "", tip.hash)
