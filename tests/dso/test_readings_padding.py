"""review16 P1: an MGMC padding its sealed readings with meter readings its meter never made (garbage-signed,
replays, unsigned) is refused before the DSO verifies one (`sealed_readings.sealed_leaves`: at most
`MeterClock.most_meter_readings` PCC meter readings in a commitment interval, one per poll at `MIN_POLL_MS`).
Before, each garbage-signed one was left out for free and cost the DSO's event loop an Ed25519 check per
resolve: 20,000 of them about a second, the settlement unchanged. An honest set settles as before, record
bytes and verify count alike. On a real MGMC chain (tests/dso's market), leaves as the edge makes them."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid_dso.disputes import Unresolved, Vouched, resolve, to_json
from peergrid_dso.sealed_readings import MIN_POLL_MS, count_decoded, count_readings, meter_readings
from peergrid_edge.commitments import reading_leaf
from peergrid_ledger import meter_signing
from peergrid_ledger.codec import decode, encode
from peergrid_ledger.meter_signing import FIELD, Counted, counted_leaves, counted_readings
from peergrid_ledger.metering import (
    COUNTER,
    Unmetered,
    counting_leaves,
    counting_readings,
    metered,
    metered_readings,
    read_leaf,
)

from .test_disputes import CLOCK, chain_time, ramp
from .test_disputes_readings import METER, WAIT_MS, dispute, signed_leaves

MOST = CLOCK.commit_ms // MIN_POLL_MS + 1  # 601 meter readings in a 60-s commitment interval


def garbage_signed(leaf: bytes, count: int, bucket: int) -> list[bytes]:
    """`count` copies of an honest signed meter reading, each restamped within commitment interval `bucket`
    with a random signature: well-formed, verifiable by no key. No meter key is needed to make them."""
    fields = decode(leaf)
    out = []
    for k in range(count):
        at = bucket * CLOCK.commit_ms + k * (CLOCK.commit_ms - 1) // max(1, count)
        out.append(
            encode({**fields, "at_ms": at, FIELD: {**fields[FIELD], "at_ms": at, "sig": os.urandom(64)}})
        )
    return out


def counting_verifies(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every `meter_signing.verify_reading` call from here on appends to the list returned."""
    calls: list[int] = []
    verify = meter_signing.verify_reading

    def counting(public_key: bytes, reading: meter_signing.SignedReading) -> bool:
        calls.append(1)
        return verify(public_key, reading)

    monkeypatch.setattr(meter_signing, "verify_reading", counting)
    return calls


@pytest.mark.parametrize("padding", [2_000, 20_000])
def test_padded_readings_refuse_the_party_before_any_signature_check(
    monkeypatch: pytest.MonkeyPatch, padding: int
) -> None:
    """The seller seals its eleven honest signed readings and `padding` garbage-signed ones spread over two
    of the window's commitment intervals: the DSO verifies none (the buyer's meter does not sign), the seller
    is not metered with a reason naming the bound, and past the deadline it is taken at its worst (0
    delivered): padding now costs the padder, not the DSO."""
    honest = signed_leaves(ramp(300.0, export=True))
    m, tid, signing = dispute(honest + garbage_signed(honest[0], padding // 2, 16) +
                              garbage_signed(honest[0], padding // 2, 17))  # fmt: skip
    calls = counting_verifies(monkeypatch)
    first = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m), signing=signing)
    assert isinstance(first, Unresolved) and calls == []
    m.pass_time(m.chain.tip.time + WAIT_MS)
    decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m), signing=signing)
    assert isinstance(decision, Vouched) and decision.rule == "seller not metered" and decision.delivered == 0
    assert calls == []
    assert decision.unmetered["seller"] == (
        f"commitment interval 16 holds more than {MOST} PCC meter readings, more than a meter polled at most "
        f"every {MIN_POLL_MS} ms makes in {CLOCK.commit_ms} ms: the MG's readings are not counted"
    )
    assert decision.readings["seller"] is None  # none verified, none tallied


def test_a_padded_set_with_a_broken_leaf_verifies_nothing_either(monkeypatch: pytest.MonkeyPatch) -> None:
    """A meter reading that is no reading leaf (its `milli` garbled) sends the tally leaf by leaf through
    `counted_leaves`, one signature check each: the bound comes first, so padding beside it verifies
    nothing either."""
    honest = signed_leaves(ramp(300.0, export=True))
    broken = encode({**decode(honest[5]), "milli": "garbled"})
    m, tid, signing = dispute([*honest[:5], broken, *honest[6:], *garbage_signed(honest[0], MOST + 1, 17)])
    calls = counting_verifies(monkeypatch)
    decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m), signing=signing)
    assert isinstance(decision, Unresolved) and calls == []
    assert "commitment interval 17 holds more than" in decision.why


def test_an_honest_set_settles_as_before_with_one_check_per_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Eleven signed polls: settled by both meters at 300, eleven signature checks, the tally as recorded
    before the bound (tests/dso/test_disputes_readings_once pins the same)."""
    m, tid, signing = dispute(signed_leaves(ramp(300.0, export=True)))
    calls = counting_verifies(monkeypatch)
    decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m), signing=signing)
    assert isinstance(decision, Vouched) and (decision.rule, decision.delivered) == ("both metered", 300)
    assert len(calls) == 11
    assert to_json(decision)["readings"] == {
        "seller": {"signing": True, "signed": 11, "unsigned": 0, "refused": 0, "refused_why": []},
        "buyer": {"signing": False, "signed": 0, "unsigned": 11, "refused": 0, "refused_why": []},
    }


def test_a_meter_polled_at_the_fastest_rate_counted_is_not_padding(monkeypatch: pytest.MonkeyPatch) -> None:
    """A meter polled about every `MIN_POLL_MS` fills commitment interval 17 with `MOST` signed readings (its
    genuine ones: every one verifies; the bound leaves one poll of slack): counted, the seller metered at
    300, each verified once. One reading more in that interval and the seller is refused, before a check."""
    start = 17 * CLOCK.commit_ms

    def poll(at_ms: int) -> tuple[float, float, float]:  # 5 Wh/s: 300 Wh over the window, as `ramp`
        return at_ms / 1000, 1e6 + 5 * (at_ms - CLOCK.window(9)[0]) / 1000, 5e5

    dense = [poll(start + k * 59_900 // (MOST - 1)) for k in range(MOST)]
    sparse = [r for r in ramp(300.0, export=True) if not start <= r[0] * 1000 < start + CLOCK.commit_ms]
    m, tid, signing = dispute(signed_leaves(sorted(sparse + dense)))
    calls = counting_verifies(monkeypatch)
    decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m), signing=signing)
    assert isinstance(decision, Vouched) and decision.delivered == 300
    assert decision.readings["seller"] is not None and decision.readings["seller"].signed == len(calls)
    assert len(calls) == len(sparse) + MOST
    m, tid, signing = dispute(signed_leaves(sorted([*sparse, *dense, poll(start + 59_950)])))
    calls.clear()
    again = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m), signing=signing)
    assert isinstance(again, Unresolved) and calls == [] and f"holds more than {MOST}" in again.why


def test_unsigned_padding_of_a_meter_that_does_not_sign_is_refused_too() -> None:
    """The bound is on the readings a meter makes, signed or not: the DSO holds no key for the seller's
    meter, and 700 unsigned meter readings in one commitment interval still refuse it."""
    honest = signed_leaves(ramp(300.0, export=True))
    unsigned = [
        reading_leaf("pcc", "meter", 17 * 60 + k / 20, {"power_w": 0.0, "energy_wh": 1e6, "import_wh": 5e5})
        for k in range(700)
    ]
    m, tid, _ = dispute(honest + unsigned)
    decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m))
    assert isinstance(decision, Unresolved) and "commitment interval 17 holds more than 601" in decision.why


def _leaf_kinds() -> dict[str, bytes]:
    signed = signed_leaves([(1_000.0, 1e6, 5e5)])[0]
    other = signed_leaves([(1_020.0, 1e6 + 100, 5e5)])[0]
    return {
        "meter": signed,
        "meter_later": other,
        "unsigned": reading_leaf("pcc", "meter", 1_010.0, {"energy_wh": 1e6 + 40, "import_wh": 5e5}),
        "pv": reading_leaf("pv1", "pv", 1_005.0, {"power_w": 5.0}),
        "pv_broken": encode({**decode(reading_leaf("pv1", "pv", 1.0, {"power_w": 5.0})), "milli": 3}),
        "meter_broken": encode({**decode(signed), "milli": "garbled"}),
        "garbled": b"\xff\x01",
        "list": encode([1, 2]),
    }


LEAF_KINDS = _leaf_kinds()


WINDOW = (1_004_000, 1_015_000)  # a window the kinds' readings bracket
PV = read_leaf(LEAF_KINDS["pv"])


def energy(leaves: list[bytes], side: str) -> Callable[[], object]:
    """The side's counter over `WINDOW`, as metering reads it."""
    return lambda: metered(counting_leaves(leaves, side), WINDOW, COUNTER[side], 30_000)


def counted(leaves: list[bytes]) -> Callable[[], object]:
    """`counted_leaves` of a signing meter, other natures' readings (passed as they are) aside."""
    return lambda: [
        leaf for leaf in counted_leaves(leaves, METER.public, 2_000).leaves if leaf != LEAF_KINDS["pv"]
    ]


def outcome(read: Callable[[], object]) -> object:
    """What a reading of leaves gives: its value, or the `Unmetered` reason."""
    try:
        return read()
    except Unmetered as exc:
        return f"Unmetered: {exc}"


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(sorted(LEAF_KINDS)), max_size=30), st.integers(0, 12))
def test_the_bound_counts_pcc_meter_readings_and_reads_as_metering_would(kinds: list[str], most: int) -> None:
    """Any mix of meter readings (signed, unsigned, broken), other natures' readings (well-formed or not)
    and leaves that are no reading: over the bound exactly when the meter readings outnumber it (the others
    never count, whatever their number); under it, what is kept (decoded once, D5; the other natures'
    well-formed readings left out, at any number) gives, read by the decoded entries, the same energy or the
    same reason, the same counted leaves and the same tally as all the leaves would by the bytes entries,
    and the pass's own tally is `count_readings`' without a key."""
    leaves = [LEAF_KINDS[kind] for kind in kinds]
    meters = sum(kind.startswith("meter") or kind == "unsigned" for kind in kinds)
    found = meter_readings(leaves, most)
    assert (found is None) is (meters > most)
    if found is None:
        return
    kept, plain = found
    # one entry per leaf but the well-formed PV readings (D3), each in the small form metering reads alike
    # (review22 F1: a refused leaf a marker, a meter reading the fields metering reads, not the leaf decoded)
    assert len(kept) == sum(kind != "pv" for kind in kinds)
    assert plain.to_json() == count_readings(leaves, None, 0).to_json()  # same pass, same record
    key = METER.public
    for side in ("seller", "buyer"):
        decoded = outcome(
            lambda s=side: metered_readings(counting_readings(kept, s), WINDOW, COUNTER[s], 30_000)
        )
        assert decoded == outcome(energy(leaves, side))
        assert outcome(
            lambda s=side: metered_readings(
                counted_readings(kept, key, 2_000).leaves, WINDOW, COUNTER[s], 30_000
            )
        ) == outcome(lambda s=side: metered(counted(leaves)(), WINDOW, COUNTER[s], 30_000))

    def notes(c: Counted[Any]) -> object:
        return c.unsigned_at, c.said, c.bad_signed, c.off_clock, c.verified, c.meter_times, c.why_unsigned()

    assert outcome(lambda: notes(counted_readings(kept, key, 2_000))) == outcome(
        lambda: notes(counted_leaves(leaves, key, 2_000))
    )
    assert count_decoded(kept, key, 2_000).to_json() == count_readings(leaves, key, 2_000).to_json()
    assert count_decoded(kept, None, 0).to_json() == count_readings(leaves, None, 0).to_json()
