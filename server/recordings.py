"""Routes: start, stop, annotate and watch a recording (REST, plus a WebSocket of live stats)."""

from __future__ import annotations

import asyncio
import contextlib
import json

from fastapi import APIRouter, Response, WebSocket, WebSocketDisconnect

from server.auth import token_matches
from server.deps import Authorized, RecorderDep
from server.models import AnnotationIn, AnnotationOut, RecordingStart, RecordingStatus

router = APIRouter(prefix="/recordings", tags=["recordings"])

FIRST_MESSAGE_TIMEOUT_S = 1.0  # a client without the token is closed this soon (it holds a connection slot)
WS_UNAUTHORIZED = 4401  # application close code: a browser shows it in CloseEvent.code


@router.post("", status_code=201, summary="Start a recording")
async def start_recording(body: RecordingStart, _: Authorized, recorder: RecorderDep) -> RecordingStatus:
    """201 once frames flow; 409 while another recording runs or the session exists."""
    return await recorder.start(body)


@router.get(
    "/current", summary="The running (or last) recording with live stats", response_model=RecordingStatus
)
async def current_recording(_: Authorized, recorder: RecorderDep) -> Response:
    """The hot path under load: pre-serialized bytes, shared by the readers of one ~10 ms window."""
    return Response(recorder.status_json(), media_type="application/json")


@router.post("/{recording_id}/stop", summary="Stop a recording and finalize its session")
async def stop_recording(recording_id: str, _: Authorized, recorder: RecorderDep) -> RecordingStatus:
    """Returns after the session is finalized on disk (idempotent: stopping a stopped recording is fine)."""
    return await recorder.stop(recording_id)


@router.post("/{recording_id}/annotations", status_code=201, summary="Add a text event to the recording")
async def annotate(
    recording_id: str, body: AnnotationIn, _: Authorized, recorder: RecorderDep
) -> AnnotationOut:
    """Stored in the next packet with the time the server received it (the session's clock)."""
    return await recorder.annotate(recording_id, body)


@router.websocket("/live")
async def live(websocket: WebSocket, recorder: RecorderDep) -> None:
    """Status snapshots ~5 times a second, across recordings, until the client leaves.

    Browsers cannot set headers on a WebSocket: the token comes as ``?token=`` or as the first message,
    ``{"token": "..."}`` (preferred: query strings end up in logs).
    """
    await websocket.accept()
    expected: str = websocket.app.state.token
    offered = websocket.query_params.get("token")
    if offered is None:
        offered = await _first_message_token(websocket)
    if not token_matches(expected, offered):
        await websocket.close(WS_UNAUTHORIZED, 'unauthorized: send {"token": ...} as the first message')
        return
    interval = websocket.app.state.settings.live_interval_s
    # The client only listens: it is gone when a send fails (which exception depends on the ws library).
    with contextlib.suppress(Exception):
        while True:
            await websocket.send_text(recorder.status_json().decode())  # text frames: browsers get a string
            await asyncio.sleep(interval)


async def _first_message_token(websocket: WebSocket) -> str | None:
    try:
        text = await asyncio.wait_for(websocket.receive_text(), FIRST_MESSAGE_TIMEOUT_S)
        data = json.loads(text)
    except (asyncio.TimeoutError, WebSocketDisconnect, ValueError, KeyError, RuntimeError):
        return None
    token = data.get("token") if isinstance(data, dict) else None
    return token if isinstance(token, str) else None
