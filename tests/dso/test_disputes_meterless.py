"""review12 F4: an MG without a PCC meter (its edge's meter_poll_s 0, a supported configuration) is no longer
treated as one that withholds its readings. The DSO's config names it (`MgEntry.meterless`)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from peergrid_dso.loop_settings import MgEntry


def test_the_dsos_config_says_which_mgs_have_no_pcc_meter() -> None:
    entry = {"node": "aa" * 32, "anonym": "bb" * 32, "bus": 3}
    assert MgEntry.model_validate(entry).meterless is False
    assert MgEntry.model_validate({**entry, "meterless": True}).meterless is True
    with pytest.raises(ValidationError, match="meterless"):
        MgEntry.model_validate({**entry, "meterless": "perhaps"})
