"""Audio onto the step clock: sample-accurate windows placed by the session's clock mapping, and log-mel.

Why the clock mapping and not the blocks' own ``t``: a sound card's clock drifts against the host's, and the
recorder stores the fitted mapping ``t = a + b·index`` (segments restart at overflows) in session.json. Each
step's first sample is found by inverting that mapping at the step's time, independently per step, so
windows never accumulate drift. Log-mel is numpy and scipy.fft (rfft + triangular filters): no downloads.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.fft

CHUNK = 512  # frames per FFT batch: temporaries of ~2.5 MB stay in cache
LOG_FLOOR = 1e-10  # power floor before the log: silence (exact zeros) gives log(1e-10) = -23.03


@dataclass
class AudioTrack:
    """Every recorded sample in one array indexed by sample index − ``base``; ``have`` marks recorded ones."""

    rate: int
    channels: int
    base: int
    pcm: np.ndarray  # (N, C) int16
    have: np.ndarray  # (N,) bool

    @classmethod
    def from_blocks(cls, blocks: list[tuple[int, bytes]], rate: int, channels: int) -> AudioTrack | None:
        """``blocks``: (first sample index, interleaved int16 bytes); later duplicates overwrite earlier ones."""
        if not blocks:
            return None
        frame_bytes = 2 * channels
        starts = [i for i, _ in blocks]
        ends = [i + len(d) // frame_bytes for i, d in blocks]
        base, end = min(starts), max(ends)
        if starts[1:] == ends[:-1] and all(len(d) % frame_bytes == 0 for _, d in blocks):
            # the usual case: blocks follow each other with no gap or overlap; one join, no per-block copies
            pcm = np.frombuffer(b"".join(d for _, d in blocks), "<i2").reshape(-1, channels)
            return cls(rate, channels, base, pcm, np.ones(pcm.shape[0], bool))
        pcm = np.zeros((end - base, channels), np.int16)
        have = np.zeros(end - base, bool)
        for (i, data), stop in zip(blocks, ends, strict=True):
            pcm[i - base : stop - base] = np.frombuffer(data, "<i2").reshape(-1, channels)
            have[i - base : stop - base] = True
        return cls(rate, channels, base, pcm, have)


def index_at_times(clock: dict[str, Any], times: np.ndarray) -> np.ndarray:
    """Invert a linear sample-index clock: the (float) sample index whose mapped time is each of ``times``.

    Segment j maps indices from ``from_index_j`` on; a time belongs to the last segment starting at or before
    it (segment start time = a_j + b_j · from_index_j).
    """
    segments = sorted(clock["segments"], key=lambda s: int(s["from_index"]))
    a = np.array([float(s["a_ns"]) for s in segments])
    b = np.array([float(s["b_ns"]) for s in segments])
    first = np.array([int(s["from_index"]) for s in segments], np.float64)
    seg_start_t = a + b * first
    j = np.clip(np.searchsorted(seg_start_t, times, side="right") - 1, 0, len(segments) - 1)
    return (times - a[j]) / b[j]


def fallback_clock(first_index: int, first_t: int, rate: int) -> dict[str, Any]:
    """A clock from the first block's own stamp and the nominal rate, for sessions without a stored mapping."""
    b = 1e9 / rate
    return {"type": "linear", "segments": [{"from_index": 0, "a_ns": first_t - b * first_index, "b_ns": b}]}


def step_windows(
    track: AudioTrack | None, starts: np.ndarray, length: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(S, length, C) int16 windows beginning at sample index ``starts``, the mask "all recorded", and the
    mono float32 signal padded so ``frames_at`` can read before and after the recording (zeros)."""
    steps = starts.size
    if track is None:
        return np.zeros((steps, length, 1), np.int16), np.zeros(steps, bool), np.zeros(0, np.float32)
    # Pad by one window on both sides so every window is a plain slice (a strided view, no index arrays).
    pad = length
    n = track.pcm.shape[0]
    rel = np.clip(starts - track.base + pad, 0, n + pad)  # windows wholly outside clip to the zero padding
    padded = np.zeros((n + 2 * pad, track.channels), np.int16)
    padded[pad : pad + n] = track.pcm
    windows = np.lib.stride_tricks.sliding_window_view(padded, length, axis=0)[rel].transpose(0, 2, 1)
    if track.have.all():  # no gap: a window is whole when it lies inside the recording
        mask = (rel >= pad) & (rel + length <= pad + n)
    else:
        have = np.concatenate([[0], np.cumsum(np.pad(track.have, pad), dtype=np.int64)])
        mask = (have[rel + length] - have[rel]) == length
    if track.channels == 1:
        mono = track.pcm[:, 0].astype(np.float32)
    else:
        mono = track.pcm.mean(axis=1, dtype=np.float32)
    mono *= np.float32(1 / 32768.0)
    return np.ascontiguousarray(windows), mask, mono


@functools.lru_cache(maxsize=8)
def mel_filterbank(rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """(n_fft // 2 + 1, n_mels) triangular filters, equally spaced on the HTK mel scale, peak 1."""

    def to_mel(f: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def to_hz(m: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    edges = to_hz(np.linspace(to_mel(np.array(fmin)), to_mel(np.array(fmax)), n_mels + 2))
    freqs = np.linspace(0.0, rate / 2.0, n_fft // 2 + 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rise = (freqs[None, :] - lower) / np.maximum(centre - lower, 1e-9)
    fall = (upper - freqs[None, :]) / np.maximum(upper - centre, 1e-9)
    return np.maximum(0.0, np.minimum(rise, fall)).T.astype(np.float32)


def log_mel(
    mono: np.ndarray,
    base: int,
    frame_ends: np.ndarray,
    rate: int,
    window: int,
    n_mels: int,
    fmin: float,
    fmax: float,
) -> np.ndarray:
    """Log-mel of the ``window`` samples ending (exclusive) at each sample index in ``frame_ends`` (any shape).

    Samples outside the recording read as zeros. Returns ``frame_ends.shape + (n_mels,)`` float32, natural log
    of mel power (full-scale sine ≈ +9.6 with the default 25 ms window at 48 kHz).
    """
    n_fft = window + window % 2  # pocketfft handles any even length; a power of two would cost 1.7x here
    flat = frame_ends.reshape(-1) - base
    padded = np.concatenate([np.zeros(window, np.float32), mono, np.zeros(window, np.float32)])
    starts = np.clip(flat - window + window, 0, padded.size - window)  # +window: the front padding
    view = np.lib.stride_tricks.sliding_window_view(padded, window)
    hann = np.hanning(window).astype(np.float32)
    out = np.empty((flat.size, n_mels), np.float32)
    # float64 product: float32 sgemm rounds differently with the matrix height and BLAS thread count (a Dask
    # worker runs one BLAS thread), and shards must be byte-identical whoever converts them and in what chunks
    bank = mel_filterbank(rate, n_fft, n_mels, float(fmin), float(fmax or rate / 2)).astype(np.float64)

    def chunk(lo: int) -> None:
        # Chunks of a few hundred frames keep the temporaries in cache. They run in turn: this already runs on
        # the converter's chunk-builder thread beside the reader, and a pool per call only added thread starts
        # and GIL hand-offs (replay/convert_session.py).
        frames = view[starts[lo : lo + CHUNK]] * hann
        spec = scipy.fft.rfft(frames, n=n_fft, axis=1)  # float32 in, complex64 out: 4x numpy's speed here
        power = np.square(spec.real)
        power += np.square(spec.imag)
        mel = power.astype(np.float64) @ bank
        np.maximum(mel, LOG_FLOOR, out=mel)
        out[lo : lo + CHUNK] = np.log(mel)

    for lo in range(0, flat.size, CHUNK):
        chunk(lo)
    return out.reshape(*frame_ends.shape, n_mels)
