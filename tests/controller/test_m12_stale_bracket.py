"""A seller left one tick below a step of its curve by an old response tries the step once more
(moves.adjust).

Once a seller's bracket is one tick wide it posts the end that pays it more, judged on what it was asked at
each end. The upper end's figure can be from a round long gone, when its rivals were cheaper and the buyers
took them first: the seller then stood sold out at the lower end, buyers asking more than it offered, while
its curve supplied far more one tick up. On the bench's rule-free 20-MG day (seed 1, guard off) that was
07:30-07:45 (intervals 30-32): the genset MGs mg015 and mg019 a tick below their second segment, the
PV-and-battery MGs a tick below their battery's step, and the buyers 13.6 kWh (interval 30) short of their
demand, bought from the DSO at retail (M12). Interval 30's participants are below as they were handed to
`bargain` there (no owner rules).
"""

from __future__ import annotations

from peergrid_controller.bargaining import BargainingConfig, MemoryVenue, Participant, bargain
from peergrid_controller.curve import ResponseCurve
from peergrid_controller.model import ContractRules
from peergrid_controller.moves import SellerState, adjust, open_seller
from peergrid_controller.stability import check

FEED_IN, RETAIL = 0.05, 0.22


def _mg(name: str, prices: tuple[float, ...], quantities: tuple[float, ...], clean: bool) -> Participant:
    return Participant(name, ResponseCurve(prices, quantities, RETAIL), ContractRules(), clean)


# fmt: off
INTERVAL_30 = [
    _mg('mg001', (0.05, 0.126596, 0.145273, 0.150673), (-5.64775, -0.94775, -0.94225, 3.75225), True),
    _mg('mg002', (0.05, 0.126596, 0.145273, 0.150673), (-14.276, -1.851, -1.8455, 10.574), True),
    _mg('mg003', (0.05,), (-8.122,), True),
    _mg('mg004', (0.05,), (-15.00075,), True),
    _mg('mg005', (0.05, 0.126596, 0.145273, 0.150673), (-5.185, -1.035, -1.02875, 3.115), True),
    _mg('mg006', (0.05, 0.126596, 0.145273, 0.150673, 0.151673), (-32.8745, -9.1245, -9.11425, 13.69875, 14.6255), True),
    _mg('mg007', (0.05, 0.0501, 0.122888, 0.123301, 0.163301), (-18.3165, 1.21125, 1.2175, 6.0175, 17.2175), False),
    _mg('mg008', (0.05,), (-9.008,), True),
    _mg('mg009', (0.05, 0.126596, 0.145273, 0.150673), (-2.91075, 4.66425, 4.67025, 12.23925), True),
    _mg('mg010', (0.05, 0.126596, 0.145273, 0.150673, 0.151673), (-28.6165, -8.3915, -8.3885, 11.05175, 11.8335), True),
    _mg('mg011', (0.05,), (-11.493,), True),
    _mg('mg012', (0.05,), (-16.476,), True),
    _mg('mg013', (0.05, 0.126596, 0.145273, 0.150673), (-6.8425, -1.0175, -1.01, 4.8075), True),
    _mg('mg014', (0.05, 0.126596, 0.145273, 0.150673, 0.151673), (-17.92875, -5.15375, -5.1485, 6.43075, 7.62125), True),
    _mg('mg015', (0.05, 0.0501, 0.129401, 0.169401), (-7.36575, 3.4765, 6.29525, 12.85775), False),
    _mg('mg016', (0.05,), (-37.64075,), True),
    _mg('mg017', (0.05, 0.126596, 0.145273, 0.150673), (-8.83225, -1.58225, -1.57775, 5.66775), True),
    _mg('mg018', (0.05, 0.126596, 0.145273, 0.150673), (-19.686, -2.711, -2.7075, 14.264), True),
    _mg('mg019', (0.05, 0.128401, 0.168401), (-0.5575, 3.56775, 13.19275), False),
    _mg('mg020', (0.05,), (-31.43425,), True),
]
# fmt: on

# mg019 of interval 30: its genset's first segment up to 0.168401, the second from there
GENSET = _mg("mg019", (0.05, 0.128401, 0.168401), (-0.5575, 3.56775, 13.19275), False)


def test_interval_30_meets_the_buyers_demand_that_the_sellers_can_supply() -> None:
    cfg = BargainingConfig()
    demand = -sum(p.curve.at(RETAIL) for p in INTERVAL_30 if p.curve.at(RETAIL) < 0)  # 129.13 kWh
    outcome = bargain(
        INTERVAL_30, 30, FEED_IN, RETAIL, MemoryVenue({p.name: p.rules for p in INTERVAL_30}), cfg
    )
    traded = sum(t.quantity_kwh for t in outcome.trades)
    assert outcome.converged
    # before: 115.53 kWh, mg015 and mg019 content one tick below their second segment
    assert traded >= demand - 0.05
    sold = {p.name: 0.0 for p in INTERVAL_30}
    for t in outcome.trades:
        sold[t.seller] += t.quantity_kwh
    assert sold["mg019"] > 10.0 and sold["mg015"] > 10.0  # each on its second segment
    assert check(INTERVAL_30, outcome, cfg.price_tolerance * traded, cfg.price_band).stable


def _walk_down(cfg: BargainingConfig) -> SellerState:
    """mg019's responses in interval 30 up to its stop at 0.168."""
    state = open_seller(GENSET, FEED_IN, RETAIL, cfg, start=0.170)
    for offered, asked in ((13.19, 12.93), (13.19, 12.93), (13.19, 0.01), (3.57, 4.21), (3.57, 3.98)):
        adjust(state, GENSET, offered, asked, cfg)  # at 0.169 its rivals were at 0.164: asked 0.01
    assert round(state.price, 3) == 0.168 and state.unsold_at == 0.169
    return state


def test_a_seller_sold_out_a_tick_below_its_step_tries_the_step_again_once() -> None:
    cfg = BargainingConfig()
    state = _walk_down(cfg)
    # sold out at 0.168 again, asked more than it offers: what it was asked at 0.169 is three rounds old
    assert not adjust(state, GENSET, 3.57, 3.98, cfg)
    assert round(state.price, 3) == 0.169  # before: content at 0.168 for good


def test_the_step_tried_again_and_refused_afresh_is_not_tried_a_third_time() -> None:
    cfg = BargainingConfig()
    state = _walk_down(cfg)
    adjust(state, GENSET, 3.57, 3.98, cfg)  # tries 0.169 again
    assert not adjust(state, GENSET, 13.19, 2.0, cfg)  # unsold there now too: back down
    assert round(state.price, 3) == 0.168
    for _ in range(3):  # the fresh answer at 0.169 stands: it settles at 0.168, no cycle
        assert adjust(state, GENSET, 3.57, 3.98, cfg)
        assert round(state.price, 3) == 0.168


def test_a_seller_without_more_to_offer_one_tick_up_keeps_the_end_that_pays_it_more() -> None:
    cfg = BargainingConfig()
    flat = _mg("mg019", (0.05, 0.128401), (-0.5575, 3.56775), False)  # no second segment
    state = open_seller(flat, FEED_IN, RETAIL, cfg, start=0.169)
    adjust(state, flat, 3.57, 0.01, cfg)  # rivals cheaper: unsold at 0.169, down to 0.167
    adjust(state, flat, 3.57, 3.98, cfg)  # sold out: up to 0.168
    assert adjust(state, flat, 3.57, 3.98, cfg)  # bracket one tick wide: content at 0.168
    for _ in range(3):  # as before: one tick up it would sell no more energy
        assert adjust(state, flat, 3.57, 3.98, cfg)
        assert round(state.price, 3) == 0.168
