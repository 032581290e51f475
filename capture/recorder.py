"""The record loop: a frame clock, a source, the writer, a stop signal and a status callback.

The frame clock is the virtual headset's: frame ``k`` is due at ``t0 + k/rate``. When the loop falls more than
a frame behind it skips to the current frame, as a real headset's compositor would; the skipped sequence
numbers are the session's dropped frames, visible to `vrcap validate`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from capture.config import CaptureConfig
from capture.sim_source import SimSource
from capture.status import RecordingStatus
from vrcap.packets import S_DATA, S_TIME, SAMPLES
from vrcap.writer import SessionWriter

ANNOTATION_KINDS = ("instruction", "transcript", "marker")
ANNOTATION_CHANNELS = ("internal", "external")


@dataclass
class RecordingResult:
    path: Path
    frames: int
    dropped_frames: int
    duration_s: float
    bytes_written: int
    stop_reason: str


class Recorder:
    """Records one session from the simulator. Thread-safe: ``stop()`` and ``annotate()`` from anywhere."""

    def __init__(self, path: Path, config: CaptureConfig) -> None:
        self.path = path
        self.config = config
        self._stop = threading.Event()
        self._stop_reason = "stopped"
        self._annotations: deque[dict[str, Any]] = deque()
        self.status = RecordingStatus(session=path.name)

    def stop(self, reason: str = "stopped") -> None:
        self._stop_reason = reason
        self._stop.set()

    def annotate(self, text: str, kind: str = "marker", channel: str = "external") -> int:
        """Queue a text event stamped now; it goes into the next packet. Returns its monotonic time."""
        if kind not in ANNOTATION_KINDS:
            raise ValueError(f"annotation kind must be one of {ANNOTATION_KINDS}, got {kind!r}")
        if channel not in ANNOTATION_CHANNELS:
            raise ValueError(f"annotation channel must be one of {ANNOTATION_CHANNELS}, got {channel!r}")
        t = time.monotonic_ns()
        self._annotations.append({S_TIME: t, S_DATA: {"text": text, "kind": kind, "channel": channel}})
        return t

    def run(self, on_status: Callable[[RecordingStatus], None] | None = None) -> RecordingResult:
        cfg = self.config
        rate = cfg.sim.headset_rate_hz
        period_ns = round(1e9 / rate)
        source = SimSource(cfg.sim, cfg.record.jpeg_quality)  # slow set-up (OpenCV, backgrounds) before t0
        t0 = source.start(time.monotonic_ns())  # frame 0 is due now
        last_frame = round(cfg.record.duration_s * rate) if cfg.record.duration_s else None
        next_status = 0.0
        frames = dropped = 0
        with SessionWriter.create(
            self.path,
            source.streams,
            config=cfg.writer,
            clocks=source.clocks(),
            capture_config=asdict(cfg),
            start_mono_ns=t0,
        ) as writer:
            seq = 0
            while not self._stop.is_set() and (last_frame is None or seq < last_frame):
                due = t0 + source.offset_ns(seq)
                if cfg.record.realtime:
                    lag = time.monotonic_ns() - due
                    if lag < 0:
                        if self._stop.wait(-lag / 1e9):
                            break
                    elif lag > period_ns:  # behind by more than a frame: skip, as a compositor would
                        skipped = int(lag // period_ns)
                        if last_frame is not None:
                            skipped = min(skipped, last_frame - 1 - seq)
                        if skipped > 0:
                            seq += skipped
                            dropped += skipped
                            writer.note_drops("head", skipped)
                packet = source.packet(seq)
                self._drain_annotations(packet)
                writer.write_packet(packet)
                frames += 1
                seq += 1
                elapsed = (packet["t"] - t0) / 1e9
                if on_status is not None and elapsed >= next_status:
                    next_status = elapsed + cfg.record.status_interval_s
                    on_status(self._update_status(writer, source, elapsed))
            reason = self._stop_reason if self._stop.is_set() else "duration reached"
            writer.close(reason)
            if on_status is not None:
                on_status(self._update_status(writer, source, writer.stats()["duration_s"]))
            return RecordingResult(
                self.path, frames, dropped, writer.stats()["duration_s"], writer.bytes_written, reason
            )

    def _drain_annotations(self, packet: dict[str, Any]) -> None:
        if not self._annotations:
            return
        items = []
        while self._annotations:
            items.append(self._annotations.popleft())
        packet[SAMPLES]["annotations"] = items

    def _update_status(self, writer: SessionWriter, source: SimSource, elapsed: float) -> RecordingStatus:
        status = self.status
        status.elapsed_s = elapsed
        status.frames = writer.packets
        status.bytes_written = writer.bytes_written
        status.drops = dict(writer.drops)
        status.audio_dbfs = source.take_audio_level()
        return status
