"""What every exporter reads: a session's samples in file order, with the two clocks they need.

Samples come out packet by packet (constant memory: the reader memory-maps segments) and, inside a packet,
in the order the session declares its streams, so the output of an exporter is the same bytes every run.
Times: ``t`` is host monotonic ns (the session's one clock); ``wall_ns(t)`` maps it to Unix time through the
start instant stored in session.json (``wall_ns + (t − mono_ns)``), which is what MCAP's log time wants.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vrcap.metadata import SessionMeta
from vrcap.packets import S_COUNT, S_DATA, S_TIME, SAMPLES, TIME
from vrcap.reader import SessionReader
from vrcap.streams import StreamDescriptor

ProgressCallback = Callable[[float], None]  # called with the seconds of recording just read


@dataclass(frozen=True)
class StreamSample:
    """One sample of one stream: a typed view of the sample map stored on disk (docs/FORMAT.md §4)."""

    stream: StreamDescriptor
    t: int  # host monotonic ns
    raw: dict[str, Any]  # the sample map itself: "d", "st", "v", "i", "n", "f" as the format defines them

    @property
    def data(self) -> Any:
        return self.raw[S_DATA]

    def array(self) -> np.ndarray:
        """The data of a raw or PCM stream as an array of the declared dtype and shape (-1 = frames)."""
        desc = self.stream
        dtype = np.dtype(desc.dtype).newbyteorder("<")
        values = np.frombuffer(self.raw[S_DATA], dtype=dtype)
        return values.reshape(desc.shape) if desc.shape else values


class SessionSource:
    """A session opened for export. Read-only: nothing here writes into the session folder."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.reader = SessionReader(self.path)
        self.meta: SessionMeta = self.reader.meta
        self.streams = {s.name: s for s in self.meta.streams}
        self._order = {s.name: i for i, s in enumerate(self.meta.streams)}
        self.start_wall_ns = int(self.meta.start["wall_ns"])
        self.start_mono_ns = int(self.meta.start["mono_ns"])

    @property
    def name(self) -> str:
        return self.meta.name

    def duration_s(self) -> float:
        """Recorded seconds (first to last frame): from stats when finalized, else from the index."""
        duration = self.meta.stats.get("duration_s")
        if duration is not None:
            return float(duration)
        times = self.reader.index.times
        return float(times[-1] - times[0]) / 1e9 if times.size else 0.0

    def wall_ns(self, t: int) -> int:
        return self.start_wall_ns + (int(t) - self.start_mono_ns)

    def samples(self, progress: ProgressCallback | None = None) -> Iterator[StreamSample]:
        """Every sample of every declared stream, in file order; undeclared streams are skipped.

        A torn or corrupt record raises the format's error after every sample before it was yielded: the
        caller decides whether a partial export is acceptable (it never is for ``vrcap export``).
        """
        last_t: int | None = None
        for packet in self.reader.packets():
            yield from self.packet_samples(packet)
            if progress is not None:
                t = int(packet[TIME])
                progress(0.0 if last_t is None else (t - last_t) / 1e9)
                last_t = t

    def packet_samples(self, packet: dict[str, Any]) -> Iterator[StreamSample]:
        """The samples of one packet: declared streams in the session's order, each stream's in file order."""
        order, streams = self._order, self.streams
        per_stream = packet.get(SAMPLES) or {}
        for name in sorted((n for n in per_stream if n in order), key=order.__getitem__):
            desc = streams[name]
            for raw in per_stream[name]:
                yield StreamSample(desc, int(raw[S_TIME]), raw)

    def close(self) -> None:
        self.reader.close()

    def __enter__(self) -> SessionSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def audio_frame_times(sample: StreamSample) -> np.ndarray:
    """Host ns of each frame of an audio block: the block's stamp plus the nominal frame period.

    The block's ``t`` is the session's mapping of its first frame (the audio clock fit at capture); inside a
    10 ms block the drift the fit corrects (tens of ppm) is below a microsecond, so the nominal period is exact
    enough and keeps every exporter in agreement with what the session says.
    """
    frames = int(sample.raw.get(S_COUNT) or len(sample.data) // (2 * max(1, sample.stream.shape[-1])))
    period = 1e9 / sample.stream.rate_hz
    return sample.t + np.round(np.arange(frames) * period).astype(np.int64)
