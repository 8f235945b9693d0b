"""A session opened without `clean_prices` keeps today's bytes: its records, its events, its refusals' reasons
and its state roots are pinned here as they were before the clean book existed (computed at caf2527).

Each seed scripts a whole random session (exchange_clean.py adds nothing to such a session): rules with
floors, caps, clean-only members and quantity limits; an open with or without a deadline; a few iterations
of posts (some with verdicts and judgements, some refused) and steps; the close; accepts (some refused at
the closing price), a round-2 re-accept on some seeds; the clear. Every block's state root and every
accepted transaction's events go into one digest per seed.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

import pytest
from ledger_fixtures import Keys, make_genesis

from peergrid_ledger.chain import LocalChain
from peergrid_ledger.codec import encode
from peergrid_ledger.contracts.exchange import rho_bounds, session, stepped
from peergrid_ledger.genesis import Account, Params
from peergrid_ledger.results import Accepted

MEMBERS = (Keys.p1, Keys.p2, Keys.p3, Keys.p4)
FIRST = 200


def _rules(rng: random.Random) -> dict[str, Any]:
    return {
        "floor_price": rng.choice([0, 0, 40]),
        "cap_price": rng.choice([90, 10**12]),
        "max_quantity": rng.choice([1500, 4000, 10**12]),
        "clean_only": rng.random() < 0.2,
        "clean_premium": rng.choice([0, 10]),
    }


def script_digest(seed: int) -> str:
    """The seed's session on a fresh chain: sha256 over every block's state root and every result."""
    rng = random.Random(seed)
    rules = {m.public: _rules(rng) for m in MEMBERS}
    accounts = (
        Account(Keys.dso.public, ("dso",), "dso"),
        *(Account(m.public, ("anonym",), f"p{i}", rules=rules[m.public]) for i, m in enumerate(MEMBERS, 1)),
    )
    genesis = make_genesis(
        contracts=("market", "exchange"), accounts=accounts, params=Params(credit_limit=10**12)
    )
    chain = LocalChain(genesis, Keys.authority)
    trail: list[Any] = []

    def send(who: Any, kind: str, body: dict[str, Any]) -> bool:
        result = chain.sign_and_submit(who, kind, body)
        trail.append(list(result.events) if isinstance(result, Accepted) else str(result.reason))
        return result.ok

    def seal() -> None:
        chain.seal()
        trail.append(chain.state.root)

    intervals = rng.randint(1, 5)
    body: dict[str, Any] = {
        "session": "day",
        "first_interval": FIRST,
        "members": [m.public for m in MEMBERS],
        "prices": [rng.randint(-20, 120) * 10**6 for _ in range(intervals)],
        "rho": rng.choice([5_000_000, 20_000_000]),
    }
    if rng.random() < 0.5:
        body["deadline"] = chain.tip.time + 10**9
    send(Keys.dso, "exchange.open", body)
    seal()
    rho = body["rho"]
    for iteration in range(rng.randint(1, 4)):
        for m in MEMBERS:
            r = rules[m.public]
            size = min(3000, r["max_quantity"])
            positions = [rng.randint(0 if r["clean_only"] else -size, size) for _ in range(intervals)]
            if rng.random() < 0.15:  # a refusal: one position too few
                send(m, "exchange.position", {"session": "day", "iteration": iteration, "positions": [0]})
            post: dict[str, Any] = {"session": "day", "iteration": iteration, "positions": positions}
            if iteration >= 2 and rng.random() < 0.5:
                post["settled"] = rng.random() < 0.5
            if iteration >= 2 and rng.random() < 0.3:
                post["judged"] = {"banned": [0], "asks": [], "fees": rng.random() < 0.5}
            send(m, "exchange.position", post)
        low, high = rho_bounds(rho)
        rho = rng.randint(low, high)
        send(Keys.dso, "exchange.step", {"session": "day", "iteration": iteration, "rho": rho})
        seal()
    record = session(chain.state, "day")
    assert record is not None
    current = record["iteration"]
    send(
        MEMBERS[0],
        "exchange.position",
        {"session": "day", "iteration": current, "positions": [1] * intervals},
    )
    send(Keys.dso, "exchange.close", {"session": "day", "iteration": current})
    seal()
    firsts: dict[bytes, list[int]] = {}
    for m in MEMBERS:
        final = stepped(chain.state, "day", m.public)
        assert final is not None
        positions = [q if rng.random() < 0.7 else q // 2 for q in final["positions"]]
        clean = rng.random() < 0.5
        if not send(m, "exchange.accept", {"session": "day", "positions": positions, "clean": clean}):
            positions = [0] * intervals
            send(m, "exchange.accept", {"session": "day", "positions": positions, "clean": clean})
        firsts[m.public] = positions
    seal()
    if rng.random() < 0.5:  # a round 2: everyone re-checks, one cuts
        for i, m in enumerate(MEMBERS):
            positions = firsts[m.public]
            if i == 0:
                positions = [q // 2 for q in positions]
            send(m, "exchange.accept", {"session": "day", "positions": positions, "clean": False})
            send(m, "exchange.accept", {"session": "day", "positions": positions, "clean": True})
        seal()
    send(Keys.dso, "exchange.clear", {"session": "day"})
    seal()
    return hashlib.sha256(encode(trail)).hexdigest()


# computed at caf2527, before the clean book: a session without `clean_prices` must keep these
PINNED = {
    0: "b226f369b1edc583e40e8f48b98aadaf8995bb5f70771a7b0ffdd4ba3a05af65",
    1: "b3f7b57ecc6681560f8da08106d7c917ba05a7b6ad88b0f66c0a7364f65e1196",
    2: "e35c588afc7e79723d42a077e8c44c2ed96b4c9d702e959b1724834b8ebcc71e",
    3: "b47592d6c3e4b4b1f0ae3abd9970d110f5459d0ce158c99acdd3e350e0c0c44d",
    4: "1e3073cc2a75bbc1a1e0730ae8603cdd9ec83a21cbd0a5f768e167895689b660",
    5: "9e6d5f605cb26e4549511c4bb145ebba1b3e0048df744bee73db7841baf18f49",
    6: "a0e823a74fbfa5227f2e86b225dea85ab59e642b30cfc418e5ba66a0ac64ad2e",
    7: "7d9693de60bcd6eded64dcc0d772b72538bed376af638e0a12ff7d0fa0afdd72",
    8: "d56e10b91ba90d37d25f4b42c5bcbbb22ea01cbcd8c359ddb58dd8778ed45445",
    9: "369a711a4990e6ed6caef3f65c5cf24b9a4c4d6ecce7cf24c68a67e6f235e664",
    10: "05ddc29296c1849731bb5630fa46adeb9b4e69e3cbe04c3ebf0874603b606109",
    11: "9c968c7153719910639706c1714794cd24d258fe7f8235b49925f5d03a621e10",
    12: "bd2a975a80e472f71a59d2bd3bf32cb5bf31e65c955e22e4b26d7bdce1cd6485",
    13: "3e460a8e14dae0cf49988a4e13c999b31e9c19e61facb7753f97ebc0527d47d7",
    14: "51cb1ca6234ff72862d9ef60a3a621e028027ce70c4db4adcbac36029be47675",
    15: "12e622d7c9a73bf6f82cab3bd0e0b64514757d193047902fa3b2084c523688e3",
}


@pytest.mark.parametrize("seed", sorted(PINNED))
def test_a_session_without_clean_prices_keeps_its_bytes(seed: int) -> None:
    assert script_digest(seed) == PINNED[seed]
