"""The microphone as a push source: PortAudio (through ``sounddevice``) into timestamped int16 blocks.

    PortAudio thread                      drain thread (every ~10 ms)                 engine
    ────────────────                      ───────────────────────────                 ──────
    _callback(indata) ─► data ring  ────► cut into blocks of `block` frames ────────► sink.put(stream, block)
                     └─► meta ring  ────► clock fit: sample index → host monotonic ─► sink.incident(...)

The callback does the least possible — copy into a preallocated ring, note (device frame counter, monotonic time,
overflow flag) in a preallocated metadata ring, return — because anything slower (allocation of big arrays, locks,
logging, a sink that might block) risks PortAudio overruns. Everything else happens on the drain thread.

Time. The sample counter *is* the audio clock: ``st`` and ``i`` of a block are the index of its first frame
(0 = first frame the device delivered). Host time comes from ``capture.clockfit.LinearClockFit``, fed with one
observation per callback: the callback's ``time.monotonic_ns()`` at entry, taken as the capture time of the *end*
of the block it delivers (the frame after its last). That is an upper bound: the block was complete before its
callback could run; the fit's lower envelope removes the scheduling lateness. The stream's reported input latency
is *not* subtracted by default: on ALSA→PulseAudio it is the buffer size PortAudio asked for (20 ms for "low"),
not the delay of the newest frame, and subtracting it placed tone onsets ~20 ms *before* the process playing them
was spawned (tests/capture/pulse.py); without it they land 1 ± 3.5 ms after the spawn, at most ~10 ms early
(the monitor delivers ahead of its timeline). A real microphone's capture-to-callback delay cannot be measured
from callbacks alone; ``AudioConfig.subtract_latency`` is there for host APIs whose reported latency is known good.

A block's ``t`` is the fit *at delivery*. Right after start (or an overflow) the fit has seen only a few,
possibly late callbacks — PulseAudio hands over its start-up backlog in a burst — so the first blocks can be
timed late by up to that backlog (tens of ms) and closer together than a block; ``t`` never decreases.
``clock_info()`` (stored in session.json at stop) holds the settled fit for replay to redo the mapping.

Gaps are never hidden. A PortAudio input overflow (frames discarded before a callback; PortAudio does not say
how many) restarts the clock fit at that block — its index continues, its time jumps — and is reported as an
"overflow" incident. Frames the drain thread could not take in time (ring full) are counted exactly: the next
block's ``i`` jumps by them, ``sink.drop`` counts them and an "overflow" incident says so.

A device that fails mid-recording — PortAudio ends the stream, or callbacks stop for ``stall_timeout_s`` — is
reported once as "device-error"; this source then stops producing while the other streams go on.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from capture.clockfit import LinearClockFit
from capture.source import SampleSink
from vrcap.errors import CaptureError
from vrcap.packets import S_COUNT, S_DATA, S_INDEX, S_SOURCE_TIME, S_TIME
from vrcap.streams import StreamDescriptor

if TYPE_CHECKING:
    import sounddevice

LIST_HINT = "run `vrcap devices` to list microphones"
INSTALL_HINT = (
    "install PortAudio: apt-get install libportaudio2 (Debian/Ubuntu), brew install portaudio (macOS)"
)
DRAIN_PERIOD_S = 0.010
LEVEL_WINDOW_S = 0.100
_M_END, _M_TIME, _M_FRAMES, _M_WEND, _M_FLAGS = range(5)  # columns of the metadata ring
_F_OVERFLOW, _F_WRITTEN = 1, 2  # flag bits


@dataclass
class AudioConfig:
    """One microphone, e.g. the ``audio`` section of a capture config. Every field has a working default."""

    # None: PortAudio's default input ("default"); a name or space-separated name substrings ("pulse",
    # "USB Audio"), case-insensitive; or an index from `vrcap devices`.
    device: str | int | None = None
    rate_hz: int = 48000  # frames per second asked of the device; the fit measures the real rate
    channels: int = 1  # interleaved in each block
    block: int = 480  # frames per delivered block (10 ms at 48 kHz) and PortAudio's callback size
    ring_seconds: float = 2.0  # how long the drain thread may stall before frames are dropped (counted)
    stream_name: str = "audio"  # the stream's name in the session
    latency: str | float = "low"  # PortAudio suggested input latency: "low", "high" or seconds
    stall_timeout_s: float = 1.0  # no callback for this long while running = the device is gone
    start_timeout_s: float = 5.0  # the first callback may come late (PulseAudio: up to ~1.8 s measured)
    subtract_latency: bool = False  # subtract the stream's reported input latency from callback times

    def __post_init__(self) -> None:
        if isinstance(self.device, bool) or not isinstance(self.device, (str, int, type(None))):
            raise ValueError(
                f"audio.device must be a name, an index or null, got {self.device!r}; {LIST_HINT}"
            )
        if isinstance(self.device, int) and self.device < 0:
            raise ValueError(f"audio.device index must be >= 0, got {self.device}; {LIST_HINT}")
        if not 8000 <= self.rate_hz <= 384000:
            raise ValueError(
                f"audio.rate_hz must be 8000..384000, got {self.rate_hz}; 48000 suits speech and VR"
            )
        if not 1 <= self.channels <= 32:
            raise ValueError(f"audio.channels must be 1..32, got {self.channels}; use 1 (mono) or 2 (stereo)")
        if not 16 <= self.block <= self.rate_hz:
            raise ValueError(
                f"audio.block must be 16..{self.rate_hz} frames, got {self.block}; 480 is 10 ms at 48 kHz"
            )
        if self.ring_seconds * self.rate_hz < 4 * self.block:
            raise ValueError(
                f"audio.ring_seconds {self.ring_seconds} holds fewer than 4 blocks; use at least 0.5 (default 2.0)"
            )
        if not self.stream_name or not self.stream_name.replace("_", "").isalnum():
            raise ValueError(
                f"audio.stream_name {self.stream_name!r} must be letters, digits and '_', e.g. audio"
            )
        if isinstance(self.latency, str) and self.latency not in ("low", "high"):
            raise ValueError(f"audio.latency must be 'low', 'high' or seconds, got {self.latency!r}")
        if not isinstance(self.latency, str) and not 0 < self.latency <= 2:
            raise ValueError(f"audio.latency must be 0..2 seconds, got {self.latency}; 'low' suits recording")
        if self.stall_timeout_s <= 0.05 or self.start_timeout_s < self.stall_timeout_s:
            raise ValueError(
                "audio.stall_timeout_s must exceed 0.05 s and start_timeout_s must be >= it "
                f"(got {self.stall_timeout_s}, {self.start_timeout_s}); defaults 1.0 and 5.0"
            )


def _sounddevice() -> Any:
    """Import sounddevice on demand: importing it loads and initializes PortAudio (slow, scans devices)."""
    try:
        import sounddevice
    except OSError as exc:  # sounddevice raises OSError when the PortAudio library is missing
        raise CaptureError(f"cannot load PortAudio ({exc}); {INSTALL_HINT}") from exc
    return sounddevice


def list_microphones() -> list[dict[str, Any]]:
    """Every device PortAudio can record from, for ``vrcap devices``; empty when there is none."""
    sd = _sounddevice()
    try:
        devices = sd.query_devices()
        hostapis = sd.query_hostapis()
    except sd.PortAudioError:
        return []
    return [
        {
            "index": int(dev["index"]),
            "name": str(dev["name"]),
            "hostapi": str(hostapis[dev["hostapi"]]["name"]),
            "max_input_channels": int(dev["max_input_channels"]),
            "default_samplerate": float(dev["default_samplerate"]),
        }
        for dev in devices
        if dev["max_input_channels"] > 0
    ]


class AudioSource:
    """A microphone recorded into blocks of ``config.block`` frames; implements ``capture.source.PushSource``.

    Use as a context manager (``with AudioSource(cfg) as mic: mic.start(sink) ...``) or call ``open()``,
    ``start(sink)`` and, always, ``stop()``, which is idempotent and releases the device and the drain thread.
    """

    def __init__(self, config: AudioConfig | None = None) -> None:
        self.config = config or AudioConfig()
        self.name = self.config.stream_name
        self._sd: Any = None
        self._stream: sounddevice.InputStream | None = None
        self._device_name = "default" if self.config.device is None else str(self.config.device)
        self._device_info: dict[str, Any] = {}
        self._thread: threading.Thread | None = None
        self._lifecycle = threading.Lock()  # orders open/start/stop; never taken by the callback
        self._fit_lock = threading.Lock()  # the fit is written by the drain thread, read by clock_info()
        self._reset()

    # -- state --------------------------------------------------------------------------------------------

    def _reset(self) -> None:
        cfg = self.config
        self._ring = np.zeros(
            (max(4 * cfg.block, math.ceil(cfg.ring_seconds * cfg.rate_hz)), cfg.channels), "<i2"
        )
        self._meta = np.zeros((2 * math.ceil(len(self._ring) / cfg.block) + 64, 5), np.int64)
        # written only by the callback (plain int assignments are atomic under the GIL):
        self._dev_frames = 0  # frames the device has delivered: the sample counter
        self._written = 0  # frames copied into the ring so far
        self._meta_count = 0  # records published; record k lives in row k % len(meta)
        self._last_callback_ns = 0
        # written only by the drain thread:
        self._read = 0  # frames taken out of the ring
        self._meta_read = 0  # records processed
        self._pending = np.zeros((cfg.block, cfg.channels), "<i2")  # the block being assembled
        self._pending_n = 0
        self._pending_index = 0  # sample index of the pending block's first frame
        self._frames_out = 0
        self._overflows = 0
        self._level_dbfs = float("-inf")  # RMS of the last LEVEL_WINDOW_S, published for live_stats()
        self._levels: deque[tuple[int, float]] = deque(
            maxlen=max(1, round(LEVEL_WINDOW_S * cfg.rate_hz / cfg.block))
        )
        self._fit = LinearClockFit(cfg.rate_hz)
        self._correction_ns = 0
        self._failed: str | None = None  # the device-error message, once reported
        self._finished = threading.Event()  # set by PortAudio when the stream ends on its own
        self._stopping = threading.Event()
        self._started_ns = 0
        self._sink: SampleSink | None = None

    # -- PushSource -------------------------------------------------------------------------------------------

    def streams(self) -> list[StreamDescriptor]:
        cfg = self.config
        extra: dict[str, Any] = {"device": self._device_name, "block": cfg.block, **self._device_info}
        return [
            StreamDescriptor(
                cfg.stream_name, "audio", float(cfg.rate_hz), (-1, cfg.channels), "int16", "pcm_s16le",
                "PCM, full scale 32767", "", (), "sounddevice", "sample_index", extra=extra,
            )
        ]  # fmt: skip

    def open(self) -> None:
        """Find the device and open an input stream on it (not started yet); CaptureError if it cannot be done."""
        with self._lifecycle:
            if self._stream is not None:
                return
            sd = self._sd = _sounddevice()
            cfg = self.config
            wanted = "default input" if cfg.device is None else repr(cfg.device)
            try:
                info = sd.query_devices(cfg.device, "input")
            except (ValueError, sd.PortAudioError) as exc:
                reason = " ".join(str(exc).split())  # sounddevice lists multiple matches on several lines
                if not list_microphones():
                    reason = "PortAudio finds no input device at all (is the sound server running?)"
                raise CaptureError(f"no microphone {wanted}: {reason}; {LIST_HINT}") from exc
            self._device_name = str(info["name"])
            if info["max_input_channels"] < cfg.channels:
                raise CaptureError(
                    f"microphone {self._device_name!r} has {info['max_input_channels']} input channels, "
                    f"{cfg.channels} asked; set audio.channels or pick another device ({LIST_HINT})"
                )
            self._reset()
            try:
                stream = sd.InputStream(
                    device=int(info["index"]),
                    samplerate=cfg.rate_hz,
                    channels=cfg.channels,
                    dtype="int16",
                    blocksize=cfg.block,
                    latency=cfg.latency,
                    callback=self._callback,
                    finished_callback=self._finished.set,
                )
            except (ValueError, sd.PortAudioError) as exc:
                raise CaptureError(
                    f"cannot open microphone {self._device_name!r}: {exc}; {LIST_HINT}"
                ) from exc
            self._stream = stream
            self._correction_ns = round(stream.latency * 1e9) if cfg.subtract_latency else 0
            self._device_info = {
                "hostapi": str(sd.query_hostapis(info["hostapi"])["name"]),
                "latency_s": float(stream.latency),
                "latency_subtracted": cfg.subtract_latency,
            }

    def start(self, sink: SampleSink) -> None:
        """Start the device and the drain thread that delivers blocks to ``sink``."""
        if self._stream is None:
            self.open()
        with self._lifecycle:
            stream = self._stream
            if stream is None or self._thread is not None:
                raise CaptureError(
                    f"microphone {self._device_name!r} is stopped or already started; open() again"
                )
            self._sink = sink
            self._started_ns = time.monotonic_ns()
            try:
                stream.start()
            except self._sd.PortAudioError as exc:
                raise CaptureError(
                    f"cannot start microphone {self._device_name!r}: {exc}; {LIST_HINT}"
                ) from exc
            self._thread = threading.Thread(
                target=self._drain_loop, name=f"vrcap-{self.name}-drain", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop the device, deliver what it already captured, join the drain thread, close. Idempotent."""
        with self._lifecycle:
            self._stopping.set()
            stream, self._stream = self._stream, None
            if stream is not None:
                # A device already gone may fail either call; close() still frees PortAudio's side.
                with contextlib.suppress(self._sd.PortAudioError):
                    stream.stop()  # no callback runs after this returns
                with contextlib.suppress(self._sd.PortAudioError):
                    stream.close()
            thread, self._thread = self._thread, None
            if thread is not None:
                thread.join()  # wakes every DRAIN_PERIOD_S and sees _stopping

    def __enter__(self) -> AudioSource:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def clock_info(self) -> dict[str, Any]:
        """The sample-index → host-ns mapping as session.json stores it, plus the measured offset and drift."""
        with self._fit_lock:
            return {
                "type": "linear",
                "unit": "sample_index",
                "segments": self._fit.segments(),
                "offset_ns": self._fit.offset_ns,
                "drift_ppm": self._fit.drift_ppm,
                "latency_subtracted_ns": self._correction_ns,
            }

    def live_stats(self) -> dict[str, Any]:
        """Level of the last ~100 ms (RMS, dBFS; -inf when silent), frames delivered, overflows, clock figures."""
        with self._fit_lock:
            offset, drift = self._fit.offset_ns, self._fit.drift_ppm
        return {
            "level_dbfs": self._level_dbfs,
            "frames": self._frames_out,
            "overflows": self._overflows,
            "offset_ms": offset / 1e6,
            "drift_ppm": drift,
        }

    # -- PortAudio thread -----------------------------------------------------------------------------------

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        """Copy and note; nothing else. Runs on PortAudio's thread, which must never wait."""
        now = time.monotonic_ns()
        ring, meta = self._ring, self._meta
        cap, w = len(ring), self._written
        dev_end = self._dev_frames + frames
        flags = _F_OVERFLOW if status.input_overflow else 0
        if w + frames - self._read <= cap:  # room: the drain thread has read everything we would overwrite
            pos = w % cap
            first = min(frames, cap - pos)
            ring[pos : pos + first] = indata[:first]
            if first < frames:
                ring[: frames - first] = indata[first:]
            w += frames
            flags |= _F_WRITTEN
        row = meta[self._meta_count % len(meta)]
        row[_M_END], row[_M_TIME], row[_M_FRAMES], row[_M_WEND], row[_M_FLAGS] = (
            dev_end,
            now,
            frames,
            w,
            flags,
        )
        self._dev_frames = dev_end
        self._written = w
        self._last_callback_ns = now
        self._meta_count += 1  # publish last: the drain thread reads rows below this count only

    # -- drain thread -----------------------------------------------------------------------------------------

    def _drain_loop(self) -> None:
        while not self._stopping.wait(DRAIN_PERIOD_S):
            self._drain()
            problem = self._device_problem()
            if problem is not None:
                self._fail(problem)
                return
        self._drain()  # stop() stopped the stream first: this takes its last frames
        self._flush_pending()

    def _device_problem(self) -> str | None:
        """Why the device looks gone, or None. Only while running: a stream ended by stop() is no problem."""
        now, last = time.monotonic_ns(), self._last_callback_ns
        problem = None
        if self._finished.is_set():
            problem = "PortAudio ended the stream (device removed or host audio server gone)"
        elif last == 0 and now - self._started_ns > self.config.start_timeout_s * 1e9:
            problem = f"no audio arrived within {self.config.start_timeout_s:g} s of start"
        elif last and now - last > self.config.stall_timeout_s * 1e9:
            problem = f"no audio for {(now - last) / 1e9:.1f} s (device removed or host audio server gone)"
        # Checked last: stop() sets _stopping before it ends the stream, so a stream that ended because of
        # stop() is always seen here as stopping, never as a failure.
        return None if self._stopping.is_set() else problem

    def _fail(self, problem: str) -> None:
        self._drain()
        self._flush_pending()
        self._failed = f"microphone {self._device_name!r} stopped delivering: {problem}; {LIST_HINT}"
        if self._sink is not None:
            self._sink.incident(self.name, "device-error", self._failed)

    def _drain(self) -> None:
        """Turn every published callback record into observations and blocks."""
        meta, count = self._meta, self._meta_count
        for k in range(max(self._meta_read, count - len(meta) + 1), count):
            end, t, frames, w_end, flags = (int(v) for v in meta[k % len(meta)])
            if self._meta_count - k >= len(meta):
                continue  # the callback lapped this row while we read it: lost, shows as a jump below
            start = end - frames
            if flags & _F_OVERFLOW:
                self._flush_pending()  # what came before is timed by the old segment
                with self._fit_lock:
                    self._fit.restart(start)
                self._overflow(f"PortAudio input overflow before index {start}; clock fit restarted there", 0)
            with self._fit_lock:  # timing is good even when the ring could not take the frames
                self._fit.observe(end, t - self._correction_ns)
            if not flags & _F_WRITTEN:
                continue  # frames lost in a full ring: the next written callback's start shows and counts them
            expected = self._pending_index + self._pending_n
            if start != expected:
                self._flush_pending()
                self._overflow(
                    f"{start - expected} frames lost before index {start}: the drain thread fell behind",
                    start - expected,
                )
                self._pending_index = start
            self._take(w_end - frames, frames)
            self._read = w_end
        self._meta_read = count

    def _overflow(self, message: str, lost: int) -> None:
        self._overflows += 1
        if self._sink is not None:
            if lost > 0:
                self._sink.drop(self.name, lost)
            self._sink.incident(self.name, "overflow", message)

    def _take(self, first: int, frames: int) -> None:
        """Append ring frames [first, first+frames) to the pending block, emitting each block that fills up."""
        ring, cap, block = self._ring, len(self._ring), self.config.block
        done = 0
        while done < frames:
            pos = (first + done) % cap
            n = min(frames - done, block - self._pending_n, cap - pos)
            self._pending[self._pending_n : self._pending_n + n] = ring[pos : pos + n]
            self._pending_n += n
            done += n
            if self._pending_n == block:
                self._flush_pending()

    def _flush_pending(self) -> None:
        """Emit the pending frames as one block (short when a gap or the end cuts it) and start the next."""
        n, i = self._pending_n, self._pending_index
        if n == 0:
            return
        data = self._pending[:n]
        with self._fit_lock:
            t = self._fit.map(i)
        if self._sink is not None:
            self._sink.put(
                self.name, {S_TIME: t, S_SOURCE_TIME: i, S_INDEX: i, S_COUNT: n, S_DATA: data.tobytes()}
            )
        as_float = data.astype(np.float32)
        self._levels.append((n, float(np.sum(as_float * as_float))))
        frames = sum(k for k, _ in self._levels) * self.config.channels
        rms = math.sqrt(sum(e for _, e in self._levels) / frames)
        self._level_dbfs = 20 * math.log10(rms / 32768.0) if rms > 0 else float("-inf")  # one float: atomic
        self._frames_out += n
        self._pending_index, self._pending_n = i + n, 0
