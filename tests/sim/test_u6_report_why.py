"""U6: every check of the lab report says why it passed or failed (`report_why.check_why`), on the page too.

Before, only `p2p_not_dearer` named its cause; the others were a bare True or False, and a DSO restart's
replayed intervals (17 DSO records for a 12-interval run: 40-44 twice) read as `intervals_done: 17`.
"""

from __future__ import annotations

from typing import Any

from peergrid_sim.report_html import _why
from peergrid_sim.report_why import check_why


def lab(**more: Any) -> dict[str, Any]:
    dso = [{"interval": t, "after": {"violations": []}} for t in (40, 41, 40, 41, 42)]
    report: dict[str, Any] = {
        "checks": {
            k: True
            for k in (
                "intervals_done",
                "replicas_agree",
                "quiesced",
                "head_spread",
                "stores_verify",
                "settled_trades_proven",
                "topology_secure",
                "p2p_not_dearer",
                "dso_ready_before_mgmcs",
            )
        },
        "intervals": [40, 41, 42],
        "dso": dso,
        "ledger": {
            "mgmc": {
                "head_hashes": {"a": "x", "b": "x"},
                "identical_heads": True,
                "lowest_head": 9,
                "head_spread": 0,
            }
        },
        "quiesce": {"ok": True, "halt": {"mgmc-f": 12}, "halt_s": 4.5, "pending_at_halt": 0},
        "stores_verify": {"a/mgmc.db": "ok", "b/mgmc.db": "ok"},
        "proofs": {"settled": 3, "verified": 3, "failed": []},
        "start": {
            "dso_ready_before_t0_s": 16.0,
            "dso_start_up_s": 7.0,
            "dso_ready": -16.0,
            "mgmcs_started": -15.7,
        },
    }
    report.update(more)
    return report


def test_each_check_but_the_owners_bound_has_its_sentence() -> None:
    why = check_why(lab())
    assert set(why) == {"intervals_done", "replicas_agree", "quiesced", "stores_verify", "settled_trades_proven",
                        "topology_secure", "dso_ready_before_mgmcs"}  # fmt: skip
    assert why["intervals_done"] == (
        "5 DSO interval records for the 3 intervals asked; intervals 40, 41 recorded more than once "
        "(the DSO node ran them again)"
    )
    assert why["replicas_agree"] == "mgmc: 2 replicas on one head at height 9"
    assert why["stores_verify"] == "2 of 2 stores pass `peergrid-ledger verify`"
    assert why["settled_trades_proven"] == "3 of 3 settles' inclusion proofs verify"
    assert why["topology_secure"] == "5 of 5 intervals without a violation after the DSO's part"
    assert "MGMCs started 0.3 s after it" in why["dso_ready_before_mgmcs"]


def test_a_failed_check_names_what_failed() -> None:
    why = check_why(
        lab(
            stores_verify={"a/mgmc.db": "ok", "b/mgmc.db": "block 7: bad hash"},
            proofs={"settled": 0, "verified": 0, "failed": []},
            ledger={
                "mgmc": {
                    "head_hashes": {"a": "x", "b": "x", "c": "y"},
                    "identical_heads": False,
                    "head_spread": 1,
                }
            },
            dso=[
                {"interval": 40, "after": {"violations": ["bus 18 v 0.89"]}},
                {"interval": 41, "error": "x"},
            ],
        )
    )
    assert (
        why["stores_verify"]
        == "1 of 2 stores pass `peergrid-ledger verify`; failing: b/mgmc.db (block 7: bad hash)"
    )
    assert why["settled_trades_proven"] == "no settled trade to prove (the check needs at least one)"
    assert why["replicas_agree"] == "mgmc: heads differ (spread 1); off the most common: c"
    assert (
        why["topology_secure"]
        == "0 of 1 intervals without a violation after the DSO's part; violations in intervals 40"
    )
    assert (
        "the DSO failed intervals 41" in why["intervals_done"]
        and "no DSO record of intervals 42" in why["intervals_done"]
    )


def test_the_page_prints_the_sentence_after_the_verdict_and_an_old_report_nothing() -> None:
    report = lab()
    report["check_why"] = check_why(report)
    assert _why(report, "stores_verify") == " &mdash; 2 of 2 stores pass `peergrid-ledger verify`"
    assert _why(lab(), "stores_verify") == ""


def test_a_missed_interval_is_not_done_and_says_why() -> None:
    """D8: the DSO node records an interval over before it came to it as `missed` (no analysis): not done, not
    counted by topology_secure as unanalysed, and the sentence names it with why."""
    report = lab()
    why = "the DSO node was not running when it ended"
    report["dso"] = [{"interval": 40, "after": {"violations": []}}, {"interval": 41, "missed": why,
                     "adjustments": [], "plan": None}, {"interval": 42, "after": {"violations": []}}]  # fmt: skip
    said = check_why(report)
    assert said["intervals_done"] == (
        f"2 DSO interval records for the 3 intervals asked; the DSO missed intervals 41 ({why})"
    )
    assert said["topology_secure"] == "2 of 2 intervals without a violation after the DSO's part"
