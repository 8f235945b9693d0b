"""A dispute decided from meter-signed readings, end to end: the emulated PCC meter (firmware-sim, key from the
scenario's `key_seed`) served over real Modbus TCP on loopback, polled by the edge's own driver, each poll made
into the leaf the daemon seals (`commitments.reading_leaf` with `meter_signed`), committed on a real MGMC chain;
the DSO (`disputes.resolve` with `SigningMeters` from its config, `dispute_node.signing_meters`) counts only
the meter's signed readings. A reading the meter did not sign is left out (no stronger evidence than a reading
never sealed, which an MGMC can always do; review15 M1): a poll whose signed block failed, sealed unsigned, and
a signed reading that does not verify (an export inflated with the signature kept). The signed polls around
it decide, by the gap rule; where none are left the reason names the readings left out, and past the
dispute's deadline the seller is settled at 0 rather than at its own numbers. An old signed reading sealed
again counts where the meter signed it (a true point of its counter curve), and a meter clock off the Pi's
by 2.1 s settles as one off by 1.9 s."""

from __future__ import annotations

import asyncio
import json
import types
from collections.abc import Collection, Sequence
from pathlib import Path

import pytest
from dso.test_disputes import CLOCK, Market, chain_time, market, ramp

from peergrid_dso.dispute_node import DisputeSettler, signing_meters
from peergrid_dso.disputes import Unresolved, Vouched, resolve
from peergrid_dso.loop_settings import IntervalNodeSettings, MgEntry
from peergrid_dso.sealed_readings import SigningMeters
from peergrid_edge import modbus as edge_modbus
from peergrid_edge.commitments import commitment_body, interval_of, reading_leaf
from peergrid_edge.config import DeviceSettings
from peergrid_edge.meter_signed import meter_signed
from peergrid_ledger import query
from peergrid_ledger.codec import decode, encode
from peergrid_ledger.keys import Keypair
from peergrid_ledger.meter_signing import meter_keypair
from peergrid_ledger.settings import ConfigError, load_settings
from peergrid_sim.devices import SunSpecDevice
from peergrid_sim.server import ModbusTcpServer

SEED = 11
METER_KEY = meter_keypair(SEED, "s", "pcc").public


def polled_leaves(
    readings: Sequence[tuple[float, float, float]],
    monkeypatch: pytest.MonkeyPatch,
    fail_block: bool = False,
    fail_at: Collection[int] = (),
    meter_clock_s: float = 0.0,
) -> list[bytes]:
    """The seller's PCC meter polled over Modbus TCP at each (at s, export Wh, import Wh): the emulator's
    counters set to the values, its clock and the edge's at those times; the leaves the edge daemon seals.
    `fail_block`: the meter's signed block (64204) fails at every poll; `fail_at`: at those polls only;
    `meter_clock_s`: how far the meter's clock is ahead of the edge's (drift: 64204 has no point to set it)."""
    now = [0.0]
    monkeypatch.setattr(edge_modbus, "time", types.SimpleNamespace(time=lambda: now[0]))
    device = SunSpecDevice.create("pcc", "s", "meter", 1, {"rating_w": 10_000.0, "key_seed": float(SEED)})
    assert device.signer is not None
    device.signer.wall = lambda: now[0] + 0.05 + meter_clock_s  # it signs a little after the poll started

    async def run() -> list[bytes]:
        server = ModbusTcpServer("127.0.0.1", 0, {1: device})
        port = await server.start()
        driver = edge_modbus.SunSpecModbusDriver(
            DeviceSettings(name="pcc", nature="meter", port=port, timeout_s=2)
        )
        leaves = []
        try:
            for i, (at_s, export_wh, import_wh) in enumerate(readings):
                now[0] = at_s
                device.faults.exception_model = 64204 if fail_block or i in fail_at else None
                device.model.export_wh, device.model.import_wh = export_wh, import_wh
                device.mark_stale()
                snap = await driver.read_all()
                if snap.ok:  # a failed poll seals nothing, as the daemon's _on_poll
                    leaf = reading_leaf(
                        snap.device, snap.nature, snap.at, snap.reading, meter_signed(snap.points)
                    )
                    leaves.append(leaf)
                else:
                    raise AssertionError(f"the poll failed whole: {snap.error}")  # edge modbus keeps it
        finally:
            driver.close()
            await server.close()
        return leaves

    return asyncio.run(run())


def commit(m: Market, mg: str, leaves: Sequence[bytes]) -> None:
    """Seal the MG's leaves per commitment interval on the chain (now, in time) and hand them to the DSO."""
    buckets: dict[int, list[bytes]] = {}
    for leaf in leaves:
        buckets.setdefault(interval_of(decode(leaf)["at_ms"] / 1000, CLOCK.commit_ms / 1000), []).append(leaf)
    for bucket, sealed in sorted(buckets.items()):
        m.do(m.nodes[mg], "der_commitment", commitment_body(bucket, sealed))
        m.sealed[(m.nodes[mg].public, bucket)] = sealed


def dispute(seller_leaves: Sequence[bytes]) -> tuple[Market, bytes]:
    """A 500 Wh trade disputed (buyer states 300, seller 500); the buyer's (unsigned) meter imported 455.5 Wh."""
    m = market({("s", "b"): 500}, {("s", "b"): (300, 500)}, readings={"b": ramp(455.5, export=False)})
    commit(m, "s", seller_leaves)
    return m, m.trade_id("s", "b")


def signing(m: Market) -> SigningMeters:
    """The DSO's signing meters as its config gives them: the seller's MG enrolled with its meter's key."""
    mgs = {
        "s": MgEntry(
            node=m.nodes["s"].public.hex(),
            anonym=m.anonyms["s"].public.hex(),
            bus=2,
            meter_key=METER_KEY.hex(),
        ),
        "b": MgEntry(node=m.nodes["b"].public.hex(), anonym=m.anonyms["b"].public.hex(), bus=3),
    }
    found = signing_meters(mgs, 2.0)
    assert found == SigningMeters({m.nodes["s"].public: METER_KEY}, 2_000)
    return found


def forged(leaves: Sequence[bytes], factor: float) -> list[bytes]:
    """A lying seller MGMC: every export counter (its 203 one and the signed one) inflated, signature kept."""
    out = []
    for leaf in leaves:
        f = decode(leaf)
        signed = {**f["signed"], "export_wh": round(f["signed"]["export_wh"] * factor)}
        milli = {**f["milli"], "energy_wh": round(f["milli"]["energy_wh"] * factor)}
        out.append(encode({**f, "milli": milli, "signed": signed}))
    return out


def test_a_dispute_is_decided_from_the_meters_signed_readings(monkeypatch: pytest.MonkeyPatch) -> None:
    leaves = polled_leaves(ramp(300.0, export=True), monkeypatch)  # the seller's meter: 300 Wh left
    assert all("signed" in decode(leaf) for leaf in leaves)
    m, tid = dispute(leaves)
    decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m), signing=signing(m))
    assert isinstance(decision, Vouched) and decision.rule == "both metered"
    assert (decision.seller.share_wh, decision.buyer.share_wh, decision.delivered) == (300, 455, 300)  # type: ignore[union-attr]


def test_a_forged_export_counter_is_left_out_and_settles_the_seller_at_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    leaves = forged(polled_leaves(ramp(300.0, export=True), monkeypatch), 1.5)
    m, tid = dispute(leaves)
    # without the meter's key (today's rule) the MGMC's word is believed: 450 Wh of export
    today = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m))
    assert isinstance(today, Vouched) and today.seller.share_wh == 450  # type: ignore[union-attr]
    decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m), signing=signing(m))
    assert isinstance(decision, Unresolved) and decision.why.startswith(
        "the seller's metering: no meter readings"
    )
    assert f"{len(leaves)} meter reading(s) the meter did not sign not counted" in decision.why
    assert "does not verify under the meter's key" in decision.why  # the reason, in the DSO's note
    assert decision.until_ms is not None
    m.pass_time(decision.until_ms)  # the dispute's deadline: the seller could have been metered and was not
    late = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m), signing=signing(m))
    assert isinstance(late, Vouched) and (late.rule, late.delivered) == ("seller not metered", 0)
    assert "the meter did not sign not counted" in late.unmetered["seller"]


def test_a_replayed_old_signed_reading_counts_where_the_meter_signed_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The last poll sealed with a signed reading from 40 s earlier, its leaf's time kept or set to the signed
    time (the MGMC writes it): either way a true point of the meter's curve, counted at the meter's time, so
    the window measures the meter's 300 Wh (review15 M1: the first used to refuse the seller as tampering,
    the second passed; the bound on the MGMC's stamp guarded nothing)."""
    honest = polled_leaves(ramp(300.0, export=True), monkeypatch)
    last, old = decode(honest[-1]), decode(honest[-5])
    for stamp in (last["at_ms"], old["signed"]["at_ms"]):
        leaves = [
            *honest[:-1],
            encode({**last, "signed": old["signed"], "milli": old["milli"], "at_ms": stamp}),
        ]
        m, tid = dispute(leaves)
        decision = resolve(
            m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m), signing=signing(m)
        )
        assert isinstance(decision, Vouched) and (decision.rule, decision.delivered) == ("both metered", 300)


@pytest.mark.parametrize("meter_clock_s", [1.9, 2.1, -2.5])
def test_a_meter_clock_off_the_edges_settles_alike_within_or_past_the_bound(
    meter_clock_s: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """review15 M1: the meter's clock 2.1 s (or -2.5 s) off the Pi's used to refuse the honest seller as
    tampering (an old signed reading sealed again) and settle it at 0; 1.9 s did not. All settle alike now,
    counted on the meter's clock: the meter's 300 Wh."""
    leaves = polled_leaves(ramp(300.0, export=True), monkeypatch, meter_clock_s=meter_clock_s)
    offsets = {decode(leaf)["signed"]["at_ms"] - decode(leaf)["at_ms"] for leaf in leaves}
    assert offsets == {round((0.05 + meter_clock_s) * 1000)}
    m, tid = dispute(leaves)
    decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m), signing=signing(m))
    assert isinstance(decision, Vouched) and (decision.rule, decision.delivered) == ("both metered", 300)


def test_a_meter_that_fails_its_signed_block_leaves_its_mg_unmetered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every poll unsigned: nothing the meter signed is left to measure the window (the reason says which
    readings were left out and why), never the MGMC's own counters."""
    leaves = polled_leaves(ramp(300.0, export=True), monkeypatch, fail_block=True)
    assert all("signed" not in decode(leaf) for leaf in leaves)  # every poll sealed unsigned
    m, tid = dispute(leaves)
    decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m), signing=signing(m))
    assert isinstance(decision, Unresolved) and decision.why.startswith("the seller's metering: ")
    assert f"{len(leaves)} meter reading(s) the meter did not sign not counted" in decision.why


def window_start_poll(readings: Sequence[tuple[float, float, float]]) -> int:
    """The index of the poll made exactly at interval T's start."""
    [at] = [i for i, (at_s, _, _) in enumerate(readings) if round(at_s * 1000) == CLOCK.window(9)[0]]
    return at


def test_a_poll_whose_signed_block_failed_is_left_out_and_the_signed_ones_around_it_decide(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The meter's signed block fails at one poll, the one at the window's start (the daemon seals that poll
    unsigned, its 203 counters only). It used to make the seller Unmetered for the window; now it is left
    out, as a reading the MGMC never sealed, and the signed polls 5 s either side (within max_gap_ms) measure
    the start: the dispute is decided from the meter's signed readings, by the DSO node too."""
    from dso.test_disputes_node import MarketAdapter, final_blocks

    readings = ramp(300.0, export=True, every_s=5.0)
    at = window_start_poll(readings)
    leaves = polled_leaves(readings, monkeypatch, fail_at={at})
    assert [i for i, leaf in enumerate(leaves) if "signed" not in decode(leaf)] == [at]
    m, tid = dispute(leaves)
    decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m), signing=signing(m))
    assert isinstance(decision, Vouched) and decision.rule == "both metered"
    assert (decision.seller.share_wh, decision.delivered) == (300, 300)  # type: ignore[union-attr]
    settler = DisputeSettler(MarketAdapter(m), m.dso, CLOCK, m.node_of(), retry_s=30.0, signing=signing(m))
    final_blocks(m, settler)
    for (node, bucket), sealed in sorted(m.sealed.items()):
        settler.offer_readings(node, bucket, sealed)
    asyncio.run(settler.settle_due())
    assert settler.decision(tid)["outcome"] == "settled"  # type: ignore[index]
    assert query.settlement(m.chain.state, tid)["settlement"]["delivered"] == 300  # type: ignore[index]


def test_unsigned_polls_that_leave_the_start_unmeasured_say_so_and_a_forged_one_is_left_out_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Three unsigned polls around the start leave 20 s without a signed reading (max_gap_ms 15 s): no
    measurement, and the reason names the readings left out. A forged signed reading beside an unsigned one
    is left out as well (review15 M1: it used to refuse the party): the signed polls left still decide."""
    readings = ramp(300.0, export=True, every_s=5.0)
    at = window_start_poll(readings)
    leaves = polled_leaves(readings, monkeypatch, fail_at={at - 1, at, at + 1})
    m, tid = dispute(leaves)
    decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m), signing=signing(m))
    assert isinstance(decision, Unresolved) and "apart around" in decision.why
    assert "3 meter reading(s) the meter did not sign not counted" in decision.why
    leaves = polled_leaves(readings, monkeypatch, fail_at={at})
    leaves[at + 3] = forged([leaves[at + 3]], 1.5)[0]
    m, tid = dispute(leaves)
    decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m), signing=signing(m))
    assert isinstance(decision, Vouched) and (decision.rule, decision.delivered) == ("both metered", 300)
    for i in (at - 1, at + 1):  # forged too: now 20 s without a counted reading around the start
        leaves[i] = forged([leaves[i]], 1.5)[0]
    m, tid = dispute(leaves)
    decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m), signing=signing(m))
    assert isinstance(decision, Unresolved) and "apart around" in decision.why
    assert "4 meter reading(s) the meter did not sign not counted (at" in decision.why
    assert "3 of them carry a signed reading that does not count" in decision.why


def test_the_dsos_config_names_a_signing_meter_by_its_public_key() -> None:
    node, anonym = "aa" * 32, "bb" * 32
    assert MgEntry(node=node, anonym=anonym, bus=2).meter_key is None
    assert signing_meters({"x": MgEntry(node=node, anonym=anonym, bus=2)}, 2.0) is None  # today's behaviour
    for bad in ("ab" * 31, "AB" * 32, "zz" * 32):
        with pytest.raises((ConfigError, ValueError), match="meter_key"):
            MgEntry(node=node, anonym=anonym, bus=2, meter_key=bad)
    with pytest.raises((ConfigError, ValueError), match="meterless MG has no PCC meter"):
        MgEntry(node=node, anonym=anonym, bus=2, meter_key="ab" * 32, meterless=True)


def test_the_dso_node_settles_from_the_signed_readings_and_says_why_it_leaves_forged_ones_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The node's `DisputeSettler` (its replica a LocalChain, final at once) with the config's signing meters:
    offered a forged seller's sealed readings it waits and says why; offered the honest ones it settles."""
    from dso.test_disputes_node import MarketAdapter, final_blocks

    honest = polled_leaves(ramp(300.0, export=True), monkeypatch)
    for leaves, outcome in ((forged(honest, 1.5), "unresolved"), (honest, "settled")):
        m, tid = dispute(leaves)
        adapter = MarketAdapter(m)
        settler = DisputeSettler(adapter, m.dso, CLOCK, m.node_of(), retry_s=30.0, signing=signing(m))
        final_blocks(m, settler)
        for (node, bucket), sealed in sorted(m.sealed.items()):
            assert settler.offer_readings(node, bucket, sealed) == len(sealed)  # the sealed set: kept
        asyncio.run(settler.settle_due())
        decision = settler.decision(tid)
        assert decision is not None and decision["outcome"] == outcome
        if outcome == "unresolved":
            assert adapter.sent == [] and "the meter did not sign not counted" in decision["why"]
        else:
            assert [body for _, _, body, _ in adapter.sent] == [{"trade": tid, "delivered": 300}]


def test_the_dso_config_file_enrols_a_signing_meter(tmp_path: Path) -> None:
    """`loop.mgs.<mg>.meter_key` and `loop.disputes.meter_time_bound_s` in the node's config file."""
    chain = {"genesis": str(tmp_path / "g.json"), "data_dir": str(tmp_path / "d")}
    node, anonym = Keypair.generate(), Keypair.generate()
    raw = {
        "key_file": str(tmp_path / "dso.key"), "dso_chain": chain, "mgmc_chain": chain,
        "mgs": {"mg1": {"node": node.public.hex(), "anonym": anonym.public.hex(), "bus": 18,
                        "meter_key": METER_KEY.hex()}},
        "disputes": {"t0": 0, "interval_s": 6.0, "commit_interval_s": 6.0, "max_gap_s": 3.0,
                     "meter_time_bound_s": 0.5},
    }  # fmt: skip
    config = tmp_path / "node.json"
    config.write_text(json.dumps(raw))
    settings = load_settings(config, IntervalNodeSettings)
    assert settings.disputes is not None
    found = signing_meters(settings.mgs, settings.disputes.meter_time_bound_s)
    assert found == SigningMeters({node.public: METER_KEY}, 500)
    raw["mgs"]["mg1"]["meter_key"] = METER_KEY.hex()[:-2]  # type: ignore[index]
    config.write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match="meter_key"):
        load_settings(config, IntervalNodeSettings)


def test_r13_f2_a_seller_that_forges_its_export_to_cover_an_agreement_is_not_vouched_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Review13 F2's seller (its meter shows 250 of 400 agreed, it states 400 and the honest buyer agrees, so
    the DSO vouches for the seller's side) that also seals its export counter inflated to 400: on its own
    readings the DSO vouches for the agreed 400; with its meter enrolled as signing it leaves the forged
    readings out, naming them, and, from VOUCH_RULE of the window, settles the seller at 0."""
    leaves = forged(polled_leaves(ramp(250.0, export=True), monkeypatch), 1.6)
    m = market({("s", "b"): 400}, {("s", "b"): (400, 400)}, readings={"b": ramp(400.0, export=False)},
               cover=(300, 50), params={"seller_vouched": 1})  # fmt: skip
    commit(m, "s", leaves)
    tid = m.trade_id("s", "b")
    assert query.settlement(m.chain.state, tid)["state"] == "vouching"  # type: ignore[index]
    today = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m))
    assert isinstance(today, Vouched) and (today.rule, today.delivered) == (
        "seller metered, agreement covered",
        400,
    )
    decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m), signing=signing(m))
    assert isinstance(decision, Unresolved) and "the meter did not sign not counted" in decision.why
    assert decision.until_ms is not None
    m.pass_time(decision.until_ms)
    late = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m), signing=signing(m))
    assert isinstance(late, Vouched) and (late.rule, late.delivered) == ("seller not metered", 0)
    assert late.shorts == (400, 0)
