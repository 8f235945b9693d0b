"""Security loop: violations found by AC power flow, least adjustment, contracts only addressees can open."""

from __future__ import annotations

import json

import pytest

from peergrid_dso.feeder.cases import case33bw
from peergrid_dso.services.dso_chain import ChainRecorder
from peergrid_dso.services.security import (
    MgRange,
    SecurityInfeasible,
    SecurityLoop,
    check_security,
    minimal_adjustment,
)
from peergrid_ledger import query
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.genesis import Account, Genesis, Params
from peergrid_ledger.keys import Keypair

BASE = (33, 34, 35, 36, 37)
MGS = {"mg1": 18, "mg2": 33, "mg3": 25}
VIOLATING = {"mg1": (3.0, 0.0), "mg2": (1.5, 0.0), "mg3": (-0.5, 0.0)}


@pytest.fixture(scope="module")
def feeder():
    return case33bw(MGS)


def test_violations_are_found_and_named(feeder) -> None:
    check = check_security(feeder, BASE, VIOLATING)
    assert not check.secure
    assert check.violations[0].kind == "voltage_high" and check.violations[0].element == "bus 18"
    assert check_security(feeder, BASE, {mg: (0.0, 0.0) for mg in MGS}).secure


def test_minimal_adjustment_moves_only_what_it_must(feeder) -> None:
    ranges = {mg: MgRange(-2.0, 4.0) for mg in MGS}
    adjusted = minimal_adjustment(feeder, BASE, VIOLATING, ranges)
    assert check_security(feeder, BASE, adjusted).secure
    assert adjusted["mg1"][0] < 3.0  # the MG at the end of the overvolted lateral gives way
    assert adjusted["mg3"] == VIOLATING["mg3"]


def test_unmeetable_limits_are_named(feeder) -> None:
    ranges = {mg: MgRange(2.9, 4.0) for mg in MGS}  # mg1 cannot go below 2.9 MW
    with pytest.raises(SecurityInfeasible, match=r"bus 18 voltage <= 1.05"):
        minimal_adjustment(feeder, BASE, VIOLATING, ranges)


def _chain_with_mgs():
    authority, dso = Keypair.generate(), Keypair.generate()
    mg_keys = {mg: Keypair.generate() for mg in MGS}
    genesis = Genesis(
        chain="dso-sec", time=0, authorities=(authority.public,),
        accounts=(Account(dso.public, ("dso",), "dso"), *(Account(k.public, ("anonym",)) for k in mg_keys.values())),
        params=Params(),
    )  # fmt: skip
    return LocalChain(genesis, sealer=authority), dso, mg_keys


def accept_limits(contracts, current):
    """Re-bargaining stand-in: each MG settles exactly at its new limit."""
    out = dict(current)
    for c in contracts:
        p, q = out[c.mg]
        if c.max_injection_mw is not None:
            p = min(p, c.max_injection_mw)
        if c.min_injection_mw is not None:
            p = max(p, c.min_injection_mw)
        out[c.mg] = (p, q)
    return out


def test_loop_ends_secure_with_contracts_only_addressees_can_open(feeder) -> None:
    chain, dso, mg_keys = _chain_with_mgs()
    loop = SecurityLoop(
        feeder, BASE, {mg: MgRange(-2.0, 4.0) for mg in MGS}, {mg: k.public for mg, k in mg_keys.items()},
        ChainRecorder(chain, dso), accept_limits, wholesale_price=40.0,
    )  # fmt: skip
    result = loop.run(interval=5, injections=VIOLATING)
    assert result.secure and result.unmet is None
    assert [c.mg for c in result.contracts] == ["mg1"]
    stored = query.adjustment_contracts(chain.view, mg_keys["mg1"].public, 5)
    assert len(stored) == 1
    body = json.loads(mg_keys["mg1"].unseal(stored[0]["ciphertext"]))
    assert body["max_injection_w"] < 3_000_000 and body["interval"] == 5
    with pytest.raises(ValueError, match="does not open"):
        mg_keys["mg2"].unseal(stored[0]["ciphertext"])
    assert result.imbalance_mw == pytest.approx(sum(p for p, _ in result.injections.values()))
    assert result.imbalance_cost == pytest.approx(result.imbalance_mw * 0.25 * 40.0)


def test_loop_reports_the_constraint_it_could_not_meet(feeder) -> None:
    chain, dso, mg_keys = _chain_with_mgs()
    stubborn = lambda contracts, current: current  # noqa: E731 - MGs that ignore their contracts
    loop = SecurityLoop(
        feeder, BASE, {mg: MgRange(-2.0, 4.0) for mg in MGS}, {mg: k.public for mg, k in mg_keys.items()},
        ChainRecorder(chain, dso), stubborn, max_iterations=2,
    )  # fmt: skip
    result = loop.run(interval=6, injections=VIOLATING)
    assert (
        not result.secure
        and "bus 18" in (result.unmet or "")
        and "after 2 iterations" in (result.unmet or "")
    )


def test_power_flow_breakdown_is_not_reported_as_infeasible(feeder) -> None:
    from peergrid_dso.services.security import OpfNumericalFailure

    collapse = {
        "mg1": (-60.0, 0.0),
        "mg2": (0.0, 0.0),
        "mg3": (0.0, 0.0),
    }  # far past the nose of the PV curve
    with pytest.raises(OpfNumericalFailure, match="did not converge"):
        minimal_adjustment(feeder, BASE, collapse, {mg: MgRange(-60.0, 4.0) for mg in MGS})
