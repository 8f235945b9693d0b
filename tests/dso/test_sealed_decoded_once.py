"""A decision decodes each leaf once (D3, P9's noticed; D5): `sealed_readings.meter_readings` reads every
commitment interval's leaves in one pass that leaves the other natures' readings out whatever their number
(before, only past the padding bound: under it a PV or battery leaf went on through `counted_leaves` or the
tally, and the energy's passes, decoded in each), and gives a meter that does not sign its tally from that
pass (before, `count_readings` decoded every leaf again; the tally is checked equal to it in
test_readings_padding). D5: the pass keeps its readings decoded and the ledger's metering and meter signing
read them so (`counted_readings`, `counting_readings`, `metered_readings`), so a PCC meter reading is decoded
once too (before: three times, the pass, `counted_leaves` or `counting_leaves`, and `samples`).
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid_dso.disputes import Vouched, resolve, to_json
from peergrid_edge.commitments import reading_leaf
from peergrid_ledger import codec, meter_signing, metering
from peergrid_ledger.codec import decode
from peergrid_ledger.meter_signing import counted_leaves
from peergrid_ledger.metering import COUNTER, counting_leaves, metered

from .test_disputes import CLOCK, chain_time, ramp
from .test_disputes_readings import METER, dispute, signed_leaves
from .test_readings_padding import LEAF_KINDS, outcome


def pv_leaves(readings: list[bytes], n: int) -> list[bytes]:
    """`n` PV readings spread over the span of `readings` (another device of the seller's MG)."""
    times = [decode(leaf)["at_ms"] for leaf in readings]
    lo, hi = min(times), max(times)
    return [
        reading_leaf("pv1", "pv", (lo + (hi - lo) * k // n) / 1000, {"power_w": float(k)}) for k in range(n)
    ]


def counting_decodes(monkeypatch: pytest.MonkeyPatch) -> Counter[bytes]:
    """Every decode the DSO's reading and the ledger's metering make, by the bytes decoded: `codec.decode` as
    every DSO module imported it (the DSO's reading, wherever it is split to) and the ledger's metering and
    meter signing (not the chain's state reads)."""
    seen: Counter[bytes] = Counter()
    decode_ = codec.decode

    def counted(raw: bytes, *args: Any) -> Any:
        seen[bytes(raw)] += 1
        return decode_(raw, *args)

    patched = [
        module
        for name, module in list(sys.modules.items())
        if (name.startswith("peergrid_dso.") or module in (metering, meter_signing))
        and getattr(module, "decode", None) is decode_
    ]
    assert metering in patched  # the one decode a reading leaf goes through (`metering.read_leaf`)
    for module in patched:
        monkeypatch.setattr(module, "decode", counted)
    return seen


def decided(signing: bool, pv: int) -> tuple[Callable[[], Any], list[bytes]]:
    honest = signed_leaves(ramp(300.0, export=True))
    others = pv_leaves(honest, pv)
    m, tid, meters = dispute(honest + others)
    chain, key = chain_time(m), meters if signing else None
    return lambda: resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain, signing=key), others


def record(decision: Any) -> dict[str, Any]:
    """The decision's record without what differs between two markets (keys, trade ids)."""
    doc = to_json(decision)
    return {k: {**v, "node": ""} if k in ("seller", "buyer") else v for k, v in doc.items() if k != "trade"}


@pytest.mark.parametrize("signing", [True, False])
def test_each_pv_leaf_is_decoded_once_per_decision(signing: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The seller's MG seals 60 PV readings beside its eleven meter readings (under the bound of 601 per
    commitment interval): deciding the dispute decodes each PV leaf once (before: 3 or more each), and the
    decision is the one it was without them, record and all."""
    plain, _ = decided(signing, 0)
    resolve_it, others = decided(signing, 60)
    seen = counting_decodes(monkeypatch)
    decision = resolve_it()
    assert isinstance(decision, Vouched) and decision.rule == "both metered"
    assert {seen[leaf] for leaf in others} == {1}
    monkeypatch.undo()
    assert record(decision) == record(plain())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(sorted(LEAF_KINDS)), max_size=20), st.sampled_from(["seller", "buyer"]))
def test_a_signing_meters_counted_leaves_are_read_without_counting_leaves(
    kinds: list[str], side: str
) -> None:
    """Any mix of leaves a signing meter's MGMC may seal: where `counted_leaves` counts them, its leaves read
    alike with and without `counting_leaves` (each counted meter reading carries both counters), the same
    energy or the same reason, so `PartyReadings.energy` skips that pass for them."""
    leaves = [LEAF_KINDS[kind] for kind in kinds]
    try:
        counted = counted_leaves(leaves, METER.public, 2_000).leaves
    except Exception:  # the MGMC's own encoding: the party is `broken`, never read this way
        return
    window = (1_004_000, 1_015_000)

    def read(skip: bool) -> object:
        found = counted if skip else counting_leaves(counted, side)
        return metered(found, window, COUNTER[side], 30_000)

    assert outcome(lambda: read(True)) == outcome(lambda: read(False))


@pytest.mark.parametrize("signing", [True, False])
def test_each_meter_reading_is_decoded_once_per_decision(
    signing: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eleven readings of each party's meter (the seller's signed, read as signing or not; the buyer's not):
    the pass (`meter_readings`) decodes each once and nothing decodes one again - neither the signing meter's
    count (`counted_readings`), nor the unsigned side's counting (`counting_readings`), nor the energy
    (`metered_readings`). Before D5 three times each, the last two on re-encoded bytes."""
    resolve_it, _ = decided(signing, 0)
    seen = counting_decodes(monkeypatch)
    decision = resolve_it()
    assert isinstance(decision, Vouched) and decision.readings["seller"] is not None
    assert decision.readings["seller"].signed == (11 if signing else 0)
    meters = [leaf for leaf in seen if decode(leaf).get("device") == "pcc"]
    assert len(meters) == 22 and {seen[leaf] for leaf in meters} == {1}
    assert sum(seen.values()) == 22
