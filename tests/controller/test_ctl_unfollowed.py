"""The one check of a step's prices against our own, used by the coordinator's recorder and every member."""

from __future__ import annotations

from peergrid_controller.dayexchange import unfollowed


def test_prices_followed_to_the_nano_give_no_reason() -> None:
    assert unfollowed((5, -3), (5, -3), 4, "this MGMC computes") is None


def test_the_first_interval_that_differs_is_named_with_both_prices() -> None:
    why = unfollowed((5, -2, 7), (5, -3, 8), 4, "the coordinator's is")
    assert why == (
        "the chain's price for interval 1 after iteration 4 is -2 nano/kWh where the coordinator's is -3: "
        "not followed"
    )


def test_a_step_with_another_number_of_prices_is_refused() -> None:
    why = unfollowed((5,), (5, 6), 2, "this MGMC computes")
    assert why == "the chain gave 1 prices after iteration 2 for 2 intervals"
