"""An MGMC posts its PCC readings for exactly the disputes whose settling uses them (D10).

Since D8 a party's agreed trades take what they settle at on the parties' word and only its disputed trades
share its meter by their counterparties' meters, so the DSO meters, for a disputed trade, its two parties and
the counterparties of their other disputed trades, never an agreed trade's counterparty. One rule,
`metering.meters_read`, says whose readings that is; the DSO asks by it (`disputes.read_nodes`) and the edge
posts by it (`pcc_readings.readings_needed`, beside the parties' own posts for their own disputes). Over
markets of two sellers and three buyers whose trades are left unstated, agreed or disputed (hypothesis), for
every disputed trade: the MGs that post are the nodes the DSO reads, and those are the MGs the resolver
actually meters (`dispute_shares.Meters.energy`, recorded) with every MG's readings at hand.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

from dso.test_disputes import CLOCK, T, chain_time, market, ramp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peergrid_dso.dispute_shares import Meters
from peergrid_dso.disputes import read_nodes, resolve
from peergrid_edge.pcc_readings import counterparties_done, readings_needed
from peergrid_ledger import query
from peergrid_ledger.metering import meters_read

SALES = {("s1", "b1"): 300, ("s1", "b2"): 200, ("s2", "b2"): 400, ("s2", "b3"): 100, ("s1", "b3"): 250}
READINGS = {mg: ramp(150.0, export=mg.startswith("s")) for pair in SALES for mg in pair}
WORDS = st.sampled_from(["unstated", "agreed", "disputed"])


@contextmanager
def metered_by_resolve() -> Iterator[set[bytes]]:
    """The anonyms whose PCC energy the resolver asks for while the block runs (`Meters.energy`)."""
    asked: set[bytes] = set()
    energy = Meters.energy

    def recording(self: Meters, anonym: bytes, side: str) -> Any:
        asked.add(anonym)
        return energy(self, anonym, side)

    with mock.patch.object(Meters, "energy", recording):
        yield asked


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.tuples(*(WORDS for _ in SALES)))
def test_the_edge_posts_exactly_the_readings_the_dso_reads_and_uses(words: tuple[str, ...]) -> None:
    statements = {}
    for pair, word in zip(SALES, words, strict=True):
        q = SALES[pair]
        if word != "unstated":
            statements[pair] = (q, q) if word == "agreed" else (q - 50, q)  # (buyer's, seller's)
    m = market(SALES, statements, readings=READINGS)
    trades = query.trades(m.chain.state, T)
    anonym_of = {m.anonyms[mg].public: mg for mg in m.anonyms}
    disputed = [tid for tid, t in trades if t.get("disputed")]
    assert len(disputed) == words.count("disputed")
    for tid in disputed:
        t = dict(trades)[tid]
        parties = {anonym_of[t["seller"]], anonym_of[t["buyer"]]}
        posting = parties | {mg for mg in m.anonyms if tid in readings_needed(trades, m.anonyms[mg].public)}
        dso_reads = {
            mg for mg in m.nodes if m.nodes[mg].public in read_nodes(m.chain.state, tid, m.node_of())
        }
        assert posting == dso_reads, (tid.hex()[:8], words)
        with metered_by_resolve() as asked:
            resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m))
        assert {anonym_of[a] for a in asked} == dso_reads == {anonym_of[a] for a in meters_read(trades, tid)}
        # an agreed trade's counterparty is never among them
        for _, other in trades:
            beside = other["seller"] == t["seller"] or other["buyer"] == t["buyer"]
            if beside and not other.get("disputed"):
                outsider = other["buyer"] if other["seller"] == t["seller"] else other["seller"]
                if anonym_of[outsider] not in parties and not any(
                    o.get("disputed") and outsider in (o["seller"], o["buyer"])
                    and (o["seller"] == t["seller"] or o["buyer"] == t["buyer"])
                    for _, o in trades
                ):  # fmt: skip
                    assert anonym_of[outsider] not in dso_reads
    # an MG stops watching only once no trade could read it: every trade it could be asked for settled
    for mg, anonym in m.anonyms.items():
        could = [tid for tid, t in trades if anonym not in (t["seller"], t["buyer"])
                 and anonym in meters_read(trades, tid, may_dispute=True)]  # fmt: skip
        unsettled = [tid for tid in could if dict(trades)[tid]["settlement"] is None]
        assert counterparties_done(trades, anonym) == (not unsettled), mg
        assert set(readings_needed(trades, anonym)) <= set(could)


def test_the_rule_by_hand() -> None:
    """s sells to b1 (disputed) and b2 (agreed), c sells to b1 (disputed) and b3 (unstated)."""
    s, c, b1, b2, b3 = (bytes([k]) * 32 for k in range(1, 6))
    trades = [
        (b"sb1", {"seller": s, "buyer": b1, "disputed": True, "settlement": None}),
        (b"sb2", {"seller": s, "buyer": b2, "settlement": {"delivered": 100}}),
        (b"cb1", {"seller": c, "buyer": b1, "disputed": True, "settlement": None}),
        (b"cb3", {"seller": c, "buyer": b3, "settlement": None}),
    ]
    assert meters_read(trades, b"sb1") == {s, b1, c}  # b1's disputed purchase from c; not b2 (agreed)
    assert meters_read(trades, b"cb1") == {c, b1, s}  # not b3: c -> b3 is not disputed
    assert meters_read(trades, b"cb1", may_dispute=True) == {c, b1, s, b3}  # c -> b3 may still be
    assert meters_read(trades, b"sb2") == {s, b2, b1}  # as if disputed: s's disputed sale to b1
    assert meters_read(trades, b"gone") == set()  # not in the latest closing (superseded, unknown)
    superseded = [(tid, {**t, "superseded": 1}) if tid == b"cb3" else (tid, t) for tid, t in trades]
    assert meters_read(superseded, b"cb1", may_dispute=True) == {c, b1, s}  # a superseded one never settles
    assert readings_needed(trades, b2) == [] and readings_needed(trades, b3) == []
    assert readings_needed(trades, c) == [b"sb1"] and readings_needed(trades, s) == [b"cb1"]
    assert counterparties_done(trades, b2)  # its trade agreed and settled: never read for s's disputes
    assert not counterparties_done(trades, b3)  # c -> b3 may still be disputed beside c -> b1


def test_a_trade_on_one_statement_reads_its_parties_and_its_disputed_siblings_counterparties() -> None:
    """review13 F4: the DSO meters a trade that stands on one statement like a dispute, so its parties post
    their readings for it (the stater and the silent one), and so does the counterparty of a disputed sibling
    of either party, and the other way round (a lone sibling shares like a disputed one); once the other
    party states (agreed) or it settled, nobody posts for it."""
    s, c, b1, b2 = (bytes([k]) * 32 for k in range(1, 5))
    said = {"seller": {"delivered": 100, "time": 1}}
    trades = [
        (b"sb1", {"seller": s, "buyer": b1, "statements": said, "settlement": None}),
        (b"cb1", {"seller": c, "buyer": b1, "disputed": True, "settlement": None}),
        (b"sb2", {"seller": s, "buyer": b2, "settlement": None}),
    ]
    # its own lone trade, and cb1: b1's purchase from s stands on s's word, which the DSO takes up and shares
    # by s's meter beside cb1 (review16 M1), never at s's word
    assert readings_needed(trades, s) == [b"sb1", b"cb1"]
    assert readings_needed(trades, b1) == [b"sb1"]  # silent, its own; cb1 is its own dispute: posted by it
    assert readings_needed(trades, c) == [b"sb1"]  # b1's disputed purchase from c shares b1's import
    assert readings_needed(trades, b2) == []  # s's trade with b2 is not disputed: its meter is not read
    both = {**said, "buyer": {"delivered": 100, "time": 2}}
    agreed = [(b"sb1", {**trades[0][1], "statements": both}), *trades[1:]]
    assert readings_needed(agreed, s) == [] and readings_needed(agreed, c) == []
    assert meters_read(agreed, b"cb1") == {c, b1}  # an agreed sibling takes its word: s no longer read
    vouching = [(b"sb1", {**trades[0][1], "statements": both, "vouch": {"delivered": 100}}), *trades[1:]]
    # agreed, waiting for the DSO's vouch (seller_vouched, R13 F2): both parties post (D2: the buyer's meter
    # names its own shortfall); and s posts for b1's dispute with c too (V4: was [b"sb1"] alone): the vouch is
    # metered as a dispute, so b1's import is shared over both purchases by s's and c's meters
    assert readings_needed(vouching, s) == [b"sb1", b"cb1"] and readings_needed(vouching, b1) == [b"sb1"]
    assert meters_read(vouching, b"cb1") == {c, b1, s}
    settled = [(b"sb1", {**trades[0][1], "settlement": {"delivered": 100}}), *trades[1:]]
    assert readings_needed(settled, s) == [] and readings_needed(settled, b1) == []


def test_a_withheld_sellers_hold_is_disputed_for_its_siblings() -> None:
    """review16 M1: a withheld seller's hold (`vouch` with `release`) is one of its parties' disputed trades,
    settled or not (`metering.metered_as_dispute`), so resolving a sibling reads its buyer's meter and that
    buyer posts for the sibling too; and since V4 so is an ordinary agreement waiting for the DSO (no
    `release`): the seller's vouches share its export by all their buyers' meters, whatever the order."""
    s, b1, b2, b3 = (bytes([k]) * 32 for k in range(1, 5))
    said = {"buyer": {"delivered": 0, "time": 1}}
    hold: dict[str, Any] = {"delivered": 100, "seller_short": 0, "buyer_short": 0, "until": 9, "basis": "withheld",
            "release": {"delivered": 0, "seller_short": 100, "buyer_short": 0}}  # fmt: skip
    agreed = {"delivered": 100, "seller_short": 0, "buyer_short": 0, "until": 9}
    trades: list[tuple[bytes, dict[str, Any]]] = [
        (b"sb1", {"seller": s, "buyer": b1, "statements": said, "vouch": hold, "settlement": None}),
        (b"sb2", {"seller": s, "buyer": b2, "statements": said, "vouch": hold, "settlement": None}),
        (b"sb3", {"seller": s, "buyer": b3, "statements": said, "vouch": agreed, "settlement": None}),
    ]
    # b2's hold shares s's export by b2's meter, and (V4: was not read) b3's agreement by b3's
    assert meters_read(trades, b"sb1") == {s, b1, b2, b3}
    # the agreement's seller side shares with both holds
    assert meters_read(trades, b"sb3") == {s, b3, b1, b2}
    # V4: b3 posts for the holds too (was [b"sb3"] alone: its agreement took s's export at its word)
    assert readings_needed(trades, b2) == [b"sb1", b"sb2", b"sb3"]
    assert readings_needed(trades, b3) == [b"sb1", b"sb2", b"sb3"]
    assert not counterparties_done(trades, b2)
    settled: list[tuple[bytes, dict[str, Any]]] = [
        (tid, {**t, "settlement": {"delivered": 50}}) if tid == b"sb2" else (tid, t) for tid, t in trades
    ]
    # a settled hold still shares (its settled figure); V4: b3 too, as above
    assert meters_read(settled, b"sb1") == {s, b1, b2, b3}
    assert readings_needed(settled, b2) == [b"sb1", b"sb3"]  # its own is settled; the siblings still read it
    done: list[tuple[bytes, dict[str, Any]]] = [
        (tid, {**t, "settlement": {"delivered": 50}}) for tid, t in trades
    ]
    assert counterparties_done(done, b2) and readings_needed(done, b2) == []
