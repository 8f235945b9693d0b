"""Independent AC check of a switch state with pandapower (Newton-Raphson), as the last word on an answer.

Promises: `validate_ac` builds a pandapower network from the `Feeder` (never mutating library globals),
runs `runpp`, and returns losses, voltages and loadings; a non-converged power flow is a result with
`converged=False`. `cross_check` raises `ValidationMismatch` when our own power flow and pandapower disagree
beyond tolerance, which would mean a modelling bug rather than a network problem.
pandapower is imported lazily: importing this module is cheap.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np

from peergrid_dso.feeder.model import Feeder
from peergrid_dso.services.powerflow import closed_mask, net_injection_mw


class ValidationMismatch(RuntimeError):
    """Our power flow and pandapower disagree: a bug in one of the models, not a property of the network."""


@dataclass(frozen=True)
class AcCheck:
    converged: bool
    losses_kw: float
    vmin_pu: float
    vmax_pu: float
    max_loading: float


def to_pandapower(
    feeder: Feeder,
    open_branches: Collection[int],
    p_inj_mw: np.ndarray | None = None,
    q_inj_mvar: np.ndarray | None = None,
) -> Any:  # a pandapower net (pandapower is untyped)
    import pandapower as pp

    if p_inj_mw is None or q_inj_mvar is None:
        p_inj_mw, q_inj_mvar = net_injection_mw(feeder)
    closed = closed_mask(feeder, open_branches)
    net = pp.create_empty_network(name=feeder.name, sn_mva=feeder.base_mva)
    buses = [pp.create_bus(net, vn_kv=feeder.base_kv, name=str(b)) for b in feeder.bus_ids]
    pp.create_ext_grid(net, buses[feeder.root], vm_pu=feeder.root_vm_pu)
    for i in range(feeder.n_bus):
        if i != feeder.root and (p_inj_mw[i] != 0 or q_inj_mvar[i] != 0):
            pp.create_load(net, buses[i], p_mw=-float(p_inj_mw[i]), q_mvar=-float(q_inj_mvar[i]))
    zbase = feeder.base_kv**2 / feeder.base_mva
    for k, b in enumerate(feeder.branches):
        max_i = b.rating_mva / (math.sqrt(3) * feeder.base_kv) if math.isfinite(b.rating_mva) else 99999.0
        pp.create_line_from_parameters(
            net, buses[b.from_bus], buses[b.to_bus], length_km=1.0,
            r_ohm_per_km=b.r_pu * zbase, x_ohm_per_km=b.x_pu * zbase, c_nf_per_km=0.0, max_i_ka=max_i,
            in_service=bool(closed[k]), name=str(b.number),
        )  # fmt: skip
    return net


def validate_ac(
    feeder: Feeder,
    open_branches: Collection[int],
    p_inj_mw: np.ndarray | None = None,
    q_inj_mvar: np.ndarray | None = None,
) -> AcCheck:
    import pandapower as pp

    net = to_pandapower(feeder, open_branches, p_inj_mw, q_inj_mvar)
    try:
        pp.runpp(net, numba=False)
    except pp.LoadflowNotConverged:
        return AcCheck(False, math.nan, math.nan, math.nan, math.nan)
    vm = net.res_bus.vm_pu.to_numpy()
    vm = vm[np.isfinite(vm)]
    loading = net.res_line.loading_percent.to_numpy()
    return AcCheck(
        converged=True,
        losses_kw=float(net.res_line.pl_mw.sum() * 1e3),
        vmin_pu=float(vm.min()),
        vmax_pu=float(vm.max()),
        max_loading=float(np.nanmax(loading) / 100.0),
    )


def cross_check(ours_losses_kw: float, ours_vmin_pu: float, check: AcCheck) -> None:
    if not check.converged:
        raise ValidationMismatch("pandapower did not converge on a switch state our power flow solved")
    if (
        abs(check.losses_kw - ours_losses_kw) > 1e-3 * max(1.0, ours_losses_kw)
        or abs(check.vmin_pu - ours_vmin_pu) > 1e-4
    ):
        raise ValidationMismatch(
            f"AC validation disagrees: ours {ours_losses_kw:.3f} kW / {ours_vmin_pu:.5f} pu, "
            f"pandapower {check.losses_kw:.3f} kW / {check.vmin_pu:.5f} pu"
        )
