"""Feeder models: published base-case losses, the MATPOWER loader's unit conversion, and bad data."""

from __future__ import annotations

from pathlib import Path

import pytest

from peergrid_dso.feeder.cases import case33bw, load_ties
from peergrid_dso.feeder.load import load_feeder
from peergrid_dso.feeder.matpower import MatpowerFormatError, load_matpower, parse_matpower
from peergrid_dso.feeder.model import FeederDataError
from peergrid_dso.services.powerflow import IslandedLoadError, ac_power_flow, closed_mask, is_radial


def base_losses_kw(feeder) -> float:
    return ac_power_flow(feeder, closed_mask(feeder, feeder.initially_open())).losses_mw * 1e3


def test_case33bw_base_losses_and_ties() -> None:
    feeder = case33bw({"mg1": 18, "mg2": 33})
    assert feeder.initially_open() == (33, 34, 35, 36, 37)
    assert base_losses_kw(feeder) == pytest.approx(202.7, abs=0.05)
    assert feeder.mg_buses == {"mg1": 17, "mg2": 32}
    assert all(b.rating_mva < 10 for b in feeder.branches)  # realistic ratings, not pandapower's 99999 kA


def test_case33bw_ratings_leave_headroom_in_base_case() -> None:
    feeder = case33bw()
    pf = ac_power_flow(feeder, closed_mask(feeder, feeder.initially_open()))
    assert 0.5 < pf.loading.max() < 0.8


def test_matpower_case33bw_matches_pandapower(matpower_dir: Path) -> None:
    feeder = load_matpower(matpower_dir / "case33bw.m")
    assert base_losses_kw(feeder) == pytest.approx(202.7, abs=0.05)


def test_matpower_case69_with_ties(matpower_dir: Path, case69_ties: Path) -> None:
    feeder = load_feeder(matpower=matpower_dir / "case69.m", ties=case69_ties)
    assert base_losses_kw(feeder) == pytest.approx(224.9, abs=0.2)
    assert feeder.initially_open() == (69, 70, 71, 72, 73)
    tie = feeder.branch(72)
    assert (feeder.bus_ids[tie.from_bus], feeder.bus_ids[tie.to_bus]) == (50, 59)
    assert tie.r_pu == pytest.approx(2.0 / (12.66**2 / 10))
    assert is_radial(feeder, closed_mask(feeder, feeder.initially_open()))


CASE = """function mpc = tiny
mpc.version = '2';
mpc.baseMVA = 10;
mpc.bus = [
\t1\t3\t0\t0\t0\t0\t1\t1\t0\t12.66\t1\t1\t1;
\t2\t1\t100\t60\t0\t0\t1\t1\t0\t12.66\t1\t1.1\t0.9;
];
mpc.gen = [
\t1\t0\t0\t10\t-10\t1\t100\t1\t10\t0;
];
mpc.branch = [
\t1\t2\t0.5\t0.25\t0\t0\t0\t0\t0\t0\t1\t-360\t360;
];
[PQ, PV, REF, NONE, BUS_I, BUS_TYPE, PD, QD, GS, BS, BUS_AREA, VM, ...
    VA, BASE_KV, ZONE, VMAX, VMIN, LAM_P, LAM_Q, MU_VMAX, MU_VMIN] = idx_bus;
[F_BUS, T_BUS, BR_R, BR_X, BR_B, RATE_A, RATE_B, RATE_C, ...
    TAP, SHIFT, BR_STATUS, PF, QF, PT, QT, MU_SF, MU_ST, ...
    ANGMIN, ANGMAX, MU_ANGMIN, MU_ANGMAX] = idx_brch;
Vbase = mpc.bus(1, BASE_KV) * 1e3;      %% in Volts
Sbase = mpc.baseMVA * 1e6;              %% in VA
mpc.branch(:, [BR_R BR_X]) = mpc.branch(:, [BR_R BR_X]) / (Vbase^2 / Sbase);
mpc.bus(:, [PD, QD]) = mpc.bus(:, [PD, QD]) / 1e3;
"""


def test_conversion_code_is_applied() -> None:
    case = parse_matpower(CASE)
    assert case.tables["branch"][0, 2] == pytest.approx(0.5 / (12.66e3**2 / 10e6))
    assert case.tables["bus"][1, 2] == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("mpc.baseMVA = 10;\n", ""), "baseMVA"),
        (lambda t: t.replace("\t100\t60", "\tabc\t60"), "bad number"),
        (lambda t: t + "mpc.bus(:, QD) = mpc.bus(:, PD) * sin(acos(pf));\n", "unknown name pf"),
        (lambda t: t + "mpc.bus(:, QD) = mpc.bus(:, PD) * acos(2);\n", "undefined"),
        (lambda t: t + "mpc.bus(:, [PD QD]) = mpc.bus(:, PD) * 2;\n", "unsupported column update"),
        (lambda t: t + "system('rm -rf /');\n", "unsupported statement"),
        (lambda t: t.replace("Sbase = mpc.baseMVA * 1e6;", "Sbase = Nope * 1e6;"), "unknown name Nope"),
        (lambda t: t.replace("mpc.branch = [", "mpc.branch = [\n1 2 0.5;"), "differ in length"),
    ],
)
def test_malformed_case_files_are_refused(edit, message: str) -> None:
    with pytest.raises(MatpowerFormatError, match=message):
        parse_matpower(edit(CASE))


def test_power_factor_conversion_of_case141(matpower_dir: Path) -> None:
    case = parse_matpower((matpower_dir / "case141.m").read_text())
    loaded = case.tables["bus"][case.tables["bus"][:, 2] > 0]
    ratio = loaded[:, 3] / loaded[:, 2]
    assert ratio == pytest.approx([(1 - 0.85**2) ** 0.5 / 0.85] * len(ratio))  # Q/P = tan(acos(0.85))


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(MatpowerFormatError, match="cannot read"):
        load_matpower(tmp_path / "missing.m")


def test_bad_ties_file(tmp_path: Path) -> None:
    feeder = case33bw()
    bad = tmp_path / "ties.csv"
    bad.write_text("from_bus,to_bus,r_ohm,x_ohm\n1,99,0.5,0.5\n")
    with pytest.raises(FeederDataError, match=r"ties.csv:2: bad tie row"):
        load_ties(feeder, bad)
    bad.write_text("a,b\n")
    with pytest.raises(FeederDataError, match="expected a header"):
        load_ties(feeder, bad)


def test_bad_feeder_selection() -> None:
    with pytest.raises(FeederDataError, match="exactly one"):
        load_feeder()
    with pytest.raises(FeederDataError, match="unknown case"):
        load_feeder(case="case9999")
    with pytest.raises(FeederDataError, match="non-substation"):
        case33bw({"mg1": 1})


def test_islanded_load_is_named() -> None:
    feeder = case33bw()
    with pytest.raises(IslandedLoadError, match=r"\[18\]"):
        ac_power_flow(feeder, closed_mask(feeder, (17, 33, 34, 35, 36, 37)))
