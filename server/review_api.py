"""Routes: review a finished session — its overview (timeline, trajectories, speeds, audio level) and thumbnails.

Neither route touches a session being recorded (409): a live session has no trusted index, and scanning it
would compete with the recorder for the disk. The overview reads every record once, in a worker *process*, one at
a time, cached per version of session.json; thumbnails read a few packets by index in a small thread pool. Both
are bounded: the overview by ``points`` (server/review_scan.py), thumbnails by ``width`` and by how many may wait.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from starlette.requests import HTTPConnection

from server.deps import Authorized, RecorderDep, SettingsDep
from server.errors import ApiError
from server.review_frames import FrameSource, NoFrame
from server.review_models import Overview
from server.review_scan import overview
from server.session_cache import Key, meta_key
from server.sessions_api import SessionName, session_path
from vrcap.annotate_format import list_sidecars
from vrcap.errors import VrcapError

router = APIRouter(prefix="/sessions", tags=["review"])
FRAME_THREADS = 2
MAX_WAITING = 16  # thumbnail requests beyond this many in flight are refused (503), never queued without end
CACHED_OVERVIEWS = 8


class Review:
    """One per app: the overview worker, the thumbnail threads and what they have already computed."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._threads = ThreadPoolExecutor(max_workers=FRAME_THREADS, thread_name_prefix="vrcap-thumb")
        self.frames = FrameSource()
        self._overviews: dict[tuple[str, Key, int, tuple[str, ...]], dict[str, Any]] = {}
        self._running: dict[tuple[str, Key, int, tuple[str, ...]], asyncio.Future[dict[str, Any]]] = {}
        self.in_flight = 0

    async def overview(self, path: Path, key: Key, points: int) -> dict[str, Any]:
        # imported annotations arrive as sidecar files without touching session.json: they are part of the version
        k = (path.name, key, points, tuple(p.name for p in list_sidecars(path)))
        if k in self._overviews:
            return self._overviews[k]
        running = self._running.get(k)
        if running is None:
            if self._pool is None:  # spawn: the API process has threads, and a forked copy of them is unsafe
                self._pool = ProcessPoolExecutor(
                    max_workers=1, mp_context=multiprocessing.get_context("spawn")
                )
            running = asyncio.ensure_future(
                asyncio.get_running_loop().run_in_executor(self._pool, overview, str(path), points)
            )
            self._running[k] = running
            running.add_done_callback(lambda _: self._running.pop(k, None))
        result = await asyncio.shield(running)
        while len(self._overviews) >= CACHED_OVERVIEWS:
            self._overviews.pop(next(iter(self._overviews)))
        self._overviews[k] = result
        return result

    async def thumbnail(self, path: Path, key: Key, camera: str, t_s: float, width: int) -> Any:
        if self.in_flight >= MAX_WAITING:
            raise ApiError(
                503, "busy", "too many thumbnails asked for at once", "ask again in a moment",
                headers={"Retry-After": "1"},
            )  # fmt: skip
        self.in_flight += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._threads, self.frames.thumbnail, path, key, camera, t_s, width
            )
        finally:
            self.in_flight -= 1

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        self.frames.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


async def _review(request: HTTPConnection) -> Review:
    return request.app.state.review


ReviewDep = Annotated[Review, Depends(_review)]


def _finished(settings: Any, recorder: Any, name: str) -> tuple[Path, Key]:
    path = session_path(settings, name)
    current = recorder.current
    if current is not None and current.active and current.session == name:
        raise ApiError(
            409, "session-recording", f"{name!r} is being recorded", "review it once it has stopped"
        )
    key = meta_key(path)
    if key is None:
        raise ApiError(404, "no-such-session", f"no session {name!r}", "pick a session from the list")
    return path, key


# What reading a damaged or crafted session raises: a bad record (VrcapError), I/O, or a sample field of the wrong
# type or range (a float time, a flag over 2^63) that the review's int64 columns refuse.
UNREADABLE = (VrcapError, OSError, ValueError, KeyError, TypeError, OverflowError)


def _unreadable(name: str, exc: Exception) -> ApiError:
    return ApiError(
        409, "bad-session-data", f"session {name!r} cannot be read: {exc}",
        "`vrcap validate --fix` on the server repairs what can be repaired",
    )  # fmt: skip


@router.get("/{name}/overview", summary="A finished session's timeline, trajectories, speeds and audio level")
async def get_overview(
    name: SessionName,
    _: Authorized,
    settings: SettingsDep,
    recorder: RecorderDep,
    review: ReviewDep,
    points: Annotated[int, Query(ge=50, le=2000, description="time buckets per curve")] = 600,
) -> Overview:
    path, key = _finished(settings, recorder, name)
    try:
        return Overview(**await review.overview(path, key, points))
    except UNREADABLE as exc:
        raise _unreadable(name, exc) from None


@router.get(
    "/{name}/frame",
    summary="One camera image by time, downscaled, as JPEG",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}, "description": "the image nearest the time"}},
)
async def get_frame(
    name: SessionName,
    _: Authorized,
    settings: SettingsDep,
    recorder: RecorderDep,
    review: ReviewDep,
    camera: Annotated[str, Query(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")],
    t: Annotated[
        float,
        Query(ge=0, le=86_400, allow_inf_nan=False, description="seconds from the session's first frame"),
    ] = 0.0,
    width: Annotated[int, Query(ge=32, le=1280, description="the image's width at most, pixels")] = 320,
) -> Response:
    path, key = _finished(settings, recorder, name)
    try:
        thumb = await review.thumbnail(path, key, camera, t, width)
    except NoFrame as exc:
        raise ApiError(404, "no-frame", str(exc), "pick another time or camera") from None
    except (VrcapError, OSError, ValueError, KeyError) as exc:
        raise _unreadable(name, exc) from None
    headers = {"X-Frame-Time": f"{thumb.t_s:.4f}", "Cache-Control": "private, max-age=60"}
    return Response(thumb.jpeg, media_type="image/jpeg", headers=headers)
