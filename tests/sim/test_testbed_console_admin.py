"""The testbed's console admin: its `peergrid-dso user add` starts with the lab (beside the broker and
firmware-sim) and the DSO's start waits for it; a failed add fails the start as it did when run in line,
with the tool's output, and leaves no console-admin.txt naming a user that was never added."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from peergrid_sim import processes
from peergrid_sim.processes import Testbed

REFUSES = "#!/bin/sh\necho 'users file refused: not JSON'\nexit 2\n"  # never reads the password


def _bed(workdir: Path) -> Testbed:
    return Testbed(workdir, Path("unused.yaml"), None, 0, 60.0)  # type: ignore[arg-type]


def _fake_tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> None:
    """`script` stands in for the `peergrid-dso` the testbed runs."""
    fake = tmp_path / "peergrid-dso"
    fake.write_text(script)
    fake.chmod(0o755)
    monkeypatch.setattr(processes, "tool", lambda name: str(fake))


def _refused_with_its_output(bed: Testbed) -> None:
    with pytest.raises(subprocess.CalledProcessError) as failed:
        bed._console_users()
    assert failed.value.returncode == 2 and b"users file refused: not JSON" in failed.value.output
    assert not (bed.workdir / "console-admin.txt").exists()


def test_a_failed_admin_add_raises_with_its_output_and_writes_no_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_tool(tmp_path, monkeypatch, REFUSES)
    bed = _bed(tmp_path / "bed")
    bed._add_console_admin()
    assert bed.admin_adding is not None  # started, not waited for
    _refused_with_its_output(bed)


def test_an_add_that_exits_before_reading_its_password_fails_with_its_output_not_a_broken_pipe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The password goes to the tool's stdin; a tool that refuses at once exits before reading it, and the
    write then met a closed pipe (BrokenPipeError out of the lab's start, preci18b: the test above raced it)."""
    _fake_tool(tmp_path, monkeypatch, REFUSES)
    started = processes.tied_popen

    def exited_first(*args: object, **kwargs: object) -> subprocess.Popen[bytes]:
        proc: subprocess.Popen[bytes] = started(*args, **kwargs)  # type: ignore[arg-type]
        proc.wait()  # gone before the password is written
        return proc

    monkeypatch.setattr(processes, "tied_popen", exited_first)
    bed = _bed(tmp_path / "bed")
    bed._add_console_admin()
    _refused_with_its_output(bed)


def test_the_admin_added_in_the_background_is_the_one_written_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `user --users FILE add admin --role admin`: the password read from stdin written into FILE
    _fake_tool(tmp_path, monkeypatch, '#!/bin/sh\nprintf \'admin:%s\' "$(cat)" > "$3"\n')
    bed = _bed(tmp_path / "bed")
    bed._add_console_admin()
    users = bed._console_users()
    user, password = (tmp_path / "bed" / "console-admin.txt").read_text().split()
    assert user == "admin" and users.read_text() == f"admin:{password}"  # the password it was given
    assert (tmp_path / "bed" / "console-admin.txt").stat().st_mode & 0o777 == 0o600
    bed._add_console_admin()  # a users file there: nothing more is added
    assert bed.admin_adding is None and bed._console_users() == users
