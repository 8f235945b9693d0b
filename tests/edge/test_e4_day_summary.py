"""E4: `peergrid-edge day`, an MG owner's day from its record file and its MGMC chain replica.

The pure summary (`day_summary.summarise`) on records and a scripted chain: the trades, what the chain settled
for each or why not yet, money in and out, cost against the DSO-only figure, the flags (a recorded trade the
chain does not hold, one of this MG's the records miss, one recorded in two intervals, one settled by two
transactions), damaged lines named and skipped, the day chosen. Then the command end to end on a real chain
store (tests/dso's market on a `LocalChain` writing a `BlockStore`): text, --json, the copy read while another
holder keeps the store's lock, and a bad path in one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dso.test_disputes as disputes
import pytest
from dso.test_disputes import T, market

from peergrid_edge.cli import main
from peergrid_edge.day_summary import ChainView, read_records, render, summarise
from peergrid_ledger import query
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.store import BlockStore

ME, OTHER, THIRD = "aa" * 32, "bb" * 32, "cc" * 32
SOLD, BOUGHT, GONE = "01" * 32, "02" * 32, "03" * 32
DAY = "1796643733/44"


def interval(t: int, trades: list[dict[str, Any]], day: str = DAY, **more: Any) -> dict[str, Any]:
    """An interval record as trader.py writes it (the fields the summary reads)."""
    return {"interval": t, "day": day, "mg": "mg5", "anonym": ME, "role": "seller", "trades": trades,
            "p2p_money": 0.5, "cost_p2p": -1.5, "cost_conventional": -1.0, "settled": 0, **more}  # fmt: skip


def trade(tid: str, seller: str, buyer: str, kwh: float = 2.0, price: float = 0.2) -> dict[str, Any]:
    return {"seller": seller, "buyer": buyer, "price": price, "quantity_kwh": kwh, "id": tid}


SETTLED = {"state": "settled", "statements": {}, "deadline": None,
           "settlement": {"amount": 400_000, "delivered": 2000, "txid": b"\x07" * 32}}  # fmt: skip


def chain(views: dict[str, ChainView]):  # type: ignore[no-untyped-def]
    return lambda tid: views.get(tid.hex(), ChainView(None, None))


def test_the_day_gives_each_trade_what_the_chain_settled_or_why_not_and_the_money() -> None:
    lines = [
        interval(44, [trade(SOLD, ME, OTHER), trade(BOUGHT, THIRD, ME, 1.0, 0.25)], p2p_money=0.15),
        {
            "interval": 44,
            "day": DAY,
            "settlement": {
                "trade": BOUGHT,
                "settled": False,
                "party": "buyer",
                "reason": "the trading day ended; last refusal: x",
            },
        },
    ]
    views = {
        SOLD: ChainView({"seller": b"", "buyer": b""}, SETTLED),
        BOUGHT: ChainView({"seller": b"", "buyer": b""}, {**SETTLED, "state": "open", "settlement": None}),
    }
    summary = summarise(lines, chain(views), lambda t: [])
    [row] = summary["intervals"]
    sold, bought = row["trades"]
    assert sold["side"] == "sold" and sold["counterparty"] == OTHER[:8] and sold["agreed_money"] == 0.4
    assert sold["chain"] == {"state": "settled", "delivered": 2000, "amount": 400_000, "compensation": 0,
                             "money": 0.4, "txid": "07" * 32}  # fmt: skip
    assert bought["side"] == "bought" and bought["agreed_money"] == -0.25
    assert bought["chain"] == {"state": "open", "why": "the trading day ended; last refusal: x"}
    assert (row["money_in"], row["money_out"], row["unsettled"], row["unsettled_agreed_money"]) == (
        0.4,
        0,
        1,
        -0.25,
    )
    assert row["cost_p2p_settled"] == pytest.approx(-1.5)  # settled at the agreed value: as recorded
    assert summary["day_total"]["saving"] == pytest.approx(0.5) and summary["flags"] == []
    text = render(summary)
    assert "settled 2000 Wh, +0.400000" in text and "open: the trading day ended" in text
    assert "0.500000 better" in text and "1 not settled (-0.250000 agreed)" in text


def test_a_settlement_below_the_agreed_counts_at_what_it_settled_for() -> None:
    """U4's 1fc21b4d: 1968 Wh agreed at 0.208, settled 1964 by the DSO with 632 micro of compensation."""
    settled = {"amount": 408512, "delivered": 1964, "txid": b"\xe7" * 32, "basis": "dso",
               "compensation": {"payer": "buyer", "amount": 632, "buyer_short": 4, "seller_short": 0}}  # fmt: skip
    lines = [interval(49, [trade(SOLD, ME, OTHER, 1.968, 0.208)], p2p_money=0.409344)]
    views = {SOLD: ChainView({}, {**SETTLED, "settlement": settled})}
    [row] = summarise(lines, chain(views), lambda t: [])["intervals"]
    assert row["settled_money"] == pytest.approx(0.409144)
    assert row["cost_p2p_settled"] == pytest.approx(-1.5 + 0.409344 - 0.409144)
    assert "settled 1964 Wh (dso), compensation +632 micro, +0.409144" in render(
        summarise(lines, chain(views), lambda t: [])
    )


def test_trades_the_records_and_the_chain_disagree_on_are_flagged() -> None:
    lines = [
        interval(44, [trade(SOLD, ME, OTHER), trade(GONE, ME, THIRD)]),
        interval(45, [trade(SOLD, ME, OTHER)]),  # the same trade recorded again in another interval
        {
            "interval": 44,
            "day": DAY,
            "settlement": {"trade": SOLD, "settled": True, "chain": {"txid": "07" * 32}},
        },
        {
            "interval": 44,
            "day": DAY,
            "settlement": {"trade": SOLD, "settled": True, "chain": {"txid": "08" * 32}},
        },
    ]
    missing = bytes.fromhex("04" * 32)
    on_chain = {44: [(missing, {"seller": bytes.fromhex(ME), "buyer": bytes.fromhex(OTHER)})]}
    summary = summarise(lines, chain({SOLD: ChainView({}, SETTLED)}), lambda t: on_chain.get(t, []))
    flags = summary["flags"]
    assert any("trade 0303030303030303 is in the records, not on the chain" in f for f in flags)
    assert any("trade 0404040404040404 is on the chain, not in the records" in f for f in flags)
    assert any("in the records of intervals [44, 45]" in f for f in flags)
    assert any("settled by 2 transactions" in f for f in flags)
    assert "FLAG" in render(summary)


def test_damaged_lines_are_named_and_skipped_never_raised() -> None:
    good = json.dumps(interval(44, [trade(SOLD, ME, OTHER)]))
    raw = [
        good,
        '{"interval": 45, "trades": [',  # a half-written line
        "[1, 2]",
        json.dumps(interval(46, [{"id": "zz"}])),
        json.dumps(interval(47, [], cost_p2p=float("nan"))),
        json.dumps({"interval": "48", "trades": []}),
        json.dumps({"interval": 49, "settlement": "yes"}),
        "",
    ]
    docs, skipped = read_records(raw, "r.jsonl")
    assert [d["interval"] for d in docs] == [44]
    assert [s.split(":")[1] for s in skipped] == ["2", "3", "4", "5", "6", "7"]
    assert skipped[0].startswith("r.jsonl:2: not JSON") and "cost_p2p is not a number" in skipped[3]
    summary = summarise(docs, chain({SOLD: ChainView({}, SETTLED)}), lambda t: [], skipped=skipped)
    assert len(summary["intervals"]) == 1 and "skipped r.jsonl:3: not a JSON object" in render(summary)


def test_the_day_is_the_records_last_unless_named_and_a_failed_interval_shows() -> None:
    lines = [
        interval(44, [trade(SOLD, ME, OTHER)], day="1/44"),
        interval(44, [], day=DAY),
        {"interval": 45, "day": DAY, "error": "failed; see the log"},
    ]
    views = chain({SOLD: ChainView({}, SETTLED)})
    last = summarise(lines, views, lambda t: [])
    assert last["day"] == DAY and [r.get("failed") for r in last["intervals"]] == [
        None,
        "failed; see the log",
    ]
    assert last["day_total"]["failed_intervals"] == 1
    assert summarise(lines, views, lambda t: [], day="1/44")["day_total"]["trades"] == 1
    with pytest.raises(ValueError, match="no interval record of day '2/44'"):
        summarise(lines, views, lambda t: [], day="2/44")


# --- the command on a real chain store ---------------------------------------------------------------------


def stored_market(path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """tests/dso's market (s sells 400 Wh to b, agreed and settled on both words, and 300 to c, not stated)
    on a LocalChain that writes its blocks to a BlockStore at `path`."""
    monkeypatch.setattr(
        disputes,
        "LocalChain",
        lambda genesis, sealer: LocalChain(genesis, sealer, BlockStore.create(path, genesis)),
    )
    return market({("s", "b"): 400, ("s", "c"): 300}, {("s", "b"): (400, 400)})


def records_of(m: Any, path: Path) -> None:
    me = m.anonyms["s"].public
    trades = [
        trade(tid.hex(), tr["seller"].hex(), tr["buyer"].hex(), tr["quantity"] / 1000, tr["price"] / 1000)
        for tid, tr in query.trades(m.chain.state, T)
        if me in (tr["seller"], tr["buyer"])
    ]
    doc = {**interval(T, trades), "anonym": me.hex()}
    path.write_text(json.dumps(doc) + "\n" + "not json\n")


def test_the_command_reads_the_records_and_the_replica(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger, records = tmp_path / "mgmc.db", tmp_path / "mgmc-s.jsonl"
    m = stored_market(ledger, monkeypatch)
    records_of(m, records)
    # the store is still open (as the running daemon holds it): the command reads a copy
    assert main(["day", "--records", str(records), "--ledger", str(ledger)]) == 0
    text = capsys.readouterr().out
    assert "2 trades" in text and "settled 400 Wh" in text and "open: no settlement on the chain yet" in text
    assert f"skipped {records}:2: not JSON" in text
    m.chain.store.close()
    assert main(["day", "--records", str(records), "--ledger", str(ledger), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    states = sorted(x["chain"]["state"] for x in summary["intervals"][0]["trades"])
    assert states == ["open", "settled"] and summary["flags"] == []


def test_a_path_it_cannot_read_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["day", "--records", str(tmp_path / "none.jsonl"), "--ledger", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().startswith("peergrid-edge day: cannot read the records")
    (tmp_path / "r.jsonl").write_text("")
    assert main(["day", "--records", str(tmp_path / "r.jsonl"), "--ledger", str(tmp_path / "no.db")]) == 2
    assert "no such ledger store" in capsys.readouterr().err
    assert main(["day"]) == 2
    assert "give --config, or --records and --ledger" in capsys.readouterr().err


def test_a_storage_mgs_day_counts_what_its_batteries_hold_at_the_end() -> None:
    """E4's settle-by-both lab, mg2 (a battery charged from peers): by the intervals alone 24.65 worse than the
    DSO-only day; with the last record's cost_to_go (92.03 against 118.88 later) 2.19 better."""
    lines = [
        interval(44, [trade(BOUGHT, THIRD, ME)], cost_p2p=24.650627, cost_conventional=0.0),
        interval(
            45,
            [],
            cost_p2p=0.0,
            cost_conventional=0.0,
            cost_to_go={"p2p": 92.03433170713222, "conventional": 118.87581901092852},
        ),
    ]
    summary = summarise(lines, chain({BOUGHT: ChainView({}, SETTLED)}), lambda t: [])
    total = summary["day_total"]
    assert total["saving"] < 0 and total["saving_with_to_go"] == pytest.approx(2.190861, abs=1e-6)
    assert "(cost_to_go): +116.68495" in render(summary) and "+118.875819: 2.19086" in render(summary)
