"""The one recording a server runs at a time, in a recorder process of its own (capture/recorder_process.py).

Opening devices, the frame loop and finalizing all happen in that process, with the same engine code as
`vrcap record`; this class is its controller in the API's event loop: refusing a second recording, waiting for
the start to succeed or fail (a missing device is an error response, never a 201 for a recording that failed),
forwarding stop and annotations, and keeping the latest live stats the recorder streams back, so that status
requests are answered from memory. The protocol is in docs/RECORDER.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from capture.config import CaptureConfig
from capture.recorder_protocol import (
    MSG_FAILED,
    MSG_REPLY,
    MSG_RESULT,
    MSG_STATS,
    OP_ANNOTATE,
    OP_START,
    OP_STOP,
    PROTOCOL_VERSION,
    decode,
    encode,
)
from server.bounds import CAPTURE_BOUNDS, check_bounds, check_overrides
from server.errors import ApiError
from server.models import (
    CAPTURE_FIELD_KEYS,
    AnnotationIn,
    AnnotationOut,
    LiveStatsBody,
    RecordingStart,
    RecordingStatus,
)
from server.recorder_launch import Launcher
from server.settings import ServerSettings
from server.webxr_relay import WebXRRelay, describe_capture, webxr_link_pair
from vrcap.config import load_config
from vrcap.names import check_session_name

log = logging.getLogger("vrcap.server")

START_TIMEOUT_S = 30.0  # opening an OpenXR runtime or a network camera can take seconds
STATUS_CACHE_S = 0.01  # about a frame (11 ms at 90 Hz): a cached status is never staler than the next frame
STATS_INTERVAL_S = 0.1  # the recorder process sends a live stats snapshot this often
REPLY_TIMEOUT_S = 5.0  # an annotation's acknowledgement from the recorder process
LINE_LIMIT = 1 << 24  # longest message line accepted from the recorder (a snapshot with many incidents)
RECORDER_LOG = "recorder.log"  # <root>/.vrcap/recorder.log: the recorder process's stderr
_CAMERA_SPEC = re.compile(r"^(\d{1,2}|/dev/video\d{1,3}|(https?|rtsp|rtsps|udp|tcp)://[^\s]+)$")


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


def capture_items_for(request: RecordingStart, sessions_dir: Path) -> list[str]:
    """The request as ``key=value`` items, checked here (a bad one is a 422 before any process starts).

    vrcap/configs/capture.yaml ← the request's fields ← its overrides, checked key by key and type by type; the
    recorder process builds the same config from the same items.
    """
    for key in request.overrides:
        if key in CAPTURE_FIELD_KEYS:
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
    check_overrides(request.overrides, CAPTURE_BOUNDS)
    config = load_config(CaptureConfig, None, items, default_name="capture.yaml")
    for spec in config.record.cameras:
        check_camera_arg(spec)
    check_bounds(config, CAPTURE_BOUNDS)
    free = shutil.disk_usage(sessions_dir).free
    if config.writer.reserve_bytes > free // 2:
        raise ApiError(
            507, "disk-full",
            f"writer.reserve_bytes ({config.writer.reserve_bytes}) is more than half the free space ({free} bytes)",
            "free space under the server's root or lower writer.reserve_bytes",
        )  # fmt: skip
    return items


class Recording:
    """One recording started through the API: its recorder process, the latest stats, and how it ended."""

    def __init__(self, session: str) -> None:
        self.id = "rec-" + secrets.token_hex(6)
        self.session = session
        self.started_utc = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.proc: subprocess.Popen[bytes] | None = None
        self._stdin: asyncio.WriteTransport | None = None
        self._stdout: asyncio.StreamReader | None = None
        self.stats: dict[str, Any] | None = None  # the latest snapshot the recorder sent
        self.total_drops = 0
        self.result: dict[str, Any] | None = None
        self.error: str | None = None
        self.error_kind: str | None = None
        self.started = asyncio.Event()  # frames flow, or the start failed
        self.done = asyncio.Event()  # the recorder process has exited
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_id = 0
        self._reader: asyncio.Task[None] | None = None
        self.webxr: WebXRRelay | None = None  # the page's link into the recorder, for a WebXR recording
        self.describes = ""  # what is recorded, in words the page shows (describe_capture)
        self.webxr_reconnect_s = 0.0  # how long the recorder waits for a page that left (webxr.reconnect_s)

    @property
    def active(self) -> bool:
        return not self.done.is_set()

    def fail(self, error: str) -> None:
        """End a recording whose process never ran."""
        self.error = error
        if self.webxr is not None:
            self.webxr.close()
        self.started.set()
        self.done.set()

    @property
    def state(self) -> str:
        if self.done.is_set():
            return "failed" if self.error is not None else "stopped"
        state = str((self.stats or {}).get("state", "starting"))
        return "stopping" if state == "stopped" else state

    async def launch(
        self, settings: ServerSettings, items: list[str], launcher: Launcher, *, webxr: bool = False
    ) -> None:
        """Start the recorder process: forked by the launcher (the server's priority), in a session of its own
        (a Ctrl-C meant for the server does not reach it); its pipes are read and written by the event loop.

        ``webxr``: the recording's headset is the page; a socket pair links the page's WebSocket (this process)
        to the recorder, its far end handed over with ``pass_fds`` (see server/webxr_relay.py).
        """
        log_file = open(settings.state_dir / RECORDER_LOG, "ab")  # noqa: SIM115 - the child holds it
        child_end = None
        if webxr:
            self.webxr, child_end = webxr_link_pair()
        try:
            spawned = launcher.popen(
                [sys.executable, "-m", "capture.recorder_process"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_file,
                cwd=settings.root_dir, start_new_session=True,
                pass_fds=(child_end.fileno(),) if child_end is not None else (),
            )  # fmt: skip
            self.proc = await asyncio.wrap_future(spawned)
        finally:
            log_file.close()
        assert self.proc.stdin is not None and self.proc.stdout is not None
        loop = asyncio.get_running_loop()
        self._stdout = asyncio.StreamReader(limit=LINE_LIMIT)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(self._stdout), self.proc.stdout)
        self._stdin, _ = await loop.connect_write_pipe(asyncio.Protocol, self.proc.stdin)
        self._reader = asyncio.create_task(self._read(), name=f"recorder {self.session}")
        path = settings.sessions_dir / self.session
        start = {"op": OP_START, "version": PROTOCOL_VERSION, "path": str(path), "items": items,
                 "stats_interval_s": STATS_INTERVAL_S, "nice": settings.recorder_nice, "rt_priority": settings.recorder_rt_priority}  # fmt: skip
        if child_end is not None:
            start["webxr_fd"] = child_end.fileno()
        await self.send(start)
        if child_end is not None:
            child_end.close()  # the recorder holds its own copy now

    async def send(self, command: dict[str, Any]) -> bool:
        """Write one command; False when the recorder process is gone (it finalizes on its own then)."""
        if self._stdin is None or self._stdin.is_closing() or self.done.is_set():
            return False
        try:
            self._stdin.write(encode(command))  # a few hundred bytes: the transport buffers, never blocks
        except (OSError, RuntimeError):
            return False
        return True

    async def request(self, command: dict[str, Any]) -> dict[str, Any]:
        """A command that is answered (annotations): the reply, or an ``error`` entry."""
        self._next_id += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[self._next_id] = future
        try:
            if not await self.send({**command, "id": self._next_id}):
                return {"error": f"recording {self.id} is no longer running"}
            return await asyncio.wait_for(future, REPLY_TIMEOUT_S)
        except asyncio.TimeoutError:
            return {"error": f"the recorder did not answer in {REPLY_TIMEOUT_S:.0f} s"}
        finally:
            self._replies.pop(self._next_id, None)

    async def _read(self) -> None:
        assert self.proc is not None and self._stdout is not None
        try:
            while line := await self._stdout.readline():
                try:
                    self._on(decode(line))
                except ValueError:
                    log.warning("recorder %s sent a line that is not a message: %r", self.session, line[:80])
        except (OSError, ValueError) as exc:  # a line over LINE_LIMIT; the process is ended below
            log.warning("recorder channel of %s failed: %s", self.session, exc)
        finally:
            code = await asyncio.to_thread(self.proc.wait)
            if self._stdin is not None:
                self._stdin.close()
            if self.result is None and self.error is None:
                self.error = f"the recorder process ended with code {code}; see .vrcap/{RECORDER_LOG}"
            if self.webxr is not None:
                self.webxr.close()
            self.done.set()
            self.started.set()
            for future in self._replies.values():
                if not future.done():
                    future.set_result({"error": f"recording {self.id} is no longer running"})

    def _on(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == MSG_STATS:
            self.stats = message.get("stats") or {}
            self.total_drops = int(message.get("total_drops", 0))
            if self.stats.get("state") in ("recording", "stopping", "stopped"):
                self.started.set()
        elif kind == MSG_REPLY:
            future = self._replies.get(int(message.get("id") or 0))
            if future is not None and not future.done():
                future.set_result(message)
        elif kind == MSG_RESULT:
            self.result = message.get("result")
        elif kind == MSG_FAILED:
            self.error = str(message.get("error"))
            self.error_kind = str(message.get("kind"))
            self.started.set()


class Recorder:
    """Controls at most one recorder process; every method runs in the app's event loop."""

    def __init__(self, settings: ServerSettings, launcher: Launcher | None = None) -> None:
        self.settings = settings
        self.launcher = launcher or Launcher()
        self.current: Recording | None = None
        self._lock = asyncio.Lock()
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
            if path.exists() or path.is_symlink():
                raise ApiError(
                    409,
                    "session-exists",
                    f"session sessions/{name} already exists",
                    "pick another session name or delete the old session",
                )
            items = capture_items_for(request, self.settings.sessions_dir)
            recording = Recording(name)
            config = load_config(CaptureConfig, None, items, default_name="capture.yaml")
            recording.describes = describe_capture(config)
            recording.webxr_reconnect_s = config.webxr.reconnect_s
            self.current = recording
            self._status_cache = None
            try:
                await recording.launch(self.settings, items, self.launcher, webxr=request.source == "webxr")
            except OSError as exc:  # no process, so nothing will ever end this recording: end it here
                recording.fail(f"the recorder process could not be started: {exc.strerror or exc}")
                raise ApiError(
                    503,
                    "spawn-failed",
                    recording.error or "",
                    "see the server log; check the interpreter and the root",
                ) from None
            await self._wait_started(recording)
            return self.status()

    async def _wait_started(self, recording: Recording) -> None:
        """Return once frames flow; a start that fails (a device that will not open) becomes the error."""
        try:
            await asyncio.wait_for(recording.started.wait(), START_TIMEOUT_S)
        except asyncio.TimeoutError:
            await recording.send({"op": OP_STOP, "reason": "start timed out"})
            raise ApiError(
                504, "start-timeout", f"the recording did not start in {START_TIMEOUT_S:.0f} s",
                "check the devices with GET /api/v1/devices; the recorder log is .vrcap/recorder.log",
            ) from None  # fmt: skip
        if recording.error is not None:
            await asyncio.wait_for(recording.done.wait(), self.settings.stop_timeout_s)
            self._status_cache = None
            if recording.error_kind == "SessionExists":
                raise ApiError(
                    409, "session-exists", f"session sessions/{recording.session} already exists",
                    "pick another session name or delete the old session",
                )  # fmt: skip
            raise ApiError(
                409, "capture-failed", recording.error,
                "check the devices with GET /api/v1/devices and try again",
            )  # fmt: skip

    async def stop(self, recording_id: str) -> RecordingStatus:
        recording = self._get(recording_id)
        await recording.send({"op": OP_STOP, "reason": "stopped through the API"})
        await self._wait_finished(recording)
        self._status_cache = None
        return self.status()

    async def _wait_finished(self, recording: Recording) -> None:
        # shield: a client that hangs up must not cancel the wait of others; the recorder finalizes anyway.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(recording.done.wait()), self.settings.stop_timeout_s)

    async def annotate(self, recording_id: str, note: AnnotationIn) -> AnnotationOut:
        t_ns = time.monotonic_ns()  # when the request arrived: the channel's delay is not in the stamp
        recording = self._get(recording_id)
        reply: dict[str, Any] = {"error": f"recording {recording_id} is no longer running"}
        if recording.active and recording.state in ("starting", "recording"):
            command = {"op": OP_ANNOTATE, "text": note.text, "kind": note.kind, "channel": note.channel}
            reply = await recording.request({**command, "t_ns": t_ns})
        if "error" in reply:
            raise ApiError(
                409,
                "not-recording",
                str(reply["error"]),
                "start a recording (POST /api/v1/recordings) and annotate that one",
            )
        return AnnotationOut(
            recording=recording.id,
            t_ns=int(reply["t_ns"]),
            text=note.text,
            kind=note.kind,
            channel=note.channel,
        )

    def live_summary(self) -> dict[str, Any]:
        """Frames, duration and size of the running recording, from its latest stats (no disk access)."""
        rec = self.current
        if rec is None or not rec.active or rec.stats is None:
            return {}
        stats = rec.stats
        return {
            "frames": stats.get("frames", 0),
            "duration_s": stats.get("elapsed_s", 0.0),
            "size_bytes": stats.get("bytes_written", 0),
            "start_utc": rec.started_utc,
        }

    def status_json(self) -> bytes:
        """``status()`` serialized, reused for ``STATUS_CACHE_S``: under a burst of readers one build serves all."""
        now = time.monotonic()
        if self._status_cache is None or now - self._status_cache[0] > STATUS_CACHE_S:
            self._status_cache = (now, self.status().model_dump_json().encode())
        return self._status_cache[1]

    def status(self) -> RecordingStatus:
        """A snapshot from memory: the latest stats the recorder process sent."""
        rec = self.current
        if rec is None:
            return RecordingStatus(id=None, session=None, state="idle")
        stats = rec.stats
        return RecordingStatus(
            id=rec.id,
            session=rec.session,
            state=rec.state,  # type: ignore[arg-type]
            started_utc=rec.started_utc,
            describes=rec.describes,
            stats=_stats_body({**stats, "state": rec.state}, rec.total_drops) if stats else None,
            result=rec.result,  # type: ignore[arg-type]
            error=rec.error or (stats or {}).get("error"),
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
            await rec.send({"op": OP_STOP, "reason": "server shutting down"})
            await self._wait_finished(rec)


def _stats_body(data: dict[str, Any], total_drops: int) -> LiveStatsBody:
    clocks = {
        k: {name: float(v) for name, v in figures.items() if isinstance(v, (int, float))}
        for k, figures in (data.get("clocks") or {}).items()
    }
    return LiveStatsBody(**{**data, "clocks": clocks, "total_drops": total_drops})
