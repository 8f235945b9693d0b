"""K3's residual (D1's note, review13/D2) on one `sealed_statements` + `seller_vouched` chain with the DSO node:
an honest seller must never net more by keeping its reveal back than by revealing what its meter shows.
Keeping it back, its hold is metered as a dispute in which it said nothing (review15 M4): both meters, each
side's own metered gap its shortfall. Revealing, it agrees with a buyer that states the same delivery and the
DSO vouches: before D2 from the seller's meter and the buyer's word, so a buyer understating its own shortfall
(both meters 300 of 400, the buyer "300, short 0") had the honest seller compensate it: 50,000 revealing
against 60,000 withholding. Now the DSO meters the buyer on a vouch too (dso-server `disputes._buyer_short`:
the larger of its word and its metered gap), and a buyer whose readings never come is named the whole gap
from `takeup.VOUCH_RULE` of the window, as a dispute names a side it could have metered, so withholding its
readings never nets the buyer more. Price 200, retail 300, feed-in 50; the trade 400 Wh. A model of the same
rules over a 25-Wh grid of meters and statements: /work/notes/D2_k3_model.py (D2's notes).
Fixtures: tests/dso (the DSO's chain market and settler), test_settle_vouched_review15 (the run).
"""

from __future__ import annotations

import itertools

import pytest
from dso.test_disputes import PRICE
from test_settle_vouched_review15 import QUANTITY, RETAIL, settled_by_the_dso

Run = tuple[str, list[dict[str, int]], dict[str, object], int, int]  # settled_by_the_dso's


def revealed_and_kept(
    seller_wh: int, buyer_wh: int, buyer_says: tuple[int, int], silent: tuple[str, ...] = ()
) -> tuple[Run, Run]:
    """The same interval twice, the seller revealing "seller_wh, short the rest" (its meter's word) or keeping
    its reveal back; the buyer states `buyer_says` (delivered, short) both times."""
    honest = (seller_wh, QUANTITY - seller_wh)
    revealed, kept = (
        settled_by_the_dso(
            buyer_says[0],
            up,
            float(seller_wh),
            float(buyer_wh),
            buyer_short=buyer_says[1],
            seller_says=honest,
            silent=silent,
        )
        for up in (True, False)
    )
    return revealed, kept


def test_k3_residual_a_buyer_understating_its_shortfall_is_named_what_its_meter_shows() -> None:
    """Both meters 300 of 400, the buyer says "300, short 0": revealing, the parties agree and the DSO names
    the buyer its metered 100 beside the seller's 100 (no compensation): 60,000, as keeping the reveal back
    nets. Before D2 the vouch took the buyer's 0 and the seller paid 10,000: 50,000."""
    revealed, kept = revealed_and_kept(300, 300, (300, 0))
    assert revealed[0] == "vouching" and kept[0] == "vouching"
    assert revealed[1] == [{"delivered": 300, "seller_short": 100, "buyer_short": 100}]
    assert revealed[3] == kept[3] == 300 * PRICE


def test_k3_residual_an_honest_buyer_is_named_its_own_word_as_before() -> None:
    """The buyer says "300, short 100", what its meter shows: the same settle as before D2, both ways."""
    revealed, kept = revealed_and_kept(300, 300, (300, 100))
    assert revealed[1] == kept[1] == [{"delivered": 300, "seller_short": 100, "buyer_short": 100}]
    assert revealed[3] == kept[3] == 300 * PRICE


def test_a_buyers_word_admitting_more_than_its_meter_shows_stands() -> None:
    """The seller's meter 300, the buyer's 400 (grid cover: it took all it could), the buyer says "300, short
    100": its own word against its interest is kept (the larger of word and meter), so the agreement's gap
    stays the buyer's and the seller is not made to compensate it."""
    revealed, kept = revealed_and_kept(300, 400, (300, 100))
    assert revealed[1] == [{"delivered": 300, "seller_short": 100, "buyer_short": 100}]
    assert revealed[3] == 300 * PRICE >= kept[3]


@pytest.mark.parametrize(
    ("seller_wh", "buyer_wh"), list(itertools.product((0, 200, 400), (0, 200, 400))), ids=lambda v: str(v)
)
def test_an_honest_seller_never_nets_more_by_keeping_its_reveal_back(seller_wh: int, buyer_wh: int) -> None:
    """Whatever the two meters show and whichever shortfall the buyer states beside the seller's delivery (so
    that they agree and the DSO vouches), on the real chain and DSO node: revealing >= keeping it back."""
    for short in sorted({0, QUANTITY - seller_wh, (QUANTITY - seller_wh) // 2}):
        revealed, kept = revealed_and_kept(seller_wh, buyer_wh, (seller_wh, short))
        assert revealed[0] == "vouching", (seller_wh, buyer_wh, short)
        assert revealed[3] >= kept[3], (seller_wh, buyer_wh, short, revealed, kept)


def test_a_buyer_that_withholds_its_readings_on_a_vouch_owns_the_whole_gap() -> None:
    """The seller delivered 300 of 400, the buyer took all (its meter 400) and says "300, short 0". Posting its
    readings it is compensated for the seller's 100 (10,000); withholding them, the DSO waits until VOUCH_RULE
    of the window and names it the whole gap: no compensation. So it never nets more by withholding, and the
    seller's reveal still nets at least what keeping it back does, the buyer silent both times."""
    posted, _ = revealed_and_kept(300, 400, (300, 0))
    silent, kept = revealed_and_kept(300, 400, (300, 0), silent=("b",))
    assert posted[1] == [{"delivered": 300, "seller_short": 100, "buyer_short": 0}]
    assert posted[4] == -300 * PRICE + 100 * (RETAIL - PRICE)
    assert silent[0] == "vouching" and silent[2]["basis"] == "dso"
    assert silent[1] == [{"delivered": 300, "seller_short": 100, "buyer_short": 100}]
    assert silent[4] == -300 * PRICE < posted[4]
    assert silent[3] >= kept[3]
