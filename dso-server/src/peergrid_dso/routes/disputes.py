"""REST API of the DSO's dispute settlement under /api/dso/disputes (`dispute_node.DisputeSettler`).

GET /api/dso/disputes: every disputed trade the DSO knows and its latest decision (settled with the metering it
rests on, refused with the chain's reason, unresolved with why), and which wait. GET .../{trade}: one trade's
(404 when the DSO has decided nothing on it). POST .../readings: an MGMC's reading leaves of one commitment
interval, kept only when they are exactly the set its `der_commitment` sealed (422 otherwise, saying why), so
no login is needed: the chain's signed root authenticates them; and only when a dispute the DSO waits on reads
them and their commitment was sealed in time (409 otherwise, saying which), so an unauthenticated caller cannot
make the DSO hold readings no dispute needs. A 201 means kept: on disk before the answer (`dispute_readings_file`,
so a DSO restart settles with them, D12); a set the DSO cannot write there is 503 (not taken: post it again).
Without a settler (no `loop.disputes`, or the lab's in-process
services) every route answers 404 saying so. Bad input is 422 (pydantic) with a `detail`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Path
from pydantic import BaseModel, ConfigDict, Field

from peergrid_dso.dispute_node import DisputeSettler, ReadingsNotKept, ReadingsNotNeeded, ReadingsRefused
from peergrid_dso.routes.dso import get_dso
from peergrid_dso.services.container import DsoServices

router = APIRouter(prefix="/api/dso/disputes", tags=["disputes"])
HEX32 = r"^[0-9a-f]{64}$"
MAX_LEAVES = 20_000  # a day of 4-s polls of one device; a commitment interval holds far fewer
MAX_LEAF_HEX = 2_048  # a reading leaf is ~100 bytes


class ReadingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    node: str = Field(pattern=HEX32)  # the MGMC's node key that signed the der_commitment
    interval: int = Field(ge=0, le=2**63 - 1)  # the commitment interval
    leaves: list[str] = Field(min_length=1, max_length=MAX_LEAVES)


def settler(dso: DsoServices = Depends(get_dso)) -> DisputeSettler:
    found: DisputeSettler | None = dso.disputes
    if found is None:
        raise HTTPException(404, "this DSO settles no disputes (no loop.disputes section with an MGMC chain)")
    return found


@router.get("")
def disputes(s: DisputeSettler = Depends(settler)) -> dict[str, Any]:
    return s.snapshot()


@router.get("/{trade}")
def dispute(trade: str = Path(pattern=HEX32), s: DisputeSettler = Depends(settler)) -> dict[str, Any]:
    found = s.decision(bytes.fromhex(trade))
    if found is None:
        raise HTTPException(404, f"no dispute decided on trade {trade[:16]}…")
    return found


@router.post("/readings", status_code=201)
def readings(body: ReadingsIn, s: DisputeSettler = Depends(settler)) -> dict[str, Any]:
    leaves = []
    for i, text in enumerate(body.leaves):
        if len(text) > MAX_LEAF_HEX or len(text) % 2:
            raise HTTPException(422, f"leaves[{i}]: at most {MAX_LEAF_HEX} hex digits, an even number")
        try:
            leaves.append(bytes.fromhex(text))
        except ValueError:
            raise HTTPException(422, f"leaves[{i}]: not hex") from None
    try:
        kept = s.offer_readings_threadsafe(bytes.fromhex(body.node), body.interval, leaves)
    except ReadingsNotNeeded as exc:
        raise HTTPException(409, str(exc)) from None
    except ReadingsRefused as exc:
        raise HTTPException(422, str(exc)) from None
    except ReadingsNotKept as exc:  # an edge posts a set again after a 5xx (its `unsent`, E11)
        raise HTTPException(503, str(exc)) from None
    return {"node": body.node, "interval": body.interval, "accepted": kept}


def install_disputes_api(app: Any) -> None:
    app.include_router(router)
