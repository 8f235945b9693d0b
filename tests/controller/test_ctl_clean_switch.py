"""A clean seller's switch decision in `allocate` (dayahead._switch) takes the decision's model as the edge does."""

from __future__ import annotations

from test_ctl_clean_book import CLEAN, DT, day

from peergrid_controller.cleanbook import CleanDayModel, clean_kind
from peergrid_controller.dayahead import _switch, model_for, starting_prices
from peergrid_controller.daymodel import DayModel
from peergrid_controller.dayrounds import Exchange


def test_a_switch_decided_as_it_stands_still_takes_the_decisions_fresh_model() -> None:
    # the edge's member (dayahead_rounds.switch) and a restarted one always answer from the decision's model;
    # `_switch` kept its warm model where the switch stood, and a warm and a cold model of one LP can answer
    # different vertices at a tie (a five-MG clean day closed one iteration apart from the edge's)
    scenario = day()
    mgs = scenario.microgrids
    ex = Exchange(scenario, CLEAN, starting_prices(scenario), clean=True)
    models: list[DayModel] = [model_for(mg, DT, True, "fixed", relaxed=bool(mg.gensets)) for mg in mgs]
    ex.first_responses(models)
    seller = next(i for i, mg in enumerate(mgs) if clean_kind(mg) == "seller")
    switched: dict[int, tuple[bool, ...]] = {}
    assert _switch(ex, CLEAN, models, switched, seller, mgs[seller])  # the first decision sets it
    first, decided = models[seller], switched[seller]
    assert isinstance(first, CleanDayModel)
    # the same prices and anchor: the same switch, reported unchanged, but the model is the new decision's
    assert not _switch(ex, CLEAN, models, switched, seller, mgs[seller])
    assert switched[seller] == decided
    assert models[seller] is not first and isinstance(models[seller], CleanDayModel)
