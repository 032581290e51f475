"""Routes: the sessions under ``<root>/sessions`` — list, detail with a validation report, delete.

Listings come from session.json summaries cached by mtime; validation (it scans every record) runs in a worker
process (server/session_cache.py). Links are never followed (server/safepaths.py).
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi import Path as PathParam

from server.deps import Authorized, JobsDep, RecorderDep, SessionCacheDep, SettingsDep
from server.errors import ApiError
from server.models import NAME_SCHEMA, Deleted, SessionDetail, SessionList, SessionSummary
from server.safepaths import is_link_free
from server.session_cache import meta_key
from server.settings import ServerSettings
from vrcap.errors import VrcapError
from vrcap.info import session_info
from vrcap.names import check_session_name

router = APIRouter(prefix="/sessions", tags=["sessions"])
# The pattern is stated in the schema; the route checks it (422 bad-session-name says what is allowed).
SessionName = Annotated[str, PathParam(max_length=128, json_schema_extra=NAME_SCHEMA)]


def _detail(path: Path, live: bool) -> dict[str, Any]:
    info = session_info(path)
    streams = [
        {
            "name": s["name"],
            "kind": s["kind"],
            "rate_hz": float(s.get("rate_hz") or 0.0),
            "samples": s["samples"],
        }
        for s in info["streams"]
    ]
    return {
        "name": path.name, "status": "recording" if live else info["status"], "duration_s": info["duration_s"],
        "frames": info["frames"], "size_bytes": info["size_bytes"], "segments": info["segments"],
        "start_utc": info["start_utc"], "drops": {k: int(v) for k, v in info["drops"].items()},
        "streams": streams, "recording": live, "validation": None,
    }  # fmt: skip


def session_path(settings: ServerSettings, name: str) -> Path:
    """``<root>/sessions/<name>`` when it is a session reached without links; 404 otherwise."""
    path = settings.sessions_dir / check_session_name(name)
    if meta_key(path) is None or not is_link_free(settings.root_dir, path):  # a link could point anywhere
        raise ApiError(404, "no-such-session", f"no session {name!r}", "list sessions: GET /api/v1/sessions")
    return path


def _recording_name(recorder: Any) -> str | None:
    current = recorder.current
    return current.session if current is not None and current.active else None


@router.get("", summary="Sessions with name, duration, frames and status")
async def list_sessions(
    _: Authorized, settings: SettingsDep, recorder: RecorderDep, cache: SessionCacheDep
) -> SessionList:
    live = recorder.live_summary()  # the recorder's own figures, not a scan
    recording = _recording_name(recorder)
    items = []
    for name, info in await cache.list(settings.sessions_dir, live=recording):
        if name == recording:
            info = {**info, **live, "status": "recording", "error": None}
        items.append(SessionSummary(name=name, recording=name == recording, **info))
    return SessionList(sessions=items)


@router.get("/{name}", summary="A session's details and validation report")
async def get_session(
    name: SessionName, _: Authorized, settings: SettingsDep, recorder: RecorderDep, cache: SessionCacheDep
) -> SessionDetail:
    path = session_path(settings, name)
    live = _recording_name(recorder) == name
    try:
        if live:
            detail = await asyncio.to_thread(_detail, path, True)
        else:
            detail = await cache.detail(path, lambda p: _detail(p, False))
        if not live:  # validation reads every record: in the worker process, once per version of the session
            detail["validation"] = await cache.report(path)
    except (VrcapError, OSError) as exc:
        raise ApiError(
            409, "bad-session-data", f"session {name!r} cannot be read: {exc}",
            "`vrcap validate --fix` on the server repairs what can be repaired",
        ) from None  # fmt: skip
    return SessionDetail(**detail)


@router.delete("/{name}", summary="Delete a session (confirm=NAME required)")
async def delete_session(
    name: SessionName,
    _: Authorized,
    settings: SettingsDep,
    recorder: RecorderDep,
    jobs: JobsDep,
    cache: SessionCacheDep,
    confirm: Annotated[str, Query(max_length=128, description="the session's name again")] = "",
) -> Deleted:
    path = session_path(settings, name)
    if confirm != name:
        raise ApiError(
            400,
            "confirm-required",
            f"deleting {name!r} needs confirm={name}",
            f"add ?confirm={name} to the URL",
        )
    if _recording_name(recorder) == name:
        raise ApiError(409, "session-recording", f"{name!r} is being recorded", "stop the recording first")
    reader = jobs.reading(name)
    if reader is not None:
        raise ApiError(
            409, "session-in-use", f"job {reader} is reading {name!r}",
            f"wait for it or cancel it: POST /api/v1/jobs/{reader}/cancel",
        )  # fmt: skip
    await asyncio.to_thread(shutil.rmtree, path)
    cache.forget(name)
    return Deleted(deleted=name)
