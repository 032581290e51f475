"""One loss per output, each counted only where its target was recorded, and their weighted sum.

Every loss is a masked mean: (sum of errors under the mask) / (number of masked-in elements). A batch with no
target for an output gives exactly 0 for it, still connected to the graph, so DistributedDataParallel sees
every trainable parameter in every step. Targets come from training/targets.py (changes over K future steps,
normalised by the train split's change statistics; quaternions sign-aligned, so q and -q cost the same).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from training.config import OUTPUTS
from training.targets import PART_DIM, PARTS, POSE_PARTS, FutureTargets


def _masked_mse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    m = mask.to(torch.float32)
    err = (pred.float() - target.float()).square() * m
    return err.sum() / m.sum().clamp(min=1.0)


ANIMATION_GROUPS = (slice(0, 1), slice(1, POSE_PARTS), slice(POSE_PARTS, PARTS))  # head, controllers, hands


def animation_loss(pred: Tensor, targets: FutureTargets) -> Tensor:
    """(B, T, K, 385) predicted vs. true normalised changes, where the part is tracked now and then.

    The mean of one masked MSE per body group (head, controllers, hand joints), over the groups that have
    targets: a plain mean over the 55 parts would weigh the 52 hand joints 52 times the head, and the head
    (whose motion the instruction announces as much as the hands') would hardly be learnt."""
    b, t, k, _ = pred.shape
    p = pred.float().reshape(b, t, k, PARTS, PART_DIM)
    y = targets.animation.float().reshape(b, t, k, PARTS, PART_DIM)
    valid = targets.animation_valid
    losses = []
    for group in ANIMATION_GROUPS:
        m = valid[..., group].unsqueeze(-1).expand(*valid.shape[:-1], group.stop - group.start, PART_DIM)
        n = m.sum()
        loss = _masked_mse(p[..., group, :], y[..., group, :], m)
        losses.append((loss, n > 0))
    present = [loss for loss, has in losses if bool(has)]
    if not present:
        return pred.sum() * 0.0
    return torch.stack(present).mean()


def audio_loss(pred: Tensor, targets: FutureTargets) -> Tensor:
    """(B, T, K, M*bins) mel changes; steps whose audio was not fully recorded (now or then) are left out."""
    if targets.audio is None or targets.audio_valid is None:
        return pred.sum() * 0.0
    mask = targets.audio_valid.unsqueeze(-1).expand_as(targets.audio)
    return _masked_mse(pred, targets.audio, mask)


def text_loss(text: dict[str, Tensor]) -> Tensor:
    """Cross-entropy per token: the first token of every next step (bos = text, eos = none) and the real tokens
    after it where text was said (pad id 0 is never a target)."""
    first = F.cross_entropy(text["first"].float(), text["first_target"], reduction="sum")
    logits, rows = text["logits"][:, 1:], text["targets"][:, 1:]
    rest = F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), rows.reshape(-1), ignore_index=0, reduction="sum"
    )
    count = text["first_target"].numel() + (rows != 0).sum()
    return (first + rest) / count.clamp(min=1)


def compute_losses(
    out: dict[str, Any], targets: FutureTargets, weights: dict[str, float]
) -> tuple[Tensor, dict[str, Tensor]]:
    """(weighted total, {output: loss}); outputs whose weight is 0 are computed for the log only."""
    anim = out["animation"]
    tokens = out.get("animation_tokens")  # the tokens head's cross-entropy (training/token_head.py)
    losses = {
        "animation": tokens(targets) if tokens is not None else animation_loss(anim, targets),
        "audio": audio_loss(out["audio"], targets),
    }
    for name in ("internal_text", "external_text"):
        losses[name] = text_loss(out[name])
    total = sum(
        (weights[name] * losses[name] for name in OUTPUTS if weights[name] > 0), start=anim.new_zeros(())
    )
    return total.float(), losses
