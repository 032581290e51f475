"""Alignment primitives on hand-made numbers: slerp's short arc, gap masks, hold age, nearest with tolerance."""

from __future__ import annotations

import numpy as np

from replay import align
from replay.audio_features import index_at_times


def test_slerp_takes_the_short_arc_across_a_sign_flip() -> None:
    half = np.sqrt(0.5)
    a = np.array([0.0, 0.0, 0.0, 1.0])  # identity
    b = -np.array([0.0, half, 0.0, half])  # 90 deg about y, stored with the opposite sign
    out = align.slerp(np.stack([a, b]), np.array([0]), np.array([0.5]))[0]
    expected = np.array([0.0, np.sin(np.pi / 8), 0.0, np.cos(np.pi / 8)])  # 45 deg, not 135
    assert np.allclose(out, expected, atol=1e-12)


def test_steps_inside_a_long_gap_are_masked_and_samples_are_exact() -> None:
    times = np.array([0, 10, 20, 50, 60])  # a 30-unit gap between 20 and 50
    steps = np.array([0, 5, 20, 30, 45, 50, 60, 61])
    _, _, mask = align.bracket(times, steps, max_gap=15)
    assert mask.tolist() == [True, True, True, False, False, True, True, False]
    values = np.array([[0.0, 0, 0, 0, 0, 0, 1]] * 5)
    values[:, 0] = [0.0, 1.0, 2.0, 5.0, 6.0]
    out, m = align.interpolate_pose(times, values, np.ones(5, bool), steps, 15)
    assert out[1, 0] == 0.5 and out[5, 0] == 5.0 and not out[3].any() and m.tolist() == mask.tolist()
    invalid = np.array([True, False, True, True, True])  # an untracked sample is a hole, not a value
    _, m2 = align.interpolate_pose(times, values, invalid, steps, 15)
    assert m2.tolist() == [True, False, True, False, False, True, True, False]


def test_hold_and_nearest() -> None:
    times = np.array([0, 10, 20])
    held, mask = align.hold(times, np.array([[1.0], [2.0], [3.0]]), np.array([-1, 0, 9, 25, 36]), max_gap=15)
    assert held[:, 0].tolist() == [0.0, 1.0, 1.0, 3.0, 0.0] and mask.tolist() == [
        False,
        True,
        True,
        True,
        False,
    ]
    idx, ok = align.nearest(np.array([0, 33, 70]), np.array([0, 16, 17, 50, 55]), tolerance=16.5)
    assert idx.tolist() == [0, 0, 1, 1, 2] and ok.tolist() == [True, True, True, False, True]


def test_audio_clock_inversion_across_segments() -> None:
    """Two segments (an overflow restarted the fit at index 1000): times map back to their exact index."""
    clock = {
        "segments": [
            {"from_index": 0, "a_ns": 1e9, "b_ns": 20_000.0},
            {"from_index": 1000, "a_ns": 1.05e9, "b_ns": 20_001.0},
        ]
    }
    idx = np.array([0, 999, 1000, 5000])
    t = np.array([1e9 + 20_000.0 * i if i < 1000 else 1.05e9 + 20_001.0 * i for i in idx])
    assert np.allclose(index_at_times(clock, t), idx, atol=1e-6)
