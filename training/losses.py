"""One loss per output, each counted only where its target was recorded, and their weighted sum.

Every loss is a masked mean: (sum of errors under the mask) / (number of masked-in elements). A batch with no
target for an output gives exactly 0 for it, still connected to the graph, so DistributedDataParallel sees
every trainable parameter in every step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from training.config import OUTPUTS


def _masked_mse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    m = mask.to(torch.float32)
    err = (pred.float() - target.float()).square() * m
    return err.sum() / m.sum().clamp(min=1.0)


def _repeat_mask(mask: Tensor, width: int) -> Tensor:
    return mask.repeat_interleave(width, dim=-1)  # (B, T, P) -> (B, T, P*width), one bit per value


def animation_loss(pred: Tensor, batch: dict[str, Tensor], valid: Tensor) -> Tensor:
    """Next-step pose (3 bodies x 7) and hands (2 x 26 joints x 7), normalized units."""
    b, t = valid.shape
    targets, masks = [], []
    for key, parts, width in (("pose", 3, 7), ("hands", 2, 26 * 7)):
        if key in batch:
            targets.append(batch[key][:, 1:].reshape(b, t, parts * width))
            masks.append(_repeat_mask(batch[f"{key}.mask"][:, 1:] & valid.unsqueeze(-1), width))
        else:
            targets.append(pred.new_zeros(b, t, parts * width))
            masks.append(torch.zeros(b, t, parts * width, dtype=torch.bool, device=pred.device))
    return _masked_mse(pred, torch.cat(targets, dim=-1), torch.cat(masks, dim=-1))


def audio_loss(pred: Tensor, batch: dict[str, Tensor], valid: Tensor) -> Tensor:
    """Next-step log-mel frames (normalized); steps whose audio was not fully recorded are left out."""
    if "audio.mel" not in batch:
        return pred.sum() * 0.0
    target = batch["audio.mel"][:, 1:].flatten(2)
    mask = (batch["audio.mask"][:, 1:] & valid).unsqueeze(-1).expand_as(target)
    return _masked_mse(pred, target, mask)


def text_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy per real token (pad id 0 is not a target), over the rows the model picked."""
    total = F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=0, reduction="sum"
    )
    return total / (targets != 0).sum().clamp(min=1)


def compute_losses(
    out: dict[str, Tensor | tuple[Tensor, Tensor]], batch: dict[str, Tensor], weights: dict[str, float]
) -> tuple[Tensor, dict[str, Tensor]]:
    """(weighted total, {output: loss}); outputs whose weight is 0 are computed for the log only."""
    step = batch["step_mask"]
    valid = step[:, 1:] & step[:, :-1]  # (B, T-1): both the source step and its next step are real
    anim, audio = out["animation"], out["audio"]
    assert isinstance(anim, Tensor) and isinstance(audio, Tensor)
    losses = {"animation": animation_loss(anim, batch, valid), "audio": audio_loss(audio, batch, valid)}
    for name in ("internal_text", "external_text"):
        logits, targets = out[name]
        losses[name] = text_loss(logits, targets)
    total = sum(
        (weights[name] * losses[name] for name in OUTPUTS if weights[name] > 0), start=anim.new_zeros(())
    )
    return total.float(), losses
