"""The WebSocket a headset page records through: ``/api/v1/recordings/{id}/webxr`` (protocol: docs/WEBXR.md).

What this process does with each message, and why here:
- **pings are answered here**, stamped with host monotonic time on receipt (t2) and just before the reply (t3):
  the monotonic clock is the recorder's too, and answering without a hop keeps round trips short, which is what
  the clock fit's minimum-RTT filter feeds on;
- every other message is checked (``capture.webxr_protocol.parse``) and handed to the recorder through the
  relay, which never blocks; a page that sends a malformed, unknown or oversized message is closed with the
  close code and a reason it can show, and the recording goes on (the gap is recorded);
- the page gets the recording's live stats a few times a second, from memory (as GET /recordings/current).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from fastapi import APIRouter, WebSocket

from capture.webxr_protocol import (
    CLOSE_BAD_DATA,
    CLOSE_NORMAL,
    CLOSE_NOT_RECORDING,
    CLOSE_POLICY,
    CLOSE_UNAUTHORIZED,
    K_HELLO,
    K_PING,
    K_PONG,
    K_STATS,
    K_WELCOME,
    ProtocolViolation,
    pack,
    parse,
)
from server.auth import token_matches
from server.deps import RecorderDep
from server.recorder import Recorder, Recording
from server.recordings import FIRST_MESSAGE_TIMEOUT_S

router = APIRouter(prefix="/recordings", tags=["recordings"])


class PageSocket:
    """One page connection: sends are serialized (pongs and stats come from two tasks)."""

    def __init__(self, websocket: WebSocket) -> None:
        self.ws = websocket
        self.lock = asyncio.Lock()

    async def send(self, message: dict[str, Any], *, stamp: str | None = None) -> None:
        async with self.lock:
            if stamp is not None:
                message[stamp] = time.monotonic_ns()  # as late as possible: the send is all that follows
            await self.ws.send_bytes(pack(message))


async def _hello(websocket: WebSocket) -> dict[str, Any] | None:
    """The first message, which must be a hello with the token; None when the page was closed instead."""
    try:
        first = await asyncio.wait_for(websocket.receive(), FIRST_MESSAGE_TIMEOUT_S)
        if first.get("bytes") is None:
            raise ProtocolViolation(CLOSE_BAD_DATA, "messages are binary msgpack, not text")
        hello = parse(first["bytes"], allowed=(K_HELLO,))
    except asyncio.TimeoutError:
        await websocket.close(CLOSE_UNAUTHORIZED, "unauthorized: send a hello with the token first")
        return None
    except ProtocolViolation as exc:
        await websocket.close(exc.code, f"first message: {exc}")
        return None
    except RuntimeError:  # the client left before saying anything
        return None
    if not token_matches(
        websocket.app.state.token, hello.get("token") if isinstance(hello.get("token"), str) else None
    ):
        await websocket.close(CLOSE_UNAUTHORIZED, "unauthorized: wrong or missing token in the hello")
        return None
    return hello


def _webxr_recording(recorder: Recorder, recording_id: str) -> Recording | None:
    rec = recorder.current
    if rec is None or rec.id != recording_id or not rec.active or rec.webxr is None:
        return None
    return rec


async def _stats_loop(page: PageSocket, recorder: Recorder, interval: float) -> None:
    with contextlib.suppress(Exception):  # the page is gone when a send fails
        while True:
            await asyncio.sleep(interval)
            await page.send({"k": K_STATS, "stats": json.loads(recorder.status_json())})


@router.websocket("/{recording_id}/webxr")
async def webxr_page(websocket: WebSocket, recording_id: str, recorder: RecorderDep) -> None:
    await websocket.accept()
    hello = await _hello(websocket)
    if hello is None:
        return
    rec = _webxr_recording(recorder, recording_id)
    if rec is None or rec.webxr is None:
        await websocket.close(CLOSE_NOT_RECORDING, f"no WebXR recording {recording_id[:40]} is running")
        return
    relay = rec.webxr
    await relay.attach(websocket)
    relay.forward(pack({**hello, "token": None}))  # the recorder never sees the token
    page = PageSocket(websocket)
    resumed = relay.connections > 1
    reconnect_s = float(rec.webxr_reconnect_s)
    await page.send(
        {
            "k": K_WELCOME,
            "recording": rec.id,
            "session": rec.session,
            "reconnect_s": reconnect_s,
            "resumed": resumed,
        }
    )
    stats = asyncio.create_task(_stats_loop(page, recorder, websocket.app.state.settings.live_interval_s))
    reason = "the page closed its connection"
    try:
        reason = await _relay_loop(websocket, page, rec)
    finally:
        stats.cancel()
        relay.gone(websocket, reason)


async def _relay_loop(websocket: WebSocket, page: PageSocket, rec: Recording) -> str:
    """Messages until the page leaves or breaks the protocol; returns why the connection ended."""
    assert rec.webxr is not None
    relay = rec.webxr
    while True:
        try:
            message = await websocket.receive()
        except RuntimeError:
            return "the page's connection broke"
        t2 = time.monotonic_ns()
        if message["type"] == "websocket.disconnect":
            return f"the page closed its connection (code {message.get('code')})"
        if not relay.is_page(websocket):
            return "replaced by a newer connection"
        try:
            data = message.get("bytes")
            if data is None:
                raise ProtocolViolation(CLOSE_BAD_DATA, "messages are binary msgpack, not text")
            msg = parse(data)
            if msg["k"] == K_HELLO:
                raise ProtocolViolation(CLOSE_POLICY, "hello twice on one connection")
        except ProtocolViolation as exc:
            with contextlib.suppress(Exception):
                await websocket.close(exc.code, str(exc))
            return f"closed by the server: {exc}"
        if msg["k"] == K_PING:
            await page.send({"k": K_PONG, "id": msg["id"], "t1": msg["t1"], "t2": t2}, stamp="t3")
        elif not relay.forward(data) or not rec.active:
            with contextlib.suppress(Exception):
                await websocket.close(CLOSE_NORMAL, "the recording has ended")
            return "the recording has ended"
