"""The DSO reads a party's readings once per decision (`sealed_readings.read_party`): the one pass of
`meter_signing.counted_leaves` that gives a signing meter's energy also gives the decision's tally of its
readings (`tally_of`), and that tally is the one `count_readings` gives judging each leaf alone, byte for byte
in the record; only where the leaves cannot be counted at all (a leaf that does not decode) does it judge them
one by one. Before (D2), the tally fetched and checked the sealed leaves again and verified every signature a
second time, one leaf at a time."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid_dso.disputes import Vouched, resolve, to_json
from peergrid_dso.sealed_readings import count_readings, tally_of
from peergrid_edge.commitments import reading_leaf
from peergrid_ledger import meter_signing
from peergrid_ledger.codec import decode, encode
from peergrid_ledger.meter_signing import FIELD, counted_leaves, meter_keypair, sign_reading

from .test_disputes import CLOCK, chain_time, ramp
from .test_disputes_readings import METER, dispute, signed_leaves

OTHER = meter_keypair(4, "s", "pcc")  # another meter's key
BOUND_MS = 2_000
KINDS = ("signed", "off_clock", "forged", "foreign", "malformed", "unsigned", "unsigned_said", "pv")


def leaf_of(kind: str, at_s: int, export_wh: int) -> bytes:
    """One leaf of the given kind at `at_s`, as an edge seals it (or as a lying MGMC or a garbled block does)."""
    quantities = {"power_w": 0.0, "energy_wh": float(export_wh), "import_wh": 5.0}
    at_ms = at_s * 1000
    if kind == "pv":
        return reading_leaf("pv1", "pv", at_s, {"power_w": 5.0})
    if kind in ("unsigned", "unsigned_said"):
        fields = decode(reading_leaf("pcc", "meter", at_s, quantities))
        return encode(
            {**fields, "unsigned": "the signed block failed"} if kind == "unsigned_said" else fields
        )
    key = OTHER if kind == "foreign" else METER
    signed_at = at_ms + (5_000 if kind == "off_clock" else 0)
    leaf = reading_leaf("pcc", "meter", at_s, quantities, sign_reading(key, "s-pcc", signed_at, export_wh, 5))
    fields = decode(leaf)
    if kind == "forged":
        return encode({**fields, FIELD: {**fields[FIELD], "export_wh": export_wh + 1}})
    if kind == "malformed":
        return encode({**fields, FIELD: {**fields[FIELD], "sig": b"\x00" * 7}})
    return leaf


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 10**6)), max_size=12))
def test_the_one_pass_tally_is_the_leaf_by_leaf_one(kinds: Sequence[tuple[str, int]]) -> None:
    """Any mix of meter readings (signed, off the clock, forged, another meter's, a garbled signed block,
    unsigned with or without a reason) and other readings: the tally from `counted_leaves`' one pass equals
    `count_readings`' leaf by leaf, every refused one named as before, and so its record bytes."""
    leaves = [leaf_of(kind, 1_000 + 10 * k, wh) for k, (kind, wh) in enumerate(kinds)]
    once = tally_of(counted_leaves(leaves, METER.public, BOUND_MS))
    each = count_readings(leaves, METER.public, BOUND_MS)
    assert once == each
    assert encode(once.to_json()) == encode(each.to_json())
    assert once.signed == sum(kind in ("signed", "off_clock") for kind, _ in kinds)
    assert len(once.refused) == sum(kind in ("forged", "foreign", "malformed") for kind, _ in kinds)


def test_a_decision_verifies_each_signed_reading_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The seller's meter signs (eleven polls): deciding the dispute verifies each signed reading once, 11 in
    all (before: twice, 22: once for its energy, once more for the tally), and records the same tally."""
    m, tid, signing = dispute(signed_leaves(ramp(300.0, export=True)))
    calls: list[int] = []
    verify = meter_signing.verify_reading

    def counting(public_key: bytes, reading: meter_signing.SignedReading) -> bool:
        calls.append(1)
        return verify(public_key, reading)

    monkeypatch.setattr(meter_signing, "verify_reading", counting)
    decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m), signing=signing)
    assert isinstance(decision, Vouched) and decision.delivered == 300
    assert len(calls) == 11
    assert to_json(decision)["readings"]["seller"] == {
        "signing": True, "signed": 11, "unsigned": 0, "refused": 0, "refused_why": []
    }  # fmt: skip


def test_leaves_that_cannot_be_counted_are_judged_one_by_one() -> None:
    """A sealed meter reading that is no reading leaf (its `milli` not a map: the MGMC's own encoding): the
    party is not metered (the reason says so) and the tally still counts its ten signed readings and names
    the broken one, as the leaf-by-leaf count did."""
    leaves = signed_leaves(ramp(300.0, export=True))
    leaves[5] = encode({**decode(leaves[5]), "milli": "garbled"})
    m, tid, signing = dispute(leaves)
    m.pass_time(m.chain.tip.time + 120_000)  # past the deadline: decided without the seller
    decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m), signing=signing)
    assert isinstance(decision, Vouched) and decision.rule == "seller not metered"
    assert "not a reading leaf" in decision.unmetered["seller"]
    seller = decision.readings["seller"]
    assert seller is not None and (seller.signed, seller.unsigned, len(seller.refused)) == (10, 0, 1)
    assert seller.refused == ("a meter reading is not a reading leaf",)
