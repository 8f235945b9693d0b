"""An MG owner's day from its MGMC's record file and its MGMC chain replica (`peergrid-edge day`).

Promises: `read_records(lines, source)` reads the record file's lines (`market.record_file`: interval records,
settlement lines, stage lines) and names each damaged one (`source:line: why`) instead of raising; `summarise`
gives, for one day (`day` stamp; default the file's last), per interval and for the day: this MG's role, its
trades (side, counterparty anonym short, kWh, price, agreed value) with what the chain settled for each
(`settle_book.settled_figures`: delivered, compensation, this side's money) or why not yet (the chain's state,
the record's last word on it), money in and out (settled), the agreed value still unsettled, and the cost of
its P2P day against the conventional (DSO only) figure the MGMC recorded, both as agreed (`cost_p2p`) and with
each settled trade at what it settled for, and, where the day's last record holds it (`cost_to_go`), with what
the energy stored at the day's end costs later on either path. It flags a trade the records name that the chain does not hold,
one of this MG's on the chain for a recorded interval that the records do not name, one the records name in
two intervals (or twice in one), and one whose settlement lines name two settling transactions (the chain
refuses a second settlement: either is a sign of a wrong replica or a damaged file). An interval between the
day's first and last records that has none (the daemon was stopped or restarting: it did not trade it) is a row
of its own, named in the day's line and left out of its figures, and this MG's trades the chain holds for it
are flagged like any the records miss. A settled trade whose settled energy is more than 1 % off what this
side stated gives the statement beside it (the DSO settled it from the meters). `render` is the text.
Pure: the chain is read through `Lookup`; no clock, no I/O, but `day_report`, the CLI's thin shell: it reads
the file and opens the replica (a copy of it where the running daemon holds its lock), and every failure to
read either is one `DayError` naming the path.
Sign conventions (the record's): money + in, - out; costs + paid, - earned (`cost_p2p` is the MG's cost with
its P2P trades, `cost_conventional` the same MG's cost trading with the DSO only); kWh sold +, bought -.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peergrid_edge.resume import finite, record_day_first, stamp_of
from peergrid_edge.settle_book import settled_figures

Lookup = Callable[[bytes], "ChainView"]
"""A trade id -> what the chain holds of it (`ChainView`)."""
IntervalTrades = Callable[[int], list[tuple[bytes, dict[str, Any]]]]
"""Interval t -> its latest closing's trades on the chain (`query.trades`), [] for none."""


@dataclass(frozen=True)
class ChainView:
    """One trade on the replica: `trade` (`query.trade`; None: not on the chain), `standing`
    (`query.settlement`)."""

    trade: dict[str, Any] | None
    standing: dict[str, Any] | None


@dataclass
class Records:
    intervals: dict[int, dict[str, Any]] = field(default_factory=dict)  # the last interval record of each t
    failed: dict[int, str] = field(default_factory=dict)  # t -> the error record's word
    settlements: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # trade hex -> its lines
    seen: dict[str, list[int]] = field(
        default_factory=dict
    )  # trade hex -> the intervals whose records name it


def read_records(lines: Iterable[str], source: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The record file's lines as documents, and each damaged line named (`source:n: why`), skipped."""
    docs: list[dict[str, Any]] = []
    skipped: list[str] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except (ValueError, RecursionError) as exc:
            skipped.append(f"{source}:{n}: not JSON ({str(exc)[:60]})")
            continue
        why = _damage(doc)
        if why is not None:
            skipped.append(f"{source}:{n}: {why}")
            continue
        docs.append(doc)
    return docs, skipped


def _damage(doc: Any) -> str | None:
    """Why a parsed line is no record this summary can read (None: it can)."""
    if not isinstance(doc, dict):
        return "not a JSON object"
    if type(doc.get("interval")) is not int:
        return None if "interval" not in doc else "its interval is not a whole number"
    if "trades" in doc:
        trades = doc["trades"]
        if not isinstance(trades, list) or not all(_trade_ok(t) for t in trades):
            return "its trades are not the record's {seller, buyer, price, quantity_kwh, id}"
        for key in ("p2p_money", "cost_p2p", "cost_conventional"):
            if not _number(doc.get(key)):
                return f"its {key} is not a number"
    if "settlement" in doc:
        s = doc["settlement"]
        if (
            not isinstance(s, dict)
            or not isinstance(s.get("trade"), str)
            or type(s.get("settled")) is not bool
        ):
            return "its settlement is not {trade, settled, ...}"
    return None


def _trade_ok(t: Any) -> bool:
    return (
        isinstance(t, dict)
        and all(isinstance(t.get(k), str) for k in ("seller", "buyer", "id"))
        and _number(t.get("price"))
        and _number(t.get("quantity_kwh"))
        and _hex(t["id"])
    )


def _number(v: Any) -> bool:
    return finite(v)  # resume's: an integer beyond a float's range is damage too, never a crash at float()


def _hex(v: str) -> bool:
    try:
        bytes.fromhex(v)
    except ValueError:
        return False
    return True


def days(docs: Iterable[dict[str, Any]]) -> list[str | None]:
    """The day stamps the records hold, in the order they first appear (None: lines written before stamps)."""
    found: list[str | None] = []
    for doc in docs:
        day = stamp_of(doc)
        if day not in found:
            found.append(day)
    return found


def collect(docs: Iterable[dict[str, Any]], day: str | None) -> Records:
    """One day's records: the last interval record of each interval (a restart may write one again), error
    records, and every settlement line by trade: the day's own, and a later day's on a trade of the day's (its
    interval before that day's first: `market.days`, a day's last trades settle or are given up in the next
    day's idles; before E12 such a line was stamped with the day the agent was on then, since with its own)."""
    rec = Records()
    later: list[dict[str, Any]] = []  # settlement lines another day stamps, on an interval before its first
    for doc in docs:
        stamp = stamp_of(doc)
        if stamp != day and "settlement" in doc and "interval" in doc and doc["interval"] < _first_of(stamp):
            later.append(doc)
            continue
        if stamp != day or "interval" not in doc:
            continue
        t = doc["interval"]
        if "trades" in doc:
            rec.intervals[t] = doc
            rec.failed.pop(t, None)
        elif "error" in doc and t not in rec.intervals:
            rec.failed[t] = str(doc["error"])
        elif "settlement" in doc:
            rec.settlements.setdefault(doc["settlement"]["trade"], []).append(doc["settlement"])
    for t, doc in rec.intervals.items():
        for tr in doc["trades"]:
            rec.seen.setdefault(tr["id"], []).append(t)
    for doc in later:  # only a trade this day's record of that interval names
        trade = doc["settlement"]["trade"]
        if doc["interval"] in rec.intervals and any(
            tr["id"] == trade for tr in rec.intervals[doc["interval"]]["trades"]
        ):
            rec.settlements.setdefault(trade, []).append(doc["settlement"])
    return rec


def _first_of(stamp: str | None) -> int:
    """The first interval a day stamp names (`resume.record_day_first`); -1 where it names none (no stamp, or one
    this reader does not know): no interval is before it."""
    first = record_day_first(stamp)
    return -1 if first is None else first


def summarise(
    docs: list[dict[str, Any]], lookup: Lookup, interval_trades: IntervalTrades, day: str | None = None,
    skipped: list[str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The day's summary (module docstring); `day` None: the records' last day. Raises ValueError when the
    records hold no interval record for that day (nothing to summarise)."""
    stamps = days(docs)
    if day is None and stamps:
        day = stamps[-1]
    rec = collect(docs, day)
    if not rec.intervals and not rec.failed:
        raise ValueError(f"no interval record of day {day!r} (the records hold {[d for d in stamps]})")
    first = next(iter(rec.intervals.values()), {})
    me_hex = str(first.get("anonym", ""))
    flags: list[str] = []
    rows = []
    recorded = set(rec.intervals) | set(rec.failed)
    for t in range(min(recorded), max(recorded) + 1):
        if t not in recorded:
            rows.append(
                {"interval": t, "missing": "no record: this MGMC did not trade it (stopped or restarting)"}
            )
            for chain_id, tr in interval_trades(t):
                if me_hex in (tr["seller"].hex(), tr["buyer"].hex()):
                    flags.append(
                        f"interval {t}: trade {chain_id.hex()[:16]} is on the chain, not in the records"
                    )
            continue
        if t in rec.failed:
            rows.append({"interval": t, "failed": rec.failed[t]})
            continue
        rows.append(_interval(rec.intervals[t], rec, me_hex, lookup, flags))
        named = {tr["id"] for tr in rec.intervals[t]["trades"]}
        for chain_id, tr in interval_trades(t):
            if me_hex in (tr["seller"].hex(), tr["buyer"].hex()) and chain_id.hex() not in named:
                flags.append(f"interval {t}: trade {chain_id.hex()[:16]} is on the chain, not in the records")
    for tid, where in sorted(rec.seen.items()):
        if len(where) > 1:
            flags.append(f"trade {tid[:16]}: in the records of intervals {where} (paid once per interval?)")
    return {
        "day": day, "mg": first.get("mg"), "anonym": me_hex, "intervals": rows, "day_total": _total(rows),
        "flags": flags, "skipped": list(skipped or []),
    }  # fmt: skip


def _interval(doc: dict[str, Any], rec: Records, me: str, lookup: Lookup, flags: list[str]) -> dict[str, Any]:
    t = doc["interval"]
    trades = []
    for tr in doc["trades"]:
        trades.append(_trade(t, tr, me, rec.settlements.get(tr["id"], []), lookup, flags))
    settled = [x for x in trades if x["chain"]["state"] == "settled"]
    settled_money = sum(x["chain"]["money"] for x in settled)
    agreed_settled = sum(x["agreed_money"] for x in settled)
    moved = [x["chain"]["money"] for x in settled]
    return {
        "interval": t, "role": doc.get("role"), "trades": trades,
        "sold_kwh": sum(x["kwh"] for x in trades if x["side"] == "sold"),
        "bought_kwh": sum(x["kwh"] for x in trades if x["side"] == "bought"),
        "agreed_money": doc["p2p_money"], "settled_money": settled_money,
        "money_in": sum(m for m in moved if m > 0), "money_out": sum(m for m in moved if m < 0),
        "unsettled": len(trades) - len(settled),
        "unsettled_agreed_money": sum(x["agreed_money"] for x in trades if x["chain"]["state"] != "settled"),
        "cost_p2p": doc["cost_p2p"], "cost_p2p_settled": doc["cost_p2p"] + agreed_settled - settled_money,
        "cost_conventional": doc["cost_conventional"], "cost_to_go": _to_go(doc.get("cost_to_go")),
    }  # fmt: skip


def _to_go(found: Any) -> dict[str, float] | None:
    """The record's `cost_to_go` (written on the day's last interval: what the energy stored at the day's end
    costs or saves later, P2P and conventional), None where the line has none or not two numbers."""
    if isinstance(found, dict) and _number(found.get("p2p")) and _number(found.get("conventional")):
        return {"p2p": float(found["p2p"]), "conventional": float(found["conventional"])}
    return None


def _trade(
    t: int, tr: dict[str, Any], me: str, lines: list[dict[str, Any]], lookup: Lookup, flags: list[str]
) -> dict[str, Any]:
    side = "sold" if tr["seller"] == me else "bought"
    party = "seller" if side == "sold" else "buyer"
    other = tr["buyer"] if side == "sold" else tr["seller"]
    kwh = float(tr["quantity_kwh"])
    agreed = round(kwh * 1000) * round(float(tr["price"]) * 1000) / 1e6 * (1 if side == "sold" else -1)
    tid = tr["id"]
    view = lookup(bytes.fromhex(tid))
    chain: dict[str, Any]
    if view.trade is None or view.standing is None:
        chain = {"state": "not on the chain"}
        flags.append(f"interval {t}: trade {tid[:16]} is in the records, not on the chain")
    elif "superseded" in view.trade:
        chain = {"state": "superseded", "why": "the DSO reopened the interval: a later closing replaced it"}
    else:
        figures = settled_figures(view.standing.get("settlement"), party)
        chain = {"state": view.standing["state"]}
        if figures is not None:
            chain = {"state": "settled", **figures}
        else:
            ended = [x for x in lines if not x["settled"]]
            chain["why"] = str(ended[-1].get("reason")) if ended else _waiting(view.standing["state"])
    txids = {
        str(x["chain"]["txid"]) for x in lines if isinstance(x.get("chain"), dict) and "txid" in x["chain"]
    }
    if len(txids) > 1:
        flags.append(f"interval {t}: trade {tid[:16]} settled by {len(txids)} transactions in the records")
    # this side's own statement (Wh), the last the settlement lines give: where the DSO settled another figure
    # from the meters, the owner sees both (a restart's gap in the sealed readings settles a sale at 0)
    stated = [x["delivered"] for x in lines if isinstance(x.get("delivered"), int)]
    return {
        "trade": tid, "side": side, "counterparty": other[:8], "kwh": kwh, "price": float(tr["price"]),
        "agreed_money": agreed, "chain": chain, "stated_wh": stated[-1] if stated else None,
    }  # fmt: skip


def _waiting(state: str) -> str:
    return {
        "open": "no settlement on the chain yet",
        "stated": "one side stated; the other may still state until the deadline",
        "vouching": "both sides agreed; waiting for the DSO's word",
        "disputed": "the statements differ; the DSO settles it from the meters",
    }.get(state, state)


def _total(rows: list[dict[str, Any]]) -> dict[str, Any]:
    done = [r for r in rows if "failed" not in r and "missing" not in r]
    keys = ("sold_kwh", "bought_kwh", "agreed_money", "settled_money", "money_in", "money_out", "unsettled",
            "unsettled_agreed_money", "cost_p2p", "cost_p2p_settled", "cost_conventional")  # fmt: skip
    total: dict[str, Any] = {k: sum(r[k] for r in done) for k in keys}
    total["trades"] = sum(len(r["trades"]) for r in done)
    total["intervals"], total["failed_intervals"] = len(done), sum(1 for r in rows if "failed" in r)
    total["missing_intervals"] = [r["interval"] for r in rows if "missing" in r]
    total["saving"] = total["cost_conventional"] - total["cost_p2p_settled"]
    # a storage MG's day is not over at its last interval: what its batteries hold then is valued by the rest
    # of the horizon (the lab report's mg_cost_* include it); without it a battery charged from peers reads
    # as a day far worse than the DSO-only one (U4's two answers; mg2 of E4's lab: 24.65 worse, 2.19 better)
    to_go = [r["cost_to_go"] for r in done if r["cost_to_go"] is not None]
    total["cost_to_go"] = to_go[-1] if to_go else None
    if to_go:
        total["saving_with_to_go"] = total["saving"] + to_go[-1]["conventional"] - to_go[-1]["p2p"]
    return total


def render(summary: dict[str, Any]) -> str:
    """The summary as the owner reads it on a terminal."""
    out = [f"day {summary['day']}: {summary['mg']} (anonym {summary['anonym'][:8]})"]
    for r in summary["intervals"]:
        if "failed" in r:
            out.append(f"interval {r['interval']}: failed ({r['failed']})")
            continue
        if "missing" in r:
            out.append(f"interval {r['interval']}: {r['missing']}; the day's figures leave it out")
            continue
        out.append(
            f"interval {r['interval']}: {r['role']}, {len(r['trades'])} trades, sold {r['sold_kwh']:.3f} kWh, "
            f"bought {r['bought_kwh']:.3f} kWh; money in {r['money_in']:.6f}, out {-r['money_out']:.6f}"
            f"{_unsettled(r)}; cost {r['cost_p2p_settled']:+.6f} against DSO only {r['cost_conventional']:+.6f}"
        )
        for x in r["trades"]:
            out.append(f"  {x['side']:6} {x['kwh']:8.3f} kWh @ {x['price']:.3f} "
                       f"{'to' if x['side'] == 'sold' else 'from'} {x['counterparty']}: {_said(x)}")  # fmt: skip
    d = summary["day_total"]
    out.append(
        f"the day: {d['intervals']} intervals ({d['failed_intervals']} failed{_missing(d)}), {d['trades']} trades, sold "
        f"{d['sold_kwh']:.3f} kWh, bought {d['bought_kwh']:.3f} kWh; money in {d['money_in']:.6f}, out "
        f"{-d['money_out']:.6f}{_unsettled(d)}; cost {d['cost_p2p_settled']:+.6f} against DSO only "
        f"{d['cost_conventional']:+.6f}: {_better(d['saving'])}"
    )
    if d["cost_to_go"] is not None:
        out.append(
            f"  with what the energy stored at the day's end costs later (cost_to_go): "
            f"{d['cost_p2p_settled'] + d['cost_to_go']['p2p']:+.6f} against DSO only "
            f"{d['cost_conventional'] + d['cost_to_go']['conventional']:+.6f}: {_better(d['saving_with_to_go'])}"
        )
    out += [f"FLAG {f}" for f in summary["flags"]]
    out += [f"skipped {s}" for s in summary["skipped"]]
    return "\n".join(out)


def _missing(d: dict[str, Any]) -> str:
    gone = d["missing_intervals"]
    return f"; {len(gone)} without a record: {', '.join(map(str, gone))}" if gone else ""


def _better(saving: float) -> str:
    return f"{abs(saving):.6f} {'better' if saving >= 0 else 'worse'}"


def _unsettled(r: dict[str, Any]) -> str:
    if not r["unsettled"]:
        return ""
    return f", {r['unsettled']} not settled ({r['unsettled_agreed_money']:+.6f} agreed)"


def _said(x: dict[str, Any]) -> str:
    c = x["chain"]
    if c["state"] != "settled":
        return f"{c['state']}" + (f": {c['why']}" if c.get("why") else "")
    words = f"settled {c['delivered']} Wh{' (' + c['basis'] + ')' if 'basis' in c else ''}"
    if c["compensation"]:
        words += f", compensation {c['compensation']:+d} micro"
    stated = x.get("stated_wh")
    # a few Wh apart is the DSO sharing by the meters (every trade of the lab's days); more is news to the owner
    if stated is not None and abs(stated - c["delivered"]) > 0.01 * max(stated, c["delivered"]):
        words += f" (this MG stated {stated} Wh)"
    return f"{words}, {c['money']:+.6f}"


class DayError(Exception):
    """The records or the replica cannot be read, or hold no such day: one line for the owner."""


def day_report(records: Path, ledger: Path, day: str | None = None, as_json: bool = False) -> str:
    """The day's summary of the record file `records` against the MGMC chain replica `ledger` (`summarise`),
    as text or JSON. The replica is opened as it is, or, while the daemon holds its lock, from a copy taken
    now (LevelDB allows one process; `peergrid_ledger.store_copy`: the copy is read, never written, and
    removed). A copy that cannot be taken (no room in the temporary folder, a file it cannot read) is a
    `DayError` like any other failure to read."""
    from peergrid_ledger import query
    from peergrid_ledger.store import BlockStore, StoreError
    from peergrid_ledger.store_copy import CopyError, opened_copy

    try:
        lines = records.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise DayError(f"cannot read the records {records}: {exc.strerror or exc}") from None
    docs, skipped = read_records(lines, str(records))
    with ExitStack() as opened:
        try:
            store = opened.enter_context(BlockStore.open(ledger))
        except StoreError as exc:
            if not ledger.is_dir() or "lock" not in str(exc).lower():
                raise DayError(str(exc)) from None
            try:  # the daemon runs: read what its replica held a moment ago
                store = opened.enter_context(opened_copy(ledger))
            except CopyError as failed:
                raise DayError(f"{failed}, to read it while the daemon holds its lock") from None
            except StoreError as again:
                raise DayError(f"{ledger} (copied while the daemon runs): {again}") from None
        state = store.load_state()

        def lookup(tid: bytes) -> ChainView:
            return ChainView(query.trade(state, tid), query.settlement(state, tid))

        def interval_trades(t: int) -> list[tuple[bytes, dict[str, Any]]]:
            try:
                return query.trades(state, t)
            except (KeyError, TypeError, ValueError):  # an interval the chain never closed
                return []

        try:
            summary = summarise(docs, lookup, interval_trades, day, skipped)
        except ValueError as exc:
            raise DayError(str(exc)) from None
    return json.dumps(summary, indent=1) if as_json else render(summary)
