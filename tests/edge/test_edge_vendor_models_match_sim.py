"""The edge's copies of our SunSpec vendor models (`peergrid_edge/maps/models`, which `sunspec.model_def` reads)
are the very files firmware-sim emulates (`peergrid_sim/maps/models`), byte for byte.

Why: the edge ships without firmware-sim (the Pi installs ledger, edge and controller only), so each keeps its
own copy; a change to one (21dab42: model 64204's text, the meter signs at each read of the block) must reach
the other, or the edge decodes a layout, or documents a behaviour, that the devices it reads do not have.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable

import pytest

SIM = resources.files("peergrid_sim").joinpath("maps/models")
EDGE = resources.files("peergrid_edge").joinpath("maps/models")


def _names(folder: Traversable) -> set[str]:
    return {p.name for p in folder.iterdir() if p.name.endswith(".json")}


def test_the_edge_and_the_emulator_ship_the_same_vendor_models() -> None:
    assert _names(EDGE) == _names(SIM) and {"model_64204.json"} <= _names(EDGE)


@pytest.mark.parametrize("name", sorted(_names(SIM)))
def test_each_vendor_model_is_the_same_file_in_both(name: str) -> None:
    assert EDGE.joinpath(name).read_bytes() == SIM.joinpath(name).read_bytes(), name
