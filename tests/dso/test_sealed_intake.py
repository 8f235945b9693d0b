"""D5 (P9's 72 ms): the DSO node makes the one pass over a commitment interval's leaves where it takes them in
(`dispute_node.offer_readings` -> `sealed_pass.take_in`), keeps the pass's result with the root and count it
checked them against (`SealedSet`), not the leaves, and a resolve reads that (`sealed_readings.
commitment_readings`): no leaf decoded, no Merkle root computed, per resolve. The decision is the one the
leaves give, record and all, whatever they hold; a set that is not the chain's commitment is refused as before.
On a real MGMC chain (tests/dso's market), leaves as the edge makes them."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from peergrid_dso import sealed_readings
from peergrid_dso.disputes import Unresolved, Vouched, resolve, to_json
from peergrid_dso.sealed_pass import SealedSet, take_in
from peergrid_ledger import codec, merkle, meter_signing, metering, query
from peergrid_ledger.codec import decode, encode

from .test_disputes import CLOCK, Market, chain_time, ramp
from .test_disputes_node import final_blocks, hand_over, settler_for
from .test_disputes_readings import dispute, signed_leaves
from .test_readings_padding import garbage_signed
from .test_sealed_decoded_once import pv_leaves

MOST = CLOCK.most_meter_readings


def taken_in(m: Market) -> dict[tuple[bytes, int], SealedSet]:
    """Every set of `m` as the node takes it in (checked against the chain's record, read once)."""
    taken = {}
    for (node, bucket), leaves in m.sealed.items():
        record = query.der_commitment(m.chain.state, node, bucket)
        assert record is not None and merkle.root(list(leaves)) == record["root"]
        taken[(node, bucket)] = take_in(leaves, record, MOST)
    return taken


def _honest() -> list[bytes]:
    return signed_leaves(ramp(300.0, export=True))


def _broken_meter() -> list[bytes]:
    honest = _honest()
    return [*honest[:5], encode({**decode(honest[5]), "milli": "garbled"}), *honest[6:]]


# the seller's sealed leaves, and those without a time (sealed in commitment interval 17, the window's)
SELLERS: dict[str, Callable[[], tuple[list[bytes], list[bytes]]]] = {
    "honest": lambda: (_honest(), []),
    "pv beside": lambda: (_honest() + pv_leaves(_honest(), 2_000), []),
    "padded": lambda: (_honest() + garbage_signed(_honest()[0], MOST + 1, 17), []),
    "broken meter leaf": lambda: (_broken_meter(), []),
    "undecodable leaf": lambda: (_honest(), [b"\xff\x01"]),
    "no reading leaf": lambda: (_honest(), [encode([1, 2])]),
    "one unsigned": lambda: (signed_leaves(ramp(300.0, True), unsigned_at=[ramp(300.0, True)[5][0]]), []),
}


def record(decision: Any) -> dict[str, Any]:
    return to_json(decision)


@pytest.mark.parametrize("signing", [True, False])
@pytest.mark.parametrize("seller", sorted(SELLERS))
def test_a_resolve_from_the_sets_taken_in_is_the_one_from_the_leaves(seller: str, signing: bool) -> None:
    """Whatever the seller sealed (honest, 2,000 PV leaves beside, padded past the bound, a broken or
    undecodable leaf, a leaf that is no reading, an unsigned poll), read as signing or not, before and after
    the deadline: the decision from the taken-in sets is the leaves' decision, record bytes and all."""
    m, tid, meters = dispute(*SELLERS[seller]())
    key = meters if signing else None
    taken = taken_in(m)
    for _ in range(2):
        from_leaves = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m), signing=key)
        from_sets = resolve(m.chain.state, tid, CLOCK, m.node_of(), taken, chain_time(m), signing=key)
        assert record(from_sets) == record(from_leaves)
        m.pass_time(m.chain.tip.time + 120_000)  # past the deadline: the rules for an unmetered side


def test_a_resolve_from_sets_taken_in_decodes_and_hashes_no_leaf(monkeypatch: pytest.MonkeyPatch) -> None:
    """P9's case: the signing seller's eleven readings beside 20,000 PV leaves. Taken in once (one decode of
    each leaf there), a resolve decodes none and computes no Merkle root; from the leaves it decodes all
    20,000 and hashes them, every time."""
    m, tid, meters = dispute(_honest() + pv_leaves(_honest(), 20_000))
    taken = taken_in(m)
    seen: Counter[str] = Counter()
    decode_, root_ = codec.decode, merkle.root

    def counted_decode(raw: bytes, *args: Any) -> Any:
        seen["decode"] += 1
        return decode_(raw, *args)

    def counted_root(leaves: list[bytes]) -> bytes:
        seen["root"] += 1
        return root_(leaves)

    monkeypatch.setattr(metering, "decode", counted_decode)
    monkeypatch.setattr(meter_signing, "decode", counted_decode)
    monkeypatch.setattr(sealed_readings.merkle, "root", counted_root)
    decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), taken, chain_time(m), signing=meters)
    assert isinstance(decision, Vouched) and (decision.rule, decision.delivered) == ("both metered", 300)
    assert seen == Counter()
    resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m), signing=meters)
    assert seen["decode"] >= 20_000 and seen["root"] >= 3


def test_a_set_taken_in_holds_no_other_natures_reading() -> None:
    """What the node keeps of a set is the pass's readings: its meter readings decoded, the 2,000 PV leaves
    beside them not at all (before, every leaf was kept as handed over until the dispute ended)."""
    m, _, _ = dispute(_honest() + pv_leaves(_honest(), 2_000))
    seller = m.nodes["s"].public
    kept = {k: s for k, s in taken_in(m).items() if k[0] == seller}
    assert sum(s.count for s in kept.values()) == 11 + 2_000
    assert all(s.found is not None for s in kept.values())
    readings = [r for s in kept.values() if s.found is not None for r in s.found[0]]
    assert len(readings) == 11 and {r["nature"] for r in readings} == {"meter"}


def test_a_set_taken_in_is_not_the_sealed_one_when_the_chain_holds_another_commitment() -> None:
    """The check against the chain's record stays per resolve (a dict read, no hashing): a set taken in
    whose root or count is not the chain's commitment of that interval - one taken in against another
    chain's record, or handed over for a commitment the chain holds otherwise - is refused as the leaves
    would be; a set for an interval the chain holds no commitment of reads as nothing committed."""
    m, tid, _ = dispute(_honest())
    taken = taken_in(m)
    seller = m.nodes["s"].public
    bucket = min(b for node, b in taken if node == seller)
    good = taken[(seller, bucket)]
    for stale in (SealedSet(os.urandom(32), good.count, MOST, good.found),
                  SealedSet(good.root, good.count + 1, MOST, good.found)):  # fmt: skip
        decision = resolve(
            m.chain.state, tid, CLOCK, m.node_of(), {**taken, (seller, bucket): stale}, chain_time(m)
        )
        assert isinstance(decision, Unresolved)
        assert f"commitment interval {bucket} are not the sealed ones" in decision.why
    nothing = sealed_readings.commitment_readings(m.chain.state, seller, 999, {(seller, 999): good}, MOST)
    assert nothing is not None and list(nothing[0]) == [] and nothing[1].unsigned == 0
    with pytest.raises(ValueError, match="taken in at"):
        sealed_readings.commitment_readings(m.chain.state, seller, bucket, taken, MOST + 1)


def test_the_node_keeps_the_pass_not_the_leaves_and_drops_it_with_the_dispute() -> None:
    """`offer_readings` takes each set in once (a `SealedSet` checked against the chain's record), the
    dispute settles from them as from the leaves, and they are dropped when it no longer needs them."""
    m, tid, _ = dispute(_honest() + pv_leaves(_honest(), 500))
    settler, _, _ = settler_for(m)
    final_blocks(m, settler)
    settler._take_candidates()
    assert tid in settler.pending
    for mg in ("s", "b"):
        hand_over(m, settler, mg)
    assert settler.sealed and all(isinstance(s, SealedSet) for s in settler.sealed.values())
    assert sum(s.count for s in settler.sealed.values()) == sum(len(v) for v in m.sealed.values())
    expected = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m))
    assert to_json(resolve(m.chain.state, tid, CLOCK, m.node_of(), settler.sealed, chain_time(m))) == to_json(
        expected
    )
    settler.done(tid)
    assert settler.sealed == {}
