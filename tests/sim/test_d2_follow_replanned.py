"""The testbed's summary line says when the MGMCs re-planned instead of re-bargaining (D2, U3 run 3: with
`--dayahead --dso-vmin 0.93` every interval read `rebargained x1 (mg4 mg5 mg6)` though a forward-traded interval
cannot be reopened). The DSO record's `rebargain[].answer` (interval_node.answer) is what the line counts."""

from __future__ import annotations

from peergrid_sim.closedloop_follow import rebargained

ADJUSTED = [{"mg": "mg4"}, {"mg": "mg5"}, {"mg": "mg6"}]


def test_a_forward_traded_interval_reads_re_planned() -> None:
    rounds = [{"iteration": 1, "reopened": None, "answer": "re-planned, forward trades kept"}]
    line = rebargained({"rebargain": rounds, "adjustments": ADJUSTED})
    assert line == " | re-planned x1, forward trades kept (mg4 mg5 mg6)"  # before: ' | rebargained x1 (...)'


def test_reopened_iterations_still_read_rebargained_and_a_mix_says_both() -> None:
    rounds = [{"iteration": 1, "reopened": 1, "answer": "re-bargained"},
              {"iteration": 2, "reopened": None, "answer": "re-planned, trades kept"}]  # fmt: skip
    assert rebargained({"rebargain": rounds, "adjustments": ADJUSTED[:1]}) == (
        " | rebargained x1; re-planned x1, trades kept (mg4)"
    )
    old = [{"iteration": 1, "reopened": 1}, {"iteration": 2, "reopened": None}, {}]  # records before `answer`
    assert rebargained({"rebargain": old, "adjustments": ADJUSTED[:1]}) == (
        " | rebargained x2; re-planned x1, trades kept (mg4)"
    )
    assert rebargained({"rebargain": [], "adjustments": ADJUSTED}) == ""
