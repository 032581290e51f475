"""The capture engine: one frame clock, many sources, one writer thread — driven from an asyncio loop.

    frame source (polled per frame) ─┐
    push sources (own threads) ──► FrameAssembler ──► frame loop (own thread) ──► WriterThread ──► SessionWriter
                                                          │
                                                          └──► LiveStats (async stream, status line, server)

The frame clock is the headset's rate: frame ``k`` is due at ``t0 + k/rate``. A loop that falls behind catches
up, producing the late frames at their due times, as long as it is less than ``MAX_CATCH_UP_S`` behind (OpenXR
can still locate poses that recent); further behind it skips to the current frame, as a compositor would, and
the skipped sequence numbers are the session's dropped frames.
Start and stop can be called from code any number of times in one process: ``run()`` releases every thread,
file and device in ``finally``.

The frame loop runs on a thread of its own and paces itself with ``time.sleep``; ``run()`` awaits it. Why not
on the event loop: each asyncio wake-up (timer heap, three loop iterations, epoll with its millisecond rounding)
cost ~190-240 µs of CPU a frame against ~80-110 µs for a thread's sleep (tools/bench/frame_loop.py), ~0.5 CPU-s
a minute at 90 Hz; and the clock no longer depends on anything else that runs on the loop (the status line, the
stats stream).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from capture.assembler import DROPPABLE_KINDS, FrameAssembler
from capture.source import FrameSource, PacketTap, PushSource
from capture.writer_thread import WriterThread
from vrcap.errors import CaptureError, VrcapError
from vrcap.packets import (
    ANNOTATION_CHANNELS,
    ANNOTATION_KINDS,
    S_DATA,
    S_SOURCE_TIME,
    S_TIME,
    SAMPLES,
    SEQ,
    SOURCE_TIME,
    TIME,
)
from vrcap.streams import StreamDescriptor
from vrcap.wording import clock, dropped_words, plural
from vrcap.writer import SessionWriter, WriterConfig

ANNOTATION_STREAM = "annotations"
MAX_CATCH_UP_S = 0.1


def annotation_stream() -> StreamDescriptor:
    return StreamDescriptor(ANNOTATION_STREAM, "text", 0.0, (), "", "utf8", "", "", (), "user", "host_ns")


@dataclass
class LiveStats:
    """A snapshot of a running recording: what the status line and the server's live view show."""

    session: str
    state: str = "starting"  # starting, recording, stopping, stopped, failed
    elapsed_s: float = 0.0
    frames: int = 0
    dropped_frames: int = 0
    samples: dict[str, int] = field(default_factory=dict)
    drops: dict[str, int] = field(default_factory=dict)
    queue_packets: int = 0
    queue_mb: float = 0.0
    bytes_written: int = 0
    write_mb_s: float = 0.0
    audio_dbfs: float | None = None
    clocks: dict[str, dict[str, Any]] = field(default_factory=dict)  # per source: offset_ms, drift_ppm
    incidents: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    @property
    def total_drops(self) -> int:
        return self.dropped_frames + sum(self.drops.values())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        rate = self.frames / self.elapsed_s if self.elapsed_s > 0 else 0.0
        quiet = self.audio_dbfs is None or self.audio_dbfs < -90
        level = " quiet" if quiet else f"{self.audio_dbfs:6.1f} dBFS"
        failing = f"  ⚠ {plural(len(self.incidents), 'incident')}" if self.incidents else ""
        audio_clock = self.clocks.get("audio") or {}
        if "drift_ppm" in audio_clock:  # the sound card's clock against the host's, as fitted so far
            level += (
                f", clock {audio_clock.get('offset_ms', 0.0):+.1f} ms {audio_clock['drift_ppm']:+.0f} ppm"
            )
        return (
            f"● REC {self.session}  {clock(self.elapsed_s)}  frames {self.frames} ({rate:.1f}/s)  "
            f"{self.bytes_written / 1e6:.1f} MB ({self.write_mb_s:.1f} MB/s)  {dropped_words(self.dropped_frames, self.drops)}  "
            f"queue {self.queue_packets}  audio {level}{failing}"
        )


@dataclass
class RecordingResult:
    path: Path
    frames: int
    dropped_frames: int
    duration_s: float
    bytes_written: int
    stop_reason: str
    drops: dict[str, int]
    incidents: list[dict[str, Any]]
    latency_ms: dict[str, float]  # frame time → handed to the OS, p50/p99/max


class CaptureEngine:
    """Records one session. ``await run()`` in an event loop; ``stop()`` and ``annotate()`` from anywhere."""

    def __init__(
        self,
        path: Path,
        frame_source: FrameSource,
        push_sources: list[PushSource],
        *,
        writer_config: WriterConfig | None = None,
        duration_s: float = 0.0,
        capture_config: dict[str, Any] | None = None,
        taps: list[PacketTap] | None = None,
    ) -> None:
        self.path = path
        self.taps = list(taps or [])
        self.frame_source = frame_source
        self.push_sources = list(push_sources)
        self.writer_config = writer_config or WriterConfig()
        self.duration_s = duration_s
        self.capture_config = capture_config or {}
        self.stats = LiveStats(session=path.name)
        self._stop_reason = "stopped"
        self._stop = threading.Event()
        self._annotations: list[dict[str, Any]] = []
        self._ann_lock = threading.Lock()
        self._writer: SessionWriter | None = None
        self._writer_thread: WriterThread | None = None
        self._assembler: FrameAssembler | None = None
        self._started: list[PushSource] = []
        self._next_seq = 0
        # (due ns, lag ns, frames) of each skip of the frame loop
        self._skips: list[tuple[int, int, int]] = []
        self._written: dict[str, int] = {}  # samples put into packets per stream, the polled ones too

    # --- control, from any thread --------------------------------------------------------------------

    def stop(self, reason: str = "stopped") -> None:
        if not self._stop.is_set():
            self._stop_reason = reason
            self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def annotate(
        self, text: str, kind: str = "marker", channel: str = "external", t_ns: int | None = None
    ) -> int:
        """Store a text event stamped ``t_ns`` or now (host monotonic ns, returned); it goes into the next packet.

        The API process stamps the time it received the request and passes it here: the monotonic clock is the
        same in every process of the host, so the recorder process's channel adds no delay to the stamp.
        """
        if kind not in ANNOTATION_KINDS:
            raise ValueError(f"annotation kind must be one of {', '.join(ANNOTATION_KINDS)}, got {kind!r}")
        if channel not in ANNOTATION_CHANNELS:
            raise ValueError(
                f"annotation channel must be one of {', '.join(ANNOTATION_CHANNELS)}, got {channel!r}"
            )
        if self._stop.is_set() or self.stats.state not in ("starting", "recording"):
            raise CaptureError(
                f"recording {self.path.name} is not running; annotations need a running recording"
            )
        t = time.monotonic_ns() if t_ns is None else int(t_ns)
        with self._ann_lock:
            self._annotations.append(
                {S_TIME: t, S_SOURCE_TIME: t, S_DATA: {"text": text, "kind": kind, "channel": channel}}
            )
        return t

    # --- the recording -------------------------------------------------------------------------------

    async def run(self) -> RecordingResult:
        try:
            await asyncio.to_thread(self._open)
            return await self._on_frame_thread()
        except BaseException as exc:
            self.stats.state = "failed"
            self.stats.error = str(exc)
            raise
        finally:
            await asyncio.to_thread(self._shutdown)

    def _open(self) -> None:
        """Open every device before the session exists: a missing device must not leave an empty session."""
        self.frame_source.open()
        for source in self.push_sources:
            source.open()
        streams = [*self.frame_source.streams()]
        for source in self.push_sources:
            streams.extend(source.streams())
        streams.append(annotation_stream())
        for tap in self.taps:  # like a device: a tap that cannot open must not leave an empty session
            tap.open(streams)
        kinds = {s.name: s.kind for s in streams}
        self._written = dict.fromkeys(kinds, 0)
        self._assembler = FrameAssembler(kinds)
        self._writer = SessionWriter.create(
            self.path, streams, config=self.writer_config, capture_config=self.capture_config
        )
        droppable = {s.name for s in streams if s.kind in DROPPABLE_KINDS}
        self._writer_thread = WriterThread(self._writer, droppable)

    async def _on_frame_thread(self) -> RecordingResult:
        """Run the frame loop on its own thread; if this task is cancelled, stop it and wait for it to end."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[RecordingResult] = loop.create_future()

        def settle(result: RecordingResult | None, error: BaseException | None) -> None:
            if done.cancelled():
                return
            if error is not None:
                done.set_exception(error)
            else:
                done.set_result(result)  # type: ignore[arg-type]

        def body() -> None:
            try:
                result = self._frame_loop()
            except BaseException as exc:  # handed to the awaiting task, which re-raises it
                loop.call_soon_threadsafe(settle, None, exc)
            else:
                loop.call_soon_threadsafe(settle, result, None)

        thread = threading.Thread(target=body, name="vrcap-frames", daemon=True)
        thread.start()
        try:
            return await done
        except asyncio.CancelledError:
            self.stop("cancelled")
            await asyncio.to_thread(thread.join)
            raise

    def _frame_loop(self) -> RecordingResult:
        assert self._writer is not None and self._assembler is not None and self._writer_thread is not None
        rate = self.frame_source.rate_hz
        period = 1e9 / rate
        last = math.ceil(self.duration_s * rate) if self.duration_s else None
        for source in self.push_sources:  # before t0: a device slow to start must not put frame 0 behind
            source.start(self._assembler)
            self._started.append(source)
        t0 = time.monotonic_ns()
        self.frame_source.start(t0)
        self._writer.meta.clocks = self._clocks()
        self.stats.state = "recording"
        seq = frames = dropped = 0
        self._skips = []
        while not self._stop.is_set() and (last is None or seq < last):
            due = t0 + round(seq * period)
            lag = time.monotonic_ns() - due
            if lag < 0:
                time.sleep(-lag / 1e9)
                continue  # re-check the stop flag and the time after sleeping
            if lag > MAX_CATCH_UP_S * 1e9:  # too far behind to catch up: skip to the current frame
                skipped = int(lag // period)
                if last is not None:
                    skipped = min(skipped, last - 1 - seq)
                if skipped > 0:
                    self._skips.append((due, lag, skipped))
                seq += skipped
                dropped += skipped
                due = t0 + round(seq * period)
            samples = self.frame_source.frame(seq, due)
            samples.update(self._assembler.take())
            self._take_annotations(samples)
            self._count(samples)
            if self.taps:
                self._tap({SEQ: seq, TIME: due, SAMPLES: samples})
            self._writer_thread.submit({SEQ: seq, TIME: due, SOURCE_TIME: due - t0, SAMPLES: samples})
            frames += 1
            seq += 1
            self._next_seq = seq
            self._update_stats(t0, frames, dropped)
        reason = self._stop_reason if self._stop.is_set() else "duration reached"
        return self._finish(reason, frames, dropped)

    def _finish(self, reason: str, frames: int, dropped: int) -> RecordingResult:
        assert self._writer is not None and self._writer_thread is not None and self._assembler is not None
        self.stats.state = "stopping"
        for source in self._started:
            source.stop()
        # What arrived between the last frame and the sources' stop goes into one last, complete frame.
        tail = self._assembler.take()
        if tail and self._writer_thread.error is None and self.stats.frames:
            t = time.monotonic_ns()
            samples = self.frame_source.frame(self._next_seq, t)
            samples.update(tail)
            self._take_annotations(samples)
            self._count(samples)
            with contextlib.suppress(VrcapError):
                self._tap({SEQ: self._next_seq, TIME: t, SAMPLES: samples})
                self._writer_thread.submit(
                    {SEQ: self._next_seq, TIME: t, SOURCE_TIME: t - self.frame_source_t0, SAMPLES: samples}
                )
                frames += 1
        self._writer_thread.close()
        writer = self._writer
        self._record_outcome(writer)
        error = self._writer_thread.error
        writer.close(reason if error is None else f"error: {error}")
        if error is not None:
            raise error
        lat = np.frombuffer(self._writer_thread.latencies_ns, dtype=np.int64) / 1e6
        latency = {}
        if lat.size:
            p50, p99 = np.percentile(lat, [50, 99])
            latency = {"p50": float(p50), "p99": float(p99), "max": float(lat.max())}
        stats = writer.stats()
        self.stats.frames, self.stats.samples = frames, dict(self._written)  # the last frame counted too
        self.stats.state = "stopped"
        return RecordingResult(
            self.path, frames, dropped, stats["duration_s"], writer.bytes_written, reason,
            dict(writer.drops), list(writer.meta.incidents), latency,
        )  # fmt: skip

    def _tap(self, packet: dict[str, Any]) -> None:
        """Taps get their own copy of the samples map: the writer thread may strip frames from the original."""
        for tap in self.taps:
            tap.put({**packet, SAMPLES: dict(packet[SAMPLES])})

    @property
    def frame_source_t0(self) -> int:
        return int(getattr(self.frame_source, "t0", 0))

    def _record_outcome(self, writer: SessionWriter) -> None:
        """Drops and incidents of every source go into session.json; clock fits as measured at the end."""
        assert self._assembler is not None and self._writer_thread is not None
        for name, count in {**self._assembler.drops}.items():
            writer.note_drops(name, count)
        for name, count in self._writer_thread.drops.items():
            writer.note_drops(name, count)
        for incident in self._assembler.take_incidents():
            writer.add_incident(incident["stream"], incident["kind"], incident["message"], incident["t"])
        for due, lag, skipped in self._skips:  # when and by how much: a stall is found from here, not guessed
            writer.add_incident(
                "headset",
                "frames-skipped",
                f"the frame loop was {lag / 1e6:.0f} ms behind: {plural(skipped, 'frame')} skipped "
                "(the recorder did not get the CPU; see COLLECTING.md, priority)",
                due,
            )
        writer.meta.clocks = self._clocks()
        final_streams = getattr(self.frame_source, "final_streams", None)  # rates known only now (WebXR)
        if final_streams is not None:
            writer.meta.streams = final_streams(writer.meta.streams)

    def _clocks(self) -> dict[str, Any]:
        clocks = {"headset": self.frame_source.clock_info()}
        for source in self.push_sources:
            clocks[source.name] = source.clock_info()
        return clocks

    def _count(self, samples: dict[str, list[dict[str, Any]]]) -> None:
        """Per-stream sample counts as they enter packets: the frame source's streams and annotations too."""
        written = self._written
        for name, items in samples.items():
            written[name] = written.get(name, 0) + len(items)

    def _take_annotations(self, samples: dict[str, list[dict[str, Any]]]) -> None:
        if self._annotations:
            with self._ann_lock:
                samples[ANNOTATION_STREAM] = self._annotations
                self._annotations = []

    def _update_stats(self, t0: int, frames: int, dropped: int) -> None:
        assert self._writer is not None and self._writer_thread is not None and self._assembler is not None
        s, wt = self.stats, self._writer_thread
        now = time.monotonic_ns()
        s.elapsed_s = (now - t0) / 1e9
        s.frames, s.dropped_frames = frames, dropped
        s.queue_packets, s.queue_mb = wt.queued_packets, wt.queued_bytes / 1e6
        s.bytes_written = self._writer.bytes_written
        s.write_mb_s = s.bytes_written / 1e6 / s.elapsed_s if s.elapsed_s > 0 else 0.0
        s.samples = dict(self._written)  # a copy: the event loop's thread reads it while this one counts
        s.drops = dict(self._assembler.drops)
        for k, v in wt.drops.items():
            s.drops[k] = s.drops.get(k, 0) + v

    def refresh_slow_stats(self) -> LiveStats:
        """Figures that cost more than a frame's budget (levels, clock fits): a few times a second."""
        s = self.stats
        for source in self.push_sources:
            live = source.live_stats()
            if "level_dbfs" in live and live["level_dbfs"] is not None and math.isfinite(live["level_dbfs"]):
                s.audio_dbfs = float(live["level_dbfs"])
            info = source.clock_info()
            figures = {k: info[k] for k in ("offset_ms", "drift_ppm") if k in info}
            if "offset_ns" in info:
                figures["offset_ms"] = info["offset_ns"] / 1e6
            s.clocks[source.name] = figures
        live_clock = getattr(self.frame_source, "live_clock", None)  # a headset whose clock is fitted (WebXR)
        if live_clock is not None:
            s.clocks["headset"] = live_clock()
        if self._assembler is not None:
            s.incidents = [dict(i) for i in self._assembler.incidents]
        return s

    async def live(self, interval_s: float = 0.2) -> AsyncIterator[LiveStats]:
        """Snapshots every ``interval_s`` until the recording ends (the last one says how it ended)."""
        while self.stats.state in ("starting", "recording", "stopping"):
            yield self.refresh_slow_stats()
            await asyncio.sleep(interval_s)
        yield self.refresh_slow_stats()

    def _shutdown(self) -> None:
        """Release everything, whatever happened: sources, writer thread, files. Safe to call twice."""
        for source in self.push_sources:
            with contextlib.suppress(Exception):
                source.stop()
        for tap in self.taps:
            with contextlib.suppress(Exception):
                tap.close()
        with contextlib.suppress(Exception):
            self.frame_source.close()
        if self._writer_thread is not None:
            self._writer_thread.close()
        if self._writer is not None and not self._writer.closed:
            with contextlib.suppress(VrcapError):
                self._writer.close(f"error: {self.stats.error}" if self.stats.error else self._stop_reason)
        if self.stats.state not in ("stopped", "failed"):
            self.stats.state = "stopped"
