"""Choose a feeder from command-line style options: a named case or a MATPOWER file plus a ties file."""

from __future__ import annotations

from pathlib import Path

from peergrid_dso.feeder.cases import case33bw, load_ties
from peergrid_dso.feeder.matpower import load_matpower
from peergrid_dso.feeder.model import Feeder, FeederDataError

NAMED_CASES = ("case33bw",)


def load_feeder(
    case: str | None = None, matpower: str | Path | None = None, ties: str | Path | None = None
) -> Feeder:
    if (case is None) == (matpower is None):
        raise FeederDataError("give exactly one of a named case or a MATPOWER file")
    if case is not None:
        if case not in NAMED_CASES:
            raise FeederDataError(f"unknown case {case!r} (known: {', '.join(NAMED_CASES)})")
        feeder = case33bw()
    else:
        feeder = load_matpower(matpower)  # type: ignore[arg-type]
    return load_ties(feeder, ties) if ties is not None else feeder
