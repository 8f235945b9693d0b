"""REST API of the DSO's dispute settlement (/api/dso/disputes): an MGMC posts its sealed readings (kept only as
the whole set its der_commitment sealed), the DSO settles, and the API shows each disputed trade and how it was
decided; every bad request is a 4xx with a detail, and a DSO without a settler says so."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from peergrid_dso.routes.dso import install_dso_api
from peergrid_dso.services.container import build_dso_services

from .test_disputes import Market, market, ramp
from .test_disputes_node import settler_for

MGS = {"mg1": 18, "mg2": 33}


@pytest.fixture
def served() -> Iterator[tuple[TestClient, Market, Any]]:
    """The API over a settler whose adapter runs on an event loop of its own (as the node's does)."""
    readings = {"s": ramp(480.0, export=True), "b": ramp(455.0, export=False)}
    m = market({("s", "b"): 500}, {("s", "b"): (300, 500)}, readings=readings)
    settler, adapter, _ = settler_for(m)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    adapter.loop = loop  # type: ignore[attr-defined]
    app = FastAPI()
    install_dso_api(app)
    app.state.dso = build_dso_services(MGS)
    app.state.dso.disputes = settler
    try:
        yield TestClient(app), m, settler
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def on_loop(settler: Any, coro: Any) -> Any:
    return asyncio.run_coroutine_threadsafe(coro, settler.adapter.loop).result(10)


def post_all(client: TestClient, m: Market, mg: str) -> list[int]:
    node = m.nodes[mg].public
    out = []
    for (key, bucket), leaves in sorted(m.sealed.items()):
        if key == node:
            r = client.post("/api/dso/disputes/readings",
                            json={"node": node.hex(), "interval": bucket, "leaves": [x.hex() for x in leaves]})  # fmt: skip
            assert r.status_code == 201, r.text
            out.append(r.json()["accepted"])
    return out


def test_posted_readings_let_the_dso_settle_and_the_api_shows_how(
    served: tuple[TestClient, Market, Any],
) -> None:
    client, m, settler = served
    tid = m.trade_id("s", "b")
    settler.look_everywhere()
    on_loop(settler, settler.settle_due())
    shown = client.get("/api/dso/disputes").json()
    assert shown["pending"] == [tid.hex()]
    [waiting] = shown["disputes"]
    assert (
        waiting["outcome"] == "unresolved" and "not at the DSO" in waiting["why"] and waiting["interval"] == 9
    )
    assert sum(post_all(client, m, "s")) == sum(
        len(v) for (k, _), v in m.sealed.items() if k == m.nodes["s"].public
    )
    post_all(client, m, "b")
    on_loop(settler, settler.settle_due())
    one = client.get(f"/api/dso/disputes/{tid.hex()}").json()
    assert one["outcome"] == "settled" and one["delivered"] == 455 and one["settlement"]["basis"] == "dso"
    assert one["statements"] == {"buyer": 300, "seller": 500}
    assert one["seller"]["share_wh"] == 480 and one["buyer"]["share_wh"] == 455
    assert client.get("/api/dso/disputes").json()["pending"] == []


def test_bad_requests_are_4xx_with_a_detail(served: tuple[TestClient, Market, Any]) -> None:
    client, m, settler = served
    node = m.nodes["s"].public
    (_, bucket), leaves = next((k, v) for k, v in m.sealed.items() if k[0] == node)
    good = {"node": node.hex(), "interval": bucket, "leaves": [x.hex() for x in leaves]}
    r = client.post("/api/dso/disputes/readings", json=good)  # the DSO has not seen the dispute yet
    assert r.status_code == 409 and "no pending dispute reads commitment interval" in r.json()["detail"]
    settler.look_everywhere()
    for bad, why in [
        ({**good, "node": "zz" * 32}, "string_pattern_mismatch"),
        ({**good, "node": node.hex()[:-2]}, "string_pattern_mismatch"),
        ({**good, "interval": -1}, "greater_than_equal"),
        ({**good, "leaves": []}, "too_short"),
        ({**good, "extra": 1}, "extra_forbidden"),
        ({k: v for k, v in good.items() if k != "leaves"}, "missing"),
    ]:
        r = client.post("/api/dso/disputes/readings", json=bad)
        assert r.status_code == 422 and r.json()["detail"][0]["type"] == why, (bad, r.text)
    for leaf, why in [("abc", "even number"), ("zz", "not hex"), ("00" * 1025, "at most 2048")]:
        r = client.post("/api/dso/disputes/readings", json={**good, "leaves": [leaf]})
        assert r.status_code == 422 and why in r.json()["detail"], r.text
    r = client.post("/api/dso/disputes/readings", json={**good, "leaves": good["leaves"][:-1]})
    assert r.status_code == 422 and "not the sealed ones" in r.json()["detail"]
    r = client.post("/api/dso/disputes/readings", json={**good, "interval": bucket + 50})
    assert r.status_code == 422 and "no der_commitment" in r.json()["detail"]
    assert settler.sealed == {}  # nothing refused was kept
    assert client.get("/api/dso/disputes/" + "ab" * 31).status_code == 422
    assert client.get("/api/dso/disputes/" + "AB" * 32).status_code == 422
    r = client.get("/api/dso/disputes/" + "ab" * 32)
    assert r.status_code == 404 and "no dispute decided" in r.json()["detail"]


def test_a_dso_without_a_settler_says_so() -> None:
    app = FastAPI()
    install_dso_api(app)
    app.state.dso = build_dso_services(MGS)
    client = TestClient(app)
    for r in [
        client.get("/api/dso/disputes"),
        client.get("/api/dso/disputes/" + "ab" * 32),
        client.post("/api/dso/disputes/readings", json={"node": "ab" * 32, "interval": 1, "leaves": ["00"]}),
    ]:
        assert r.status_code == 404 and "settles no disputes" in r.json()["detail"]


def test_the_console_shows_disputes_to_a_logged_in_viewer(
    operator_session: tuple[Any, dict[str, str]],
) -> None:
    """GET /console/api/disputes needs a session; the lab's in-process services settle none and say so, and
    with a settler the console shows its decisions."""
    client, _ = operator_session
    assert client.get("/console/api/disputes").json() == {"enabled": False, "pending": [], "disputes": []}
    m = market({("s", "b"): 500}, {("s", "b"): (300, 500)})
    settler, _, _ = settler_for(m)
    settler.look_everywhere()
    asyncio.run(settler.settle_due())
    client.app.state.dso.disputes = settler
    shown = client.get("/console/api/disputes").json()
    assert shown["enabled"] and shown["pending"] == [m.trade_id("s", "b").hex()]
    assert shown["disputes"][0]["outcome"] == "unresolved"
    client.cookies.clear()
    assert client.get("/console/api/disputes").status_code == 401


def test_posted_sets_no_dispute_reads_are_refused_and_what_is_kept_is_bounded_by_the_disputes(
    served: tuple[TestClient, Market, Any],
) -> None:
    """review10 F4: a participant commits sets of its own making (far-future commitment intervals) and posts
    them: each is a 409 and nothing is kept; the DSO holds only the (node, commitment) readings its pending
    disputes read, and none once they are settled."""
    from peergrid_edge.commitments import commitment_body, reading_leaf

    client, m, settler = served
    settler.look_everywhere()
    on_loop(settler, settler.settle_due())
    node = m.nodes["b"]
    for k in range(10):
        bucket = 10**6 + k
        leaves = [
            reading_leaf("x", "battery", bucket * 60 + i / 100, {"soc_pct": float(i)}) for i in range(500)
        ]
        m.do(node, "der_commitment", commitment_body(bucket, leaves))
        r = client.post("/api/dso/disputes/readings",
                        json={"node": node.public.hex(), "interval": bucket, "leaves": [x.hex() for x in leaves]})  # fmt: skip
        assert r.status_code == 409 and f"commitment interval {bucket}" in r.json()["detail"], r.text
    assert settler.sealed == {}
    post_all(client, m, "s")
    post_all(client, m, "b")
    [tid] = settler.pending
    assert set(settler.sealed) <= settler.reads[tid]  # bounded by what the one pending dispute reads
    # each kept set whole (`SealedSet.count`: the leaves taken in, checked against the chain's count)
    assert sum(v.count for v in settler.sealed.values()) == sum(len(v) for v in m.sealed.values())
    on_loop(settler, settler.settle_due())
    assert settler.pending == {} and settler.sealed == {}
