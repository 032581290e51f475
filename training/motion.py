"""The motion input: each part's change over the last step and the change of that change, in target units.

Why the model gets it explicitly: poses reach the model z-scored over the whole recording, where one step's
movement (a few mm against a spread of ~0.1 m) is a difference in the third decimal of two tokens. Constant
velocity, the baseline to beat, is exactly that difference; a transformer can learn to take it, but slowly
and imprecisely. Here it is taken once, divided by the train split's RMS change over one step (the scale of
the first horizon target, training/targets.py), so it is of order 1 and in the same units the heads predict.

    velocity[t]     = (x[t] - x[t-1]) / scale[0]        quaternions sign-aligned as in the targets
    acceleration[t] = velocity[t] - velocity[t-1]
    mask[t]         = part tracked at t, t-1 (and t-2 for the acceleration; else it is 0)

The statistics live in the model as buffers (``MotionStats``), so a checkpoint carries them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from training.targets import HAND_JOINTS, HAND_PARTS, PART_DIM, PARTS, POSE_PARTS, align_quaternions

CLAMP = 20.0  # a tracking jump is not a velocity: at most 20x the typical step


class MotionStats(nn.Module):
    """Buffers: per-value mean and std of the z-scoring (to undo it) and the one-step change scale."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(PARTS, PART_DIM))
        self.register_buffer("std", torch.ones(PARTS, PART_DIM))
        self.register_buffer("scale", torch.ones(PARTS, PART_DIM))

    @torch.no_grad()
    def set_from(self, builder: object) -> None:
        """Copies a TargetBuilder's statistics (pose / hand z-scoring, first-horizon change scale)."""
        pose, hands = getattr(builder, "pose_stats", None), getattr(builder, "hand_stats", None)
        for i, stats in ((0, pose), (1, hands)):
            if stats is None:
                continue
            rows = slice(0, POSE_PARTS) if i == 0 else slice(POSE_PARTS, PARTS)
            n = POSE_PARTS if i == 0 else HAND_PARTS * HAND_JOINTS
            self.mean[rows] = stats[0].reshape(n, PART_DIM).to(self.mean)
            self.std[rows] = stats[1].reshape(n, PART_DIM).to(self.std)
        scale = builder.anim_scale[0]  # type: ignore[attr-defined]
        self.scale.copy_(scale.reshape(PARTS, PART_DIM).to(self.scale))

    def features(self, batch: dict[str, Tensor], drop: frozenset[str]) -> tuple[Tensor, Tensor] | None:
        """(B, T, 55, 14) velocity and acceleration and (B, T, 55) mask, or None without pose and hands."""
        b, t = batch["step_mask"].shape
        dev = batch["step_mask"].device
        parts, masks = [], []
        for key, n in (("pose", POSE_PARTS), ("hands", HAND_PARTS * HAND_JOINTS)):
            if key in batch and key not in drop:
                parts.append(batch[key].float().reshape(b, t, n, PART_DIM))
                m = batch[f"{key}.mask"]
                masks.append(m if key == "pose" else m.repeat_interleave(HAND_JOINTS, dim=-1))
            else:
                parts.append(torch.zeros(b, t, n, PART_DIM, device=dev))
                masks.append(torch.zeros(b, t, n, dtype=torch.bool, device=dev))
        if not any(key in batch and key not in drop for key in ("pose", "hands")):
            return None
        x = torch.cat(parts, dim=2) * self.std + self.mean  # raw poses
        m = torch.cat(masks, dim=2) & batch["step_mask"].unsqueeze(-1)
        x = torch.cat([x[..., :3], x[..., 3:7] * torch.where(x[..., 6:7] < 0, -1.0, 1.0)], dim=-1)
        prev = torch.cat([x[:, :1], x[:, :-1]], dim=1)
        prev_m = torch.cat([torch.zeros_like(m[:, :1]), m[:, :-1]], dim=1)
        vel = (x - align_quaternions(prev, x)) / self.scale
        vel_m = m & prev_m
        vel = torch.where(vel_m.unsqueeze(-1), vel, torch.zeros((), device=dev)).clamp(-CLAMP, CLAMP)
        vel_prev = torch.cat([torch.zeros_like(vel[:, :1]), vel[:, :-1]], dim=1)
        acc_m = vel_m & torch.cat([torch.zeros_like(vel_m[:, :1]), vel_m[:, :-1]], dim=1)
        acc = torch.where(acc_m.unsqueeze(-1), vel - vel_prev, torch.zeros((), device=dev)).clamp(
            -CLAMP, CLAMP
        )
        return torch.cat([vel, acc], dim=-1), vel_m
