"""Audio taken chunk by chunk must equal computing every step at once from the whole recording (windows, masks and
starts bit for bit; log-mel to float rounding, since BLAS sums a matrix product of another height in another order),
and the accumulator must forget the blocks no later chunk can reach."""

from __future__ import annotations

import numpy as np
import pytest

from replay.audio_features import AudioTrack, index_at_times
from replay.audio_stream import AudioAccumulator, AudioLayout, features

RATE, STEP_HZ, T0 = 48000, 30.0, 5_000_000_000
LAYOUT = AudioLayout(RATE, 1, 1600, 480, 1200, 3, 80, 0.0, 24000.0)


def _blocks(seconds: float, first_index: int, block: int, seed: int) -> list[tuple[int, bytes]]:
    rng = np.random.default_rng(seed)
    pcm = (rng.standard_normal(int(seconds * RATE)) * 3000).astype("<i2")
    return [(first_index + i, pcm[i : i + block].tobytes()) for i in range(0, pcm.size, block)]


def _clock(first_index: int, start_ns: float, ppm: float) -> dict[str, object]:
    """A drifting sound card: two segments, as after an overflow."""
    b = 1e9 / RATE * (1 + ppm * 1e-6)
    return {
        "type": "linear",
        "segments": [
            {"from_index": 0, "a_ns": start_ns - b * first_index, "b_ns": b},
            {"from_index": first_index + 3 * RATE, "a_ns": start_ns - b * first_index + 7e5, "b_ns": b},
        ],
    }


def _batch(blocks: list[tuple[int, bytes]], clock: dict[str, object], steps: int) -> tuple[np.ndarray, ...]:
    times = T0 + np.round(np.arange(steps) * (1e9 / STEP_HZ))
    starts = np.round(index_at_times(clock, times.astype(np.float64))).astype(np.int64)
    track = AudioTrack.from_blocks(blocks, RATE, 1)
    return (*features(track, starts, LAYOUT), starts)


def _take_all(acc: AudioAccumulator, steps: int, chunk: int) -> tuple[np.ndarray, ...]:
    parts = [acc.take(k, min(steps, k + chunk)).compute(LAYOUT) for k in range(0, steps, chunk)]
    return tuple(np.concatenate([getattr(p, f) for p in parts]) for f in ("pcm", "mel", "mask", "starts"))


@pytest.mark.parametrize(
    ("seconds", "lead_ns", "steps", "gap", "chunk"),
    [
        (7.3, 120e6, 215, False, 30),  # audio starts after the first step; some steps past its end
        (4.0, -50e6, 120, False, 7),  # audio starts before the first step; odd chunk size
        (5.0, 40e6, 160, True, 25),  # a gap in the blocks
        (6.0, 10e6, 180, False, 180),  # one chunk: the whole session at once
    ],
)
def test_chunked_features_equal_the_batch_ones(
    seconds: float, lead_ns: float, steps: int, gap: bool, chunk: int
) -> None:
    blocks = _blocks(seconds, 1_000, 480, seed=int(seconds))
    if gap:
        del blocks[200:230]
    clock = _clock(1_000, T0 + lead_ns, ppm=80.0)
    acc = AudioAccumulator(LAYOUT, clock, T0, STEP_HZ)
    for i, (index, data) in enumerate(blocks):
        acc.add(index, data, T0 + i)
    got_pcm, got_mel, got_mask, got_starts = _take_all(acc, steps, chunk)
    pcm, mel, mask, starts = _batch(blocks, clock, steps)
    assert np.array_equal(got_starts, starts)
    assert np.array_equal(got_mask, mask) and 0 < mask.sum() < steps
    assert np.array_equal(got_pcm, pcm)
    assert np.allclose(got_mel, mel, rtol=0, atol=1e-5)  # natural-log units; values span about -23..+10


def test_blocks_no_later_chunk_reaches_are_forgotten() -> None:
    blocks = _blocks(20.0, 0, 480, seed=3)
    acc = AudioAccumulator(LAYOUT, _clock(0, T0, ppm=0.0), T0, STEP_HZ)
    held = []
    for k in range(0, 600, 30):  # a chunk of 1 s at a time, fed as it would be read
        for index, data in blocks[k * 100 // 30 : (k + 30) * 100 // 30 + 20]:
            acc.add(index, data, T0)
        acc.take(k, k + 30)
        held.append(len(acc._blocks))
    assert max(held) <= 130  # about one second of 10 ms blocks plus the lookahead, not the 2,000 of 20 s


def test_no_audio_and_no_steps_give_empty_masked_tensors() -> None:
    acc = AudioAccumulator(LAYOUT, None, T0, STEP_HZ)
    got = acc.take(0, 12).compute(LAYOUT)
    assert got.pcm.shape == (12, 1600, 1) and got.mel.shape == (12, 3, 80) and not got.mask.any()
    acc = AudioAccumulator(LAYOUT, None, T0, STEP_HZ)
    acc.add(0, np.zeros(480, "<i2").tobytes(), T0)
    assert acc.take(0, 0).compute(LAYOUT).mel.shape == (0, 3, 80)
    assert "placed by the first block's stamp" in acc.notes[0]
