"""R36-4: the DSO node's `LockedExecutor` (the switching executor behind the relays' one lock) copies and pickles
without recursing, and still passes everything but `execute` on to the executor it wraps."""

from __future__ import annotations

import copy
import pickle
import threading
from typing import Any

from peergrid_dso.dso_node import LockedExecutor


class Executor:
    """A picklable stand-in for the switching executor (module level, so pickle finds it)."""

    recorder = "the executor's recorder"

    def execute(self, plan: Any) -> tuple[str, Any]:
        return ("executed", plan)


def test_a_copy_of_the_locked_executor_does_not_recurse_and_keeps_its_executor_and_lock() -> None:
    # copy looks `__setstate__` up on a new instance whose fields are not set yet: before the guard its
    # __getattr__ asked `self.inner` through itself, RecursionError
    inner, lock = Executor(), threading.Lock()
    copied = copy.copy(LockedExecutor(inner, lock))
    assert copied.inner is inner and copied.lock is lock
    assert copied.execute("p1") == ("executed", "p1")


def test_the_locked_executor_pickles_and_passes_the_rest_on() -> None:
    # a lock itself does not pickle: the wrapper's own shape does, without recursing (its lock here None)
    again = pickle.loads(pickle.dumps(LockedExecutor(Executor(), None)))
    assert isinstance(again.inner, Executor) and again.lock is None
    assert again.recorder == "the executor's recorder"  # anything not its own: the executor's


def test_an_instance_without_its_fields_says_attribute_error_not_recursion() -> None:
    # what copy and pickle meet half-way: any name, its own fields too, is simply missing
    bare = LockedExecutor.__new__(LockedExecutor)
    for name in ("inner", "lock", "recorder", "__setstate__"):
        assert not hasattr(bare, name)
