"""`peergrid-edge run`: a daemon stopped by a dead task (`TaskDied`, logged with its traceback as it died) ends the
process with status 1 and one line on stderr naming the task (beside the log's lines), so systemd's Restart=on-failure starts it again and
the operator sees why without a second traceback."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from peergrid_edge import cli
from peergrid_edge.daemon import EdgeDaemon
from peergrid_edge.task_watch import TaskDied


def test_a_dead_task_exits_1_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text(f"node_id: n1\nmg: mg1\ndata_dir: {tmp_path / 'data'}\n")

    async def dies(self: EdgeDaemon) -> None:
        async def commit() -> None:
            raise OSError("disk gone")

        task = asyncio.create_task(commit(), name="commit")
        await asyncio.gather(task, return_exceptions=True)
        raise TaskDied(task)

    monkeypatch.setattr(EdgeDaemon, "run", dies)
    assert cli.main(["run", "--config", str(config)]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("peergrid-edge:")]
    assert err == ["peergrid-edge: the edge daemon's task commit died: OSError('disk gone')"], err
