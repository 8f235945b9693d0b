"""The feeder view's closed-loop line says what the network check found and whom the DSO asked to adjust, by how
much, in which iteration and under which DSO-chain transaction, and how often the MGMCs re-bargained (U3, session
23): in the `--dso-vmin 0.91` lab it said only "interval 41: secure, 0 switch op(s), 2 adjustment(s)", and an
operator could not tell which MGs were asked or find the contracts on the Ledger view.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from console.lab_client import lab_client
from console.test_console_api import login


@pytest.fixture
def client(users_file: Path) -> Iterator[TestClient]:
    with lab_client(users_file) as c:
        yield c


def test_the_line_names_each_adjustment_and_the_rebargaining(client: TestClient) -> None:
    state = client.app.state.console  # type: ignore[attr-defined]
    contract = {"mg": "mg5", "interval": 40, "reason": "bus 32 voltage 0.9043 pu vs limit 0.9100 pu"}
    state.on_interval(
        {
            "interval": 40, "secure": True, "height": 52,
            "before": {"vmin_pu": 0.90433}, "after": {"open": [33, 34, 35, 36, 37], "vmin_pu": 0.91196},
            "adjustments": [
                {**contract, "min_injection_w": 343904, "max_injection_w": None, "iteration": 1, "txid": "59" * 32},
                {**contract, "mg": "mg4", "min_injection_w": -435707, "max_injection_w": None, "iteration": 2},
            ],
            "rebargain": [{"iteration": 1, "reopened": 1}, {"iteration": 2, "reopened": 2}],
        }
    )  # fmt: skip
    login(client, "vera")
    line = client.get("/console/api/feeder").json()["interval"]
    assert (line["vmin_before"], line["vmin_pu"], line["adjustments"], line["rebargained"]) == (
        0.90433,
        0.91196,
        2,
        2,
    )
    assert line["adjusted"] == [
        {"mg": "mg5", "iteration": 1, "min_kw": 343.904, "max_kw": None, "txid": "59" * 32},
        {
            "mg": "mg4",
            "iteration": 2,
            "min_kw": -435.707,
            "max_kw": None,
            "txid": None,
        },  # a record before txids
    ]
