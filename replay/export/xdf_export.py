"""A session as XDF, the file LabRecorder writes and pyxdf, EEGLAB and MNE read.

One XDF stream per vrcap stream, in the session's order (stream ids 1, 2, …). Timestamps are the samples'
host monotonic times in seconds — the clock LSL's ``local_clock()`` reads on Linux — so the recorder's clock
and every stream's clock are the same and each stream's ClockOffset chunks (every
``clock_offset_interval_s``, like LabRecorder's) say 0: pyxdf gives the same times with or without
``synchronize_clocks``. Audio has one XDF sample per PCM frame (block stamp + nominal period); cameras are a
stream of frame numbers at each image's time (XDF holds no images: they stay in the session, or go to MCAP
or LeRobot); text is three string channels. docs/INTEROP.md tables every stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from replay.export.config import XdfConfig
from replay.export.source import SessionSource, StreamSample, audio_frame_times
from replay.export.xdf_writer import XdfWriter
from vrcap.channels import TEXT_CHANNELS, channel_format, channel_labels, lsl_type
from vrcap.packets import S_FRAME
from vrcap.streams import StreamDescriptor


@dataclass
class _Stream:
    """What is buffered for one XDF stream until its next Samples chunk, and what its footer needs."""

    stream_id: int
    desc: StreamDescriptor
    numeric: bool
    times: list[np.ndarray] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)
    buffered_from: float | None = None
    count: int = 0
    first: float | None = None
    last: float | None = None
    offsets: list[tuple[float, float]] = field(default_factory=list)


def stream_info(source: SessionSource, desc: StreamDescriptor) -> dict[str, object]:
    labels = channel_labels(desc)
    rate = 0.0 if desc.kind in ("text", "video") and desc.rate_hz <= 0 else desc.rate_hz
    return {
        "name": desc.name,
        "type": lsl_type(desc),
        "channel_count": len(labels),
        "nominal_srate": f"{rate:g}",
        "channel_format": channel_format(desc),
        "source_id": f"vrcap:{source.name}:{desc.name}",
        "version": "1.1",
        "created_at": f"{source.start_mono_ns / 1e9:.9f}",
        "uid": f"vrcap-{source.name}-{desc.name}",
        "session_id": source.name,
        "hostname": str(source.meta.created_by.get("host", "")),
        "desc": {
            "channels": {"channel": [{"label": lb, "type": ty, "unit": un} for lb, ty, un in labels]},
            "reference": {"frame": desc.frame or "stage", "units": desc.units},
            "acquisition": {"manufacturer": "vrcap", "source": desc.source, "clock": desc.clock},
        },
    }


class XdfExporter:
    def __init__(self, source: SessionSource, writer: XdfWriter, config: XdfConfig) -> None:
        self.source, self.writer, self.config = source, writer, config
        self.streams: dict[str, _Stream] = {}
        for number, desc in enumerate(source.meta.streams, start=1):
            self.streams[desc.name] = _Stream(number, desc, desc.kind != "text")
            writer.stream_header(number, stream_info(source, desc))
        self._next_offset: float | None = None

    def add(self, sample: StreamSample) -> None:
        stream = self.streams[sample.stream.name]
        desc = sample.stream
        now = sample.t / 1e9
        self._clock_offsets(now)
        if desc.kind == "audio":
            times = audio_frame_times(sample) / 1e9
            stream.values.append(sample.array().reshape(times.size, -1))
        elif desc.kind == "text":
            d = sample.data
            times = np.array([now])
            stream.values.append([str(d.get(k, "")) for k in TEXT_CHANNELS])
        elif desc.kind == "video":
            times = np.array([now])
            stream.values.append(np.array([[int(sample.raw.get(S_FRAME, stream.count))]], np.int64))
        else:
            times = np.array([now])
            stream.values.append(sample.array().reshape(1, -1))
        stream.times.append(times)
        stream.count += times.size
        stream.first = float(times[0]) if stream.first is None else stream.first
        stream.last = float(times[-1])
        if stream.buffered_from is None:
            stream.buffered_from = now
        elif now - stream.buffered_from >= self.config.chunk_seconds:
            self._flush(stream)

    def _clock_offsets(self, now: float) -> None:
        """Every stream's offset to the recorder's clock: 0, since both are host monotonic (see above)."""
        if self._next_offset is not None and now < self._next_offset:
            return
        for stream in self.streams.values():
            self.writer.clock_offset(stream.stream_id, now, 0.0)
            stream.offsets.append((now, 0.0))
        self.writer.boundary()
        self._next_offset = now + self.config.clock_offset_interval_s

    def _flush(self, stream: _Stream) -> None:
        if not stream.times:
            return
        times = np.concatenate(stream.times)
        if stream.numeric:
            self.writer.numeric_samples(stream.stream_id, times, np.concatenate(stream.values))
        else:
            self.writer.string_samples(stream.stream_id, times.tolist(), stream.values)
        stream.times, stream.values, stream.buffered_from = [], [], None

    def finish(self) -> dict[str, int]:
        last = max((s.last for s in self.streams.values() if s.last is not None), default=None)
        for stream in self.streams.values():
            self._flush(stream)
        if last is not None:
            self._next_offset = None
            self._clock_offsets(last)
        for stream in self.streams.values():
            footer: dict[str, object] = {"sample_count": stream.count}
            if stream.first is not None:
                footer = {"first_timestamp": f"{stream.first:.9f}", "last_timestamp": f"{stream.last:.9f}",
                          **footer}  # fmt: skip
            footer["clock_offsets"] = {
                "offset": [{"time": f"{t:.9f}", "value": f"{v:g}"} for t, v in stream.offsets]
            }
            self.writer.stream_footer(stream.stream_id, footer)
        return {name: s.count for name, s in self.streams.items()}


def export_xdf(
    source: SessionSource, target: Path, config: XdfConfig, progress: Any = None
) -> dict[str, Any]:
    info = {"datetime": str(source.meta.start.get("wall_utc", "")), "session": source.name, "writer": "vrcap"}
    with open(target, "wb") as out, XdfWriter(out, info) as writer:
        exporter = XdfExporter(source, writer, config)
        for sample in source.samples(progress):
            exporter.add(sample)
        counts = exporter.finish()
    return {"samples": counts}
