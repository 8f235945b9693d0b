"""The lab's exchange fee (no processes): `peergrid-testbed --exchange-fee/--uplift-fund-cap` and what they write into
the lab's MGMC genesis (fee 0 writes the genesis without them, byte for byte; a session opened on the lab's chain
carries the fee), the values refused and why, a lab directory whose genesis holds another fee refused rather than
run with it; and the report's fee path (`report_fee`, through `report_uplift.uplift_section`) on a real fee-funded
settle in a real store: each member's collection beside its fee due on its cleared Wh, a fee left as a debt, the
fund paying the make-whole and refunding above its cap, the settle's own balance moves and the whole chain's
replay (trades - fee + credit + refund) - and a figure tampered with is said, not passed. The lab's own day with a
fee runs end to end in tests/sim/test_m3_lab_fee_day.py: since ρ follows the fee's drift (M3) its session closes
after 39 iterations, 16.5-20.0 s of the stage alone (135 iterations and 58-69 s before); the suite runs it at a
100-s lead, beside another lab (docs/closed-loop.md)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from peergrid_ledger import keys, query
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts import exchange_state
from peergrid_ledger.contracts.market_fee import MAX_FEE, MAX_FUND_CAP
from peergrid_ledger.contracts.market_state import NO_RULES
from peergrid_ledger.genesis import Account, Genesis, Params
from peergrid_ledger.keyspace import UPLIFT_FUND
from peergrid_ledger.results import Accepted
from peergrid_ledger.store import BlockStore
from peergrid_sim.lab_chains import ExchangeFee, LabChains, LabGenesisMismatch, fee_coordinators
from peergrid_sim.report_fee import day_balances, fee_figures
from peergrid_sim.report_uplift import uplift_section
from peergrid_sim.scenario import load_scenario
from peergrid_sim.testbed import build_parser, exchange_fee, lab_loop

SCENARIO = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"


def _genesis(chains: LabChains) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(chains.mgmc_genesis.read_text())
    return doc


def test_the_fee_goes_into_the_lab_genesis_and_fee_0_writes_the_genesis_without_it(tmp_path: Path) -> None:
    plain = LabChains.create(tmp_path / "plain", "ieee33", SCENARIO)
    for name in ("zero", "fee"):  # the same keys: only the fee may differ
        shutil.copytree(tmp_path / "plain", tmp_path / name, ignore=shutil.ignore_patterns("*genesis*"))
    zero = LabChains.create(tmp_path / "zero", "ieee33", SCENARIO, fee=ExchangeFee(0, 0))
    with_fee = LabChains.create(tmp_path / "fee", "ieee33", SCENARIO, fee=ExchangeFee(2_000_000, 20_000))
    docs = {name: _genesis(c) for name, c in (("plain", plain), ("zero", zero), ("fee", with_fee))}
    for doc in docs.values():
        doc.pop("time")  # written at the start
    assert docs["zero"] == docs["plain"]  # fee 0: every byte of today's lab
    assert "exchange_fee" not in json.dumps(docs["plain"])
    params = Genesis.from_json(_genesis(with_fee)).params
    assert (params.exchange_fee, params.uplift_fund_cap) == (2_000_000, 20_000)
    # nothing else of the lab's genesis moved
    assert {
        k: v for k, v in docs["fee"]["params"].items() if k not in ("exchange_fee", "uplift_fund_cap")
    } == (docs["plain"]["params"])
    fee_only = ("params", "fee_coordinators")  # the coordinator its sessions take the fee from, where named
    assert {k: v for k, v in docs["fee"].items() if k not in fee_only} == {
        k: v for k, v in docs["plain"].items() if k != "params"
    }
    if "fee_coordinators" in docs["fee"]:  # the lab's coordinator: the lowest anonym key (every MG a member)
        assert docs["fee"]["fee_coordinators"] == [min(k.public for k in with_fee.anonyms.values()).hex()]


def test_a_session_opened_on_the_lab_chain_carries_its_fee(tmp_path: Path) -> None:
    chains = LabChains.create(tmp_path, "ieee33", SCENARIO, fee=ExchangeFee(1_000_000, 5_000))
    genesis = Genesis.from_json(_genesis(chains))
    chain = LocalChain(genesis, chains.nodes[chains.mgs[0]])
    members = sorted(chains.anonyms[mg].public for mg in chains.mgs)
    by_key = {chains.anonyms[mg].public: chains.anonyms[mg] for mg in chains.mgs}
    # the edge's coordinator is the session's lowest member key: every lab MG is a member
    opened = {"lowest": by_key[members[0]], "other": by_key[members[1]]}
    for name, opener in opened.items():
        opening = {
            "session": name, "first_interval": 36, "members": members, "prices": [100_000_000] * 2,
            "rho": 5_000_000, "deadline": genesis.time + 10**9,
        }  # fmt: skip
        result = chain.sign_and_submit(opener, "exchange.open", opening)
        assert isinstance(result, Accepted), result
    chain.seal()
    record = exchange_state.session(chain.state, "lowest")
    assert record is not None and (record["fee"], record["fund_cap"]) == (1_000_000, 5_000)
    if hasattr(genesis, "fee_coordinators"):  # the ledger names the openers a fee reaches (review26 R26-1)
        assert genesis.fee_coordinators == (members[0],)
        other = exchange_state.session(chain.state, "other")
        assert other is not None and "fee" not in other  # an opener the genesis did not name: no fee


def test_an_existing_lab_genesis_with_another_fee_is_refused_not_run(tmp_path: Path) -> None:
    first = LabChains.create(tmp_path, "ieee33", SCENARIO, fee=ExchangeFee(2_000_000))
    kept = first.mgmc_genesis.read_text()
    again = LabChains.create(tmp_path, "ieee33", SCENARIO, fee=ExchangeFee(2_000_000))  # the same: reused
    assert again.mgmc_genesis.read_text() == kept
    LabChains.create(
        tmp_path, "ieee33", SCENARIO
    )  # no fee asked for: the lab keeps its genesis, as it always did
    for other in (ExchangeFee(1_000_000), ExchangeFee(2_000_000, 1), ExchangeFee(0)):
        with pytest.raises(LabGenesisMismatch, match="exchange fee 2000000 and fund cap 0, not"):
            LabChains.create(tmp_path, "ieee33", SCENARIO, fee=other)
    assert first.mgmc_genesis.read_text() == kept  # never rewritten


def test_bad_fees_and_caps_are_refused_with_what_they_must_be(capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ("-1", "1.5", "lots", "", str(MAX_FEE + 1), "\uff11", "750000", "1000001"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["--dayahead", "--exchange-fee", bad])
        err = capsys.readouterr().err
        assert (
            "--exchange-fee: the fee must be a whole number of ticks (multiples of 1,000,000 nano-currency per"
            " kWh, 1 micro-unit per Wh) in [0, 10,000,000], got "
            in err
            and err.rstrip().endswith((f" {bad}", repr(bad)))
        ), err
    for bad in ("-5", str(MAX_FUND_CAP + 1), "1e6"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["--dayahead", "--uplift-fund-cap", bad])
        err = capsys.readouterr().err
        assert "--uplift-fund-cap: not a whole number of" in err and "from 0 to" in err, err
    for fee, cap, message in (
        (-1, 0, r"the exchange fee must be a whole number of ticks .* in \[0, 10,000,000\], got -1"),
        (MAX_FEE + 1, 0, "the exchange fee must be a whole number of ticks"),
        (750_000, 0, r"multiples of 1,000,000 nano-currency per kWh, 1 micro-unit per Wh\) .* got 750000"),
        (1_000_000, -1, "uplift fund cap: expected 0 to"),
        (1_000_000, MAX_FUND_CAP + 1, "uplift fund cap: expected 0 to"),
        (0, 10, "uplift fund cap: only with an exchange fee above 0"),
    ):
        with pytest.raises(ValueError, match=message):
            ExchangeFee(fee, cap)
    assert ExchangeFee(MAX_FEE, MAX_FUND_CAP).params() == {
        "exchange_fee": MAX_FEE,
        "uplift_fund_cap": MAX_FUND_CAP,
    }
    assert ExchangeFee().params() == {}


def test_the_fee_options_mean_something_only_with_dayahead(tmp_path: Path) -> None:
    parse = build_parser().parse_args
    assert exchange_fee(parse([])) is None and exchange_fee(parse(["--dayahead"])) is None  # the default lab
    assert exchange_fee(parse(["--dayahead", "--exchange-fee", "2000000"])) == ExchangeFee(2_000_000, 0)
    assert exchange_fee(parse(["--dayahead", "--exchange-fee", "1000000", "--uplift-fund-cap", "0"])) == (
        ExchangeFee(1_000_000, 0)
    )
    for argv, why in (
        (["--exchange-fee", "2000000"], "--exchange-fee needs --dayahead"),
        (["--uplift-fund-cap", "10"], "--uplift-fund-cap needs --dayahead"),
        (
            ["--dayahead", "--no-market", "--exchange-fee", "2000000"],
            "--exchange-fee needs --dayahead (and the market)",
        ),
        (["--dayahead", "--uplift-fund-cap", "10"], "--uplift-fund-cap needs --exchange-fee above 0"),
        (
            ["--dayahead", "--exchange-fee", "0", "--uplift-fund-cap", "10"],
            "--uplift-fund-cap needs --exchange-fee",
        ),
    ):
        with pytest.raises(SystemExit) as refused:
            exchange_fee(parse(argv))
        assert str(refused.value).startswith(f"peergrid-testbed: {why}"), refused.value
    # refused before the lab writes anything: no keys, no genesis
    args = parse(["--exchange-fee", "2000000", "--intervals", "2", "--scenario", str(SCENARIO)])
    with pytest.raises(SystemExit, match="needs --dayahead"):
        lab_loop(args, tmp_path, load_scenario(SCENARIO))
    assert not (tmp_path / "keys").exists()


def test_the_testbed_refuses_a_lab_directory_whose_genesis_holds_another_fee(tmp_path: Path) -> None:
    scenario = load_scenario(SCENARIO)
    argv = ["--dayahead", "--intervals", "2", "--scenario", str(SCENARIO)]
    loop = lab_loop(build_parser().parse_args([*argv, "--exchange-fee", "2000000"]), tmp_path, scenario)
    assert loop is not None
    genesis = Genesis.from_json(json.loads((tmp_path / "keys" / "mgmc-genesis.json").read_text()))
    assert genesis.params.exchange_fee == 2_000_000
    with pytest.raises(
        SystemExit, match=r"peergrid-testbed: .*mgmc-genesis\.json was written with exchange fee 2000000"
    ):
        lab_loop(build_parser().parse_args([*argv, "--exchange-fee", "3000000"]), tmp_path, scenario)


# --- the report's fee path on a real chain ----------------------------------------------------------------------

FEE = 2_000_000  # nano-currency per kWh per side: 2 micro-units per Wh, two ticks
CAP = 1_000  # micro-units the fund keeps after the payout
PRICE = 100  # micro-units per Wh: the session's clear (100,000,000 nano per kWh)


def _fee_day(path: Path, mg3_spare: int = 500) -> dict[str, keys.Keypair]:
    """A real MGMC-like chain with an exchange fee in a store, the lab's keys directory naming p1..p3 mg1..mg3: a
    session over two intervals (p1 sells 1000 Wh in each, p2 and p3 buy 600 and 400), cleared; p1 claims a gain
    of 3,000 micro-units (above its tolerance of 2,001), p2 and p3 none; the buyers settle their trades; p2
    settles the uplift. p3 holds its trades' cost and `mg3_spare` more (credit limit 0), so of its fee of 1,600
    it pays 500 and owes 1,100. The fund collects 4,000 + 2,400 + 500, pays p1 its 3,000 and refunds the 2,900
    above its cap of 1,000 to p1 and p2, who paid their whole fees."""
    dso, p1, p2, p3, sealer = (keys.Keypair.generate() for _ in range(5))
    rules = {**NO_RULES, "max_quantity": 1_000_000}
    balances = {p1: 10**9, p2: 10**9, p3: 2 * 400 * PRICE + mg3_spare}
    genesis = Genesis(
        chain="mgmc-fee-report", time=int(time.time() * 1000) - 60_000, authorities=(sealer.public,),
        accounts=(Account(dso.public, ("dso",), "dso"),
                  *(Account(k.public, ("anonym",), f"anonym-{i}", balance=balances[k], rules=rules)
                    for i, k in enumerate((p1, p2, p3)))),
        contracts=("market", "exchange", "uplift"),
        params=Params(credit_limit=0, uplift_max_spread=250, exchange_fee=FEE, uplift_fund_cap=CAP),
        **fee_coordinators(ExchangeFee(FEE, CAP), [p1.public]),  # (the DSO opens: sanctioned either way)
    )  # fmt: skip
    (path / "nodes" / "dso").mkdir(parents=True)
    store = BlockStore.create(path / "nodes" / "dso" / "mgmc.db", genesis)
    chain = LocalChain(genesis, sealer, store)
    now = [genesis.time + 1000]

    def send(who: keys.Keypair, kind: str, body: dict[str, object]) -> None:
        now[0] += 10
        result = chain.sign_and_submit(who, kind, body, time_ms=now[0])
        assert isinstance(result, Accepted), (kind, result)
        chain.seal(now[0])

    members, positions = (p1, p2, p3), {p1: [1000, 1000], p2: [-600, -600], p3: [-400, -400]}
    opening = {"session": "day", "first_interval": 36, "members": [k.public for k in members],
               "prices": [PRICE * 10**6] * 2, "rho": 5_000_000}  # fmt: skip
    send(dso, "exchange.open", opening)
    for k in members:
        send(k, "exchange.position", {"session": "day", "iteration": 0, "positions": positions[k]})
    send(dso, "exchange.step", {"session": "day", "iteration": 0, "rho": 5_000_000})
    send(dso, "exchange.close", {"session": "day", "iteration": 1})
    for k in members:
        send(k, "exchange.accept", {"session": "day", "positions": positions[k], "clean": False})
    send(dso, "exchange.clear", {"session": "day"})
    for k, gain in ((p1, 3_000), (p2, 0), (p3, 0)):  # a surplus is ignored on a fee session: none claimed
        send(k, "uplift.claim", {"session": "day", "gain": gain, "surplus": 0})
    for interval in (36, 37):
        for tid, trade in query.trades(chain.state, interval):
            buyer = p2 if trade["buyer"] == p2.public else p3
            send(buyer, "settle", {"trade": tid, "delivered": trade["quantity"]})
    send(p2, "uplift.settle", {"session": "day"})
    store.close()
    (path / "keys").mkdir()
    for name, k in (("mg1", p1), ("mg2", p2), ("mg3", p3)):
        keys.write_keyfile(path / "keys" / f"anonym-{name}.key", k)
    return {"mg1": p1, "mg2": p2, "mg3": p3}


def test_the_report_shows_the_fee_path_of_a_fee_funded_make_whole(tmp_path: Path) -> None:
    _fee_day(tmp_path)
    section = uplift_section(tmp_path)
    [paid] = section["sessions"]
    assert paid["fee"] == FEE and paid["settled"] and paid["surplus"] is None  # no surplus read with a fee
    fee = paid["fee_path"]
    assert (fee["fee"], fee["fund_cap"]) == (FEE, CAP)
    assert fee["cleared_wh"] == {"mg1": 2000, "mg2": 1200, "mg3": 800}
    # ceil(fee x cleared Wh / 10^6) each, collected in full from mg1 and mg2, mg3's 1,100 left as its debt
    assert (
        fee["fees_due"] == fee["collected"] == {"mg1": 4000, "mg2": 2400, "mg3": 1600} and fee["fees_match"]
    )
    assert fee["collected_total"] == 8000 and fee["fees_owed"] == {"mg3": 1100}
    assert (fee["fund_before"], fee["fund_after"]) == (0, CAP)
    assert paid["funded"] and paid["owed"] == 3000 and paid["credits"] == {"mg1": 3000}
    assert paid["charges"] == fee["collected"]  # a fee session's charges are the members' fees
    # above the cap: 6,900 in, 3,000 out, 2,900 refunded by the fees to the members that paid all of theirs
    assert set(paid["refunds"]) == {"mg1", "mg2"} and sum(paid["refunds"].values()) == 2900
    assert all(paid["refunds"][mg] <= fee["collected"][mg] for mg in paid["refunds"])
    assert {(p["payer"], p["payee"]) for p in paid["payments"]} >= {("mg3", "fund"), ("fund", "mg1")}
    refund = paid["refunds"]
    assert paid["moved"] == {
        "fund": 6900 - 3000 - 2900,
        "mg1": -4000 + 3000 + refund["mg1"],
        "mg2": -2400 + refund["mg2"],
        "mg3": -500,
    }
    assert paid["balances_match"]
    # the whole chain replayed: each balance change = its trades - its fee + its credit + its refund
    day = section["day"]
    assert day["match"], day
    assert day["accounts"]["mg3"] == {"change": -80_000 - 500, "trades": -80_000, "fee": 500}
    assert day["accounts"]["mg1"] == {
        "change": 200_000 - 1000 + refund["mg1"], "trades": 200_000, "fee": 4000, "credit": 3000,
        "refund": refund["mg1"],
    }  # fmt: skip
    assert day["accounts"]["fund"] == {"change": CAP, "trades": 0, "collected": 6900, "paid_out": 5900}


def test_a_collection_or_a_balance_the_rule_does_not_give_is_said(tmp_path: Path) -> None:
    members = _fee_day(tmp_path)
    store = BlockStore.open(tmp_path / "nodes" / "dso" / "mgmc.db")
    try:
        items = list(store.state_items())
        initial = store.genesis.initial_state()
    finally:
        store.close()
    state = dict(items)
    outcome = json.loads(json.dumps(uplift_section(tmp_path)["sessions"][0]))  # (the report's form, by name)
    from peergrid_ledger.codec import decode

    done = decode(state[b"upl/done/day"])
    names = {k.public: mg for mg, k in members.items()} | {UPLIFT_FUND: "fund"}

    def name(key: bytes) -> str:
        return names[key]

    assert fee_figures(state, "day", done, name)["fees_match"] and outcome["fee_path"]["fees_match"]
    short = {**done, "charges": [[k, v - 1 if names[k] == "mg2" else v] for k, v in done["charges"]]}
    assert not fee_figures(state, "day", short, name)["fees_match"]  # mg2 charged 1 below its fee due
    assert day_balances(initial, items, [done], name)["match"]
    more = {**done, "payments": [*done["payments"], [UPLIFT_FUND, members["mg2"].public, 1, 0]]}
    assert not day_balances(initial, items, [more], name)["match"]  # a refund the balances never got
    assert not day_balances(initial, items, [], name)["match"]  # the settle's moves left out


def test_the_report_page_shows_the_fee_path_and_the_day_replay(tmp_path: Path) -> None:
    from peergrid_sim.report_html import html

    _fee_day(tmp_path)
    section = uplift_section(tmp_path)
    doc = {
        "scenario": "ieee33.yaml", "intervals": [36], "interval_s": 6.0, "checks": {}, "prices_per_round": {},
        "voltages": [], "mg_cost_p2p": {"mg1": 1.0}, "mg_cost_conventional": {"mg1": 2.0},
        "welfare": {"p2p": -1.0, "conventional": -2.0, "central": None, "p2p_over_central": None}, "ledger": {},
        "trades": [], "switch_operations": [], "pacing": [], "device_faults": None, "uplift": section,
    }  # fmt: skip
    page = html(doc)
    refunds = section["sessions"][0]["refunds"]
    assert "2 per Wh a side; collected mg1 0.004000, mg2 0.002400, mg3 0.001600 (as due: True)" in page
    assert f"refunds mg1 {refunds['mg1'] / 1e6:.6f}, mg2 {refunds['mg2'] / 1e6:.6f}" in page
    assert "fund 0.000000 -&gt; 0.001000" in page
    assert "trades - fee - charge + credit + refund: True" in page


def test_a_lab_directory_whose_genesis_holds_a_fee_off_the_tick_is_refused_with_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R37: a lab directory written before whole-tick fees (750,000 nano/kWh) is refused in one line, naming the
    rule, as another fee is: not a GenesisError traceback out of the testbed."""
    from peergrid_ledger import genesis_params
    from peergrid_sim import lab_chains

    with monkeypatch.context() as before:  # as the code before the rule wrote it
        before.setattr(genesis_params, "check_fee", lambda fee, what="exchange_fee": fee)
        before.setattr(lab_chains.ExchangeFee, "__post_init__", lambda self: None)
        LabChains.create(tmp_path / "keys", "ieee33", SCENARIO, fee=ExchangeFee(750_000))
    with pytest.raises(LabGenesisMismatch, match=r"mgmc-genesis\.json is a genesis this lab can no longer run "
                       r"\(params\.exchange_fee must be a whole number of ticks .*got 750000\)"):  # fmt: skip
        LabChains.create(tmp_path / "keys", "ieee33", SCENARIO, fee=ExchangeFee(1_000_000))
    scenario = load_scenario(SCENARIO)
    argv = ["--dayahead", "--intervals", "2", "--scenario", str(SCENARIO), "--exchange-fee", "1000000"]
    with pytest.raises(SystemExit, match=r"peergrid-testbed: .*can no longer run"):
        lab_loop(build_parser().parse_args(argv), tmp_path, scenario)
