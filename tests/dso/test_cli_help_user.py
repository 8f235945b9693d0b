"""`peergrid-dso --help` lists every command, `user` too (U3: it worked but the help did not name it), and
`peergrid-dso user ...` still goes to the console users' own parser."""

from __future__ import annotations

import pytest

from peergrid_dso.cli import main


def test_the_help_names_the_user_command_and_user_keeps_its_own_parser(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    said = capsys.readouterr().out
    assert "{serve,check-config,enrolment,reconfigure,user}" in said
    assert "console users (add, list, remove)" in said
    with pytest.raises(SystemExit) as done:
        main(["user", "--help"])
    assert done.value.code == 0
    assert "add" in capsys.readouterr().out
