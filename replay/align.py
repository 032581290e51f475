"""Resampling irregular streams onto the step clock: interpolate, hold, or pick the nearest — never invent.

All functions take sample times (int64 ns, ascending) and step times and return values plus a mask. A step
gets a value only where the source really covers it: between two samples no further apart than
``max_gap`` (interpolation), or within ``max_gap`` after the last sample (hold). Everything else is masked
and left at zero, so a model can tell "not recorded" from "zero".
"""

from __future__ import annotations

import numpy as np

from vrcap.quaternion import quat_conj, quat_mul, quat_rotate


def step_times(t_first: int, t_last: int, rate_hz: float) -> np.ndarray:
    """Steps ``t_first + round(k * 1e9 / rate_hz)`` up to and including the last at or before ``t_last``."""
    if t_last < t_first:
        return np.zeros(0, np.int64)
    period = 1e9 / rate_hz
    count = int(np.floor((t_last - t_first) / period + 1e-9)) + 1
    return t_first + np.round(np.arange(count) * period).astype(np.int64)


def bracket(
    times: np.ndarray, steps: np.ndarray, max_gap: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Left neighbour index, interpolation weight in [0, 1) and mask for each step.

    A step exactly on a sample takes that sample (weight 0); otherwise both neighbours must exist and lie at
    most ``max_gap`` ns apart.
    """
    n = times.size
    if n == 0:
        zeros = np.zeros(steps.size, np.int64)
        return zeros, np.zeros(steps.size, np.float64), np.zeros(steps.size, bool)
    left = np.searchsorted(times, steps, side="right") - 1
    right = left + 1
    exact = (left >= 0) & (times[np.clip(left, 0, n - 1)] == steps)
    inside = (left >= 0) & (right < n)
    li, ri = np.clip(left, 0, n - 1), np.clip(right, 0, n - 1)
    gap = (times[ri] - times[li]).astype(np.float64)
    mask = exact | (inside & (gap <= max_gap))
    with np.errstate(divide="ignore", invalid="ignore"):
        weight = np.where(inside & (gap > 0), (steps - times[li]) / np.where(gap > 0, gap, 1.0), 0.0)
    weight = np.where(exact, 0.0, weight)
    return li, weight, mask


def lerp(values: np.ndarray, left: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Linear interpolation between sample ``left`` and ``left + 1`` (values: (N, ...), float64 out)."""
    n = values.shape[0]
    a = values[left].astype(np.float64)
    b = values[np.clip(left + 1, 0, n - 1)].astype(np.float64)
    w = weight.reshape((-1,) + (1,) * (values.ndim - 1))
    return a + (b - a) * w


def slerp(quats: np.ndarray, left: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Spherical interpolation of unit quaternions (xyzw, last axis) between sample ``left`` and ``left + 1``.

    q and −q are the same rotation: the second is flipped when their dot product is negative, so the path is
    the short arc. Nearly parallel pairs fall back to normalized lerp (sin θ ≈ 0).
    """
    n = quats.shape[0]
    a = quats[left].astype(np.float64)
    b = quats[np.clip(left + 1, 0, n - 1)].astype(np.float64)
    a = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
    dot = np.sum(a * b, axis=-1, keepdims=True)
    b = np.where(dot < 0, -b, b)
    dot = np.clip(np.abs(dot), -1.0, 1.0)
    w = weight.reshape((-1,) + (1,) * (quats.ndim - 1))
    theta = np.arccos(dot)
    sin = np.sin(theta)
    small = sin < 1e-6
    safe = np.where(small, 1.0, sin)
    wa = np.where(small, 1.0 - w, np.sin((1.0 - w) * theta) / safe)
    wb = np.where(small, w, np.sin(w * theta) / safe)
    out = wa * a + wb * b
    return out / np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-12)


def interpolate_pose(
    times: np.ndarray, values: np.ndarray, valid: np.ndarray, steps: np.ndarray, max_gap: float
) -> tuple[np.ndarray, np.ndarray]:
    """Position (lerp) + quaternion (slerp) at each step from (N, ..., 7+) samples; (S, ..., 7) float32 and mask.

    ``valid`` (N,) marks samples whose position and orientation are real; invalid samples are dropped first, so
    a step next to one sits in a gap and is masked.
    """
    keep = valid & np.all(np.isfinite(values[..., :7]).reshape(values.shape[0], -1), axis=1)
    times, values = times[keep], values[keep]
    left, weight, mask = bracket(times, steps, max_gap)
    out = np.zeros((steps.size, *values.shape[1:-1], 7), np.float32)
    if times.size == 0 or not mask.any():
        return out, mask
    sel = np.flatnonzero(mask)
    out[sel, ..., :3] = lerp(values[..., :3], left[sel], weight[sel])
    out[sel, ..., 3:7] = slerp(values[..., 3:7], left[sel], weight[sel])
    return out, mask


def hold(
    times: np.ndarray, values: np.ndarray, steps: np.ndarray, max_gap: float
) -> tuple[np.ndarray, np.ndarray]:
    """The last sample at or before each step, if it is at most ``max_gap`` old (buttons, triggers)."""
    left = np.searchsorted(times, steps, side="right") - 1
    mask = left >= 0
    if times.size:
        mask &= (steps - times[np.clip(left, 0, times.size - 1)]) <= max_gap
    out = np.zeros((steps.size, *values.shape[1:]), np.float32)
    sel = np.flatnonzero(mask)
    if sel.size:
        out[sel] = np.nan_to_num(values[left[sel]].astype(np.float32), nan=0.0)
    return out, mask


def nearest(times: np.ndarray, steps: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """Index of the sample nearest each step (ties go to the earlier) and whether it lies within ``tolerance``."""
    if times.size == 0:
        return np.zeros(steps.size, np.int64), np.zeros(steps.size, bool)
    right = np.clip(np.searchsorted(times, steps, side="left"), 0, times.size - 1)
    left = np.clip(right - 1, 0, times.size - 1)
    d_left = np.abs(steps - times[left])
    d_right = np.abs(times[right] - steps)
    choice = np.where(d_left <= d_right, left, right)
    return choice, np.abs(times[choice] - steps) <= tolerance


def assign_events(times: np.ndarray, steps: np.ndarray, rate_hz: float) -> np.ndarray:
    """The step each event falls in: step k covers [t_k, t_k + period). Before the first step: step 0;
    after the last step's end: the last step (an annotation is moved, never lost)."""
    if steps.size == 0:
        return np.zeros(times.size, np.int64)
    k = np.searchsorted(steps, times, side="right") - 1
    return np.clip(k, 0, steps.size - 1)


# --- frames ---------------------------------------------------------------------------------------------


def to_head_frame(poses: np.ndarray, head: np.ndarray) -> np.ndarray:
    """Express (S, ..., 7) stage-frame poses in the head's frame at the same step (head: (S, 7))."""
    shape = (head.shape[0],) + (1,) * (poses.ndim - 2) + (7,)
    h = head.astype(np.float64).reshape(shape)
    inv = quat_conj(h[..., 3:7])
    pos = quat_rotate(inv, poses[..., :3].astype(np.float64) - h[..., :3])
    rot = quat_mul(inv, poses[..., 3:7].astype(np.float64))
    return np.concatenate([pos, rot], axis=-1).astype(np.float32)
