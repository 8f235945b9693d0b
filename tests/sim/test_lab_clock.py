"""The settle-by-both lab's clock key and epoch (`lab_clock`): a new settle-by-both lab's MGMC genesis names the
lab's clock key with role `clock` alone, not authorised to trade, so the lab may post the clock of a t0 moved
at the DSO's readiness and that key holds none of the DSO's other powers (review23 F2: on a LocalChain of the
lab's own genesis its clock lands, its market.capacity and gov.* are forbidden); a lab directory whose genesis
gave the key role dso (written before the role) still posts with it; a lab without settle_by_both, or a lab
directory whose genesis predates the key, posts nothing (its t0 stays fixed where its genesis fixed the clock). The epoch is the genesis rule's (`SettleByBoth.for_lab`). The poster
itself runs in the lab test (`test_closedloop_dso_first`, a settle-by-both lab whose DSO starts late); here, over a
real Mosquitto, a position announced before its clock (a --dayahead lab's first accept) fails the lab at once,
naming it, where before it waited for t0 and said only that the clock was not in a block."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from peergrid_ledger.block import Block, Header, tx_root
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.consensus.messages import Certificate, SyncResponse, encode_wire
from peergrid_ledger.consensus.transport import BLOCK, seal_envelope
from peergrid_ledger.consensus.transport import topic as transport_topic
from peergrid_ledger.contracts import market_clock
from peergrid_ledger.genesis import Genesis
from peergrid_ledger.keys import Keypair
from peergrid_ledger.results import Reason, Rejected
from peergrid_ledger.tx import sign_tx
from peergrid_sim.closedloop import LabChains, LoopTiming, SettleByBoth
from peergrid_sim.lab_clock import clock_epoch_ms, clock_key, clock_news, clock_posted

SCENARIO = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"


def test_clock_key_only_where_the_genesis_settles_by_both_and_names_it(tmp_path: Path) -> None:
    both = LabChains.create(tmp_path / "both", "ieee33", SCENARIO, SettleByBoth.for_lab(6.0, 36, 1000.5))
    key = clock_key(both)
    assert key is not None and both.clock is not None and key.public == both.clock.public
    genesis = Genesis.from_json(json.loads(both.mgmc_genesis.read_text()))
    (account,) = [a for a in genesis.accounts if a.key == key.public]
    assert account.roles == ("clock",) and account.label == "lab-clock" and not account.authorised
    assert clock_key(LabChains.create(tmp_path / "plain", "ieee33", SCENARIO)) is None  # no settle_by_both
    # a lab directory whose settle-by-both genesis was written without the key: nothing to post with
    old = LabChains.create(tmp_path / "old", "ieee33", SCENARIO, SettleByBoth.for_lab(6.0, 36, 1000.5))
    doc = json.loads(old.mgmc_genesis.read_text())
    doc["accounts"] = [a for a in doc["accounts"] if a["label"] != "lab-clock"]
    old.mgmc_genesis.write_text(json.dumps(doc))
    assert clock_key(LabChains.create(tmp_path / "old", "ieee33", SCENARIO)) is None


def test_a_lab_genesis_whose_clock_key_has_role_dso_still_posts(tmp_path: Path) -> None:
    # written before the `clock` role (a genesis already there is never rewritten): market.clock takes dso too
    chains = LabChains.create(tmp_path / "dso", "ieee33", SCENARIO, SettleByBoth.for_lab(6.0, 36, 1000.5))
    doc = json.loads(chains.mgmc_genesis.read_text())
    for account in doc["accounts"]:
        if account["label"] == "lab-clock":
            account["roles"], account["authorised"] = ["dso"], True
    chains.mgmc_genesis.write_text(json.dumps(doc))
    key = clock_key(LabChains.create(tmp_path / "dso", "ieee33", SCENARIO))
    assert key is not None and chains.clock is not None and key.public == chains.clock.public
    # a lab-clock account of neither role (an anonym, say): nothing it could post the clock with
    for account in doc["accounts"]:
        if account["label"] == "lab-clock":
            account["roles"] = ["anonym"]
    chains.mgmc_genesis.write_text(json.dumps(doc))
    assert clock_key(LabChains.create(tmp_path / "dso", "ieee33", SCENARIO)) is None


def test_the_lab_genesis_clock_key_posts_the_clock_and_nothing_the_dso_alone_may(tmp_path: Path) -> None:
    chains = LabChains.create(tmp_path, "ieee33", SCENARIO, SettleByBoth.for_lab(6.0, 36, 1000.5))
    genesis = Genesis.from_json(json.loads(chains.mgmc_genesis.read_text()))
    # a LocalChain's proposer (the lab's authorities are its MGMCs' node keys)
    authority = Keypair.from_seed(bytes(range(32)))
    chain = LocalChain(replace(genesis, authorities=(authority.public,)), authority)
    key = clock_key(chains)
    assert key is not None
    anonym = next(iter(chains.anonyms.values())).public
    refused = {
        "market.capacity": {"account": anonym, "from_interval": 0, "wh": 1},
        "market.tariff": {"account": anonym, "first_interval": 50, "retail": [300], "feed_in": [50]},
        "gov.add_authority": {"key": key.public},
        "gov.revoke": {"key": anonym, "operator": "lab-clock"},
    }
    for kind, body in refused.items():
        result = chain.sign_and_submit(key, kind, body)
        assert isinstance(result, Rejected) and result.reason is Reason.FORBIDDEN, (kind, result)
    # not authorised to trade: no exchange session of its own either (any authorised account may open one)
    members = [k.public for k in chains.anonyms.values()]
    deadline = genesis.time + 600_000
    session = {"session": "day-1", "first_interval": 36, "members": members, "prices": [250_000_000], "rho": 5,
               "deadline": deadline}  # fmt: skip
    result = chain.sign_and_submit(key, "exchange.open", session)
    assert isinstance(result, Rejected) and result.reason is Reason.NOT_AUTHORISED, result
    epoch = clock_epoch_ms(1003.0, 36, 6.0)
    assert chain.sign_and_submit(key, "market.clock", {"epoch_ms": epoch}).ok
    chain.seal()
    assert market_clock.posted_epoch(chain.state) == epoch


def test_the_posted_epoch_is_the_genesis_rule_for_the_moved_t0() -> None:
    for t0 in (1000.5, 1_767_225_612.3456, 1_767_225_600.0):
        assert clock_epoch_ms(t0, 36, 6.0) == SettleByBoth.for_lab(6.0, 36, t0).epoch_ms
    assert clock_epoch_ms(1000.0, 0, 0.25) == 1_000_000


def _announcement(chain: str, key: Keypair, height: int, txs: list[Any]) -> bytes:
    """A committed block's announcement on the chain's `block` topic, as a replica sends it (the poster reads
    the transactions only; the replicas check the header, the seals and the signatures)."""
    header = Header(chain, height, bytes(32), 0, key.public, tx_root(txs), bytes(32))
    raw = Block(header, bytes(64), tuple(txs)).encode()
    body = encode_wire(chain, SyncResponse(((raw, Certificate(0, ((key.public, bytes(64)),))),)))
    return seal_envelope(chain, BLOCK, key, body)


def test_a_position_before_the_clock_fails_the_lab_at_once_naming_it(tmp_path: Path, mosquitto: Any) -> None:
    # the MGMCs' first accept of a --dayahead lab in a block before the lab's clock post: market.clock is
    # refused for good (an anonym holds a position), so the lab says so at once, not "not in a block by t0"
    chains = LabChains.create(tmp_path, "ieee33", SCENARIO, SettleByBoth.for_lab(6.0, 36, 1000.5))
    key = clock_key(chains)
    assert key is not None
    chain = json.loads(chains.mgmc_genesis.read_text())["chain"]
    anonym = next(iter(chains.anonyms.values()))
    accept = sign_tx(anonym, chain, "exchange.accept", 1, 1, {"session": "day-1"})
    other = sign_tx(anonym, chain, "der_commitment", 2, 1, {"interval": 1})
    broker = (mosquitto.host, mosquitto.port)
    timing = LoopTiming(t0=time.time() + 60, interval_s=6.0, first_interval=36, intervals=1)
    with clock_posted(chains, broker, "ieee33", timing) as poster:
        assert poster is not None
        assert clock_news([other], poster.txid) == (False, None)  # nothing that keeps it out
        feed = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="replica")
        feed.connect(*broker)
        feed.loop_start()
        try:
            topic = transport_topic("ieee33", chain, BLOCK)
            deadline = time.monotonic() + 20
            while not poster.over.is_set() and time.monotonic() < deadline:  # until it subscribed and read it
                feed.publish(topic, _announcement(chain, anonym, 7, [other]), qos=1).wait_for_publish(5)
                feed.publish(topic, _announcement(chain, anonym, 8, [other, accept]), qos=1).wait_for_publish(
                    5
                )
                time.sleep(0.1)
        finally:
            feed.loop_stop()
            feed.disconnect()
        line = poster.wait(timing.t0)
        assert time.time() < timing.t0  # at once: back before t0, not at it (an order, no bound on how soon)
    assert line == (
        f"the interval clock (market.clock, epoch {poster.epoch_ms} ms) cannot land on the MGMC chain: a "
        "position (exchange.accept at height 8) came before it, and the chain refuses a clock while an anonym "
        "holds a position: the chain would settle on its genesis' provisional clock"
    )
    assert not poster.landed.is_set()


def test_the_clock_in_the_same_block_before_a_position_has_landed() -> None:
    key = Keypair.from_seed(bytes(32))
    clock = sign_tx(key, "c", "market.clock", 1, 1, {"epoch_ms": 5})
    offer = sign_tx(key, "c", "offer", 2, 1, {"interval": 36})
    bid = sign_tx(key, "c", "bid", 3, 1, {"interval": 36})
    assert clock_news([clock, offer], clock.txid) == (True, None)
    assert clock_news([offer, clock], clock.txid) == (False, "offer")  # refused: it was not applied first
    assert clock_news([bid], clock.txid) == (False, "bid")
    assert clock_news([], clock.txid) == (False, None)
