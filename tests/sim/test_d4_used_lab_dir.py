"""A second start in any lab directory a start already wrote in is refused, in one line naming what is there (D4).

Before: 38d7d6f refused only a directory holding a coordinated halt or the DSO node's interval records, so a lab
stopped before the DSO's first interval record (Ctrl-C or --duration during the start, the day-ahead session or
the first interval) was started again on its old ledger stores and MGMC records. A directory holding only the lab's
keys and geneses (`lab_loop` writes them before any process starts) is still reused."""

from __future__ import annotations

from pathlib import Path

import pytest

from peergrid_sim.scenario import load_scenario
from peergrid_sim.testbed import build_parser, lab_loop, main, run_before

IEEE33 = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"
ARGV = ["--scenario", str(IEEE33), "--intervals", "2", "--dayahead"]

# what a lab stopped before the DSO's first interval record leaves, one trace at a time, as the refusal names it
# (shapes as D3's 0.93 lab wrote them: /tmp/d3_lab at 267533d)
TRACES = [
    ("records/mgmc-mg4.jsonl", '{"day": "1796644281/36", "dayahead": {}}\n', "its nodes' records, records/mgmc-mg4.jsonl"),
    ("records/start.json", "{}", "its nodes' records, records/start.json"),
    ("nodes/mgmc-mg1/ledger-status.json", "{}", "its nodes' ledger stores, nodes/mgmc-mg1"),
    ("logs/firmware-sim.log", "started\n", "its processes' logs, logs/firmware-sim.log"),
    ("config/sim-scenario.yaml", "feeder: ieee33\n", "its processes' configs, config/sim-scenario.yaml"),
    ("broker/mosquitto.conf", "listener 0\n", "its broker's directory, broker/mosquitto.conf"),
    ("endpoints.json", "[]", "its devices' endpoints, endpoints.json"),
    ("console-admin.txt", "admin\n", "its console login, console-admin.txt"),
]  # fmt: skip


def _keys_only(workdir: Path) -> None:
    assert lab_loop(build_parser().parse_args(ARGV), workdir, load_scenario(IEEE33)) is not None


@pytest.mark.parametrize(("trace", "text", "named"), TRACES, ids=[t[0] for t in TRACES])
def test_each_trace_of_a_start_is_named_and_refused(
    tmp_path: Path, trace: str, text: str, named: str
) -> None:
    workdir = tmp_path / "lab"
    _keys_only(workdir)
    assert run_before(workdir) == ""  # the lab's keys and geneses alone: not a run, reused
    _keys_only(workdir)
    path = workdir / trace
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    assert run_before(workdir) == named
    with pytest.raises(SystemExit, match=r"holds an earlier run \(.*\): use a new --workdir$") as refused:
        _keys_only(workdir)
    assert named in str(refused.value)


def test_a_lab_stopped_before_the_dsos_first_record_is_refused_by_the_testbed_in_one_line(
    tmp_path: Path,
) -> None:
    workdir = tmp_path / "lab"
    _keys_only(workdir)
    # what the 0.93 lab held after its day-ahead session, before the DSO's first interval record
    for mg in ("mg1", "mg2", "mg3", "mg4", "mg5", "mg6"):
        (workdir / "nodes" / f"mgmc-{mg}").mkdir(parents=True)
        (workdir / "records").mkdir(exist_ok=True)
        (workdir / "records" / f"mgmc-{mg}.jsonl").write_text('{"day": "1796644281/36", "forward": {}}\n')
    (workdir / "nodes" / "dso").mkdir()
    (workdir / "records" / "start.json").write_text('{"dso_ready": -20.0}')
    with pytest.raises(SystemExit) as refused:
        main([*ARGV, "--workdir", str(workdir), "--http-port", "0"])
    said = str(refused.value)
    assert said == (
        f"peergrid-testbed: {workdir} holds an earlier run (its nodes' records, records/mgmc-mg1.jsonl, "
        "records/mgmc-mg2.jsonl (+5 more)): use a new --workdir"
    )
    assert "\n" not in said
    assert not (workdir / "logs").exists() and not (workdir / "broker").exists()  # nothing was started
    # an empty folder a start left is no trace: nothing of a run in it
    empty = tmp_path / "empty"
    _keys_only(empty)
    (empty / "logs").mkdir()
    assert run_before(empty) == ""


def test_a_users_file_put_there_before_the_first_start_is_no_earlier_run(tmp_path: Path) -> None:
    """The console's users file (and the lock `peergrid-dso user add` leaves beside it), written into the lab
    directory before its first start, is the user's own: the lab uses it (tests/console/test_browser.py starts its
    lab so). Before, 05bb732 refused that start as "its processes' configs, config/console-users.json"."""
    workdir = tmp_path / "lab"
    (workdir / "config").mkdir(parents=True)
    (workdir / "config" / "console-users.json").write_text("{}", encoding="utf-8")
    (workdir / "config" / "console-users.json.lock").write_text("", encoding="utf-8")
    assert run_before(workdir) == ""
    _keys_only(workdir)  # not refused
    (workdir / "config" / "dso.yaml").write_text("feeder: ieee33\n", encoding="utf-8")  # what a start writes
    assert run_before(workdir) == "its processes' configs, config/dso.yaml"
