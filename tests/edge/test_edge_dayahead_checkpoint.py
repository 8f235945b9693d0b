"""The day-ahead checkpoint file (`dayahead_state`): what it writes it reads back; anything else is an error
that names the file, or None for another session's (never a guessed anchor)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid_edge.dayahead_state import Checkpoint, CheckpointError, load, save

wh = st.integers(-(10**12), 10**12)


@st.composite
def checkpoints(draw: st.DrawFn) -> Checkpoint:
    n = draw(st.integers(1, 6))
    members = draw(st.integers(2, 4))
    iteration = draw(st.integers(0, 10**6))
    row = st.tuples(*[wh] * n)
    commitment = draw(st.none() | st.tuples(*[st.tuples(*[st.booleans()] * n)] * draw(st.integers(0, 2))))
    return Checkpoint(
        session=draw(st.text(min_size=1, max_size=20)),
        iteration=iteration,
        own=draw(st.tuples(*[st.floats(-1e9, 1e9, allow_nan=False)] * n)),
        posted=draw(row),
        settled=draw(st.booleans()),
        relaxed=draw(st.booleans()),
        final_from=draw(st.integers(1, 10**6 + 1)),
        commitment=commitment,
        prices=draw(st.tuples(*[st.integers(-(10**13), 10**13)] * n)),
        rho=draw(st.integers(1, 10**13)),
        before=tuple(draw(row) for _ in range(members)) if iteration > 0 else (),
        drift_from=draw(st.none() | st.floats(0, 1e6, allow_nan=False)),
    )


@settings(max_examples=60, deadline=None)
@given(checkpoints())
def test_what_it_saves_it_loads(tmp_path_factory: pytest.TempPathFactory, checkpoint: Checkpoint) -> None:
    path = tmp_path_factory.mktemp("cp") / "dayahead.json"
    save(path, checkpoint)
    assert load(path, checkpoint.session) == checkpoint
    assert load(path, checkpoint.session + "-other") is None  # another session's: not this one's
    # no temporary left (write_whole's are new names)
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def sample() -> Checkpoint:
    return Checkpoint("s", 2, (1.5, -0.25), (1500, -250), True, False, 1, ((True, False),), (10, 20), 5,
                      ((1, 2), (3, 4)))  # fmt: skip


def test_no_file_is_no_checkpoint(tmp_path: Path) -> None:
    assert load(tmp_path / "none.json", "s") is None


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda d: "{not json", "not a checkpoint"),
        (lambda d: json.dumps([1, 2]), "no session"),
        (lambda d: json.dumps({**d, "own": [1.0]}), "1 answers"),
        (lambda d: json.dumps({**d, "posted": [1.5, 2]}), "is not an integer"),
        (lambda d: json.dumps({**d, "own": ["x", 1.0]}), "is not a finite number"),
        (lambda d: json.dumps({**d, "settled": 1}), "is not true or false"),
        (lambda d: json.dumps({**d, "before": []}), "rows before"),
        (lambda d: json.dumps({**d, "rho": 0}), "rho 0"),
        (lambda d: json.dumps({k: v for k, v in d.items() if k != "commitment"}), "'commitment'"),
        (lambda d: json.dumps({**d, "before": [[1, 2], [3]]}), "rows [2, 1]"),
        (lambda d: json.dumps({**d, "drift_from": -0.5}), "drift_from -0.5 below 0"),
        (lambda d: json.dumps({**d, "drift_from": "1"}), "is not a finite number"),
    ],
)
def test_a_damaged_checkpoint_is_an_error_naming_the_file(tmp_path: Path, change, says: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "dayahead.json"
    save(path, sample())
    path.write_text(change(json.loads(path.read_text())))
    with pytest.raises(CheckpointError) as raised:
        load(path, "s")
    assert str(path) in str(raised.value) and says in str(raised.value)


def test_a_half_written_replacement_leaves_the_old_checkpoint_whole(tmp_path: Path) -> None:
    # save writes a temporary file and renames it: a crash before the rename leaves the old file as it was
    path = tmp_path / "dayahead.json"
    save(path, sample())
    crash = path.with_name(f".{path.name}.x1y2z3.tmp")  # the crash, under write_whole's name
    crash.write_text('{"session": "s", "iter')
    assert load(path, "s") == sample()
