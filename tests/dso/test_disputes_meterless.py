"""review12 F4: an MG without a PCC meter (its edge's meter_poll_s 0, a supported configuration) is no longer
treated as one that withholds its readings. The DSO's config names it (`MgEntry.meterless`); in a dispute the
DSO takes its stated shortfall at its word where the contract's pair rule holds (the larger shortfall is
agreed - delivered), so a metered party its meter proves short pays the compensation. Real chain + settler."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from peergrid_dso.dispute_shares import Metered
from peergrid_dso.disputes import Unresolved, Vouched, _shorts, resolve
from peergrid_dso.loop_settings import MgEntry

from .test_disputes import CLOCK, END_MS, chain_time, market, ramp
from .test_disputes_withhold import RETAIL, settle

PRICE = 200


def test_a_metered_seller_proven_short_pays_a_meterless_buyer() -> None:
    """R12's case: the seller exported 480 of 500, the meterless buyer states (500, short 0) as the edge does on
    a confirmed dispatch. Before, the buyer was named the whole gap too and nobody paid; now the seller pays
    20 x (300 - 200)."""
    gain, decision, done = settle(
        480.0, 0.0, (480, 20), {"s"}, meterless=frozenset({"b"}), buyer_says=(500, 0)
    )
    assert decision["rule"] == "seller metered only" and done["delivered"] == 480
    assert (decision["seller_short"], decision["buyer_short"]) == (20, 0)
    assert done["compensation"] == {"payer": "seller", "amount": 20 * (RETAIL - PRICE), "seller_short": 20,
                                    "buyer_short": 0}  # fmt: skip
    assert gain == 480 * PRICE - 20 * (RETAIL - PRICE)
    # the same buyer, not named meterless, withholding: the whole gap, no compensation (the old rule)
    _, withheld, _ = settle(480.0, 0.0, (480, 20), {"s"}, buyer_says=(500, 0))
    assert (withheld["seller_short"], withheld["buyer_short"]) == (20, 20)


def test_a_meterless_seller_is_taken_at_its_word_against_a_metered_buyer() -> None:
    """Meterless seller states (450, short 50), the buyer imported 400: settled on the buyer's share 400, the
    buyer owns its 100, the seller its word 50: the buyer pays the excess 50 x (200 - 50)."""
    gain, decision, done = settle(0.0, 400.0, (450, 50), {"b"}, meterless=frozenset({"s"}))
    assert decision["rule"] == "buyer metered only" and done["delivered"] == 400
    assert (decision["seller_short"], decision["buyer_short"]) == (50, 100)
    assert done["compensation"]["payer"] == "buyer" and done["compensation"]["amount"] == 50 * (PRICE - 50)
    assert gain == 400 * PRICE + 50 * (PRICE - 50)


def test_a_meterless_word_that_breaks_the_pair_rule_is_the_whole_gap() -> None:
    """The seller's meter shows 480 but it states only 450: delivered 450, gap 50, of which the DSO proves the
    seller short 20; the meterless buyer's word (short 0) would leave 30 owned by nobody, so it is named the
    whole gap, as before, and pays the excess 30."""
    _, decision, done = settle(480.0, 0.0, (450, 50), {"s"}, meterless=frozenset({"b"}), buyer_says=(500, 0))
    assert decision["rule"] == "seller metered only" and done["delivered"] == 450
    assert (decision["seller_short"], decision["buyer_short"]) == (20, 50)
    assert done["compensation"]["payer"] == "buyer"


def test_two_meterless_sides_settle_on_the_lower_statement_and_their_words() -> None:
    _, decision, done = settle(
        0.0, 0.0, (450, 50), set(), meterless=frozenset({"s", "b"}), buyer_says=(400, 100)
    )
    assert decision["rule"] == "neither metered" and done["delivered"] == 400
    assert (decision["seller_short"], decision["buyer_short"]) == (50, 100)


def test_the_dsos_config_says_which_mgs_have_no_pcc_meter() -> None:
    entry = {"node": "aa" * 32, "anonym": "bb" * 32, "bus": 3}
    assert MgEntry.model_validate(entry).meterless is False
    assert MgEntry.model_validate({**entry, "meterless": True}).meterless is True
    with pytest.raises(ValidationError, match="meterless"):
        MgEntry.model_validate({**entry, "meterless": "perhaps"})


def _metered(share: int) -> Metered:
    return Metered(b"n", share, 500, share)  # type: ignore[arg-type]


@given(
    quantity=st.integers(1, 1000),
    data=st.data(),
)
def test_the_named_shortfalls_always_meet_the_contracts_pair_rule(quantity: int, data: st.DataObject) -> None:
    """Whatever the metering and the meterless sides' words, the larger shortfall named is exactly the gap,
    none above it; a meterless side's word is used exactly when that rule holds with it."""
    shares = {
        s: data.draw(st.integers(0, quantity + 100)) for s in ("seller", "buyer") if data.draw(st.booleans())
    }
    sides = {s: _metered(share) for s, share in shares.items()}
    # as `resolve` finds it: both metered, the smaller share; else at most the metered side's share
    most = min([quantity, *shares.values()])
    delivered = most if len(shares) == 2 else data.draw(st.integers(0, most))
    own = {s: data.draw(st.integers(0, quantity + 100)) for s in ("seller", "buyer") if s not in sides}
    shorts = _shorts(quantity, delivered, sides, True, own)
    assert shorts is not None
    gap = quantity - delivered
    assert max(shorts) == gap and min(shorts) >= 0
    without = _shorts(quantity, delivered, sides, True)
    assert without is not None
    words = {"seller": shorts[0], "buyer": shorts[1]}
    if own and any(words[s] != gap for s in own):
        assert all(words[s] == min(w, gap) for s, w in own.items())
    assert _shorts(quantity, delivered, sides, False, own) is None


def test_a_dispute_with_a_meterless_side_does_not_wait_for_readings_that_never_come() -> None:
    """Before the deadline: with the metered side's readings at the DSO it settles at once; the same buyer not
    named meterless is waited for (its readings may still come)."""
    readings = {"s": ramp(480.0, export=True)}
    m = market({("s", "b"): 500}, {}, readings=readings, wait_ms=120_000, cover=(RETAIL, 50))
    tid = m.trade_id("s", "b")
    m.do(m.anonyms["b"], "settle", {"trade": tid, "delivered": 500, "short": 0}, max(m.now, END_MS))
    m.do(m.anonyms["s"], "settle", {"trade": tid, "delivered": 480, "short": 20})
    args = (m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m))
    waits = resolve(*args)
    assert isinstance(waits, Unresolved) and waits.until_ms is not None and "buyer's metering" in waits.why
    now = resolve(*args, {m.anonyms["b"].public})
    assert isinstance(now, Vouched) and (now.delivered, now.rule, now.shorts) == (
        480,
        "seller metered only",
        (20, 0),
    )
    # the metered seller's readings not at the DSO yet: still waited for
    held = {k: v for k, v in m.sealed.items() if k[0] != m.nodes["s"].public}
    later = resolve(m.chain.state, tid, CLOCK, m.node_of(), held, chain_time(m), {m.anonyms["b"].public})
    assert isinstance(later, Unresolved) and "seller's metering" in later.why
