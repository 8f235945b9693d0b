"""The owner's contract rules reach the chain outside the lab (U4 F2): the edge posts them as `market.rules` under
the key it trades with, from the first interval the contract lets it change them, once per change; a refusal is
one WARNING and is sent again only at a later pass and only where its reason may clear; and the chain then refuses
an offer outside them (`rule-violation`). On a real single-authority MGMC chain (EdgeLedger: its own mempool and
consensus, 50-ms blocks); the daemon's wiring from edge.yaml on the lab's real geneses."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from peergrid_controller.dayrules import chain_rules
from peergrid_edge import rules_poster
from peergrid_edge.config import EdgeSettings, OwnerRules
from peergrid_edge.link import MqttLink
from peergrid_edge.replicas import ChainSpec, EdgeLedger, Submission
from peergrid_edge.rules_poster import RulesPoster, contract_rules
from peergrid_ledger.cli import main as ledger_cli
from peergrid_ledger.contracts.market_state import NO_RULES, rules_for
from peergrid_ledger.genesis import Account, Genesis, Params
from peergrid_ledger.keys import Keypair

CHAIN = "mgmc-e3"
# the owner's rules of U4's school (mg5): floor 0.15, cap 0.25, 15 kWh, clean premium 0.02
SCHOOL = OwnerRules(floor_price=0.15, cap_price=0.25, max_quantity_kwh=15, clean_premium=0.02)
SCHOOL_CHAIN = {"floor_price": 150, "cap_price": 250, "max_quantity": 15000, "clean_only": False,
                "clean_premium": 20}  # fmt: skip


def seeded(name: str) -> Keypair:
    return Keypair.from_seed(hashlib.sha256(f"edge-e3/{name}".encode()).digest())


AUTHORITY, ANONYM, OFFICE, DORMANT = (seeded(n) for n in ("authority", "anonym", "office", "dormant"))


def ledger(tmp_path: Path, preset: dict[str, Any] | None = None) -> EdgeLedger:
    """The MGMC chain: ANONYM trades (its rules `preset` in the genesis, or none), OFFICE holds the dso role
    alone (no participant: `market.rules` is forbidden to it), DORMANT is an anonym not authorised (yet)."""
    genesis = Genesis(
        chain=CHAIN, time=0, authorities=(AUTHORITY.public,),
        accounts=(Account(AUTHORITY.public, ("mgmc",)), Account(ANONYM.public, ("anonym",), "mg5", rules=preset),
                  Account(OFFICE.public, ("dso",), "dso"),
                  Account(DORMANT.public, ("anonym",), "mg6", authorised=False)),
        contracts=("market",), params=Params(),
    )  # fmt: skip
    path = tmp_path / "genesis.json"
    path.write_text(json.dumps(genesis.to_json()))
    spec = ChainSpec(name="mgmc", genesis=path, data_dir=tmp_path / "mgmc.db", block_period_ms=50,
                     round_timeout_ms=500, wal_fsync=False)  # fmt: skip
    return EdgeLedger(AUTHORITY, MqttLink("test", "127.0.0.1", 9), "feeder", [spec])


def counted(chain: EdgeLedger) -> list[str]:
    """The kinds of the transactions submitted from now on (every signing the poster makes)."""
    from peergrid_ledger.tx import decode_tx

    sent: list[str] = []
    real = chain.submit

    async def noting(role: str, raw: bytes, timeout_s: float) -> Submission:
        sent.append(decode_tx(raw).kind)
        return await real(role, raw, timeout_s)

    chain.submit = noting  # type: ignore[method-assign]
    return sent


def run(chain: EdgeLedger, play: Any) -> Any:
    async def main() -> Any:
        chain.start()
        try:
            await chain.wait_for("mgmc", lambda _s: chain.replicas["mgmc"].app.head().height >= 2, 10.0)
            return await asyncio.wait_for(play(), 60.0)
        finally:
            chain.close()

    return asyncio.run(main())


def poster(chain: EdgeLedger, key: Keypair, rules: dict[str, Any], starts: list[float] = ()) -> RulesPoster:
    return RulesPoster(chain, key, rules, list(starts), timeout_s=5.0, wait_s=2.0)


async def offer(chain: EdgeLedger, t: int, price: int, quantity: int) -> Submission:
    body = {"interval": t, "round": 1, "price": price, "quantity": quantity, "clean": False}
    raw = chain.sign("mgmc", ANONYM, "offer", body, chain.next_nonce("mgmc", ANONYM.public))
    return await chain.submit("mgmc", raw, 5.0)


def test_the_owners_rules_stand_from_the_interval_after_its_last_position_and_bind_its_offers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """mg5 sold in interval 3 under no rules; its edge starts with the school's rules: they are posted from
    interval 4 (3 keeps what it traded under), once (a second pass sends nothing), and then an offer below the
    floor or above the maximum is refused by the chain, one within them taken. The owner reads them back from
    the running MGMC's store as edge/README.md says (`peergrid-ledger rules --copy`)."""
    chain = ledger(tmp_path)
    caplog.set_level(logging.INFO, logger="peergrid.edge.rules")

    async def play() -> Any:
        assert (await offer(chain, 3, 100, 20_000)).landed  # no rules yet: any price, any quantity
        sent = counted(chain)
        p = poster(chain, ANONYM, chain_rules(contract_rules(SCHOOL)))
        await p.start()
        again = await p.post()
        state = chain.state("mgmc")
        standing = (dict(rules_for(state, ANONYM.public, 3)), dict(rules_for(state, ANONYM.public, 4)),
                    dict(rules_for(state, ANONYM.public, 90)))  # fmt: skip
        refused = [await offer(chain, 5, 149, 1000), await offer(chain, 5, 150, 16_000)]
        taken = await offer(chain, 5, 150, 15_000)
        capsys.readouterr()
        assert ledger_cli(["rules", "--db", str(tmp_path / "mgmc.db"), "--copy", ANONYM.public.hex()]) == 0
        return sent, again, standing, refused, taken, json.loads(capsys.readouterr().out)

    sent, again, standing, refused, taken, held = run(chain, play)
    assert (
        held["entries"] == [{"from_interval": 4, "rules": SCHOOL_CHAIN}] and held["standing"] == SCHOOL_CHAIN
    )
    assert (held["last_interval"], held["interval"]) == (5, 6)
    assert sent[:1] == ["market.rules"] and sent.count("market.rules") == 1 and again is None
    assert standing == (dict(NO_RULES), SCHOOL_CHAIN, SCHOOL_CHAIN)
    assert [r.reason.split(":")[0] for r in refused] == ["rule-violation", "rule-violation"]
    assert "below the seller's floor 150" in refused[0].reason and "maximum 15000" in refused[1].reason
    assert taken.landed
    posted = [r.getMessage() for r in caplog.records if "posted" in r.getMessage()]
    assert posted == [
        f"owner rules posted on the MGMC chain under {ANONYM.public.hex()[:16]}…: floor 0.150/kWh, cap "
        "0.250/kWh, at most 15 kWh per interval, any energy, clean premium 0.020/kWh, from interval 4"
    ]


def test_a_change_is_posted_once_and_rules_already_standing_are_not_posted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The genesis presets the school's rules (the lab's way): a start with them posts nothing and says so. The
    owner then raises the floor (a restart with the new edge.yaml): posted once, from interval 0 (it never
    traded), and the next passes send nothing."""
    chain = ledger(tmp_path, preset=SCHOOL_CHAIN)
    caplog.set_level(logging.INFO, logger="peergrid.edge.rules")
    raised = chain_rules(contract_rules(SCHOOL.model_copy(update={"floor_price": 0.18})))

    async def play() -> Any:
        sent = counted(chain)
        await poster(chain, ANONYM, SCHOOL_CHAIN).start()
        before = list(sent)
        p = poster(chain, ANONYM, raised, [time.time() + 0.2, time.time() + 0.4])
        await p.run()  # the start and two interval passes
        return before, sent, dict(rules_for(chain.state("mgmc"), ANONYM.public, 0))

    before, sent, standing = run(chain, play)
    assert before == [] and sent == ["market.rules"]
    assert standing == {**SCHOOL_CHAIN, "floor_price": 180}
    lines = [r.getMessage() for r in caplog.records]
    assert any("holds this MG's owner rules already (floor 0.150/kWh" in m for m in lines)
    assert sum("floor 0.180/kWh" in m and "from interval 0" in m for m in lines) == 1


def test_the_agent_is_let_go_once_the_post_is_in_the_pool_not_final(tmp_path: Path) -> None:
    """`first_look` (what an intraday agent's day waits for) returns once the rules are in the replica's pool,
    though no block finalises them (the chain halted); the first pass ends when they land (halt lifted)."""
    from peergrid_edge.own_nonce import own_pending

    chain = ledger(tmp_path)

    async def play() -> Any:
        chain.halt_at({CHAIN: chain.replicas["mgmc"].app.head().height})
        p = poster(chain, ANONYM, SCHOOL_CHAIN)
        running = asyncio.create_task(p.run())
        await asyncio.wait_for(p.first_look(), 10.0)
        looked = (p.started, own_pending(chain, "mgmc", ANONYM.public), p.due())
        chain.halt_at({})
        await asyncio.wait_for(running, 20.0)
        return looked, p.started, p.due()

    (started, pending, due_then), started_after, due_after = run(chain, play)
    assert not started and pending is not None and due_then == {"rules": SCHOOL_CHAIN, "from_interval": 0}
    assert started_after and due_after is None


@pytest.mark.parametrize(
    ("key", "reason", "signings"), [(OFFICE, "forbidden", 1), (DORMANT, "not-authorised", 3)]
)
def test_a_refusal_is_one_warning_and_is_sent_again_only_where_it_may_clear(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, key: Keypair, reason: str, signings: int
) -> None:
    """A key without a participant role is refused `forbidden` (the chain would refuse it again): sent once in
    three passes. An anonym not authorised (yet: the DSO may authorise it) is sent again once per interval, never
    within one: three passes, three signings. Either way one WARNING with the chain's reason."""
    chain = ledger(tmp_path)
    caplog.set_level(logging.DEBUG, logger="peergrid.edge.rules")

    async def play() -> list[str]:
        sent = counted(chain)
        await poster(chain, key, SCHOOL_CHAIN, [time.time() + 0.3, time.time() + 0.6]).run()
        return sent

    assert run(chain, play) == ["market.rules"] * signings
    warnings = [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name.endswith("rules")
    ]
    assert len(warnings) == 1 and f"): {reason}" in warnings[0], warnings
    assert ("not sent again" in warnings[0]) == (reason == "forbidden")


def test_rules_a_position_overtook_are_sent_again_from_the_interval_after_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The MG's offer in interval 4 became final after the poster read the chain (it computed from interval 4):
    the chain refuses (`rules can change only after interval 4`), one WARNING; the next interval's pass sends
    them from 5, where they stand."""
    chain = ledger(tmp_path)
    caplog.set_level(logging.INFO, logger="peergrid.edge.rules")
    real = rules_poster.first_changeable
    stale = iter([4, 4])  # what the first pass read (twice: before and after the nonce wait)
    monkeypatch.setattr(
        rules_poster, "first_changeable", lambda state, key: next(stale, None) or real(state, key)
    )

    async def play() -> Any:
        assert (await offer(chain, 4, 100, 1000)).landed
        sent = counted(chain)
        await poster(chain, ANONYM, SCHOOL_CHAIN, [time.time() + 0.3]).run()
        state = chain.state("mgmc")
        return sent, dict(rules_for(state, ANONYM.public, 4)), dict(rules_for(state, ANONYM.public, 5))

    sent, at_4, at_5 = run(chain, play)
    assert sent == ["market.rules", "market.rules"] and at_4 == dict(NO_RULES) and at_5 == SCHOOL_CHAIN
    warnings = [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name.endswith("rules")
    ]
    assert len(warnings) == 1 and "rules can change only after interval 4" in warnings[0]
    assert warnings[0].endswith("sent again at the next interval, from the one after this MG's last position")
    assert any(m.getMessage().endswith("from interval 5") for m in caplog.records)


def test_edge_yaml_rules_are_the_agents_and_what_the_daemon_posts(tmp_path: Path) -> None:
    """The daemon built from edge.yaml with `market.rules` (a lab MGMC's config on the lab's real geneses):
    the agent trades by those rules (its MG and the scenario's entry of it) and the poster posts them under its
    anonym; without `market.rules` the scenario's stand, as before."""
    from peergrid_edge.daemon import EdgeDaemon
    from peergrid_sim.closedloop import LabChains, LoopTiming, edge_config

    scenario = tmp_path / "two.yaml"
    doc = yaml.safe_load(
        (Path(__file__).resolve().parents[2] / "firmware-sim/scenarios/ieee33.yaml").read_text()
    )
    doc["microgrids"] = [m for m in doc["microgrids"] if m["name"] in ("mg4", "mg5")]
    doc["serial_lines"] = []
    doc["market"] = {"mg_rules": {"mg5": {"floor_price": 0.1}}}
    scenario.write_text(yaml.safe_dump(doc))
    chains = LabChains.create(tmp_path / "keys", "e3", scenario)
    timing = LoopTiming(time.time() + 60, 6.0, 40, 4, 200)

    def daemon(rules: dict[str, Any] | None) -> tuple[Any, Any, bytes]:
        cfg = edge_config(chains, "mg5", "e3", ("127.0.0.1", 9), tmp_path / f"edge-{rules is None}", [], scenario,
                          timing, tmp_path)  # fmt: skip
        if rules is not None:
            cfg["market"]["rules"] = rules
        d = EdgeDaemon(EdgeSettings.model_validate(cfg))
        try:
            premium = max(m.rules.clean_premium for m in d.agent.scenario.microgrids)  # the feeder's
            assert premium == d.agent.mg.rules.clean_premium
            return d.agent.mg.rules, d.rules_poster, d.agent.anonym.public
        finally:
            d.ledger.close()
            d.store.close()

    mine, p, anonym = daemon(SCHOOL.model_dump())
    assert mine == contract_rules(SCHOOL) and p.rules == SCHOOL_CHAIN and p.key.public == anonym
    scenario_rules, q, _ = daemon(None)
    assert scenario_rules.floor_price == 0.1 and math.isinf(scenario_rules.cap_price)
    assert q.rules["floor_price"] == 100 and q.starts[0] == pytest.approx(timing.t0) and len(q.starts) == 4


def test_bad_owner_rules_in_edge_yaml_are_refused_naming_the_key() -> None:
    from pydantic import ValidationError

    for bad, key in (({"floor_price": -0.1}, "floor_price"), ({"cap_prise": 0.2}, "cap_prise"),
                     ({"max_quantity_kwh": "15"}, "max_quantity_kwh")):  # fmt: skip
        with pytest.raises(ValidationError, match=key):
            OwnerRules.model_validate(bad)
    assert OwnerRules() == OwnerRules.model_validate({"cap_price": None, "max_quantity_kwh": None})
    assert chain_rules(contract_rules(OwnerRules())) == dict(NO_RULES)  # the defaults: no rule at all


@pytest.mark.timeout(240)
def test_live_mgmcs_post_the_owners_rules_and_trade_within_them_over_mosquitto(
    tmp_path: Path, mosquitto: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The closed loop of test_rebargain_live (the lab's chains and DSO, two MGMC daemons over Mosquitto,
    interval 36 where mg5 sells): mg5's edge.yaml caps it at 20 kWh an interval, which its genesis (no rules)
    does not know. Its daemon posts the rule before its day (from interval 0: it never traded), the chain holds
    it, and mg5's sales in the interval's final closing stay within it."""
    import test_rebargain_live as live

    from peergrid_edge.chain_bargaining import position

    caplog.set_level(logging.INFO, logger="peergrid.edge.rules")
    real = live.edge_config
    monkeypatch.setattr(
        live, "edge_config", lambda chains, mg, *a, **k: with_rules_of(real, chains, mg, *a, **k)
    )
    chains, snapshot, _records = asyncio.run(live.run_loop(tmp_path, mosquitto))
    anonym = chains.anonyms["mg5"].public
    held = rules_for(snapshot["mgmc"], anonym, live.INTERVAL)
    assert held["max_quantity"] == 20_000 and held["floor_price"] == 0
    _, net_kwh, _ = position(snapshot["mgmc"], live.INTERVAL, anonym)
    assert 0 < net_kwh <= 20.0 + 1e-9, net_kwh
    print(f"mg5 sold {net_kwh:g} kWh in interval {live.INTERVAL}")
    posted = [r.getMessage() for r in caplog.records if r.getMessage().startswith("owner rules posted")]
    assert (
        len(posted) == 1
        and "at most 20 kWh per interval" in posted[0]
        and posted[0].endswith("from interval 0")
    ), posted
    lines = [r.getMessage() for r in caplog.records]
    assert sum("holds this MG's owner rules already" in m for m in lines) == 1  # mg4: its genesis rules stand


def with_rules_of(real: Any, chains: Any, mg: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """`real` (closedloop.edge_config), with mg5's owner capped at 20 kWh an interval in its edge.yaml."""
    cfg = real(chains, mg, *args, **kwargs)
    if mg == "mg5":
        cfg["market"]["rules"] = {"max_quantity_kwh": 20}
    return cfg
