"""What the animation and audio heads learn: the change over each of the next K steps, in units of how much
that body part (or mel bin) changes over that many steps in the train split.

Why changes and not whole poses: bodies move little in 1/30 s, so "no change" is already a strong guess and a
whole-pose z-score hides the motion under the spread of where people stand. Why normalised per horizon: the
change over 1 s is ~30x the change over one step, and an unscaled loss would only learn the far horizon.
Heads are zero-initialised, so an untrained model predicts exactly hold-last (animation) and repeat-last-frame
(audio): training starts from the baselines, never below them.

    x[t] raw pose of part p at step t (m + unit quaternion), 55 parts: head, 2 controllers, 2 x 26 hand joints
    target[t, k] = (x[t+1+k] - x[t]) / scale[k]          k = 0..K-1, quaternion of x[t+1+k] sign-aligned to x[t]
    valid[t, k]  = part tracked at t and at t+1+k, both steps real and inside the window

A step whose current pose is masked has no "change" to learn (the old model added a change to a zero pose and
86% of its loss came from the 1% of steps just after a dropout), so it is left out. Sign alignment makes the
target respect q = -q: the current rotation is written with w >= 0, and of the two quaternions of each future
rotation, the one nearer the current one is the target, so q and -q anywhere in a recording give one target.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

POSE_PARTS, HAND_PARTS, HAND_JOINTS = 3, 2, 26
PARTS = POSE_PARTS + HAND_PARTS * HAND_JOINTS  # 55
PART_DIM = 7
ANIMATION_DIM = PARTS * PART_DIM  # 385 values per future step
BASES = ("hold", "const_vel")  # what a predicted change of 0 means (model.animation_base)
SCALE_FLOOR = 1e-6  # a value that never changes (the head in the head frame) is divided by this, not by 0


def align_quaternions(future: Tensor | np.ndarray, current: Tensor | np.ndarray) -> Any:
    """``future`` with each quaternion (last 4 of 7) negated where it points away from ``current``'s."""
    dot = (
        (future[..., 3:7] * current[..., 3:7]).sum(-1, keepdims=True)
        if isinstance(future, np.ndarray)
        else (future[..., 3:7] * current[..., 3:7]).sum(-1, keepdim=True)
    )
    sign = 1 - 2 * (dot < 0)
    pos, quat = future[..., :3], future[..., 3:7] * sign
    return np.concatenate([pos, quat], -1) if isinstance(future, np.ndarray) else torch.cat([pos, quat], -1)


def _np_raw(arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Raw (S, 55, 7) poses and (S, 55) masks from a shard's arrays (already raw: shards are not normalised)."""
    steps = len(arrays["time_ns"])
    x = np.zeros((steps, PARTS, PART_DIM), np.float64)
    m = np.zeros((steps, PARTS), bool)
    if "pose" in arrays:
        x[:, :POSE_PARTS] = arrays["pose"]
        m[:, :POSE_PARTS] = arrays["pose.mask"]
    if "hands" in arrays:
        x[:, POSE_PARTS:] = np.asarray(arrays["hands"]).reshape(steps, -1, PART_DIM)
        m[:, POSE_PARTS:] = np.repeat(np.asarray(arrays["hands.mask"]), HAND_JOINTS, axis=1)
    x[..., 3:7] *= np.where(x[..., 6:7] < 0, -1.0, 1.0)  # w >= 0, as TargetBuilder.raw_pose writes them
    return x, m


def _np_step(x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """x[t] - x[t-1] (quaternion of t-1 aligned to t's), 0 where either step is untracked: the constant
    velocity base of ``TargetBuilder.build``, on a session's raw poses."""
    step = np.zeros_like(x)
    step[1:] = x[1:] - align_quaternions(x[:-1], x[1:])
    ok = np.zeros(m.shape, bool)
    ok[1:] = m[1:] & m[:-1]
    return np.where(ok[..., None], step, 0.0)


class _RMS:
    """Root mean square per element over masked-in samples, accumulated chunk by chunk."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.sumsq = np.zeros(shape, np.float64)
        self.count = np.zeros(shape, np.float64)

    def add(self, index: int, delta: np.ndarray, valid: np.ndarray) -> None:
        v = valid.astype(np.float64)
        self.sumsq[index] += (np.square(delta) * v).sum(0)
        self.count[index] += v.sum(0)

    def value(self) -> np.ndarray:
        rms = np.sqrt(self.sumsq / np.maximum(self.count, 1.0))
        return np.maximum(rms, SCALE_FLOOR)


def split_spans(manifest: dict[str, Any], split: str) -> list[tuple[str, int, int]]:
    """(session, first step, end step) of every block of ``split``: whole sessions, or time blocks."""
    ranges = manifest.get("split_ranges", {}).get(split, {})
    out = []
    for name in manifest.get("splits", {}).get(split, []):
        steps = int(manifest["sessions"][name]["steps"])
        out += [(name, int(a), int(b)) for a, b in ranges.get(name, [[0, steps]])]
    return out


def change_scales(
    root: Path, manifest: dict[str, Any], split: str, horizon: int, base: str = "hold"
) -> dict[str, Any]:
    """RMS of the change over 1..K steps per value from ``base`` (hold or const_vel), measured on ``split``'s
    steps only (train), and how many targets each output has there (``counts``: a weighted output with none
    refuses to train)."""
    from replay.shardmap import map_shard

    spans: dict[str, list[tuple[int, int]]] = {}
    for name, first, end in split_spans(manifest, split):
        spans.setdefault(name, []).append((first, end))
    anim = _RMS((horizon, PARTS, PART_DIM))
    mel_norm = manifest.get("normalization", {}).get("audio.mel")
    mel_shape = tuple(manifest.get("tensors", {}).get("audio.mel", {}).get("shape", ["S", 1, 1])[1:])
    audio = _RMS((horizon, *mel_shape)) if mel_norm else None
    text_counts: dict[str, int] = {}
    for name, blocks in spans.items():
        arrays = map_shard(root / manifest["sessions"][name]["shard"])
        x_all, m_all = _np_raw(arrays)
        mel_all = None
        if audio is not None and "audio.mel" in arrays:
            mel_all = (np.asarray(arrays["audio.mel"]) - np.asarray(mel_norm["mean"])) / np.asarray(
                mel_norm["std"]
            )
            mel_mask_all = np.asarray(arrays["audio.mask"])
        for first, end in blocks:
            for head, key in (("internal_text", "text.internal"), ("external_text", "text.external")):
                if f"{key}.mask" in arrays:
                    said = int(np.asarray(arrays[f"{key}.mask"][first:end]).sum())
                    text_counts[head] = text_counts.get(head, 0) + said
            x, m = x_all[first:end], m_all[first:end]
            step = _np_step(x, m) if base == "const_vel" else np.zeros_like(x)
            for k in range(horizon):
                if k + 1 >= len(x):
                    break
                now = x[: -k - 1]
                delta = align_quaternions(x[k + 1 :], now) - (now + (k + 1) * step[: -k - 1])
                anim.add(k, delta, (m[k + 1 :] & m[: -k - 1])[..., None])
                if mel_all is not None and audio is not None:
                    mel, mm = mel_all[first:end], mel_mask_all[first:end]
                    delta = mel[k + 1 :] - mel[: -k - 1, -1:]  # against the last frame of step t
                    audio.add(k, delta, (mm[k + 1 :] & mm[: -k - 1])[:, None, None])
    out: dict[str, Any] = {
        "animation": anim.value().tolist(),
        "counts": {"animation": float(anim.count[0].sum())},
    }
    if audio is not None:
        out["counts"]["audio"] = float(audio.count[0].sum())
    out["counts"] |= text_counts
    if audio is not None:
        out["audio"] = audio.value().tolist()
    return out


@dataclass
class FutureTargets:
    """Targets of one batch; shapes (B, T, K, ...): every step t of the window predicts steps t+1..t+K."""

    current: Tensor  # (B, T, 55, 7) raw pose at step t
    base: Tensor  # (B, T, K, 55, 7) what a change of 0 means: current (hold) or its constant-velocity path
    future: Tensor  # (B, T, K, 55, 7) raw pose at t+1+k, quaternions aligned to current's
    animation: Tensor  # (B, T, K, 385) normalised change: the regression target
    animation_valid: Tensor  # (B, T, K, 55)
    previous: Tensor  # (B, T, 55, 7) raw pose at t-1 (for constant velocity)
    previous_valid: Tensor  # (B, T, 55)
    audio: Tensor | None  # (B, T, K, M*bins) change of the z-scored mel from step t's last frame
    audio_valid: Tensor | None  # (B, T, K)
    mel_std: Tensor | None  # (bins,) to turn z-scored mel back into log-mel


def shift(x: Tensor, k: int, fill: float | bool = 0) -> Tensor:
    """x[:, t + k] at position t, ``fill`` where t + k falls outside the window (k may be negative)."""
    out = torch.full_like(x, fill)
    t = x.shape[1]
    if k >= 0 and k < t:
        out[:, : t - k] = x[:, k:]
    elif k < 0 and -k < t:
        out[:, -k:] = x[:, : t + k]
    return out


def futures(x: Tensor, horizon: int) -> Tensor:
    """(B, T, K, ...): x[:, t + 1 + k] at [:, t, k], zeros (False) past the window's end; one copy, no loop."""
    pad = x.new_zeros((x.shape[0], horizon, *x.shape[2:]))
    windows = torch.cat([x, pad], dim=1).unfold(1, horizon + 1, 1)  # (B, T, ..., K+1)
    return windows.movedim(-1, 2)[:, :, 1:]


class TargetBuilder:
    """Turns a normalised batch into FutureTargets with the train split's statistics (kept in checkpoints)."""

    def __init__(
        self, horizon: int, normalization: dict[str, Any], scales: dict[str, list[Any]], base: str = "hold"
    ) -> None:
        if base not in BASES:
            raise ValueError(f"animation base must be one of {BASES}, got {base!r}")
        self.horizon, self.base = horizon, base
        self.normalization, self.scales = normalization, scales

        def stats(key: str, shape: tuple[int, ...]) -> tuple[Tensor, Tensor] | None:
            if key not in normalization:
                return None
            mean = torch.tensor(normalization[key]["mean"], dtype=torch.float32).reshape(shape)
            return mean, torch.tensor(normalization[key]["std"], dtype=torch.float32).reshape(shape)

        self.pose_stats = stats("pose", (POSE_PARTS, PART_DIM))
        self.hand_stats = stats("hands", (HAND_PARTS, HAND_JOINTS * PART_DIM))
        self.mel_stats = stats("audio.mel", (-1,))
        self.anim_scale = torch.tensor(scales["animation"], dtype=torch.float32).reshape(
            horizon, ANIMATION_DIM
        )
        self.audio_scale = (
            torch.tensor(scales["audio"], dtype=torch.float32).reshape(horizon, -1)
            if "audio" in scales
            else None
        )

    def state(self) -> dict[str, Any]:
        return {
            "horizon": self.horizon,
            "normalization": self.normalization,
            "scales": self.scales,
            "base": self.base,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TargetBuilder:
        return cls(int(state["horizon"]), state["normalization"], state["scales"], state.get("base", "hold"))

    def raw_pose(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """(B, T, 55, 7) raw poses and (B, T, 55) masks, from the Dataset's z-scored tensors."""
        b, t = batch["step_mask"].shape
        dev = batch["step_mask"].device
        parts, masks = [], []
        for key, n, width, stats in (
            ("pose", POSE_PARTS, PART_DIM, self.pose_stats),
            ("hands", HAND_PARTS, HAND_JOINTS * PART_DIM, self.hand_stats),
        ):
            if key in batch and stats is not None:
                mean, std = (s.to(dev) for s in stats)
                x = batch[key].float().reshape(b, t, n, width) * std + mean
                m = batch[f"{key}.mask"]
            else:
                x = torch.zeros(b, t, n, width, device=dev)
                m = torch.zeros(b, t, n, dtype=torch.bool, device=dev)
            per = width // PART_DIM
            parts.append(x.reshape(b, t, n * per, PART_DIM))
            masks.append(m.repeat_interleave(per, dim=-1))
        x, m = torch.cat(parts, dim=2), torch.cat(masks, dim=2)
        # one of q and -q for every rotation (w >= 0): the change from it then does not depend on the sign
        # the recording happened to use, and futures are aligned to it
        sign = torch.where(x[..., 6:7] < 0, -1.0, 1.0)
        x = torch.cat([x[..., :3], x[..., 3:7] * sign], dim=-1)
        return x, m & batch["step_mask"].unsqueeze(-1)

    def build(self, batch: dict[str, Tensor]) -> FutureTargets:
        step = batch["step_mask"]
        dev = step.device
        x, m = self.raw_pose(batch)
        future = align_quaternions(futures(x, self.horizon), x.unsqueeze(2))  # (B, T, K, 55, 7)
        valid = futures(m, self.horizon) & m.unsqueeze(2)  # (B, T, K, 55)
        b, t = step.shape
        scale = self.anim_scale.to(dev)
        previous, previous_valid = shift(x, -1), shift(m, -1, False) & m
        base = self.base_path(x, previous, previous_valid)
        change = (future - base).reshape(b, t, self.horizon, ANIMATION_DIM) / scale
        change = torch.where(valid.repeat_interleave(PART_DIM, -1), change, torch.zeros((), device=dev))
        audio = audio_valid = mel_std = None
        if "audio.mel" in batch and self.audio_scale is not None:
            mel, am = batch["audio.mel"].float(), batch["audio.mask"] & step  # (B, T, M, bins)
            last = mel[:, :, -1:]
            audio = (futures(mel, self.horizon) - last.unsqueeze(2)).flatten(3) / self.audio_scale.to(dev)
            audio_valid = futures(am, self.horizon) & am.unsqueeze(2)
            mel_std = self.mel_stats[1].to(dev) if self.mel_stats else None
        return FutureTargets(
            current=x,
            base=base,
            future=future,
            animation=change,
            animation_valid=valid,
            previous=previous,
            previous_valid=previous_valid,
            audio=audio,
            audio_valid=audio_valid,
            mel_std=mel_std,
        )

    def base_path(self, x: Tensor, previous: Tensor, previous_valid: Tensor) -> Tensor:
        """(B, T, K, 55, 7): where each part would be at t+1+k under the base rule. ``const_vel`` extends the
        last step's change linearly (quaternion components too; predictions are renormalised), holding where
        step t-1 is untracked; ``hold`` repeats x[t]."""
        steps = torch.arange(1, self.horizon + 1, device=x.device, dtype=x.dtype).view(1, 1, -1, 1, 1)
        if self.base == "hold":
            return x.unsqueeze(2).expand(-1, -1, self.horizon, -1, -1)
        velocity = x - align_quaternions(previous, x)
        velocity = torch.where(previous_valid.unsqueeze(-1), velocity, torch.zeros((), device=x.device))
        return x.unsqueeze(2) + steps * velocity.unsqueeze(2)

    def animation_from_change(self, change: Tensor, base: Tensor) -> Tensor:
        """Predicted raw poses (B, T, K, 55, 7) from normalised changes (B, T, K, 385) on top of ``base``
        (FutureTargets.base); quaternions unit."""
        b, t, k, _ = change.shape
        raw = change.float() * self.anim_scale.to(change.device)
        pose = base + raw.reshape(b, t, k, PARTS, PART_DIM)
        quat = torch.nn.functional.normalize(pose[..., 3:7], dim=-1, eps=1e-8)
        return torch.cat([pose[..., :3], quat], dim=-1)
