"""What the DSO node knows is final of its start's postings, for `/api/health`'s loop section (`readiness`).

Promises: `readiness(node)` reads, on the node's live ledger state, the MGs of its config `enrolled` on the DSO
chain, whether it prices the cover (`pricing`) and `tariffs_through` (the last interval through which every
MG's cover prices are final on the MGMC chain, from the loop's first), and, only where the node posts
connection capacities (an MG of its config names `capacity_kw` and the MGMC chain has the uplift contract:
`capacity_poster.CapacityPoster`), `capacities`: per such MG the first interval from which its configured figure
stands for good on the MGMC chain (`standing_from`), null while it does not. A capacity posted after the MG's
first position stands only from the interval after it (`market.capacity`), so a figure later than the loop's
first interval says that MG's earlier positions have no bound but its own rules: the lab fails its start on
it (`peergrid_sim.dso_ready`). Where the node follows an MGMC chain with the exchange and uplift contracts,
`exchange_fee`: the fee standing there for the day-ahead sessions opened now (`fee_poster.standing_fee`:
`fee` nano-currency per kWh per side, `fund_cap` micro-units, `coordinators` as MG names of its config (a key
it does not know: its hex), `posted` true for the DSO's `market.fee`, false for the genesis'), and
`as_configured`: whether that is its `loop.exchange_fee` (null without one). Reads only; call on the node's
event loop (the only one that mutates the state). Cost per call: one state read per enrolled MG, the scan of
`tariffs_through` from its last answer, one read of the capacity key per MG with a capacity (its entries
decoded once per distinct bytes: `market_state.capacities` memoises them), and one of the fee's key.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from peergrid_ledger import query


def tariffs_through(
    state: Any, accounts: Iterable[bytes], first: int, end: int | None, known: int | None = None
) -> int | None:
    """The last interval t before `end` (None: the loop has none; what is priced, a day ahead at most, bounds
    the scan) such that every account in `accounts` is priced (`market.tariff`, final on `state`) for each
    interval from `first` to t; None when `first` is not. `known`: an earlier answer over the same chain, from
    which the scan goes on (a price once final is never taken back)."""
    from peergrid_ledger.contracts.market_state import tariff

    wanted = list(accounts)
    t = first if known is None else max(first, known + 1)
    while (end is None or t < end) and all(tariff(state, account, t) is not None for account in wanted):
        t += 1
    return t - 1 if t > first else None


def standing_from(entries: tuple[tuple[int, int], ...], wh: int) -> int | None:
    """The first interval from which `wh` stands for good in an account's `market.capacity` entries
    ((from_interval, wh), oldest first): where the run of latest entries of that figure begins; None when
    none is posted or the latest is another figure."""
    start = None
    for effective, figure in reversed(entries):
        if figure != wh:
            break
        start = effective
    return start


def capacities_standing(state: Any, poster: Any) -> dict[str, int | None]:
    """Per MG `poster` (`capacity_poster.CapacityPoster`) posts a capacity for, where its configured figure stands
    for good on `state` (`standing_from`), or None."""
    from peergrid_ledger.contracts.market_state import capacities

    return {
        mg: standing_from(capacities(state, poster.accounts[mg]), wh)
        for mg, wh in sorted(poster.capacities.items())
    }


def readiness(node: Any, known: int | None = None) -> dict[str, Any]:
    """What the node (`dso_node.DsoNode`) knows of its start's postings, final on its replicas (module): the MGs
    of its config `enrolled` on the DSO chain (an account for the anonym, its MGMC not revoked: what
    `DsoLoop.enrol` makes and waits for), whether it prices the cover (`pricing`: a tariff file and an MGMC
    chain that settles by both) and `tariffs_through` (over every configured MG, from the loop's first
    interval; None while that one is not priced for all, or when it prices nothing); `capacities` only where
    it posts any. `known`: the last `tariffs_through` it gave."""
    from peergrid_ledger.core import is_revoked

    state = node.replica.app.state
    enrolled = [
        mg
        for mg, entry in sorted(node.settings.mgs.items())
        if query.account(state, bytes.fromhex(entry.anonym)) is not None
        and not is_revoked(state, bytes.fromhex(entry.node))
    ]
    pricer = node.loop.pricer
    pricing = pricer is not None and pricer.settles_by_both()
    through = (
        tariffs_through(pricer.state, pricer.accounts.values(), pricer.first, pricer.end, known)
        if pricing
        else None
    )
    found: dict[str, Any] = {"enrolled": enrolled, "pricing": pricing, "tariffs_through": through}
    poster = getattr(node.loop, "capacity", None)  # `DsoLoop.capacity`: None where no MG names one
    if poster is not None and poster.applies():
        found["capacities"] = capacities_standing(poster.state, poster)
    fee = fee_standing(node)
    if fee is not None:
        found["exchange_fee"] = fee
    return found


def fee_standing(node: Any) -> dict[str, Any] | None:
    """`readiness`'s `exchange_fee` (module), or None where the node follows no MGMC chain that takes one."""
    from peergrid_dso.fee_poster import NEEDED_CONTRACTS, standing_fee

    mgmc = getattr(node.loop, "mgmc", None)  # `DsoLoop.mgmc`: None without `loop.mgmc_chain`
    if mgmc is None:
        return None
    app = mgmc.node.replicas[mgmc.chain].app
    if not set(NEEDED_CONTRACTS) <= set(app.genesis.contracts):
        return None
    standing = standing_fee(app)
    names = {bytes.fromhex(e.anonym): mg for mg, e in node.settings.mgs.items()}
    poster = getattr(node.loop, "fee", None)  # `DsoLoop.fee`: None without `loop.exchange_fee`
    return {
        "fee": standing.fee,
        "fund_cap": standing.fund_cap,
        "coordinators": [names.get(key, key.hex()) for key in standing.coordinators],
        "posted": standing.posted,
        "as_configured": None if poster is None else standing.same(poster.body),
    }
