"""Audio features computed while the packets are still being read, on a worker thread.

Why: log-mel is most of a session's conversion time when there are no cameras, and the read pass is Python that
holds the GIL while numpy's FFT and matrix products do not. So each second of audio, as soon as it has arrived,
goes to a worker thread that places its steps' windows and computes their log-mel; at the end only the last
second is left. With cameras in the session the second core is busy decoding JPEG, and a third busy thread only
adds GIL hand-offs (measured: camera conversion 21x real time without it, 13x with it), so then the samples are
just kept and the features computed at the end. The result is what computing everything at the end gives — windows, masks and starts bit for
bit, log-mel to float rounding (tests/replay/test_audio_stream.py) — and ``finish`` does exactly that when the
blocks are not one gap-free run (a gap, an overlap, an odd-sized block).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from replay.audio_features import AudioTrack, fallback_clock, index_at_times, log_mel, step_windows
from replay.config import AudioConfig
from vrcap.metadata import SessionMeta
from vrcap.streams import StreamDescriptor

INCREMENT_S = 1.0  # audio handed to the worker at a time


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


class AudioAccumulator:
    """Takes the audio blocks of one stream in packet order; ``finish(step_times)`` gives the step tensors."""

    def __init__(
        self, layout: AudioLayout, clock: dict[str, Any] | None, t0: int, step_hz: float, stream: bool = True
    ) -> None:
        self.layout = layout
        self.stream = stream  # False: keep the samples, compute everything in ``finish``
        self.clock = clock if clock and clock.get("type") == "linear" and clock.get("segments") else None
        self.t0, self.period = t0, 1e9 / step_hz
        self.notes: list[str] = []
        self.first: tuple[int, int] | None = None  # (index, t) of the first block
        self._frame_bytes = 2 * layout.channels
        self._base: int | None = None
        self._end = 0  # one past the last sample received
        self._buf = bytearray()  # every sample so far, while the run is gap-free
        self._blocks: list[tuple[int, bytes]] | None = None  # once it is not: the blocks, for ``finish``
        self._done = 0  # steps handed to the worker
        self._next_submit = 0
        self._parts: list[Future[tuple[np.ndarray, np.ndarray, np.ndarray]]] = []
        self._pool: ThreadPoolExecutor | None = None

    # --- while reading ----------------------------------------------------------------------------------

    def add(self, index: int, data: bytes, t: int) -> None:
        if self.first is None:
            self.first = (index, t)
            if self.clock is None:
                self.clock = fallback_clock(index, t, self.layout.rate)
                self.notes.append("audio: no linear clock in session.json; placed by the first block's stamp")
            self._base = self._end = self._next_submit = index
        if self._blocks is not None:
            self._blocks.append((index, data))
            return
        if index != self._end or len(data) % self._frame_bytes:
            self._blocks = [(self._base, bytes(self._buf)), (index, data)] if self._buf else [(index, data)]
            self._buf = bytearray()
            return  # not one run: ``finish`` computes everything from the blocks
        self._buf += data
        self._end += len(data) // self._frame_bytes
        if self.stream and self._end >= self._next_submit:
            self._submit()
            self._next_submit = self._end + round(INCREMENT_S * self.layout.rate)

    def _step_starts(self, k0: int, k1: int) -> np.ndarray:
        assert self.clock is not None
        times = self.t0 + np.round(np.arange(k0, k1) * self.period)
        return np.round(index_at_times(self.clock, times.astype(np.float64))).astype(np.int64)

    def _submit(self, final_steps: int | None = None) -> None:
        """Hand the steps whose whole window has arrived (or, at the end, every step left) to the worker."""
        k0 = self._done
        if final_steps is None:
            span = round(INCREMENT_S * 2 / self.period * 1e9) + 4  # more steps than a chunk can complete
            starts = self._step_starts(k0, k0 + span)
            ready = int(np.searchsorted(starts + self.layout.length > self._end, True))
            starts = starts[:ready]
        else:
            starts = self._step_starts(k0, final_steps)
        if starts.size == 0:
            return
        self._done = k0 + starts.size
        assert self._base is not None
        layout = self.layout
        lo = max(self._base, int(starts.min()) + layout.hop - layout.window)
        hi = min(self._end, max(lo, int(starts.max()) + layout.length))
        fb = self._frame_bytes
        chunk = bytes(self._buf[(lo - self._base) * fb : (hi - self._base) * fb])
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vrcap-audio")
        self._parts.append(self._pool.submit(self._compute, lo, chunk, starts))

    def _compute(
        self, lo: int, chunk: bytes, starts: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        layout = self.layout
        pcm = np.frombuffer(chunk, "<i2").reshape(-1, layout.channels)
        # The sub-track starts at ``lo`` ≥ the recording's start, and a window is whole only inside the
        # recording: for every step here that is the same test as against the whole track.
        track = AudioTrack(layout.rate, layout.channels, lo, pcm, np.ones(pcm.shape[0], bool))
        return features(track if pcm.size else None, starts, layout)

    # --- at the end ---------------------------------------------------------------------------------------

    def finish(self, steps: int) -> AudioResult:
        layout = self.layout
        try:
            if self.first is None:  # no audio at all
                starts = np.zeros(steps, np.int64)
                pcm, mel, mask = features(None, starts, layout)
                return AudioResult(pcm, mel, mask, starts, self.notes)
            if self._blocks is not None:
                self._cancel()
                starts = self._step_starts(0, steps)
                track = AudioTrack.from_blocks(self._blocks, layout.rate, layout.channels)
                pcm, mel, mask = features(track, starts, layout)
                return AudioResult(pcm, mel, mask, starts, self.notes)
            if self._done < steps:
                self._submit(final_steps=steps)
            parts = [future.result() for future in self._parts]
            if not parts:
                starts = self._step_starts(0, steps)
                return AudioResult(*features(None, starts, layout), starts, self.notes)
            pcm, mel, mask = (np.concatenate([p[i] for p in parts])[:steps] for i in range(3))
            return AudioResult(pcm, mel, mask, self._step_starts(0, steps), self.notes)
        finally:
            self.close()

    def _cancel(self) -> None:
        for future in self._parts:
            future.cancel()
        self._parts = []

    def close(self) -> None:
        self._cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
