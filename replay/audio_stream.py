"""Audio onto the step clock a chunk of steps at a time, keeping only the blocks later chunks still need.

Why chunks: a session's audio is ~96 KB per recorded second at 48 kHz mono, and its step tensors (audio.pcm
repeats every sample) as much again; held whole, two hours cost gigabytes. ``AudioAccumulator.take(k0, k1)``
hands out the blocks that cover steps k0..k1-1 (their windows and the mel frames reaching back into the previous
step) and forgets the blocks no later step can reach. The result equals computing every step at once from the
whole recording — windows, masks and starts bit for bit, log-mel to float rounding (BLAS sums a matrix product
of another height in another order); tests/replay/test_audio_stream.py holds it to that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from replay.audio_features import AudioTrack, fallback_clock, index_at_times, log_mel, step_windows
from replay.config import AudioConfig
from vrcap.metadata import SessionMeta
from vrcap.streams import StreamDescriptor


@dataclass(frozen=True)
class AudioLayout:
    """What a step's audio looks like: the stream's format and the feature settings."""

    rate: int
    channels: int
    length: int  # samples per step
    hop: int
    window: int
    frames_per_step: int
    n_mels: int
    fmin: float
    fmax: float


def audio_stream(meta: SessionMeta) -> StreamDescriptor | None:
    """The stream converted: the first 16-bit PCM audio stream (one microphone per session today)."""
    return next((s for s in meta.streams if s.kind == "audio" and s.encoding == "pcm_s16le"), None)


def audio_layout(meta: SessionMeta, step_hz: float, cfg: AudioConfig) -> AudioLayout:
    desc = audio_stream(meta)
    rate = int(desc.rate_hz) if desc is not None and desc.rate_hz > 0 else 48000
    channels = int(desc.shape[-1]) if desc is not None and len(desc.shape) >= 2 else 1
    length = round(rate / step_hz)
    hop = round(rate * cfg.hop_ms / 1000)
    return AudioLayout(
        rate=rate,
        channels=channels,
        length=length,
        hop=hop,
        window=round(rate * cfg.window_ms / 1000),
        frames_per_step=max(1, length // hop),
        n_mels=cfg.n_mels,
        fmin=float(cfg.fmin_hz),
        fmax=float(cfg.fmax_hz or rate / 2),
    )


@dataclass
class AudioResult:
    pcm: np.ndarray  # (S, length, C) int16
    mel: np.ndarray  # (S, M, n_mels) float32, 0 where masked
    mask: np.ndarray  # (S,) bool
    starts: np.ndarray  # (S,) int64 sample index of each step's first sample
    notes: list[str]


def features(
    track: AudioTrack | None, starts: np.ndarray, layout: AudioLayout
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pcm, mel, mask) of the steps beginning at sample index ``starts``."""
    pcm, mask, mono = step_windows(track, starts, layout.length)
    if track is None:
        return pcm, np.zeros((starts.size, layout.frames_per_step, layout.n_mels), np.float32), mask
    ends = starts[:, None] + layout.hop * (1 + np.arange(layout.frames_per_step))[None, :]  # causal frames
    mel = log_mel(mono, track.base, ends, layout.rate, layout.window, layout.n_mels, layout.fmin, layout.fmax)
    mel[~mask] = 0.0
    return pcm, mel, mask


@dataclass
class AudioChunk:
    """The input of one chunk's features: the blocks that cover it and each step's first sample index.

    The blocks are joined into one track by ``compute``, on the chunk builder's thread, not the reader's."""

    blocks: list[tuple[int, bytes]] | None
    starts: np.ndarray  # (steps,) int64

    def compute(self, layout: AudioLayout) -> AudioResult:
        track = AudioTrack.from_blocks(self.blocks, layout.rate, layout.channels) if self.blocks else None
        return AudioResult(*features(track, self.starts, layout), self.starts, [])

    def __getstate__(self) -> dict[str, Any]:
        """Pickled as three arrays, not a thousand small byte strings: arrays cross to the chunk builder's
        process through shared memory (replay/chunk_process.py), byte strings through its pipe."""
        if self.blocks is None:
            return {"starts": self.starts, "blocks": None}
        data = [d for _, d in self.blocks]
        return {
            "starts": self.starts,
            "index": np.fromiter((i for i, _ in self.blocks), np.int64, len(self.blocks)),
            "sizes": np.fromiter(map(len, data), np.int64, len(data)),
            "data": np.frombuffer(b"".join(data), np.uint8),
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.starts = state["starts"]
        if "data" not in state:
            self.blocks = None
            return
        data, sizes = state["data"], state["sizes"]
        ends = np.cumsum(sizes)
        spans = zip(state["index"].tolist(), (ends - sizes).tolist(), ends.tolist(), strict=True)
        self.blocks = [(i, data[a:b]) for i, a, b in spans]  # views of one buffer, read like bytes


class AudioAccumulator:
    """Takes the audio blocks of one stream in packet order; ``take(k0, k1)`` gives chunk k0..k1-1's input."""

    def __init__(self, layout: AudioLayout, clock: dict[str, Any] | None, t0: int, step_hz: float) -> None:
        self.layout = layout
        self.clock = clock if clock and clock.get("type") == "linear" and clock.get("segments") else None
        self.t0, self.period = t0, 1e9 / step_hz
        self.notes: list[str] = []
        self.first: tuple[int, int] | None = None  # (index, t) of the first block
        self._frame_bytes = 2 * layout.channels
        self._blocks: list[tuple[int, bytes]] = []  # (first sample index, bytes), in arrival order
        self._ends: list[int] = []  # one past each block's last sample

    def add(self, index: int, data: bytes, t: int) -> None:
        if self.first is None:
            self.first = (index, t)
            if self.clock is None:
                self.clock = fallback_clock(index, t, self.layout.rate)
                self.notes.append("audio: no linear clock in session.json; placed by the first block's stamp")
        self._blocks.append((index, data))
        self._ends.append(index + len(data) // self._frame_bytes)

    def _step_starts(self, k0: int, k1: int) -> np.ndarray:
        assert self.clock is not None
        times = self.t0 + np.round(np.arange(k0, k1) * self.period)
        return np.round(index_at_times(self.clock, times.astype(np.float64))).astype(np.int64)

    def _reach(self, starts: np.ndarray) -> tuple[int, int]:
        """[lo, hi): every sample index the steps beginning at ``starts`` read (windows and mel frames)."""
        layout = self.layout
        lo = int(starts.min()) + min(0, layout.hop - layout.window)
        return lo, int(starts.max()) + max(layout.length, layout.hop * layout.frames_per_step)

    def take(self, k0: int, k1: int) -> AudioChunk:
        """The input of steps k0..k1-1; blocks that steps from k1 on cannot reach are dropped."""
        if self.first is None:  # no audio (yet): every step is masked
            return AudioChunk(None, np.zeros(k1 - k0, np.int64))
        starts = self._step_starts(k0, k1)
        if starts.size == 0:
            return AudioChunk(None, starts)
        lo, hi = self._reach(starts)
        chosen = [b for b, end in zip(self._blocks, self._ends, strict=True) if end > lo and b[0] < hi]
        next_lo, _ = self._reach(self._step_starts(k1, k1 + 1))
        reach = min(next_lo, int(starts.max()))
        keep = [i for i, end in enumerate(self._ends) if end > reach]
        if len(keep) < len(self._blocks):
            self._blocks = [self._blocks[i] for i in keep]
            self._ends = [self._ends[i] for i in keep]
        return AudioChunk(chosen, starts)

    def close(self) -> None:
        self._blocks, self._ends = [], []
