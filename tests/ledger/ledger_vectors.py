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
    return out


def render() -> str:
    return "\n".join(f"{name}\n    {value}" for name, value in vectors().items())


if __name__ == "__main__":
    print(render())
