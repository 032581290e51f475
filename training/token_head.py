"""``model.animation_head: tokens``: every coordinate of the animation horizon predicted as a quantized bin.

In the spirit of quantized-coordinate models: each of the K x 385 normalised changes (training/targets.py)
falls in one of ``token_bins`` equal bins over [-token_range, token_range] (values outside go to the edge bins)
and is learnt with cross-entropy instead of a squared error, so the head can say "either here or there" where a
regression head must average. The decoded value is the centre of the most likely bin, in the same normalised
units as the regression head, so evaluation reports both in mm and degrees the same way.

Why factorized: 8,192 logits for each of 15 x 385 coordinates at every step (47 M per step) do not fit a CPU
step. A bin is a coarse bin (``token_coarse`` classes) and a fine bin inside it (bins / coarse classes, given
the coarse one), so a coordinate costs 128 + 64 logits, not 8,192. Each coordinate gets a learned code added to
a projection of the step's hidden state; training scores ``token_sample`` coordinates drawn at random per batch
(every step of the window, all K), evaluation decodes only the horizons it reports.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.targets import ANIMATION_DIM, PART_DIM, PARTS, POSE_PARTS, FutureTargets

GROUP_OF_PART = torch.tensor([0] + [1] * (POSE_PARTS - 1) + [2] * (PARTS - POSE_PARTS))


class TokenHead(nn.Module):
    def __init__(
        self,
        d_model: int,
        horizon: int,
        bins: int,
        coarse: int,
        value_range: float,
        sample: int,
        code: int = 32,
    ) -> None:
        super().__init__()
        if bins % coarse:
            raise ValueError(f"model.token_bins ({bins}) must be a multiple of model.token_coarse ({coarse})")
        self.horizon, self.bins, self.coarse_n, self.fine_n = horizon, bins, coarse, bins // coarse
        self.range, self.sample = value_range, sample
        self.query = nn.Linear(d_model, code)
        self.value_code = nn.Parameter(torch.randn(horizon * ANIMATION_DIM, code) * 0.02)
        self.coarse = nn.Linear(code, coarse)
        self.coarse_code = nn.Embedding(coarse, code)
        self.fine = nn.Linear(code, self.fine_n)
        self.decode_steps: list[int] = []  # horizon indices decoded in eval mode (set by the Evaluator)

    def bin_of(self, value: Tensor) -> Tensor:
        width = 2 * self.range / self.bins
        return ((value.float() + self.range) / width).floor().clamp(0, self.bins - 1).long()

    def value_of(self, index: Tensor) -> Tensor:
        width = 2 * self.range / self.bins
        return (index.float() + 0.5) * width - self.range

    def _codes(self, h: Tensor, idx: Tensor) -> Tensor:
        """(N, D) hidden states x (n,) coordinate indices -> (N, n, code)."""
        return F.gelu(self.query(h).unsqueeze(1) + self.value_code[idx])

    def loss(self, h: Tensor, targets: FutureTargets) -> Tensor:
        """Cross-entropy of the coarse bin and of the fine bin given the true coarse one, on ``sample``
        coordinates drawn at random, where tracked; the mean of one per body group, as the regression loss."""
        b, t, _ = h.shape
        n = min(self.sample, self.horizon * ANIMATION_DIM)
        idx = torch.randperm(self.horizon * ANIMATION_DIM, device=h.device)[:n]
        k, value = idx // ANIMATION_DIM, idx % ANIMATION_DIM
        part = value // PART_DIM
        y = targets.animation[:, :, k, value].reshape(b * t, n)  # (N, n) normalised changes
        valid = targets.animation_valid[:, :, k, part].reshape(b * t, n)
        target = self.bin_of(y)
        codes = self._codes(h.reshape(b * t, -1), idx)  # (N, n, code)
        coarse_true = target // self.fine_n
        ce_coarse = F.cross_entropy(
            self.coarse(codes).flatten(0, 1).float(), coarse_true.flatten(), reduction="none"
        )
        fine_logits = self.fine(codes + self.coarse_code(coarse_true))
        ce_fine = F.cross_entropy(
            fine_logits.flatten(0, 1).float(), (target % self.fine_n).flatten(), reduction="none"
        )
        ce = (ce_coarse + ce_fine).reshape(b * t, n) * valid
        groups = GROUP_OF_PART.to(h.device)[part]
        losses = []
        for g in range(3):
            m = valid & (groups == g)
            if bool(m.any()):
                losses.append(ce[m].sum() / m.sum())
        return torch.stack(losses).mean() if losses else h.sum() * 0.0

    @torch.no_grad()
    def decode(self, h: Tensor) -> Tensor:
        """(B, T, K, 385) normalised changes: the most likely bin's centre at ``decode_steps``, 0 elsewhere."""
        b, t, _ = h.shape
        out = h.new_zeros(b, t, self.horizon, ANIMATION_DIM, dtype=torch.float32)
        flat = h.reshape(b * t, -1)
        for k in self.decode_steps:
            if not 0 <= k < self.horizon:
                continue
            idx = torch.arange(k * ANIMATION_DIM, (k + 1) * ANIMATION_DIM, device=h.device)
            for chunk in idx.split(128):
                codes = self._codes(flat, chunk)
                coarse = self.coarse(codes).argmax(-1)
                fine = self.fine(codes + self.coarse_code(coarse)).argmax(-1)
                out[:, :, k, chunk - k * ANIMATION_DIM] = self.value_of(coarse * self.fine_n + fine).reshape(
                    b, t, -1
                )
        return out

    def forward(self, h: Tensor) -> dict[str, Any]:
        b, t, _ = h.shape
        decoded = self.decode(h) if not self.training else h.new_zeros(b, t, self.horizon, ANIMATION_DIM)
        return {"animation": decoded, "animation_tokens": lambda targets: self.loss(h, targets)}
