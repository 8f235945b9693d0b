"""The loss lower bound (`lossbound.certify`): valid against full enumeration, and it finds the optimum."""

from __future__ import annotations

import itertools

import pytest

from peergrid_dso.feeder.model import Branch, Feeder, build_feeder
from peergrid_dso.services.lossbound import certify, fundamental_cycles
from peergrid_dso.services.powerflow import ac_power_flow, closed_mask, is_radial, net_injection_mw
from peergrid_dso.services.reconfiguration import reconfigure

VMIN = 0.90
BUDGET_S = 300.0  # a safety stop, not a timing claim: the toy proves in well under a second on a quiet host


def toy_feeder() -> Feeder:
    """12 buses: a main line 1-8, a lateral from bus 3, and three open ties making three loops."""
    tree = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 6), (6, 7), (2, 8), (8, 9), (9, 10), (10, 11)]
    ties = [(7, 11), (5, 9), (4, 10)]
    r = [
        0.0058,
        0.0308,
        0.0228,
        0.0238,
        0.0511,
        0.0117,
        0.0444,
        0.0102,
        0.0939,
        0.0255,
        0.0442,
        0.02,
        0.03,
        0.04,
    ]
    branches = tuple(
        Branch(k + 1, a, b, r[k], 0.8 * r[k], 10.0, k < len(tree)) for k, (a, b) in enumerate(tree + ties)
    )
    load = (0.0, 0.1, 0.09, 0.12, 0.06, 0.06, 0.4, 0.5, 0.06, 0.06, 0.045, 0.06)
    return build_feeder(
        name="toy12", base_mva=10.0, base_kv=12.66, bus_ids=tuple(range(1, 13)), load_p_mw=load,
        load_q_mvar=tuple(0.5 * x for x in load), root=0, branches=branches,
    )  # fmt: skip


def enumerate_all(feeder: Feeder) -> tuple[float, tuple[int, ...]]:
    p, q = net_injection_mw(feeder)
    best: tuple[float, tuple[int, ...]] = (float("inf"), ())
    n_open = len(feeder.branches) - (feeder.n_bus - 1)
    for open_set in itertools.combinations(range(1, len(feeder.branches) + 1), n_open):
        closed = closed_mask(feeder, open_set)
        if not is_radial(feeder, closed):
            continue
        pf = ac_power_flow(feeder, closed, p, q)
        if pf.converged and pf.vmin_pu >= VMIN and pf.losses_mw * 1e3 < best[0]:
            best = (pf.losses_mw * 1e3, open_set)
    return best


def ac(feeder: Feeder):  # type: ignore[no-untyped-def]
    p, q = net_injection_mw(feeder)

    def evaluate(open_set):  # type: ignore[no-untyped-def]
        pf = ac_power_flow(feeder, closed_mask(feeder, open_set), p, q)
        return pf, pf.converged and pf.vmin_pu >= VMIN - 1e-6 and pf.loading.max() <= 1 + 1e-6

    return evaluate, p / feeder.base_mva, q / feeder.base_mva


@pytest.mark.parametrize("start", ["ties open", "optimum"])
def test_bound_is_below_the_enumerated_optimum_and_proves_it(start: str) -> None:
    feeder = toy_feeder()
    optimum_kw, optimum_open = enumerate_all(feeder)
    evaluate, p, q = ac(feeder)
    first = feeder.initially_open() if start == "ties open" else optimum_open
    assert start == "optimum" or first != optimum_open  # the search has something to find
    cert = certify(feeder, first, evaluate, p, q, VMIN, time_limit_s=BUDGET_S, target_gap=1e-4)
    assert cert.proven and cert.gap <= 1e-4 + 1e-9
    assert cert.bound_kw <= optimum_kw + 1e-6  # a lower bound on every radial configuration...
    assert cert.bound_kw >= optimum_kw * (1 - 1e-4)  # ...and a tight one
    assert cert.best_kw == pytest.approx(optimum_kw, abs=1e-6) and cert.best_open == optimum_open


def test_reconfigure_reports_the_proof() -> None:
    feeder = toy_feeder()
    optimum_kw, optimum_open = enumerate_all(feeder)
    fast = reconfigure(feeder, vmin_pu=VMIN)
    assert fast.bound_kw is None and fast.gap is None and not fast.proven
    proved = reconfigure(feeder, vmin_pu=VMIN, prove_s=BUDGET_S, target_gap=1e-4)
    assert proved.open_branches == optimum_open and proved.losses_kw == pytest.approx(optimum_kw, abs=1e-6)
    assert proved.proven and proved.bound_kw is not None and proved.bound_kw <= optimum_kw + 1e-6
    assert proved.gap is not None and proved.gap <= 1e-4 + 1e-9


def test_every_radial_configuration_opens_a_branch_in_every_cycle_row() -> None:
    feeder = toy_feeder()
    cycles = fundamental_cycles(feeder, feeder.initially_open())
    assert len(cycles) > 3  # the three fundamental loops and the loops two of them make together
    n_open = len(feeder.branches) - (feeder.n_bus - 1)
    radial = 0
    for open_set in itertools.combinations(range(len(feeder.branches)), n_open):
        if is_radial(feeder, closed_mask(feeder, [k + 1 for k in open_set])):
            radial += 1
            assert all(cycle & set(open_set) for cycle in cycles)
    assert radial > 50
