"""Routes: the sessions under ``<root>/sessions`` — list, detail with a validation report, delete.

Reading a session (validation scans every record) is blocking disk work: it runs in a worker thread so the
recording in the event loop keeps its frame rate.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query

from server.deps import Authorized, RecorderDep, SettingsDep
from server.errors import ApiError
from server.models import Deleted, SessionDetail, SessionList, SessionSummary
from vrcap.errors import VrcapError
from vrcap.info import session_info
from vrcap.names import check_session_name
from vrcap.reader import is_session_dir
from vrcap.validate import validate_session

router = APIRouter(prefix="/sessions", tags=["sessions"])


def _summaries(root: Path, recording: str | None, live_info: dict[str, Any]) -> list[SessionSummary]:
    if not root.is_dir():
        return []
    out = []
    for path in sorted(p for p in root.iterdir() if p.is_dir() and is_session_dir(p)):
        live = path.name == recording
        try:
            info = live_info if live else session_info(path)
            error = None
        except (VrcapError, OSError) as exc:
            info, error = {}, str(exc)
        out.append(
            SessionSummary(
                name=path.name,
                status="recording" if live else str(info.get("status", "unreadable")),
                duration_s=float(info.get("duration_s", 0.0)),
                frames=int(info.get("frames", 0)),
                size_bytes=int(info.get("size_bytes", 0)),
                start_utc=info.get("start_utc"),
                recording=live,
                error=error,
            )
        )
    return out


def _detail(path: Path, live: bool) -> dict[str, Any]:
    info = session_info(path)
    validation = None
    if not live:
        report = validate_session(path)
        validation = {
            "valid": report.ok, "packets": report.packets, "duration_s": report.duration_s,
            "dropped_frames": report.dropped_frames,
            "findings": [f.__dict__ for f in report.findings],
        }  # fmt: skip
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
        "streams": streams, "recording": live, "validation": validation,
    }  # fmt: skip


def _session_path(settings_dir: Path, name: str) -> Path:
    path = settings_dir / check_session_name(name)
    if path.is_symlink() or not is_session_dir(path):  # a link could point anywhere: never follow it
        raise ApiError(404, "no-such-session", f"no session {name!r}", "list sessions: GET /api/v1/sessions")
    return path


def _recording_name(recorder: Any) -> str | None:
    current = recorder.current
    return current.session if current is not None and current.active else None


@router.get("", summary="Sessions with name, duration, frames and status")
async def list_sessions(_: Authorized, settings: SettingsDep, recorder: RecorderDep) -> SessionList:
    live: dict[str, Any] = {}
    if recorder.current is not None and recorder.current.active:  # the recorder's own figures, not a scan
        stats = recorder.current.engine.stats
        live = {"frames": stats.frames, "duration_s": stats.elapsed_s, "size_bytes": stats.bytes_written}
    items = await asyncio.to_thread(_summaries, settings.sessions_dir, _recording_name(recorder), live)
    return SessionList(sessions=items)


@router.get("/{name}", summary="A session's details and validation report")
async def get_session(
    name: str, _: Authorized, settings: SettingsDep, recorder: RecorderDep
) -> SessionDetail:
    path = _session_path(settings.sessions_dir, name)
    return SessionDetail(**await asyncio.to_thread(_detail, path, _recording_name(recorder) == name))


@router.delete("/{name}", summary="Delete a session (confirm=NAME required)")
async def delete_session(
    name: str,
    _: Authorized,
    settings: SettingsDep,
    recorder: RecorderDep,
    confirm: Annotated[str, Query(max_length=128, description="the session's name again")] = "",
) -> Deleted:
    path = _session_path(settings.sessions_dir, name)
    if confirm != name:
        raise ApiError(
            400,
            "confirm-required",
            f"deleting {name!r} needs confirm={name}",
            f"add ?confirm={name} to the URL",
        )
    if _recording_name(recorder) == name:
        raise ApiError(409, "session-recording", f"{name!r} is being recorded", "stop the recording first")
    await asyncio.to_thread(shutil.rmtree, path)
    return Deleted(deleted=name)
