"""D9: the closed loop's keys beside the enrolment queue are judged once, by `serve`, before the web server starts.

`enrolment_file.check_loop_keys` (the old keys of an MG that enrolled again: a fault; another authorised
enrolment of a loop MG: a warning) runs in `serve` before the web server starts (`check_at_start`, with the DSO
chain's word from its store), which stops on a fault in one line, exit 2 (test_d6_serve_chain_revoked), and
prints each warning. Before, the console's start inside the web server's start (`console.state.build_console`)
judged them again: each warning said twice, and the fault found a second time.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from peergrid_dso.console.settings import ConsoleSettings
from peergrid_dso.console.state import build_console
from peergrid_dso.services.container import build_dso_services
from peergrid_dso.services.enrolment import Enrolment
from peergrid_dso.services.enrolment_file import EnrolmentFile, check_at_start
from peergrid_ledger.keys import Keypair
from peergrid_ledger.settings import ConfigError


class StandInLoop:
    """The embedded node as `build_console` uses it: its settings' MGs and the DSO chain's word on the queue."""

    def __init__(self, mgs: dict[str, Any], revoked: set[bytes], enrolled: set[bytes]) -> None:
        self.node_settings = SimpleNamespace(mgs=mgs)
        self.lock, self.running = threading.RLock(), False
        self.listeners: list[Any] = []
        self.word = (revoked, enrolled)

    def replica(self, name: str) -> None:
        return None

    def chain_word(self, queue: list[tuple[bytes, bytes]]) -> tuple[set[bytes], set[bytes]]:
        return self.word


def entry(node: Keypair, anonym: Keypair) -> SimpleNamespace:
    return SimpleNamespace(node=node.public.hex(), anonym=anonym.public.hex())


def console_on(data: Path, loop: StandInLoop) -> None:
    settings = ConsoleSettings.model_validate(
        {"users_file": str(data / "console-users.json"), "lab_market": False, "lab_drift": False}
    )
    build_console(settings, build_dso_services({"mg-school": 18}), loop).stop_node_records()


def test_the_console_start_does_not_say_the_loop_keys_warning_serve_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mine, mine_anonym, other, other_anonym = (Keypair.generate() for _ in range(4))
    data = tmp_path / "data"
    data.mkdir()
    EnrolmentFile(data / "enrolments.json").write(
        [
            Enrolment(mine.public, mine_anonym.public, "mg-school", "authorised"),
            Enrolment(other.public, other_anonym.public, "mg-school", "authorised"),  # a second MGMC for it
        ]
    )
    loop = SimpleNamespace(mgs={"mg-school": entry(mine, mine_anonym)})
    (said,) = check_at_start(data / "console-users.json", loop, lambda pairs: (set(), set()))
    assert "another enrolment of mg-school is authorised" in said  # serve says it, before the web server
    with caplog.at_level(logging.WARNING):
        console_on(data, StandInLoop(loop.mgs, set(), {mine_anonym.public, other_anonym.public}))
    assert [
        r.getMessage() for r in caplog.records if "mg-school" in r.getMessage()
    ] == []  # before: said again


def test_the_console_start_leaves_the_loop_keys_fault_to_serve(tmp_path: Path) -> None:
    old, old_anonym, new, new_anonym = (Keypair.generate() for _ in range(4))
    data = tmp_path / "data"
    data.mkdir()
    EnrolmentFile(data / "enrolments.json").write(
        [
            Enrolment(old.public, old_anonym.public, "mg-school", "authorised"),  # revoked on the chain since
            Enrolment(new.public, new_anonym.public, "mg-school", "authorised"),
        ]
    )
    loop = SimpleNamespace(mgs={"mg-school": entry(old, old_anonym)})
    with pytest.raises(
        ConfigError, match="mg-school enrolled again with new keys"
    ):  # serve stops here, exit 2
        check_at_start(data / "console-users.json", loop, lambda pairs: ({old.public}, set()))
    # the console's start judges it no more (before: the same ConfigError, raised inside the web server's start)
    console_on(data, StandInLoop(loop.mgs, {old.public}, {old_anonym.public, new_anonym.public}))
