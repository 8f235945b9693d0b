"""The market view of the live closed loop: each interval's bargaining as the MGMC chain recorded it.

Promises: `LiveMarket.report()` returns the market view's JSON (the same shape as the lab simulation's,
`console.market`): per trading interval the sellers' price in every bargaining round (from the final `offer`
and `move` transactions in the DSO's MGMC-chain replica, which follows the chain without voting), the agreed
trades and their settlement (from the chain state the market contract wrote), the rounds cap of one bargaining
(`round_cap`: the MGMC genesis' `max_rounds`, None when it sets none) and the round the last re-bargaining of a
reopened interval numbers on from (`reopened_at`, None when never reopened), so the view can tell a bargaining
stopped at the cap from one still moving; and - when the lab gives the MGMCs' interval records
(`mgmc_records`) - each MG's cost under P2P and under the conventional market; in
the pilot those stay private to the MGMCs and the view says so. The interval's welfare is given once every MG
named in its trades has its record (`welfare.waiting`: those still missing): a seller writes its record before
its buyers do, and a welfare of the sellers alone (their P2P income in, the buyers' payment not) read as P2P
costing more than the conventional market (U2's lab: p2p 0.000 against 4.785 on the newest interval).
Anonyms are shown by the MG names the DSO enrolled them under. Reads only: blocks from the store (any thread), state through `call` (the node's loop).
Blocks are scanned once, incrementally.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

MICRO = 1e6


class LiveMarket:
    def __init__(
        self,
        replica: Any,  # the node's MGMC-chain ChainReplica
        call: Callable[[Callable[[], Any]], Any],  # runs a function on the node's event loop
        anonyms: dict[str, str],  # anonym hex -> MG name
        interval_hours: float,
        mgmc_records: Path | None = None,
    ) -> None:
        self.replica, self.call, self.anonyms = replica, call, anonyms
        self.interval_hours, self.mgmc_records = interval_hours, mgmc_records
        self._lock = threading.Lock()
        self._scanned = 0
        # interval -> seller -> round -> (price per kWh, kWh)
        self._positions: dict[int, dict[str, dict[int, tuple[float, float]]]] = {}
        self._closed: set[int] = set()
        self._cache: tuple[int, dict[str, Any]] | None = None

    def _name(self, key: bytes) -> str:
        return self.anonyms.get(key.hex(), key.hex()[:8])

    def _scan(self, store: Any, head: int) -> None:
        for height in range(self._scanned + 1, head + 1):
            for tx in store.block(height).txs:
                body = tx.body
                if tx.kind in ("offer", "move") and "price" in body:
                    t, r = int(body["interval"]), int(body["round"])
                    rounds = self._positions.setdefault(t, {}).setdefault(self._name(tx.sender), {})
                    rounds[r] = (body["price"] / 1000, body["quantity"] / 1000)
                elif tx.kind == "trade":
                    self._closed.add(int(body["interval"]))
                elif (
                    tx.kind == "market.reopen"
                ):  # bargaining again: its trades superseded until a trade closes it
                    self._closed.discard(int(body["interval"]))
            self._scanned = height

    def report(self) -> dict[str, Any]:
        store = self.replica.store
        with self._lock:
            head = int(store.head_height())
            if self._cache is not None and self._cache[0] == head:
                return self._cache[1]
            self._scan(store, head)
            intervals = sorted(self._positions)
            trades, reopened = self.call(lambda: (self._trades(intervals), self._reopened_at(intervals)))
            costs = self._costs()
            out = [self._interval(t, trades.get(t, []), costs.get(t, {}), reopened.get(t)) for t in intervals]
        source = f"live: the DSO's replica of the MGMC chain (height {head})"
        if self.mgmc_records is None:
            source += "; MG costs stay private to the MGMCs"
        else:
            source += "; MG costs from the MGMCs' interval records"
        doc = {"status": "ready" if out else "computing", "source": source, "intervals": out, "height": head}
        if not out:
            doc["waiting"] = "waiting for the first interval's bargaining on the MGMC chain…"
        with self._lock:
            self._cache = (head, doc)
        return doc

    def _trades(self, intervals: list[int]) -> dict[int, list[dict[str, Any]]]:
        """On the node's loop: the agreed trades of each interval with their settlement (chain state)."""
        from peergrid_ledger import query

        state = self.replica.app.state
        return {t: [rec for _, rec in query.trades(state, t)] for t in intervals if t in self._closed}

    def _reopened_at(self, intervals: list[int]) -> dict[int, int]:
        """On the node's loop: for each reopened interval, the round its last re-bargaining numbers on from."""
        from peergrid_ledger.contracts.market_state import reopening

        state = self.replica.app.state
        return {t: int(done["round"]) for t in intervals if (done := reopening(state, t)) is not None}

    def _costs(self) -> dict[int, dict[str, dict[str, float]]]:
        out: dict[int, dict[str, dict[str, float]]] = {}
        if self.mgmc_records is None:
            return out
        for path in sorted(self.mgmc_records.glob("mgmc-*.jsonl")):
            mg = path.stem.removeprefix("mgmc-")
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except OSError:
                continue
            for line in lines:
                try:
                    rec = json.loads(line)
                    entry = {k: float(rec[k]) for k in ("cost_p2p", "cost_conventional", "p2p_money")}
                except (ValueError, KeyError, TypeError):
                    continue  # an error record, or a line being written
                out.setdefault(int(rec["interval"]), {})[mg] = entry
        return out

    def _interval(
        self,
        t: int,
        trades: list[dict[str, Any]],
        costs: dict[str, dict[str, float]],
        reopened_at: int | None,
    ) -> dict[str, Any]:
        sellers = self._positions.get(t, {})
        rounds = max((r for by_round in sellers.values() for r in by_round), default=0)
        prices: list[dict[str, Any]] = []
        last_two: list[dict[str, float]] = []
        for r in range(1, rounds + 1):
            now = {}
            for seller, by_round in sorted(sellers.items()):
                known = [k for k in by_round if k <= r]
                if known:
                    price, kwh = by_round[max(known)]
                    now[seller] = price
                    prices.append({"round": r, "seller": seller, "price": round(price, 6),
                                   "quantity_kwh": round(kwh, 3), "accepted": True})  # fmt: skip
            last_two = [*last_two[-1:], now]
        converged = t in self._closed and (rounds == 1 or (len(last_two) == 2 and last_two[0] == last_two[1]))
        agreed, settlements = [], []
        for tr in trades:
            seller, buyer = self._name(tr["seller"]), self._name(tr["buyer"])
            agreed.append({"seller": seller, "buyer": buyer, "quantity_kwh": tr["quantity"] / 1000,
                           "price": tr["price"] / 1000})  # fmt: skip
            done = tr.get("settlement")
            if done:
                settlements.append({"seller": seller, "buyer": buyer, "delivered_kwh": done["delivered"] / 1000,
                                    "amount": round(done["amount"] / MICRO, 6), "ok": True})  # fmt: skip
        p2p = {mg: round(c["cost_p2p"], 4) for mg, c in costs.items()}
        conventional = {mg: round(c["cost_conventional"], 4) for mg, c in costs.items()}
        physical = sum(c["cost_p2p"] + c["p2p_money"] for c in costs.values())
        parties = {name for tr in agreed for name in (tr["seller"], tr["buyer"])}
        waiting = sorted(parties - set(costs)) if costs else []  # no records at all: the pilot's, or none yet
        whole = bool(costs) and not waiting
        return {
            "interval": t,
            "hours": [round(t * self.interval_hours, 4), round((t + 1) * self.interval_hours, 4)],
            "rounds": rounds,
            "converged": converged,
            "closed": t in self._closed,
            "round_cap": self.replica.app.genesis.params.max_rounds or None,  # 0: the chain sets no cap
            "reopened_at": reopened_at,
            "prices": prices,
            "trades": agreed,
            "settlements": settlements,
            "cost_p2p": p2p,
            "cost_conventional": conventional,
            "welfare": {
                "p2p": round(-physical, 4) if whole else None,
                "conventional": round(-sum(conventional.values()), 4) if whole else None,
                "central": None,  # the centralised optimum is the report's, not computed live
                "waiting": waiting,  # the trading MGs whose interval record is not in yet
            },
        }
