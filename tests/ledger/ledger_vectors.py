"""Test vectors for docs/ledger-format.md, computed from fixed seeds (Ed25519 signing is deterministic)."""

from __future__ import annotations

import hashlib

from peergrid_ledger import merkle
from peergrid_ledger.block import Header
from peergrid_ledger.codec import encode
from peergrid_ledger.genesis import Account, Genesis
from peergrid_ledger.hashing import prefix
from peergrid_ledger.keys import Keypair
from peergrid_ledger.state import StateTree
from peergrid_ledger.tx import sign_tx
from peergrid_ledger.votes import COMMIT, vote_digest


def vector_key(name: str) -> Keypair:
    return Keypair.from_seed(hashlib.sha256(b"peergrid test vector " + name.encode()).digest())


def vectors() -> dict[str, str]:
    out: dict[str, str] = {}
    out["encode({'kind': 'offer', 'n': [1, -1, 1000], 'ok': true, 'x': null, 'b': h'0102'})"] = encode(
        {"kind": "offer", "n": [1, -1, 1000], "ok": True, "x": None, "b": b"\x01\x02"}
    ).hex()
    out["prefix('tx', 'mgmc-lab')"] = prefix("tx", "mgmc-lab").hex()
    seller = vector_key("seller")
    out["seller public key (seed sha256('peergrid test vector seller'))"] = seller.public.hex()
    body = {"interval": 42, "round": 0, "price": 250, "quantity": 1500, "clean": True}
    tx = sign_tx(seller, "mgmc-lab", "offer", 1, 1_767_225_600_000, body)
    out["offer tx payload"] = tx.payload.hex()
    out["offer txid = sha256(prefix('tx','mgmc-lab') || payload)"] = tx.txid.hex()
    out["offer tx wire = encode([payload, signature])"] = tx.raw.hex()
    for leaves in ([], [b""], [b"a", b"b", b"c"]):
        out[f"merkle root of {[leaf.decode() for leaf in leaves]}"] = merkle.root(leaves).hex()
    state = StateTree(
        "mgmc-lab", {b"bal/" + seller.public: encode(100), b"nonce/" + seller.public: encode(1)}
    )
    out["state root of {bal/<seller>: 100, nonce/<seller>: 1}"] = state.root.hex()
    authority = vector_key("authority")
    genesis = Genesis(
        chain="mgmc-lab",
        time=1_767_225_600_000,
        authorities=(authority.public,),
        accounts=(Account(seller.public, ("anonym",), "seller", balance=100),),
    )
    out["genesis hash (authority + seller, default params)"] = genesis.hash.hex()
    out["genesis initial state root"] = genesis.initial_state().root.hex()
    header = Header(
        chain="mgmc-lab",
        height=1,
        prev=genesis.hash,
        time=1_767_225_601_000,
        proposer=authority.public,
        tx_root=merkle.root([tx.raw]),
        state_root=bytes(32),
        round=0,
    )
    out["header (height 1, one tx, zero state root)"] = header.encode().hex()
    out["block hash = sha256(prefix('header','mgmc-lab') || header)"] = header.hash.hex()
    out["commit vote digest for that block, round 0"] = vote_digest(
        "mgmc-lab", 1, 0, COMMIT, header.hash
    ).hex()
    out.update(market_block_vectors())
    return out


def market_block_vectors() -> dict[str, str]:
    """One sealed block through the market contract: every state record it writes is covered by the root."""
    from peergrid_ledger.chain import LocalChain
    from peergrid_ledger.contracts.market import trade_id

    authority, seller, buyer = vector_key("authority"), vector_key("seller"), vector_key("buyer")
    rules = {
        "floor_price": 200,
        "cap_price": 0,
        "max_quantity": 5000,
        "clean_only": False,
        "clean_premium": 0,
    }
    genesis = Genesis(
        chain="mgmc-lab",
        time=1_767_225_600_000,
        authorities=(authority.public,),
        accounts=(
            Account(seller.public, ("anonym",), "seller", rules=rules),
            Account(buyer.public, ("anonym",), "buyer", balance=10**9),
        ),
    )
    chain = LocalChain(genesis, authority)
    t = 1_767_225_601_000
    offer = {"interval": 42, "round": 0, "price": 250, "quantity": 1500, "clean": True}
    demands = [{"seller": seller.public, "quantity": 1000}]
    steps = [
        (seller, "offer", offer),
        (buyer, "bid", {"interval": 42, "round": 0, "demands": demands}),
        (buyer, "trade", {"interval": 42}),
        (buyer, "settle", {"trade": trade_id(42, seller.public, buyer.public), "delivered": 900}),
    ]
    for key, kind, body in steps:
        assert chain.sign_and_submit(key, kind, body, t).ok
    block, _ = chain.seal(t)
    return {
        "market block 1 (offer, bid, trade, settle at t0+1 s): tx root": block.header.tx_root.hex(),
        "market block 1: state root": block.header.state_root.hex(),
        "market block 1: block hash": block.hash.hex(),
    }


def render() -> str:
    return "\n".join(f"{name}\n    {value}" for name, value in vectors().items())


if __name__ == "__main__":
    print(render())
