"""The one recording a server runs at a time: the capture engine as a task in the app's event loop.

Opening devices, the frame loop and finalizing all happen inside ``CaptureEngine.run()``; this class adds what
the API needs around it: refusing a second recording, waiting for the start to succeed or fail (so a missing
device is an error response, not a session that silently never starts), stopping and waiting for the session
to be finalized, and cheap status snapshots for many concurrent readers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
import time
from datetime import datetime, timezone
from typing import Any

from capture.config import CaptureConfig
from capture.engine import CaptureEngine, RecordingResult
from capture.session import make_engine
from server.errors import ApiError
from server.models import AnnotationIn, AnnotationOut, LiveStatsBody, RecordingStart, RecordingStatus
from server.settings import ServerSettings
from vrcap.config import load_config
from vrcap.errors import CaptureError, SessionExists, VrcapError
from vrcap.names import check_session_name

log = logging.getLogger("vrcap.server")

START_TIMEOUT_S = 30.0  # opening an OpenXR runtime or a network camera can take seconds
STATUS_CACHE_S = 0.01  # about a frame (11 ms at 90 Hz): a cached status is never staler than the next frame
SLOW_STATS_EVERY_S = 0.1  # audio level and clock fits cost more than a dict copy: refresh at most this often
_CAMERA_SPEC = re.compile(r"^(\d{1,2}|/dev/video\d{1,3}|(https?|rtsp|rtsps|udp|tcp)://[^\s]+)$")
_NAME_KEYS = ("record.source", "record.audio", "record.cameras", "record.duration_s")


def check_camera_arg(arg: str) -> str:
    """A camera from the API may be a device or a network stream, never a file path on the server."""
    name, sep, spec = arg.partition("=")
    if (
        not sep
        or not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", name.strip())
        or not _CAMERA_SPEC.match(spec.strip())
    ):
        raise ApiError(
            422,
            "bad-camera",
            f"camera {arg!r} is not NAME=SPEC with SPEC a device index, /dev/videoN or a stream URL",
            "e.g. left=0, left=/dev/video2 or left=http://phone:8080/video; files can be recorded with "
            "`vrcap record --camera` on the server itself",
        )
    return arg


def capture_config_for(request: RecordingStart) -> CaptureConfig:
    """configs/capture.yaml ← the request's fields ← its overrides, checked key by key and type by type."""
    for key in request.overrides:
        if key in _NAME_KEYS:
            raise ApiError(
                422, "bad-override", f"override {key!r} has its own request field", f"set {key.split('.')[1]}"
            )
    items = [
        f"record.source={request.source}",
        f"record.audio={json.dumps(request.audio)}",
        f"record.cameras={json.dumps([check_camera_arg(c) for c in request.cameras])}",
        f"record.duration_s={request.duration_s or 0}",
    ]
    items += [f"{key}={json.dumps(value)}" for key, value in request.overrides.items()]
    config = load_config(CaptureConfig, None, items, default_name="capture.yaml")
    for spec in config.record.cameras:
        check_camera_arg(spec)
    return config


class Recording:
    """One recording started through the API, and how it ended."""

    def __init__(self, engine: CaptureEngine, session: str) -> None:
        self.id = "rec-" + secrets.token_hex(6)
        self.session = session
        self.engine = engine
        self.started_utc = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.task: asyncio.Task[RecordingResult] | None = None
        self.result: RecordingResult | None = None
        self.error: str | None = None

    @property
    def active(self) -> bool:
        return self.task is not None and not self.task.done()


class Recorder:
    """Owns at most one running CaptureEngine; every method runs in the app's event loop."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.current: Recording | None = None
        self._lock = asyncio.Lock()
        self._slow_stats_at = 0.0
        self._status_cache: tuple[float, bytes] | None = None

    @property
    def recording(self) -> bool:
        return self.current is not None and self.current.active

    async def start(self, request: RecordingStart) -> RecordingStatus:
        name = check_session_name(request.session)  # a bad name is the more specific answer: check it first
        async with self._lock:
            if self.current is not None and self.current.active:
                raise ApiError(
                    409,
                    "recording-running",
                    f"recording {self.current.id} ({self.current.session}) is running",
                    f"stop it first: POST /api/v1/recordings/{self.current.id}/stop",
                )
            path = self.settings.sessions_dir / name
            if path.exists():
                raise SessionExists(path)
            config = capture_config_for(request)
            engine = await asyncio.to_thread(make_engine, path, config)
            recording = Recording(engine, name)
            recording.task = asyncio.create_task(self._run(recording), name=f"recording {name}")
            # A failure nobody waits for is still "retrieved": it is kept in recording.error and logged.
            recording.task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self.current = recording
            self._status_cache = None
            await self._wait_started(recording)
            return self.status()

    async def _run(self, recording: Recording) -> RecordingResult:
        try:
            recording.result = await recording.engine.run()
            return recording.result
        except VrcapError as exc:
            recording.error = str(exc)
            raise
        except Exception as exc:
            log.exception("recording %s failed", recording.session)
            recording.error = f"{type(exc).__name__}: {exc}"
            raise

    async def _wait_started(self, recording: Recording) -> None:
        """Return once frames flow; a start that fails (a device that will not open) becomes the error."""
        assert recording.task is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while recording.engine.stats.state == "starting" and not recording.task.done():
            if time.monotonic() > deadline:
                recording.engine.stop("start timed out")
                break
            await asyncio.sleep(0.01)
        if recording.task.done() and recording.task.exception() is not None:
            exc = recording.task.exception()
            if isinstance(exc, VrcapError):
                raise exc
            raise CaptureError(f"the recording could not start: {type(exc).__name__}: {exc}")

    async def stop(self, recording_id: str) -> RecordingStatus:
        recording = self._get(recording_id)
        recording.engine.stop("stopped through the API")
        await self._wait_finished(recording)
        self._status_cache = None
        return self.status()

    async def _wait_finished(self, recording: Recording) -> None:
        if recording.task is None:
            return
        # shield: a client that hangs up must not cancel the recording's finalization.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(recording.task), self.settings.stop_timeout_s)

    def annotate(self, recording_id: str, note: AnnotationIn) -> AnnotationOut:
        recording = self._get(recording_id)
        if not recording.active or recording.engine.stopping:
            raise ApiError(
                409,
                "not-recording",
                f"recording {recording_id} is no longer running",
                "start a recording (POST /api/v1/recordings) and annotate that one",
            )
        t_ns = recording.engine.annotate(note.text, note.kind, note.channel)
        return AnnotationOut(
            recording=recording.id, t_ns=t_ns, text=note.text, kind=note.kind, channel=note.channel
        )

    def status_json(self) -> bytes:
        """``status()`` serialized, reused for ``STATUS_CACHE_S``: under a burst of readers one build serves all."""
        now = time.monotonic()
        if self._status_cache is None or now - self._status_cache[0] > STATUS_CACHE_S:
            self._status_cache = (now, self.status().model_dump_json().encode())
        return self._status_cache[1]

    def status(self) -> RecordingStatus:
        """A snapshot; cheap enough to serve hundreds of times a second while recording."""
        rec = self.current
        if rec is None:
            return RecordingStatus(id=None, session=None, state="idle")
        engine = rec.engine
        now = time.monotonic()
        if rec.active and now - self._slow_stats_at > SLOW_STATS_EVERY_S:
            self._slow_stats_at = now
            with contextlib.suppress(Exception):  # a figure that cannot be computed now is shown next time
                engine.refresh_slow_stats()
        stats = engine.stats
        state = stats.state if stats.state in ("starting", "recording", "stopping", "failed") else "stopped"
        if rec.active and state == "stopped":
            state = "stopping"
        return RecordingStatus(
            id=rec.id,
            session=rec.session,
            state=state,  # type: ignore[arg-type]
            started_utc=rec.started_utc,
            stats=_stats_body(stats.to_dict(), stats.total_drops),
            result=_result_body(rec.result),
            error=rec.error or stats.error,
        )

    def _get(self, recording_id: str) -> Recording:
        if self.current is None or self.current.id != recording_id:
            raise ApiError(
                404,
                "no-such-recording",
                f"no recording {recording_id!r} on this server",
                "GET /api/v1/recordings/current gives the current recording's id",
            )
        return self.current

    async def shutdown(self) -> None:
        """Stop a running recording and wait for its session to be finalized (SIGTERM, app shutdown)."""
        rec = self.current
        if rec is not None and rec.active:
            log.info("stopping recording %s before exit", rec.session)
            rec.engine.stop("server shutting down")
            await self._wait_finished(rec)


def _stats_body(data: dict[str, Any], total_drops: int) -> LiveStatsBody:
    clocks = {
        k: {name: float(v) for name, v in figures.items() if isinstance(v, (int, float))}
        for k, figures in (data.get("clocks") or {}).items()
    }
    return LiveStatsBody(**{**data, "clocks": clocks, "total_drops": total_drops})


def _result_body(result: RecordingResult | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return {
        "frames": result.frames,
        "dropped_frames": result.dropped_frames,
        "duration_s": result.duration_s,
        "bytes_written": result.bytes_written,
        "stop_reason": result.stop_reason,
        "drops": dict(result.drops),
    }
