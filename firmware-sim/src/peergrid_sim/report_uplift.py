"""The testbed report's `uplift` section: the day-ahead make-whole as the lab's MGMC chain holds it.

Promises: `uplift_section(workdir)` (after the processes stopped: it opens one MGMC chain store) lists every
exchange session with an uplift claim or outcome on that chain: each member's claim (gain, surplus;
micro-units) by MG name (the lab's anonym keys in `<workdir>/keys`; a key it does not know by its hex), each
member's trading window as its first accept stated it (`windows`: [first, last] chain intervals, over which
the chain bounds its gain; a member that stated none is absent: its bound is the whole session's), each
member's bound (`bounds`, micro-units: `uplift.gain_bound` over its window on the final state, the most the
chain takes as its gain: min(max_quantity, the DSO's capacity) x the spread per interval), and
once settled the outcome (funded, owed, surplus, credits, charges, withheld, refunds, the payments payer ->
payee with the part that became a debt) and `moved`: how much each account's balance changed in the one
transaction that settled it, replayed from genesis (`validate_block`, as `peergrid-ledger verify` replays).
`balances_match` says whether that is exactly what the outcome records: each payee its credit, each payer
its charge, less any part owed as a debt instead, and no other balance touched. Each session's `fee`: the
exchange fee its record carries (nano-currency per kWh per side; 0: none); a session settled with one (the
ledger's `uplift_fund`: the fund, named `fund`, pays the make-whole) has `surplus` None, its charges are the
members' fees, its payments the fees member -> fund and the credits and refunds fund -> member, and
`fee_path` sets what the chain collected beside its own rule (`report_fee.fee_figures`: each member's cleared
Wh, fee due and collected, the fund before and after, `fees_match`). Beside the sessions, `capacities`: each
account's connection capacity the DSO posted (`market.capacity`: [[from_interval, Wh per interval], ...]) by
MG name, and once an uplift settled, `day` (`report_fee.day_balances`): each account's balance change over the
chain split into its settled trades and the uplifts' fee, charge, credit and refund, and whether they add up. A store it cannot read, or a chain that does not replay, is `{"error": ...}`:
the report is written all the same. Never writes a store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from peergrid_sim.report_anonyms import anonym_names
from peergrid_sim.report_fee import FUND, day_balances, fee_figures

CLAIM_PREFIX, DONE_PREFIX = b"upl/claim/", b"upl/done/"
CAPACITY_PREFIX = b"mkt/capacity/"  # the DSO's posted connection capacity (`market_state.capacity_key`)
WINDOW_PREFIX = b"xch/window/"  # a member's stated trading window (`exchange_state.trading_window`)
KEY_BYTES = 32  # a member key in a claim's state key (Ed25519 public key)


def mgmc_store(workdir: Path) -> Path | None:
    """One replica of the lab's MGMC chain: the DSO node's, else the first MGMC's (the report checks they
    agree)."""
    nodes = Path(workdir) / "nodes"
    found = [nodes / "dso" / "mgmc.db", *sorted(nodes.glob("mgmc-*/mgmc.db"))]
    return next((p for p in found if p.exists()), None)


def settle_moves(store: Any, targets: dict[bytes, int]) -> dict[bytes, dict[bytes, int]]:
    """Per settle txid in `targets` (txid -> its height), each account's balance change in that transaction
    alone: the chain replayed from genesis to its block, the block's earlier transactions' writes before it."""
    from peergrid_ledger import keyspace as ks
    from peergrid_ledger.block import Tip, validate_block
    from peergrid_ledger.results import Accepted

    genesis = store.genesis
    state, tip = genesis.initial_state(), Tip.of_genesis(genesis)
    out: dict[bytes, dict[bytes, int]] = {}
    for height in range(1, max(targets.values(), default=0) + 1):
        block = store.block(height)
        outcome = validate_block(state, tip, genesis, block)
        for txid in (t for t, h in targets.items() if h == height):
            before: dict[bytes, bytes | None] = {}
            for result in outcome.results:
                assert isinstance(result, Accepted)  # a stored block holds only accepted transactions
                if result.txid == txid:
                    out[txid] = {
                        key[len(b"bal/") :]: ks.decode_int(new)
                        - ks.decode_int(before[key] if key in before else state.get(key))
                        for key, new in result.writes.items()
                        if key.startswith(b"bal/")
                    }
                    break
                before.update(result.writes)
        state.commit(outcome.writes)
        tip = Tip.of(block.header)
    return out


def expected_moves(done: dict[str, Any]) -> dict[bytes, int]:
    """What the outcome says each balance moves by: each payment's amount less its part owed as a debt, from
    the payer to the payee (`payments`: [payer, payee, amount, owed])."""
    moved: dict[bytes, int] = {}
    for payer, payee, amount, owed in done["payments"]:
        paid = int(amount) - int(owed)
        moved[payer] = moved.get(payer, 0) - paid
        moved[payee] = moved.get(payee, 0) + paid
    return {k: v for k, v in moved.items() if v}


def _sessions(
    items: list[tuple[bytes, bytes]],
) -> tuple[dict[str, dict[bytes, Any]], dict[str, Any], dict[str, dict[bytes, list[int]]]]:
    """Claims per session (member -> claim), outcomes per session and stated trading windows per session
    (member -> [first, last]), from the chain's state entries."""
    from peergrid_ledger.codec import decode

    claims: dict[str, dict[bytes, Any]] = {}
    done: dict[str, Any] = {}
    windows: dict[str, dict[bytes, list[int]]] = {}
    for key, raw in items:
        if key.startswith(CLAIM_PREFIX):
            rest = key[len(CLAIM_PREFIX) :]
            member, name = rest[:KEY_BYTES], rest[KEY_BYTES:].decode()
            claims.setdefault(name, {})[member] = decode(raw)
        elif key.startswith(DONE_PREFIX):
            done[key[len(DONE_PREFIX) :].decode()] = decode(raw)
        elif key.startswith(WINDOW_PREFIX):
            rest = key[len(WINDOW_PREFIX) :]
            member, name = rest[:KEY_BYTES], rest[KEY_BYTES:].decode()
            windows.setdefault(name, {})[member] = [int(x) for x in decode(raw)]
    return claims, done, windows


def member_bounds(
    state: dict[bytes, bytes], claims: dict[str, dict[bytes, Any]], max_spread: int
) -> dict[str, dict[bytes, int]]:
    """Per session, each claiming member's bound (`uplift.gain_bound` over its stated window, `max_spread` the
    genesis `uplift_max_spread`), as the chain checked its claim: its rules and capacity for the session's
    intervals cannot change once it accepted, nor the cover prices once they closed."""
    from peergrid_ledger.contracts import exchange_state, uplift

    out: dict[str, dict[bytes, int]] = {}
    for session, members in claims.items():
        record = exchange_state.session(state, session)
        if record is None:  # a claim names a session the chain holds (uplift._session): not on this store
            continue
        window = exchange_state.trading_window
        out[session] = {
            m: uplift.gain_bound(state, record, m, window(state, session, m), max_spread) for m in members
        }
    return out


def _capacities(items: list[tuple[bytes, bytes]]) -> dict[bytes, list[list[int]]]:
    """Each account's posted connection capacity entries ([from_interval, Wh], oldest first)."""
    from peergrid_ledger.codec import decode

    return {
        key[len(CAPACITY_PREFIX) :]: [[int(start), int(wh)] for start, wh in decode(raw)]
        for key, raw in items
        if key.startswith(CAPACITY_PREFIX)
    }


def uplift_section(workdir: Path) -> dict[str, Any]:
    """The section (module contract)."""
    from peergrid_ledger.contracts import exchange_state
    from peergrid_ledger.contracts.market_fee import session_fee
    from peergrid_ledger.store import BlockStore

    path = mgmc_store(Path(workdir))
    if path is None:
        return {"sessions": [], "error": "no MGMC chain store in the lab's nodes"}
    names = anonym_names(Path(workdir) / "keys") | {FUND: "fund"}

    def name(key: bytes) -> str:
        return names.get(key, key.hex()[:16])

    def by_name(rows: list[list[Any]]) -> dict[str, int]:
        return {name(k): int(v) for k, v in rows}

    try:
        store = BlockStore.open(path)
    except Exception as exc:
        return {"sessions": [], "error": f"{path}: {type(exc).__name__}: {exc}"[:300]}
    try:
        items = list(store.state_items())
        claims, done, windows = _sessions(items)
        bounds = member_bounds(dict(items), claims, int(store.genesis.params.uplift_max_spread))
        heights = {str(s): store.locate_tx(d["txid"]) for s, d in done.items()}
        targets = {done[s]["txid"]: where[0] for s, where in heights.items() if where is not None}
        moves = settle_moves(store, targets)
        state = dict(items)
        day = day_balances(store.genesis.initial_state(), items, done.values(), name) if done else None
        records = {s: exchange_state.session(state, s) for s in claims.keys() | done.keys()}
        fees = {s: fee_figures(state, s, d, name) for s, d in done.items()}
    except Exception as exc:  # a store that does not replay: said, not raised (the verify check fails too)
        return {"sessions": [], "error": f"{type(exc).__name__}: {exc}"[:300]}
    finally:
        store.close()
    sessions = []
    for session in sorted(claims.keys() | done.keys()):
        claimed = {
            name(m): {"gain": c["gain"], "surplus": c["surplus"]} for m, c in claims.get(session, {}).items()
        }
        entry: dict[str, Any] = {
            "session": session,
            "claims": dict(sorted(claimed.items())),
            "windows": dict(sorted((name(m), w) for m, w in windows.get(session, {}).items())),
            "bounds": dict(sorted((name(m), b) for m, b in bounds.get(session, {}).items())),
            "settled": session in done,
            # the exchange fee the session was opened with (nano per kWh per side; 0: none, the payer path)
            "fee": session_fee(records[session] or {}),
        }
        outcome = done.get(session)
        if outcome is not None:
            moved = moves.get(outcome["txid"], {})
            expected = expected_moves(outcome)
            entry |= {
                "height": (heights.get(session) or (None,))[0],
                "funded": bool(outcome["funded"]),
                "owed": int(outcome["owed"]),
                "surplus": None if "surplus" not in outcome else int(outcome["surplus"]),  # none with a fee
                "credits": by_name(outcome["credits"]),
                "charges": by_name(outcome["charges"]),
                "withheld": by_name(outcome["withheld"]),
                "refunds": by_name(outcome["refunds"]),
                "payments": [
                    {"payer": name(p), "payee": name(q), "amount": int(a), "owed": int(o)}
                    for p, q, a, o in outcome["payments"]
                ],
                "moved": {name(k): v for k, v in sorted(moved.items()) if v},
                "balances_match": outcome["txid"] in moves
                and {k: v for k, v in moved.items() if v} == expected,
            }
            if fees.get(session) is not None:  # the fee path: collected, the fund, its refunds (`report_fee`)
                entry["fee_path"] = fees[session]
        sessions.append(entry)
    capacities = {name(k): v for k, v in _capacities(items).items()}
    section: dict[str, Any] = {"sessions": sessions, "capacities": dict(sorted(capacities.items()))}
    return section if day is None else section | {"day": day}
