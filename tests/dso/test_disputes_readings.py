"""The DSO's decision on a trade it settles from the meters records, per party, the PCC meter readings it verified
(`Vouched.readings`, `sealed_readings.ReadingsCount`): how many its meter signed (counted), how many carried no
signature (left out where the meter signs, counted on the MGMC's word where the DSO holds no meter key), and
how many it refused and why (a forged signed reading, a leaf that does not decode). In the node's record (`disputes.jsonl`), its decisions and the
API's answer, so that a lab or an operator reads what the DSO counted from the DSO, not from the edges' stores.
On a real MGMC chain (tests/dso's market) with leaves made as the edge makes them (`commitments.reading_leaf`
with the meter's signed reading)."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from pathlib import Path

from peergrid_dso.disputes import Vouched, resolve, to_json
from peergrid_dso.sealed_readings import ReadingsCount, SigningMeters, count_readings
from peergrid_edge.commitments import commitment_body, reading_leaf
from peergrid_ledger.codec import decode, encode
from peergrid_ledger.meter_signing import FIELD, meter_keypair, sign_reading

from .test_disputes import CLOCK, Market, chain_time, market, ramp, sealed_buckets
from .test_disputes_node import final_blocks, hand_over, settler_for

METER = meter_keypair(3, "s", "pcc")
WAIT_MS = 120_000


def signed_leaves(
    readings: Sequence[tuple[float, float, float]], unsigned_at: Sequence[float] = ()
) -> list[bytes]:
    """The seller's PCC meter readings (at s, export Wh, import Wh) as its edge seals them, each with the
    meter's signed reading; those at `unsigned_at` without one (a poll whose signed block failed, saying so)."""
    leaves = []
    for at_s, export_wh, import_wh in readings:
        quantities = {"power_w": 0.0, "energy_wh": export_wh, "import_wh": import_wh}
        if at_s in unsigned_at:
            leaf = decode(reading_leaf("pcc", "meter", at_s, quantities))
            leaves.append(encode({**leaf, "unsigned": "the signed block failed"}))
            continue
        signed = sign_reading(METER, "s-pcc", round(at_s * 1000), round(export_wh), round(import_wh))
        leaves.append(reading_leaf("pcc", "meter", at_s, quantities, signed))
    return leaves


def forge(leaf: bytes, export_wh: int) -> bytes:
    """The leaf with its signed export changed, the signature kept: what a lying MGMC seals."""
    fields = decode(leaf)
    return encode({**fields, FIELD: {**fields[FIELD], "export_wh": export_wh}})


def dispute(
    seller: list[bytes], unstamped: Sequence[bytes] = (), bucket: int = 17
) -> tuple[Market, bytes, SigningMeters]:
    """500 Wh agreed, disputed (buyer 300, seller 500) on a chain whose settle_wait_ms is WAIT_MS; the buyer's
    meter (not signing) imported 455 Wh; the seller sealed `seller` (each in the commitment interval of its
    `at_ms`), and `unstamped` (leaves without a time to bucket them by) in `bucket`; both in time, the leaves
    at the DSO."""
    m = market({("s", "b"): 500}, {}, wait_ms=WAIT_MS)
    buckets = {(k, "b"): leaves for k, leaves in sealed_buckets(ramp(455.0, export=False)).items()}
    for leaf in seller:
        buckets.setdefault((math.floor(decode(leaf)["at_ms"] / CLOCK.commit_ms), "s"), []).append(leaf)
    buckets.setdefault((bucket, "s"), []).extend(unstamped)
    for (bucket, mg), leaves in sorted(buckets.items()):
        at = (bucket + 1) * CLOCK.commit_ms + 1000
        m.do(m.nodes[mg], "der_commitment", commitment_body(bucket, leaves), at)
        m.sealed[(m.nodes[mg].public, bucket)] = leaves
    m.state("s", "b", 300, 500)
    return m, m.trade_id("s", "b"), SigningMeters({m.nodes["s"].public: METER.public}, 2_000)


def test_a_decision_counts_each_partys_signed_unsigned_and_refused_readings(tmp_path: Path) -> None:
    """Eleven polls of the seller's signing meter (10 s apart, 20 s either side of the window): one in the
    window's middle unsigned, left out (the polls around it still measure the window); the buyer's meter does
    not sign, its eleven readings counted on its MGMC's word. Settled by both meters, the record says so."""
    readings = ramp(300.0, export=True)
    middle = readings[5][0]
    m, tid, signing = dispute(signed_leaves(readings, unsigned_at=[middle]))
    settler, adapter, _ = settler_for(m, tmp_path)
    settler.signing = signing
    final_blocks(m, settler)
    hand_over(m, settler, "s")
    hand_over(m, settler, "b")
    asyncio.run(settler.settle_due())
    [(_, _, body, _)] = adapter.sent
    assert body == {"trade": tid, "delivered": 300}
    expected = {
        "seller": {"signing": True, "signed": 10, "unsigned": 1, "refused": 0, "refused_why": []},
        "buyer": {"signing": False, "signed": 0, "unsigned": 11, "refused": 0, "refused_why": []},
    }
    done = settler.decision(tid)
    assert done is not None and done["outcome"] == "settled" and done["readings"] == expected
    [line] = [json.loads(x) for x in (tmp_path / "disputes.jsonl").read_text().splitlines()]
    assert line["readings"] == expected and settler.snapshot()["disputes"][0]["readings"] == expected


def test_forged_readings_are_counted_as_refused_with_their_reasons() -> None:
    """Two readings with an inflated signed export (the signature kept): whatever `counted_leaves` makes of
    them (a refusal of the seller, or readings left out for the gap rule to decide), the DSO's record counts
    both as refused, with the reason, beside the nine it counted."""
    leaves = signed_leaves(ramp(300.0, export=True))
    leaves[4], leaves[6] = forge(leaves[4], 10**7), forge(leaves[6], 10**7)
    m, tid, signing = dispute(leaves)
    m.pass_time(m.chain.tip.time + WAIT_MS)  # past the dispute's deadline: decided either way
    decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m), signing=signing)
    assert isinstance(decision, Vouched), decision
    seller = decision.readings["seller"]
    assert seller is not None and (seller.signing, seller.signed, seller.unsigned) == (True, 9, 0)
    assert len(seller.refused) == 2 and all("does not verify" in why for why in seller.refused)
    doc = to_json(decision)["readings"]
    assert doc["seller"] == {"signing": True, "signed": 9, "unsigned": 0, "refused": 2,
                             "refused_why": list(seller.refused)}  # fmt: skip
    assert doc["buyer"] == {"signing": False, "signed": 0, "unsigned": 11, "refused": 0, "refused_why": []}


def test_a_party_the_dso_reads_no_readings_of_is_recorded_as_none() -> None:
    """A meterless seller (the DSO's config) is never read: its entry is None, the buyer's counted."""
    m = market({("s", "b"): 500}, {("s", "b"): (300, 500)}, readings={"b": ramp(455.0, export=False)})
    tid = m.trade_id("s", "b")
    decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m),
                       meterless={m.anonyms["s"].public})  # fmt: skip
    assert isinstance(decision, Vouched) and decision.readings["seller"] is None
    assert to_json(decision)["readings"]["seller"] is None
    assert decision.readings["buyer"] == ReadingsCount(False, 0, 11)


def test_readings_not_at_the_dso_verify_nothing() -> None:
    """The buyer's readings never reach the DSO: settled past the deadline on the seller's side, the buyer's
    entry is None (no commitment interval of it verified), the reason in `unmetered`."""
    m, tid, signing = dispute(signed_leaves(ramp(300.0, export=True)))
    m.sealed = {key: leaves for key, leaves in m.sealed.items() if key[0] == m.nodes["s"].public}
    m.pass_time(m.chain.tip.time + WAIT_MS)
    decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m), signing=signing)
    assert isinstance(decision, Vouched) and decision.rule == "seller metered only"
    assert decision.readings == {"seller": ReadingsCount(True, 11), "buyer": None}
    assert to_json(decision)["readings"]["buyer"] is None
    assert "not at the DSO" in decision.unmetered["buyer"]


def test_a_record_names_the_first_refused_readings_and_counts_them_all() -> None:
    many = ReadingsCount(True, 2, 0, tuple(f"reading {k} forged" for k in range(40)))
    doc = many.to_json()
    assert doc["refused"] == 40 and doc["refused_why"] == [f"reading {k} forged" for k in range(5)]


def test_counting_judges_each_leaf_and_counts_meter_readings_only() -> None:
    """`count_readings` counts meter readings only (another nature is no meter reading), names a leaf that
    does not decode; without a key every meter reading is counted as unsigned (on the MGMC's word)."""
    pv = reading_leaf("pv1", "pv", 1000.0, {"power_w": 5.0})
    leaves = [*signed_leaves(ramp(300.0, export=True))[:3], pv, b"\xff"]
    tally = count_readings(leaves, METER.public, 2_000)
    assert (tally.signed, tally.unsigned, len(tally.refused)) == (3, 0, 1)
    assert "does not decode" in tally.refused[0]
    plain = count_readings(leaves, None, 2_000)
    assert (plain.signing, plain.signed, plain.unsigned, len(plain.refused)) == (False, 0, 3, 1)


def drifted_leaves(readings: Sequence[tuple[float, float, float]], drift_ms: int) -> list[bytes]:
    """The seller's PCC meter readings as its edge seals them (stamped at the poll), signed by a meter whose
    clock runs `drift_ms` ahead of the Pi's: the meter's counters at the poll, its time the poll's + drift."""
    leaves = []
    for at_s, export_wh, import_wh in readings:
        at_ms = round(at_s * 1000)
        signed = sign_reading(METER, "s-pcc", at_ms + drift_ms, round(export_wh), round(import_wh))
        quantities = {"power_w": 0.0, "energy_wh": export_wh, "import_wh": import_wh}
        leaves.append(reading_leaf("pcc", "meter", at_s, quantities, signed))
    return leaves


def test_a_meter_clock_off_the_pis_is_noted_in_every_decision_it_settles() -> None:
    """review15 M1: a meter clock 3 s ahead of its Pi (past the 2-s bound) is no refusal: the seller is
    metered at its meter's time (300 Wh, both metered). The decision's tally of its readings says so, with
    the largest offset, so an operator sees the drift before it leaves a window unmeasured; 1 s adds nothing
    to the record (its bytes as before)."""
    for drift_ms, noted in ((3_000, True), (1_000, False)):
        m, tid, signing = dispute(drifted_leaves(ramp(300.0, export=True), drift_ms))
        decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m), signing=signing)
        assert isinstance(decision, Vouched) and decision.rule == "both metered" and decision.delivered == 300
        seller = decision.readings["seller"]
        assert seller is not None and (seller.signed, seller.unsigned, seller.refused) == (11, 0, ())
        doc = to_json(decision)["readings"]["seller"]
        if noted:
            assert seller.off_clock.startswith("11 meter reading(s) signed off the MGMC's stamp")
            assert seller.off_clock.endswith("+3000 ms)") and doc["off_clock"] == seller.off_clock
        else:
            assert seller.off_clock == "" and "off_clock" not in doc
        assert to_json(decision)["readings"]["buyer"] == {
            "signing": False, "signed": 0, "unsigned": 11, "refused": 0, "refused_why": []
        }  # fmt: skip


def test_a_meter_clock_too_far_off_to_measure_the_window_says_so_in_the_reason() -> None:
    """A meter clock an hour ahead (set to another zone): counted at its own time, its signed readings no
    longer bracket the window, so the seller is not metered; the reason names the offset, not only the gap,
    and past the deadline the seller is settled at 0 with it."""
    m, tid, signing = dispute(drifted_leaves(ramp(300.0, export=True), 3_600_000))
    waiting = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m), signing=signing)
    assert not isinstance(waiting, Vouched) and "signed off the MGMC's stamp" in waiting.why
    assert "+3600000 ms" in waiting.why
    m.pass_time(m.chain.tip.time + WAIT_MS)
    decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m), signing=signing)
    assert isinstance(decision, Vouched) and decision.rule == "seller not metered" and decision.delivered == 0
    assert "+3600000 ms" in decision.unmetered["seller"]
