"""Cameras through OpenCV: V4L2/USB devices, network streams (MJPEG over HTTP, RTSP, ...) and video files.

Why one source for all three: OpenCV's ``VideoCapture`` already hides the difference, and a video file played at its
own frame rate behaves like a camera, which makes the whole path testable on machines with no camera.

Timing rule: stamp at grab, minus a configurable latency. ``grab()`` returns when a frame has reached the host, so
``t = monotonic_ns() - latency_ms`` taken right after it is the best host time of the exposure that OpenCV offers;
``latency_ms`` carries the rest (exposure, transfer) when someone has measured it. A sample's ``st`` is the
backend's own timestamp (``CAP_PROP_POS_MSEC`` in ns: a file's pts, a V4L2 buffer time, FFmpeg's stream pts) when
it gives one, else the raw grab time. ``clock_info()`` stores how the two relate (median offset, drift in ppm).

One thread per camera: grab → stamp → retrieve → resize → encode → ``sink.put``. For live sources (devices, URLs)
it runs from ``open()`` on, dropping frames until ``start()``: left unread, a driver or socket queues frames that
would later come back stamped late.

Blocking reads: FFmpeg (files and URLs) is opened with ``CAP_PROP_OPEN_TIMEOUT_MSEC`` and
``CAP_PROP_READ_TIMEOUT_MSEC`` = ``timeout_ms``, so no grab blocks longer than that, and a silent stream is
reported as ended. ``stop()`` waits that long plus a margin; should a driver call still not have returned (a V4L2
device wedged in the kernel), it leaves the capture to the thread, a daemon, which releases it when the call
returns. OpenCV must never see ``release()`` while another thread is inside ``grab()``.
"""

from __future__ import annotations

import bisect
import glob
import numbers
import os
import re
import statistics
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from capture.source import SampleSink
from vrcap.errors import CaptureError, ConfigError, UsageError
from vrcap.packets import S_DATA, S_FRAME, S_SOURCE_TIME, S_TIME
from vrcap.streams import StreamDescriptor

if TYPE_CHECKING:
    import cv2
    import numpy as np

ENCODINGS = ("jpeg", "png")
URL_SCHEMES = ("http://", "https://", "rtsp://", "udp://", "tcp://")
LIST_HINT = "run `vrcap devices` to list cameras"
FILE_QUEUE = 3  # frames a file played in real time may fall behind before it drops some (a driver's buffers)
END_AFTER_FAILURES = 3  # grabs failing in a row that end a stream (a file's end fails at once, every time)
_NAME = re.compile(r"[a-z0-9_]+")
_DEV_VIDEO = re.compile(r"/dev/video(\d+)")
_INT_FIELDS = ("width", "height", "jpeg_quality", "timeout_ms")
_REAL_FIELDS = ("fps", "latency_ms")


@dataclass
class CameraConfig:
    """One camera, as given by ``--camera NAME=SPEC`` or the ``record.cameras`` list of the capture config."""

    name: str  # the stream is camera_<name>; "left"/"right" form the stereo pair; a-z, 0-9 and "_"
    spec: str  # device index "0", "/dev/video2", a video file, or a URL: http(s)://, rtsp://, udp://, tcp://
    width: int = 0  # output width in pixels; 0 = the device's own. Set width and height together
    height: int = 0  # output height in pixels; 0 = the device's own
    fps: float = 0.0  # rate asked of a device, or a file's playback rate; 0 = the device's / file's own
    encoding: str = "jpeg"  # "jpeg" (small, lossy) or "png" (lossless; ~6x larger, ~10x slower to encode)
    jpeg_quality: int = 90  # 1..100, used when encoding is "jpeg"
    latency_ms: float = 0.0  # subtracted from the grab time: exposure-to-host delay, when measured
    realtime_file: bool = True  # a file plays at its own rate, like a camera; False: as fast as possible
    timeout_ms: int = 5000  # network streams: give up opening, or call the stream ended, after this silence

    def __post_init__(self) -> None:
        self.spec = str(self.spec).strip()  # YAML gives a bare 0 as an int
        at = f"camera {self.name!r}:"
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ConfigError(f"{at} use only a-z, 0-9 and '_' in camera names, e.g. left=0")
        if not self.spec:
            raise ConfigError(f"{at} the spec is empty; give a device index, /dev/videoN, a file or a URL")
        if "://" in self.spec and not self.spec.lower().startswith(URL_SCHEMES):
            raise ConfigError(f"{at} {self.spec!r} has an unsupported scheme; use {', '.join(URL_SCHEMES)}")
        for key in _INT_FIELDS + _REAL_FIELDS:
            value, kind = getattr(self, key), int if key in _INT_FIELDS else numbers.Real
            if isinstance(value, bool) or not isinstance(value, kind):
                raise ConfigError(
                    f"{at} {key} must be {'an integer' if kind is int else 'a number'}, got {value!r}"
                )
        if not isinstance(self.realtime_file, bool):
            raise ConfigError(f"{at} realtime_file must be true or false, got {self.realtime_file!r}")
        if self.width < 0 or self.height < 0 or (self.width == 0) != (self.height == 0):
            raise ConfigError(
                f"{at} set width and height both (e.g. 1280 and 720) or neither, got {self.width}x{self.height}"
            )
        if not 0 <= self.fps < 1000:  # also refuses NaN
            raise ConfigError(f"{at} fps must be from 0 (the device's own) to 1000, got {self.fps}")
        if self.encoding not in ENCODINGS:
            raise ConfigError(f"{at} encoding must be 'jpeg' or 'png' (lossless), got {self.encoding!r}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(
                f"{at} jpeg_quality must be between 1 and 100, got {self.jpeg_quality}; 90 is usual"
            )
        if not 0 <= self.latency_ms < 10_000:
            raise ConfigError(f"{at} latency_ms must be between 0 and 10000, got {self.latency_ms}")
        if self.timeout_ms < 100:
            raise ConfigError(
                f"{at} timeout_ms must be >= 100, got {self.timeout_ms}; 5000 suits most streams"
            )

    @property
    def kind(self) -> str:
        """Which of "device", "url" or "file": it decides the backend, pacing, and grabbing before start()."""
        if self.spec.isdigit() or self.spec.startswith(("/dev/video", "/dev/v4l/")):
            return "device"
        return "url" if self.spec.lower().startswith(URL_SCHEMES) else "file"


def parse_camera_arg(arg: str, **options: Any) -> CameraConfig:
    """``--camera NAME=SPEC`` → CameraConfig; only the first '=' splits, so URLs may hold their own.

    ``options`` are further CameraConfig fields from the config, e.g. ``jpeg_quality=record.jpeg_quality``.
    """
    name, sep, spec = arg.partition("=")
    if not sep or not name.strip() or not spec.strip():
        raise UsageError(
            f"--camera expects NAME=SPEC, got {arg!r}; e.g. --camera left=0, --camera right=/dev/video2, "
            "--camera left=clip.mp4 or --camera left=http://phone:8080/video"
        )
    return CameraConfig(name=name.strip(), spec=spec.strip(), **options)


_quiet_lock = threading.Lock()


@contextmanager
def _quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's warnings while probing: an absent device is an answer, not something to shout about."""
    import cv2

    with _quiet_lock:
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        try:
            yield
        finally:
            cv2.utils.logging.setLogLevel(level)


def _png_params() -> list[int]:
    """Fast lossless PNG: zlib level 1 with run-length matching over the "sub" row filter.

    Measured on SimRig frames (640x480 / 1280x720): ~14 / ~50 ms and ~10% smaller, against ~31 / ~95 ms for
    OpenCV's level 1 with adaptive filters. The filter option needs OpenCV >= 4.10; older ones skip it.
    """
    import cv2

    params = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
    if hasattr(cv2, "IMWRITE_PNG_FILTER"):
        params += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB]
    return params


def _device_index(spec: str) -> int | None:
    """Device index of a spec: 2 for "2" or "/dev/video2" (also via /dev/v4l/by-id links), else None."""
    if spec.isdigit():
        return int(spec)
    match = _DEV_VIDEO.fullmatch(os.path.realpath(spec))
    return int(match.group(1)) if match else None


def _open_device(index: int) -> cv2.VideoCapture:
    """V4L2 first (Linux), then whatever OpenCV finds (AVFoundation, MSMF); the last try is returned either way."""
    import cv2

    cap = cv2.VideoCapture()
    for api in (cv2.CAP_V4L2, cv2.CAP_ANY):
        cap = cv2.VideoCapture(index, api)
        if cap.isOpened():
            break
        cap.release()
    return cap


class _ClockFit:
    """Source time vs host grab time: median offset over recent frames, drift over all by least squares.

    Running sums keep memory constant over hours; coordinates are seconds from the first pair, so float64 keeps
    sub-microsecond precision.
    """

    def __init__(self) -> None:
        self.n = 0
        self._origin = (0, 0)
        self._sums = [0.0] * 5  # x, y, xx, xy, yy with x = source s, y = host s
        self._offsets: deque[int] = deque(maxlen=2048)

    def add(self, grab_ns: int, st_ns: int) -> None:
        if self.n == 0:
            self._origin = (st_ns, grab_ns)
        x, y = (st_ns - self._origin[0]) / 1e9, (grab_ns - self._origin[1]) / 1e9
        for i, v in enumerate((x, y, x * x, x * y, y * y)):
            self._sums[i] += v
        self.n += 1
        self._offsets.append(grab_ns - st_ns)

    def offset_ms(self) -> float:
        return statistics.median(self._offsets) / 1e6 if self._offsets else 0.0

    def drift_ppm(self) -> float | None:
        sx, sy, sxx, sxy, _ = self._sums
        den = self.n * sxx - sx * sx
        if self.n < 3 or den <= 0:
            return None
        return ((self.n * sxy - sx * sy) / den - 1.0) * 1e6


@dataclass
class _Run:
    """What one grab thread owns. Kept apart from the source, so a thread that stop() had to abandon (stuck in
    a driver call) keeps its own stop flag and capture even if the source is opened again meanwhile."""

    cap: cv2.VideoCapture
    sink: SampleSink | None = None  # set by start(); until then a live camera's frames are dropped
    go: threading.Event = field(default_factory=threading.Event)  # set once ``sink`` is
    stop: threading.Event = field(default_factory=threading.Event)
    done: bool = False  # the thread has finished
    orphaned: bool = False  # stop() gave up waiting: the thread releases ``cap`` when it finishes
    error: str = ""  # why the thread ended before start(), if it did

    @property
    def out(self) -> SampleSink:
        """The sink, once recording; frames are delivered only after ``go``, so it is always there then."""
        if self.sink is None:
            raise RuntimeError("internal: a camera frame was to be delivered before start()")
        return self.sink


class CameraSource:
    """A camera as a PushSource (see capture/source.py). Use as ``with CameraSource(cfg) as cam:`` (open/stop)."""

    def __init__(self, config: CameraConfig) -> None:
        self.config = config
        self.name = f"camera_{config.name}"
        self._cap: cv2.VideoCapture | None = None
        self._run: _Run | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # guards the stats and the hand-over of the capture in stop()
        self._first_image: np.ndarray | None = None  # a file's frame 0, read by open()
        self._first_st_ns = 0
        self._size = (config.width, config.height)  # output (width, height), exact after open()
        self._fps = config.fps
        self._has_time = False  # whether st is the backend's CAP_PROP_POS_MSEC (else the grab time)
        self._extra: dict[str, Any] = {}
        self._reset_stats()

    # --- PushSource ------------------------------------------------------------------------------------------
    def streams(self) -> list[StreamDescriptor]:
        """Exact after ``open()`` (it reads a frame); before it, only when width and height are configured."""
        width, height = self._size
        if not width:
            raise CaptureError(
                f"camera {self.config.name!r}: its frame size is known after open(); call open() first"
            )
        extra = {"spec": self.config.spec, **self._extra}
        if self.config.encoding == "jpeg":
            extra["jpeg_quality"] = self.config.jpeg_quality
        return [
            StreamDescriptor(
                self.name, "video", float(self._fps), (height, width, 3), "uint8", self.config.encoding,
                "BGR 8-bit", "", (), "opencv", "pos_msec_ns" if self._has_time else "grab_ns", extra=extra,
            )
        ]  # fmt: skip

    def open(self) -> None:
        """Open the capture and read one frame, so the size and rate in ``streams()`` are the real ones."""
        import cv2

        if self._cap is not None:
            return
        cfg = self.config
        cap = self._open_capture()
        if not cap.isOpened():
            cap.release()
            hint = " (no stream at that address: check the URL and that the camera app runs)"
            raise self._error("OpenCV could not open it" + (hint if cfg.kind == "url" else ""))
        if cfg.kind == "device":
            settings = [(cv2.CAP_PROP_FRAME_WIDTH, cfg.width), (cv2.CAP_PROP_FRAME_HEIGHT, cfg.height)]
            for prop, value in [*settings, (cv2.CAP_PROP_FPS, cfg.fps)]:
                if value:
                    cap.set(prop, value)
        ok, image = cap.read()
        if not ok or image is None:
            cap.release()
            raise self._error(f"it opened but gave no frame within {cfg.timeout_ms} ms")
        pos_ms = cap.get(cv2.CAP_PROP_POS_MSEC)
        reported = cap.get(cv2.CAP_PROP_FPS)
        reported = reported if 0 < reported < 1000 else 0.0  # NaN and nonsense → 0
        self._fps = cfg.fps or reported or 30.0
        self._size = (cfg.width, cfg.height) if cfg.width else (image.shape[1], image.shape[0])
        self._has_time = cfg.kind != "device" or pos_ms > 0  # FFmpeg always has pts; a device shows a value
        self._extra = {
            "backend": cap.getBackendName(),
            "kind": cfg.kind,
            "source_size": [image.shape[1], image.shape[0]],
            "reported_fps": reported,
            "fps_from": "config" if cfg.fps else "backend" if reported else "assumed",
            "source_timestamps": "pos_msec" if self._has_time else "none",
        }
        if cfg.kind == "file":
            self._first_image, self._first_st_ns = image, round(pos_ms * 1e6)
        self._cap = cap
        self._reset_stats()
        self._run = _Run(cap)
        if cfg.kind != "file":
            self._spawn()  # keep the device's queue empty until start(): see _grab_loop

    def start(self, sink: SampleSink) -> None:
        run = self._run
        if run is None:
            raise CaptureError(f"camera {self.config.name!r} is not open; call open() before start()")
        if run.sink is not None:
            raise CaptureError(f"camera {self.config.name!r} is already running; stop() it first")
        run.sink = sink
        run.go.set()
        if self._thread is None:
            self._spawn()
        elif run.done:  # the thread died while waiting for start(): say so where the recording can see it
            sink.incident(
                self.name, "device-error", f"camera {self.config.name!r} ({self.config.spec}): {run.error}"
            )

    def _spawn(self) -> None:
        self._thread = threading.Thread(
            target=self._thread_main, args=(self._run,), name=f"vrcap-{self.name}"
        )
        self._thread.daemon = True  # a thread stuck in a driver call must not keep the process alive
        self._thread.start()

    def stop(self) -> None:
        """Idempotent. Joins the grab thread; one stuck in the driver is left to release the capture itself."""
        run, thread, self._run, self._thread = self._run, self._thread, None, None
        if run is not None and thread is not None:
            run.stop.set()
            thread.join(timeout=self.config.timeout_ms / 1000 + 1.0)
        with self._lock:
            if run is not None and not run.done:
                run.orphaned = True
            elif self._cap is not None:
                self._cap.release()
            self._cap = None
            self._first_image = None

    def clock_info(self) -> dict[str, Any]:
        with self._lock:
            drift = self._fit.drift_ppm() if self._has_time else None
            info: dict[str, Any] = {
                "type": "grab",
                "latency_ms": self.config.latency_ms,
                "nominal_fps": self._fps,
                "measured_fps": self._measured_fps(),
                "frames": self._frames,
                "source_timestamps": "pos_msec" if self._has_time else "none",
                "offset_ms": self._fit.offset_ms() if self._has_time else 0.0,  # median(raw grab − st)
                "drift_ppm": drift,  # least-squares slope of grab time on st, minus 1, in ppm
            }
        if drift is not None and abs(drift) > 10_000:
            info["note"] = (
                f"source timestamps run {drift / 1e4:+.1f}% against the host clock: they are not a real clock "
                "(FFmpeg invents them for streams that carry none, or the file was read faster than real time); "
                "use t"
            )
        return info

    def live_stats(self) -> dict[str, Any]:
        now = time.monotonic_ns()
        with self._lock:
            return {
                "frames": self._frames,
                "fps": len(self._recent) - bisect.bisect_right(self._recent, now - 1_000_000_000),
                "encode_ms": self._encode_ns / self._frames / 1e6 if self._frames else 0.0,
                "drops": self._drops,
                "ended": self._ended,
            }

    def __enter__(self) -> CameraSource:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- opening ---------------------------------------------------------------------------------------------
    def _error(self, reason: str) -> CaptureError:
        cfg = self.config
        return CaptureError(f"camera {cfg.name!r} ({cfg.spec}) cannot be opened: {reason}; {LIST_HINT}")

    def _open_capture(self) -> cv2.VideoCapture:
        import cv2

        cfg = self.config
        if cfg.kind == "device":
            index = _device_index(cfg.spec)
            if index is None or (cfg.spec.startswith("/dev/") and not os.path.exists(cfg.spec)):
                raise self._error("no such video device")
            with _quiet_opencv():
                return _open_device(index)
        if cfg.kind == "file" and not Path(cfg.spec).is_file():
            raise self._error("no such file")
        timeouts = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            cfg.timeout_ms,
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            cfg.timeout_ms,
        ]
        with _quiet_opencv():
            return cv2.VideoCapture(cfg.spec, cv2.CAP_FFMPEG, timeouts)

    # --- the grab thread -------------------------------------------------------------------------------------
    def _reset_stats(self) -> None:
        with self._lock:
            self._frames, self._drops, self._encode_ns, self._ended = 0, 0, 0, False
            self._recent: deque[int] = deque()  # grab times of the last second
            self._first_t: int | None = None
            self._last_t = 0
            self._fit = _ClockFit()

    def _measured_fps(self) -> float:
        if self._first_t is None or self._frames < 2 or self._last_t <= self._first_t:
            return 0.0
        return (self._frames - 1) * 1e9 / (self._last_t - self._first_t)

    def _thread_main(self, run: _Run) -> None:
        try:
            self._grab_loop(run)
        except Exception as exc:  # a broken camera must not take the recording down with it
            cfg = self.config
            run.error = f"failed: {exc}"
            if run.sink is not None:
                run.sink.incident(self.name, "device-error", f"camera {cfg.name!r} ({cfg.spec}) {run.error}")
        finally:
            with self._lock:
                run.done = True
                if run.orphaned:
                    run.cap.release()

    def _grab_loop(self, run: _Run) -> None:
        """grab → stamp → retrieve → encode → put, until stopped or the stream ends (one incident, then return).

        A live camera's thread runs from open() on and drops what it grabs until start(): left unread, a device
        or socket queues frames that would come back later stamped late. The first frame recorded is the first
        whose grab returned after start().
        """
        import cv2

        cfg, cap = self.config, run.cap
        period_ns = 1e9 / self._fps
        paced = cfg.kind == "file" and cfg.realtime_file
        gaps = _GapDetector(self._extra["reported_fps"]) if self._has_time and cfg.kind != "file" else None
        first, self._first_image = self._first_image, None
        start_ns = last_good = time.monotonic_ns()
        f = failures = 0
        while not run.stop.is_set():
            if first is not None:  # a file's frame 0, read by open(): "grabbed" now
                grab_ns, st, image, first = time.monotonic_ns(), self._first_st_ns, first, None
            else:
                if paced:
                    f += self._pace(run, start_ns + f * period_ns, period_ns)
                ok = cap.grab()
                grab_ns = time.monotonic_ns()
                if run.stop.is_set():
                    return  # stop() arrived during a (blocked) read: the recording is over, nothing to report
                if not run.go.is_set():  # not started: drop it; failures count only once recording
                    last_good = grab_ns
                    if not ok:
                        run.stop.wait(0.01)
                    continue
                if not ok:
                    failures += 1
                    if failures >= END_AFTER_FAILURES or grab_ns - last_good >= cfg.timeout_ms * 1e6:
                        self._end(run.out, f"after {f} frames ({failures} failed reads)")
                        return
                    run.stop.wait(0.01)
                    continue
                failures, last_good = 0, grab_ns
                st = round(cap.get(cv2.CAP_PROP_POS_MSEC) * 1e6) if self._has_time else grab_ns
                f += self._dropped(run.out, gaps.missed(st) if gaps else 0)
                ok, image = cap.retrieve()
                if not ok or image is None:
                    f += self._dropped(run.out, 1)
                    continue
            self._deliver(run.out, grab_ns, st, f, image)
            f += 1

    def _deliver(self, sink: SampleSink, grab_ns: int, st: int, f: int, image: np.ndarray) -> None:
        t0 = time.monotonic_ns()
        data = self._encode(image)
        encode_ns = time.monotonic_ns() - t0
        t = grab_ns - round(self.config.latency_ms * 1e6)
        sink.put(self.name, {S_TIME: t, S_SOURCE_TIME: st, S_FRAME: f, S_DATA: data})
        with self._lock:
            self._frames += 1
            self._encode_ns += encode_ns
            self._first_t = grab_ns if self._first_t is None else self._first_t
            self._last_t = grab_ns
            self._recent.append(grab_ns)
            while self._recent[0] < grab_ns - 1_000_000_000:
                self._recent.popleft()
            if self._has_time:
                self._fit.add(grab_ns, st)

    def _encode(self, image: np.ndarray) -> bytes:
        import cv2

        cfg, (width, height) = self.config, self._size
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        elif image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        if image.shape[1] != width or image.shape[0] != height:
            shrink = width * height < image.shape[0] * image.shape[1]
            image = cv2.resize(
                image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
            )
        if cfg.encoding == "jpeg":
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality])
        else:
            ok, buf = cv2.imencode(".png", image, _png_params())
        if not ok:
            raise CaptureError(f"OpenCV could not encode a {width}x{height} frame as {cfg.encoding}")
        return buf.tobytes()

    def _dropped(self, sink: SampleSink, count: int) -> int:
        """Report frames the camera lost; returns ``count``, by which the frame number jumps."""
        if count:
            sink.drop(self.name, count)
            with self._lock:
                self._drops += count
        return count

    def _end(self, sink: SampleSink, detail: str) -> None:
        with self._lock:
            self._ended = True
        cfg = self.config
        what = "the file ended" if cfg.kind == "file" else "the stream stopped delivering frames"
        sink.incident(self.name, "stream-ended", f"camera {cfg.name!r} ({cfg.spec}): {what} {detail}")

    def _pace(self, run: _Run, due_ns: float, period_ns: float) -> int:
        """Wait until a file's frame is due. Behind by more than FILE_QUEUE frames, skip, as a camera drops them.

        Returns how many frames were skipped (the frame number jumps by that much).
        """
        skipped = 0
        while time.monotonic_ns() - due_ns > FILE_QUEUE * period_ns and run.cap.grab():
            skipped, due_ns = skipped + 1, due_ns + period_ns
        delay = (due_ns - time.monotonic_ns()) / 1e9
        if delay > 0:
            run.stop.wait(delay)
        return self._dropped(run.out, skipped)


class _GapDetector:
    """Frames a live camera missed, from gaps in its own timestamps (a gap of k periods = k − 1 missed)."""

    def __init__(self, reported_fps: float) -> None:
        self._period = 1e9 / reported_fps if reported_fps else 0.0
        self._deltas: deque[int] = deque(maxlen=31)
        self._last: int | None = None

    def missed(self, st: int) -> int:
        last, self._last = self._last, st
        if last is None or st <= last:
            return 0
        delta = st - last
        self._deltas.append(delta)
        period = statistics.median(self._deltas) if len(self._deltas) >= 5 else self._period
        return max(0, round(delta / period) - 1) if period and delta > 1.5 * period else 0


def list_cameras(max_index: int = 8) -> list[dict[str, Any]]:
    """Local cameras that open AND deliver a frame, with their size and rate; [] when there are none.

    Tries each /dev/video* node, then the indices 0..max_index-1 no node accounts for (other systems).
    """
    import cv2

    nodes = sorted(glob.glob("/dev/video*"), key=lambda p: (len(p), p))
    candidates = [(p, i) for p in nodes if (i := _device_index(p)) is not None]
    taken = {i for _, i in candidates}
    candidates += [(str(i), i) for i in range(max_index) if i not in taken]
    found = []
    for spec, index in candidates:
        with _quiet_opencv():
            cap = _open_device(index)
            try:
                ok, image = cap.read() if cap.isOpened() else (False, None)
                if ok and image is not None:
                    found.append(
                        {
                            "spec": spec,
                            "backend": cap.getBackendName(),
                            "width": int(image.shape[1]),
                            "height": int(image.shape[0]),
                            "fps": float(cap.get(cv2.CAP_PROP_FPS)),
                        }
                    )
            finally:
                cap.release()
    return found
