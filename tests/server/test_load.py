"""Load: 100 concurrent status requests while recording at full rate (sim, two 640x480 cameras) drop nothing."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.server.live import ServeProcess

pytestmark = pytest.mark.realtime  # timing on the wall clock: run alone (tools/ci/run-tests.sh)

CLIENTS = 100
ROUNDS = 5


async def _hammer(serve: ServeProcess) -> list[float]:
    headers = {"Authorization": f"Bearer {serve.token}"}
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=serve.url, headers=headers, limits=limits, timeout=30) as client:

        async def one() -> None:
            t0 = time.perf_counter()
            response = await client.get("/api/v1/recordings/current")
            latencies.append(time.perf_counter() - t0)
            assert response.status_code == 200 and response.json()["state"] == "recording"

        for _ in range(ROUNDS):
            await asyncio.gather(*(one() for _ in range(CLIENTS)))
    return latencies


def test_concurrent_status_requests_cause_no_drops(serve: ServeProcess) -> None:
    with serve.client() as client:
        body = {"session": "load", "source": "sim", "audio": "sim", "overrides": {"writer.fsync": False}}
        started = client.post("/api/v1/recordings", json=body)
        assert started.status_code == 201, started.text
        rec_id = started.json()["id"]
        time.sleep(0.5)
        latencies = asyncio.run(_hammer(serve))
        time.sleep(0.3)
        stopped = client.post(f"/api/v1/recordings/{rec_id}/stop").json()
    assert len(latencies) == CLIENTS * ROUNDS
    result = stopped["result"]
    assert result["dropped_frames"] == 0 and result["drops"] == {}, result
    assert stopped["stats"]["samples"]["camera_left"] > 0  # the cameras ran at full size meanwhile
    detail_drops = {k: v for k, v in stopped["stats"]["drops"].items() if v}
    assert detail_drops == {}
