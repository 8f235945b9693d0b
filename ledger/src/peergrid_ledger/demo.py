"""A sample chain holding signed transactions of every kind, for trying the CLI and for tests.

`build_demo(store_or_none, blocks)` seals `blocks` blocks with `LocalChain`: governance (add, rotate, remove an
authority, so later certificates carry two signatures; revoke an MGMC, with the operator's record),
enrolment and (de)authorisation, DER data commitments, a schedule contract, equivalent injections, an
encrypted adjustment contract, a switching plan with its executed steps and its result, market rules,
offers, bids, bargaining moves, agreed trades, the DSO reopening the interval for re-bargaining (the second
closing's trades settle), a plain payment (mg3 pays mg1 a make-whole uplift), the day-ahead exchange (mg1
and mg2 post, one step, closed, both accept, the chain clears their forward trades, both claim the make-whole
and, the trades settled, the chain pays mg1's credit from mg2), the auction example
(1 sells; 2, 3, 4 bid 30, 20, 25; 2 wins and pays 1), and equivocation evidence. Keys come from fixed
seeds, so apart from the sealed-box ciphertext the chain is the same every time. With fewer than three blocks the early phases share blocks; every kind still appears.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .chain import LocalChain
from .genesis import Account, Genesis, Params
from .keys import Keypair, seal
from .results import Accepted
from .store import BlockStore
from .votes import PREPARE, vote_digest

DEMO_CHAIN = "peergrid-demo"
DEMO_T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z in ms
NAMES = ("authority-a", "authority-b", "authority-c", "dso", "mg1", "mg2", "mg3", "mg4", "mgmc5", "mg5")


def demo_key(name: str) -> Keypair:
    return Keypair.from_seed(hashlib.sha256(b"peergrid-demo/" + name.encode()).digest())


@dataclass
class Demo:
    chain: LocalChain
    keys: dict[str, Keypair]
    txids: dict[str, bytes] = field(default_factory=dict)  # first txid of each kind

    def do(self, who: str, kind: str, body: dict[str, Any]) -> Accepted:
        result = self.chain.sign_and_submit(self.keys[who], kind, body, self.chain.tip.time + 1000)
        if not isinstance(result, Accepted):
            raise RuntimeError(f"demo transaction {kind} by {who} was {result}")
        self.txids.setdefault(kind, result.txid)
        return result

    def pk(self, name: str) -> bytes:
        return self.keys[name].public


def demo_genesis(keys: dict[str, Keypair]) -> Genesis:
    anonyms = [
        Account(keys[f"mg{i}"].public, ("anonym",), f"anonym-{i}", balance=1_000_000) for i in range(1, 5)
    ]
    return Genesis(
        chain=DEMO_CHAIN,
        time=DEMO_T0,
        authorities=(keys["authority-a"].public,),
        accounts=(Account(keys["dso"].public, ("dso",), "dso"), *anonyms),
        # trades settle on both parties' statements (so the DSO may price the cover: `market.tariff`), on an
        # interval clock whose intervals all ended long before the demo's blocks (1 s each from 1970)
        params=Params(
            credit_limit=10_000_000,
            max_reopens=1,
            settle_by_both=1,
            settle_epoch_ms=0,
            settle_interval_ms=1_000,
        ),
        contracts=("market", "auction", "payments", "exchange", "uplift"),
    )


def _phase_records(d: Demo) -> None:
    # the DSO posts the interval clock before any position (`market.clock`): the genesis' own epoch, so the
    # demo's intervals still all ended long before its blocks
    d.do("dso", "market.clock", {"epoch_ms": 0})
    d.do("dso", "gov.add_authority", {"key": d.pk("authority-b")})
    d.do("dso", "enrol", {"mgmc": d.pk("mgmc5"), "anonym": d.pk("mg5"), "label": "mg5"})
    d.do("dso", "authorise", {"key": d.pk("mg5"), "authorised": False})
    d.do("dso", "authorise", {"key": d.pk("mg5"), "authorised": True})
    for i in range(1, 5):
        root = hashlib.sha256(f"readings mg{i} interval 1".encode()).digest()
        d.do(f"mg{i}", "der_commitment", {"interval": 1, "root": root, "readings": 96})
        d.do(f"mg{i}", "equivalent_injection", {"interval": 1, "injection": 1000 * (i - 2), "revision": 0})
    d.do(
        "mg1",
        "schedule_contract",
        {"interval": 1, "der": "battery-1", "setpoints": [500, 250, 0, -250], "step_s": 900},
    )
    contract = seal(d.pk("mg2"), b'{"interval": 1, "max_injection_w": 1500}')
    d.do("dso", "adjustment_contract", {"interval": 1, "to": d.pk("mg2"), "ciphertext": contract})
    actions = [{"switch": "s33", "close": True}, {"switch": "s7", "close": False}]
    d.do("dso", "switching_plan", {"plan": "plan-1", "interval": 1, "actions": actions})
    rules = {
        "floor_price": 200,
        "cap_price": 0,
        "max_quantity": 5000,
        "clean_only": False,
        "clean_premium": 0,
    }
    d.do("mg1", "market.rules", {"rules": rules, "from_interval": 1})
    buyer = {
        "floor_price": 0,
        "cap_price": 400,
        "max_quantity": 4000,
        "clean_only": True,
        "clean_premium": 50,
    }
    d.do("mg3", "market.rules", {"rules": buyer, "from_interval": 1})
    d.do("mg1", "offer", {"interval": 1, "round": 0, "price": 250, "quantity": 3000, "clean": True})
    d.do("mg2", "offer", {"interval": 1, "round": 0, "price": 230, "quantity": 1000, "clean": False})
    d.do("mg3", "bid", {"interval": 1, "round": 0, "demands": [{"seller": d.pk("mg1"), "quantity": 1500}]})
    demands = [{"seller": d.pk("mg1"), "quantity": 1000}, {"seller": d.pk("mg2"), "quantity": 800}]
    d.do("mg4", "bid", {"interval": 1, "round": 0, "demands": demands})
    d.do("mg1", "auction.open", {"auction": "auction-1", "quantity": 10, "reserve": 10, "close_height": 3})
    for bidder, amount in (("mg2", 30), ("mg3", 20), ("mg4", 25)):
        d.do(bidder, "auction.bid", {"auction": "auction-1", "amount": amount})


def _phase_bargain(d: Demo) -> None:
    d.do("mg1", "move", {"interval": 1, "round": 1, "price": 270, "quantity": 3000})
    demands = [{"seller": d.pk("mg1"), "quantity": 900}, {"seller": d.pk("mg2"), "quantity": 900}]
    d.do("mg4", "move", {"interval": 1, "round": 1, "demands": demands})
    d.do("mg3", "trade", {"interval": 1})
    # the DSO's adjustment contract makes the MGs re-bargain (design step 6): it reopens the interval, mg1
    # lowers its price a little, and the second closing's trades are the ones that settle
    ref = hashlib.sha256(b"adjustment contract of interval 1").digest()
    until = d.chain.tip.time + 60_000
    d.do("dso", "market.reopen", {"interval": 1, "iteration": 1, "ref": ref, "until": until})
    d.do("mg1", "move", {"interval": 1, "round": 2, "price": 260, "quantity": 3000})
    agreed = d.do("mg3", "trade", {"interval": 1})
    for _, event in agreed.events:  # each party states what it metered; they agree, so it settles
        buyer = next(n for n in ("mg3", "mg4") if d.pk(n) == event["buyer"])
        seller = next(n for n in ("mg1", "mg2") if d.pk(n) == event["seller"])
        d.do(buyer, "settle", {"trade": event["id"], "delivered": event["quantity"]})
        d.do(seller, "settle", {"trade": event["id"], "delivered": event["quantity"]})
    # the DSO prices mg1's and mg2's cover for a coming interval (imbalance compensation on its trades)
    for mg in ("mg1", "mg2"):
        d.do(
            "dso",
            "market.tariff",
            {"account": d.pk(mg), "first_interval": 50, "retail": [300], "feed_in": [50]},
        )
    d.do("mg3", "pay", {"payee": d.pk("mg1"), "amount": 1200, "ref": "uplift/day-1"})
    # the day-ahead exchange: mg1 and mg2 post positions for two intervals, the chain steps (iteration 0:
    # first responses, prices unchanged) and the coordinator closes at iteration 1; both accept (mg1 less
    # than it posted in interval 2, at or above its floor of 200) and the chain clears the forward trades
    # (mg1 → mg2: 1000 Wh at 250 in interval 2, 500 Wh at 300 in interval 3)
    members = [d.pk("mg1"), d.pk("mg2")]
    # the DSO prices both members' cover for the session's intervals (the deployed coordinator waits for it):
    # the make-whole bound's spread (`uplift.gain_bound`; unpriced, genesis `uplift_max_spread`, 0 here)
    for mg in ("mg1", "mg2"):
        cover = {"account": d.pk(mg), "first_interval": 2, "retail": [300, 300], "feed_in": [50, 50]}
        d.do("dso", "market.tariff", cover)
    # and mg1's connection capacity (`market.capacity`, Wh per interval from interval 2, after its last trade
    # in interval 1): its make-whole bound takes the smaller of it and its own max_quantity
    d.do("dso", "market.capacity", {"account": d.pk("mg1"), "from_interval": 2, "wh": 5000})
    opening = {"prices": [250_000_000, 300_000_000], "rho": 5_000_000}
    d.do("dso", "exchange.open", {"session": "day-2", "first_interval": 2, "members": members, **opening})
    d.do("mg1", "exchange.position", {"session": "day-2", "iteration": 0, "positions": [1500, 500]})
    d.do("mg2", "exchange.position", {"session": "day-2", "iteration": 0, "positions": [-1000, -500]})
    d.do("dso", "exchange.step", {"session": "day-2", "iteration": 0, "rho": 5_000_000})
    d.do("dso", "exchange.close", {"session": "day-2", "iteration": 1})
    d.do("mg1", "exchange.accept", {"session": "day-2", "positions": [1200, 500], "clean": True})
    d.do("mg2", "exchange.accept", {"session": "day-2", "positions": [-1000, -500], "clean": False})
    cleared = d.do("dso", "exchange.clear", {"session": "day-2"})
    # the day-ahead make-whole: mg1 claims a lost opportunity, mg2 its gain over the conventional market; once
    # both forward trades settled, the chain pays mg1 from mg2 (contracts/uplift.py)
    d.do("mg1", "uplift.claim", {"session": "day-2", "gain": 5_000, "surplus": 0})
    d.do("mg2", "uplift.claim", {"session": "day-2", "gain": 0, "surplus": 8_000})
    for kind, event in cleared.events:
        if kind == "trade":
            for party in ("mg2", "mg1"):
                d.do(party, "settle", {"trade": event["id"], "delivered": event["quantity"]})
    d.do("mg2", "uplift.settle", {"session": "day-2"})
    # the DSO sets an exchange fee (nano per kWh per side: 1 micro-unit per Wh, one tick; a fee is a whole
    # number of ticks) and the uplift fund's cap
    # for the sessions opened after it by the coordinator it names - the edges' is the lowest member key - or by
    # itself (contracts/market_fee.py); day-2, opened before, keeps no fee
    coordinator = min(d.pk(f"mg{i}") for i in range(1, 5))
    d.do("dso", "market.fee", {"fee": 1_000_000, "fund_cap": 50_000, "coordinators": [coordinator]})
    for step, (switch, close) in enumerate((("s33", True), ("s7", False))):
        status = "closed" if close else "open"
        d.do("dso", "switching_step", {"plan": "plan-1", "step": step, "switch": switch, "close": close, "ok": True,
             "rollback": False, "status": status, "at_ms": DEMO_T0 + 2000 + step, "detail": ""})  # fmt: skip
    results = [{"switch": "s33", "closed": True, "ok": True}, {"switch": "s7", "closed": False, "ok": True}]
    d.do("dso", "switching_result", {"plan": "plan-1", "results": results})
    d.do("dso", "gov.rotate_authority", {"old": d.pk("authority-b"), "new": d.pk("authority-c")})
    a = d.keys["authority-a"]
    votes = [
        (block, a.sign(vote_digest(DEMO_CHAIN, 1, 0, PREPARE, block)))
        for block in (b"\x01" * 32, b"\x02" * 32)
    ]
    first, second = ({"block": b, "sig": s} for b, s in votes)
    body = {"signer": a.public, "height": 1, "round": 0, "step": PREPARE, "first": first, "second": second}
    d.do("dso", "evidence", body)


def _phase_wind_down(d: Demo) -> None:
    d.do("dso", "gov.remove_authority", {"key": d.pk("authority-c")})
    revoked = d.do("dso", "gov.revoke", {"key": d.pk("mgmc5"), "operator": "alice"})
    d.do("dso", "operator_action", {"operator": "alice", "action": "revoke mg5", "txs": [revoked.txid]})


def _phase_interval(d: Demo, interval: int) -> None:
    d.do(
        "mg1",
        "der_commitment",
        {"interval": interval, "root": hashlib.sha256(b"%d" % interval).digest(), "readings": 96},
    )
    d.do("mg1", "offer", {"interval": interval, "round": 0, "price": 240, "quantity": 2000, "clean": True})
    d.do(
        "mg2",
        "bid",
        {"interval": interval, "round": 0, "demands": [{"seller": d.pk("mg1"), "quantity": 700}]},
    )
    agreed = d.do("mg2", "trade", {"interval": interval})
    d.do("mg2", "settle", {"trade": agreed.events[0][1]["id"], "delivered": 650})
    d.do("mg1", "settle", {"trade": agreed.events[0][1]["id"], "delivered": 650})


def build_demo(store: BlockStore | None, blocks: int) -> Demo:
    """Seal `blocks` (>= 1) demo blocks into `store` (or memory) and return the chain and its keys."""
    if blocks < 1:
        raise ValueError("a demo needs at least one block")
    keys = {name: demo_key(name) for name in NAMES}
    genesis = demo_genesis(keys)
    if store is not None and store.genesis.hash != genesis.hash:
        raise ValueError("store holds another genesis")
    cosigners = [keys["authority-b"], keys["authority-c"]]
    chain = LocalChain(genesis, keys["authority-a"], store, cosigners=cosigners)
    d = Demo(chain, keys)
    phases: list[Callable[[Demo], None]] = [_phase_records, _phase_bargain, _phase_wind_down]
    for height in range(1, blocks + 1):
        if height <= len(phases):
            todo = phases[height - 1 :] if height == blocks else [phases[height - 1]]
            for phase in todo:
                phase(d)
        else:
            _phase_interval(d, height)
        chain.seal(chain.tip.time + 1000)
    return d
