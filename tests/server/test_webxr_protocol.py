"""The WebXR WebSocket on a live `vrcap serve`, spoken by a Python client: what a broken or hostile page gets.

Each bad page is closed with the close code and a reason it can show; the recording goes on, its session
validates, and a good page can take it over again.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgpack
import numpy as np
import pytest
import websockets

from tests.helpers import run_vrcap
from tests.server.live import TOKEN, ServeProcess
from vrcap.metadata import load_meta

pytestmark = pytest.mark.realtime  # timing on the wall clock: run alone (tools/ci/run-tests.sh)

HEAD = np.array([0.0, 1.6, 0.0, 0.0, 0.0, 0.0, 1.0] + [np.nan] * 6, "<f4").tobytes()


def now_ms() -> float:
    return time.time() * 1e3


class FakePage:
    """A minimal page: hello, a few clock exchanges, frames; ``close`` is what the server said when it closed."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ws: Any = None

    async def __aenter__(self) -> FakePage:
        self.ws = await websockets.connect(self.url, max_size=None)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.ws.close()

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(msgpack.packb(message, use_bin_type=True))

    async def hello(self, token: str = TOKEN) -> dict[str, Any]:
        await self.send({"k": "hello", "v": 1, "token": token, "origin_ms": now_ms()})
        return msgpack.unpackb(await self.ws.recv())

    async def sync(self, exchanges: int = 5) -> None:
        for i in range(exchanges):
            await self.send({"k": "ping", "id": i, "t1": now_ms()})
            while (pong := msgpack.unpackb(await self.ws.recv()))["k"] != "pong":
                pass
            await self.send(
                {"k": "sync", "t1": pong["t1"], "t2": pong["t2"], "t3": pong["t3"], "t4": now_ms()}
            )

    async def frames(self, n: int) -> None:
        for i in range(n):
            await self.send({"k": "frame", "n": i, "t": now_ms(), "head": HEAD, "head_f": 0xF})
            await asyncio.sleep(0.005)

    async def closed(self) -> tuple[int, str]:
        """Wait for the server's close; (code, reason)."""
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await asyncio.wait_for(self.ws.recv(), 10)
        return self.ws.close_code, self.ws.close_reason


@pytest.fixture
def webxr_recording(serve: ServeProcess) -> Any:
    client = serve.client()
    name = f"webxr-proto-{time.monotonic_ns()}"
    response = client.post("/api/v1/recordings", json={"session": name, "source": "webxr", "audio": "none"})
    assert response.status_code == 201, response.text
    rec = response.json()
    assert rec["describes"] == "this headset (WebXR), no microphone, no cameras"
    url = serve.url.replace("http://", "ws://") + f"/api/v1/recordings/{rec['id']}/webxr"
    yield url, rec, client
    client.post(f"/api/v1/recordings/{rec['id']}/stop")
    client.close()


async def _bad_pages(url: str) -> list[tuple[str, int, str]]:
    results = []
    async with FakePage(url) as page:
        await page.send({"k": "hello", "v": 1, "token": "wrong-token-wrong", "origin_ms": now_ms()})
        results.append(("wrong token", *await page.closed()))
    bad: list[tuple[str, bytes | str]] = [
        ("not msgpack", b"\xc1\xc1 garbage"),
        ("text frame", "hello"),
        ("unknown kind", msgpack.packb({"k": "launch-missiles"})),
        ("short head", msgpack.packb({"k": "frame", "n": 0, "t": now_ms(), "head": b"\0" * 12})),
        ("oversized", msgpack.packb({"k": "frame", "n": 0, "t": now_ms(), "pad_l": b"\0" * 100_000})),
        ("second hello", msgpack.packb({"k": "hello", "v": 1, "token": TOKEN, "origin_ms": now_ms()})),
    ]
    for what, data in bad:
        async with FakePage(url) as page:
            welcome = await page.hello()
            assert welcome["k"] == "welcome"
            await page.sync(3)
            await page.frames(10)
            await page.ws.send(data)
            results.append((what, *await page.closed()))
    async with FakePage(url) as page:  # after all that, a good page resumes the recording
        welcome = await page.hello()
        await page.sync(5)
        await page.frames(30)
        results.append(("good page", 0, "resumed" if welcome["resumed"] else "new"))
    return results


def test_bad_pages_are_closed_with_a_reason_and_the_recording_survives(
    serve: ServeProcess, webxr_recording: Any
) -> None:
    url, rec, client = webxr_recording
    results = {what: (code, reason) for what, code, reason in asyncio.run(_bad_pages(url))}
    assert results["wrong token"][0] == 4401 and "token" in results["wrong token"][1]
    assert results["not msgpack"][0] == 1007 and results["not msgpack"][1].startswith("not a msgpack message")
    assert results["text frame"] == (1007, "messages are binary msgpack, not text")
    assert results["unknown kind"] == (1008, "unknown message kind 'launch-missiles'")
    assert results["short head"] == (1007, "frame: head must be 13 float32 (52 bytes)")
    assert results["oversized"][0] == 1009  # uvicorn's ws_max_size, before a byte reaches our code
    assert results["second hello"] == (1008, "hello twice on one connection")
    assert results["good page"] == (0, "resumed")

    status = client.get("/api/v1/recordings/current").json()
    assert status["state"] == "recording"
    stopped = client.post(f"/api/v1/recordings/{rec['id']}/stop").json()
    assert stopped["result"]["stop_reason"] == "stopped through the API"
    path = serve.root / "sessions" / rec["session"]
    assert run_vrcap("validate", str(path)).returncode == 0
    meta = load_meta(path)
    assert meta.stats["samples"]["head"] == 6 * 10 + 30  # every good frame of every page, none of the bad
    kinds = [i["kind"] for i in meta.incidents]
    assert kinds.count("disconnected") == 7 and kinds.count("reconnected") == 6  # the good page left too
    assert "closed by the server: frame: head must be 13 float32 (52 bytes)" in str(meta.incidents)


def test_no_such_recording_and_a_non_webxr_recording_are_refused(serve: ServeProcess) -> None:
    async def attempt(url: str) -> tuple[int, str]:
        async with FakePage(url) as page:
            await page.send({"k": "hello", "v": 1, "token": TOKEN, "origin_ms": now_ms()})
            return await page.closed()

    base = serve.url.replace("http://", "ws://") + "/api/v1/recordings"
    code, reason = asyncio.run(attempt(base + "/rec-000000000000/webxr"))
    assert code == 4409 and "no WebXR recording" in reason


def test_a_page_that_does_not_come_back_ends_the_recording_cleanly(serve: ServeProcess) -> None:
    with serve.client() as client:
        _page_leaves_for_good(serve, client)


def _page_leaves_for_good(serve: ServeProcess, client: Any) -> None:
    body = {
        "session": "page-gone",
        "source": "webxr",
        "audio": "none",
        "overrides": {"webxr.reconnect_s": 1.0},
    }
    response = client.post("/api/v1/recordings", json=body)
    assert response.status_code == 201, response.text
    rec = response.json()
    url = serve.url.replace("http://", "ws://") + f"/api/v1/recordings/{rec['id']}/webxr"

    async def visit() -> None:
        async with FakePage(url) as page:
            await page.hello()
            await page.sync(3)
            await page.frames(20)

    asyncio.run(visit())
    status = wait_for_state(client, "stopped", 15)
    assert status["result"]["stop_reason"] == "the page did not reconnect within 1 s"
    path = serve.root / "sessions" / "page-gone"
    assert run_vrcap("validate", str(path)).returncode == 0
    assert load_meta(path).stats["samples"]["head"] == 20


def wait_for_state(client: Any, state: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get("/api/v1/recordings/current").json()
        if status["state"] == state:
            return status
        time.sleep(0.1)
    raise AssertionError(f"the recording did not reach {state!r} in {timeout} s: {status}")
