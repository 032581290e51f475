"""One encoder per input modality, each turning a step's data into one d_model token and a presence mask.

Why a presence mask and not zeros: a masked value means "not recorded" (docs/TENSORS.md). After normalization
a zero is a real, plausible pose or mel frame, so feeding zeros would teach the model that missing data looks
like the mean. Instead the fusion replaces an absent modality's token by a learned "missing" embedding, and the
camera encoder does not even run on masked frames.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _mlp(d_in: int, d_model: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_model), nn.GELU(), nn.Linear(d_model, d_model))


class PartsEncoder(nn.Module):
    """Vectors made of parts with a mask each (pose: 3 bodies, hands: 2, controls: 2) -> one token per step.

    Masked parts are zeroed *and* their mask bits are inputs, so the MLP can tell "absent" from "at the mean".
    The step counts as present when any part is.
    """

    def __init__(self, parts: int, part_dim: int, d_model: int) -> None:
        super().__init__()
        self.parts, self.part_dim = parts, part_dim
        self.net = _mlp(parts * part_dim + parts, d_model)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        b, t = mask.shape[:2]
        m = mask.to(x.dtype)  # (B, T, P)
        x = x.reshape(b, t, self.parts, self.part_dim) * m.unsqueeze(-1)
        return self.net(torch.cat([x.flatten(2), m], dim=-1)), mask.any(dim=-1)


class AudioEncoder(nn.Module):
    """The M log-mel frames of a step, flattened -> one token."""

    def __init__(self, mel_frames: int, mel_bins: int, d_model: int) -> None:
        super().__init__()
        self.net = _mlp(mel_frames * mel_bins, d_model)

    def forward(self, mel: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        return self.net(mel.flatten(2)), mask  # (B, T, D)


class CameraEncoder(nn.Module):
    """Patches of every camera's frame (shared weights, one learned embedding per camera name) -> one token.

    Only frames whose mask is True go through the convolution: a camera that dropped frames costs nothing
    and contributes nothing. Patch tokens are mean-pooled: cheap, and enough for a per-step summary.
    """

    def __init__(self, cameras: list[str], patch: int, d_model: int) -> None:
        super().__init__()
        self.cameras = list(cameras)
        self.patch = nn.Conv2d(3, d_model, kernel_size=patch, stride=patch)
        self.camera_embed = nn.Parameter(torch.zeros(len(cameras), d_model))
        self.out = nn.Sequential(nn.GELU(), nn.Linear(d_model, d_model))

    def forward(self, frames: list[Tensor | None], masks: list[Tensor]) -> tuple[Tensor, Tensor]:
        """frames[i] is camera i's (B, T, 3, H, W) in [-1, 1], or None when the batch lacks that camera."""
        b, t = masks[0].shape
        total: Tensor | None = None
        count = torch.zeros(b, t, 1, device=masks[0].device)
        for i, (x, mask) in enumerate(zip(frames, masks, strict=True)):
            if x is None:
                continue
            picked = x[mask]  # (N, 3, H, W): present frames only
            pooled = self.patch(picked).flatten(2).mean(dim=2) + self.camera_embed[i]  # (N, D)
            if total is None:  # pooled's dtype, which autocast may have made bf16
                total = pooled.new_zeros(b, t, pooled.shape[-1])
            total = total.index_put((mask,), pooled, accumulate=True)
            count = count + mask.unsqueeze(-1).to(count.dtype)
        if total is None:
            raise ValueError("CameraEncoder needs at least one camera in the batch")
        present = count.squeeze(-1) > 0
        return self.out(total / count.clamp(min=1).to(total.dtype)), present


class TextEncoder(nn.Module):
    """The byte tokens of a step's text (pad id 0) -> their mean embedding -> one token."""

    def __init__(self, vocab: int, d_model: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model, padding_idx=0)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, tokens: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        real = (tokens != 0).unsqueeze(-1).to(self.embed.weight.dtype)  # (B, T, L, 1)
        summed = (self.embed(tokens) * real).sum(dim=2)
        mean = summed / real.sum(dim=2).clamp(min=1)
        return self.out(mean), mask & (real.sum(dim=(2, 3)) > 0)
