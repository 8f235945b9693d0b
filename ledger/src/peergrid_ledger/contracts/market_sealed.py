"""Sealed settlement statements (genesis `sealed_statements`, with `settle_by_both`): commit, then reveal.

Why: on a `settle_by_both` chain the first party's statement is public before the second states, so the second
could tailor its own to it (review12 F1). Here each party first commits to its statement, `settle` {trade,
seal}, seal = `seal_of(chain, trade, party key, delivered, short, salt)` with a secret 32-byte salt, and
reveals it, `settle` {trade, delivered[, short], salt}, only once both parties committed or the first
commitment's `settle_wait_ms` passed without the other's: nobody states knowing the other's figures.

Promises (`commit`, `check_reveal`, `withheld`; `market_closing.settle` calls them):
- a commitment is a party's only one (a second is `duplicate`) and lands before the commit deadline (the
  first commitment's time + `settle_wait_ms`); the second commitment opens the reveal window, `settle_wait_ms`
  from it (the trade's `deadline`); with only one commitment the deadline stays the commit deadline;
- a reveal is refused, naming why, while the other party has not committed and the commit deadline has not
  passed, after the reveal window when both committed and neither revealed in it (`closed`: the DSO meters
  that trade), without a commitment of its party, or when it does not hash to that commitment; a party's revealed statement is then
  handled as any statement (`market_closing._state`: agree, dispute, lone statement, the DSO's final word);
- a party that committed but never revealed by the deadline is taken at its worst (`withheld`: a seller
  delivered nothing and owns the whole quantity short, a buyer took it all), so keeping a reveal back after
  seeing the other's is never better than revealing honestly; with `seller_vouched` the DSO's meter of the
  seller comes first (`market_vouch`: a party down past the window did not choose, review14 K3), and these
  terms pay only where it did not vouch; a party that never committed is silent as on an unsealed chain (it chose blind, before any
  statement was public).
What it does not do: each party's figures are still its own word; the seal takes away the second party's
knowledge of the first's statement, not the possibility of under-stating one's own shortfall blind, nor of
stating what an honest counterparty predictably states (review13 F2: a short seller's "agreed, short 0").
Pure; no I/O. The records are in the trade's `seals` ({party: {seal, time, txid}}).
"""

from __future__ import annotations

import hashlib
from typing import Any

from ..codec import encode
from ..hashing import VERSION_TAG
from ..machine import BlockContext, require
from ..results import Event, Reason, RuleError
from ..schema import HASH, QUANTITY, Bytes, Map, OneOf
from ..state import Overlay
from ..tx import Tx
from .market_state import trade_key

SEAL_DOMAIN = "settle-seal"
SALT = Bytes(size=32)

# every `settle` body: a party's plain statement (with its own shortfall on a priced trade), the DSO's with
# both sides' shortfalls, and on a sealed chain a party's commitment and its reveal
SETTLE_SHAPE = OneOf(
    (
        Map({"trade": HASH, "delivered": QUANTITY}),
        Map({"trade": HASH, "delivered": QUANTITY, "short": QUANTITY}),
        Map({"trade": HASH, "delivered": QUANTITY, "seller_short": QUANTITY, "buyer_short": QUANTITY}),
        Map({"trade": HASH, "seal": HASH}),
        Map({"trade": HASH, "delivered": QUANTITY, "salt": SALT}),
        Map({"trade": HASH, "delivered": QUANTITY, "short": QUANTITY, "salt": SALT}),
    )
)


def seal_of(chain: str, tid: bytes, party_key: bytes, delivered: int, short: int, salt: bytes) -> bytes:
    """The commitment to a statement: SHA-256 of the canonical array (version, domain, chain, trade, party
    key, delivered, short, salt). The party's key is in it, so a counterparty that copies the commitment
    cannot open it as its own; the chain and the trade, so it opens nowhere else."""
    fields = [VERSION_TAG, SEAL_DOMAIN, chain, tid, party_key, delivered, short, salt]
    return hashlib.sha256(encode(fields)).digest()


def check_body(body: dict[str, Any], sealed: bool, party: str | None, who: str, tid: bytes) -> None:
    """`seal` and `salt` only from a party, only on a sealed chain; on one, a party's first word is its seal."""
    name = _short(tid)
    if "seal" in body or "salt" in body:
        require(
            sealed,
            Reason.INVALID,
            f"trade {name}: the genesis has no sealed_statements: state what was delivered, with no seal or salt",
        )
        require(party is not None, Reason.INVALID, f"trade {name}: the {who} states in the open, unsealed")


def commit(
    view: Overlay, ctx: BlockContext, tx: Tx, tid: bytes, agreed: dict[str, Any], party: str
) -> list[Event]:
    """Record `party`'s commitment; the first sets the commit deadline, the second opens the reveal window."""
    seals: dict[str, Any] = agreed.setdefault("seals", {})
    other = "seller" if party == "buyer" else "buyer"
    name = _short(tid)
    if party in seals:
        raise RuleError(
            Reason.DUPLICATE, f"trade {name}: the {party} already committed; a commitment is final"
        )
    wait = ctx.genesis.params.settle_wait_ms
    if other in seals:
        require(
            ctx.time < agreed["deadline"],
            Reason.CLOSED,
            f"trade {name}: the {party}'s commitment comes after the commit deadline {agreed['deadline']} "
            f"(block time {ctx.time}); the {other} may reveal and settle on its lone statement",
        )
    agreed["deadline"] = ctx.time + wait
    seals[party] = {"seal": tx.body["seal"], "time": ctx.time, "txid": tx.txid}
    view.put_obj(trade_key(tid), agreed)
    return [("sealed", {"trade": tid, "party": party, "deadline": agreed["deadline"]})]


def check_reveal(ctx: BlockContext, tx: Tx, tid: bytes, agreed: dict[str, Any], party: str) -> None:
    """A party's first statement on a sealed chain: a reveal of its own commitment, once both parties
    committed or the commit deadline passed. Raises RuleError naming what is missing; writes nothing."""
    seals = agreed.get("seals", {})
    other = "seller" if party == "buyer" else "buyer"
    name = _short(tid)
    require(
        "salt" in tx.body,
        Reason.RULE_VIOLATION,
        f"trade {name}: the genesis seals statements: the {party} commits first (`seal`), then reveals "
        "what was delivered with its `salt`",
    )
    require(
        party in seals,
        Reason.RULE_VIOLATION,
        f"trade {name}: the {party} reveals a statement it never committed to (`seal` first)",
    )
    if other not in seals and ctx.time < agreed["deadline"]:
        raise RuleError(
            Reason.RULE_VIOLATION,
            f"trade {name}: the {party} reveals before the {other} committed; reveal once it did or after "
            f"{agreed['deadline']} (block time {ctx.time})",
        )
    if other in seals and other not in agreed.get("statements", {}) and ctx.time >= agreed["deadline"]:
        # neither revealed in the window: a late first reveal followed at once by its repeat would take the
        # other committer at its worst (`withheld`), e.g. a seller whose salt is lost; the DSO meters it
        # instead (dso-server dispute_windows.unrevealed_since; review14 K3b, P7)
        raise RuleError(
            Reason.CLOSED,
            f"trade {name}: neither party revealed by {agreed['deadline']} (block time {ctx.time}); the DSO "
            "settles it from the meters",
        )
    body = tx.body
    short = int(body.get("short", 0))
    opened = seal_of(ctx.genesis.chain, tid, tx.sender, body["delivered"], short, body["salt"])
    if opened != seals[party]["seal"]:
        raise RuleError(
            Reason.INVALID,
            f"trade {name}: the {party}'s reveal (delivered {body['delivered']}, short {short}) does not match "
            "its commitment: a commitment is final",
        )


def withheld(agreed: dict[str, Any], silent: str, own: int) -> tuple[int, tuple[int, int]] | None:
    """(Wh delivered, (seller's, buyer's) shortfall) a lone statement settles on when the silent party
    committed and kept its reveal back; None when it never committed (then the old rule: market_closing).
    The worst case for the silent party, as the DSO takes a party that could be metered and is not: a seller
    delivered nothing and owns the whole quantity short (the stating buyer keeps its own `own`), a buyer took
    all of it. Why not the stating party's figures: it saw them before choosing to keep its own back, so it
    would keep it back exactly when they favour it (a buyer's over-statement, a seller's under-statement, a
    shortfall the other owns), and no honest statement of its own settles better than this."""
    if silent not in agreed.get("seals", {}):
        return None
    quantity = int(agreed["quantity"])
    if silent == "seller":
        return 0, (quantity, own)
    return quantity, (0, 0)


def _short(tid: bytes) -> str:
    return tid.hex()[:16] + "…"
