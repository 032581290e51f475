"""One encoder per input modality, each turning a step's data into one d_model token and a presence mask.

Why a presence mask and not zeros: a masked value means "not recorded" (docs/TENSORS.md). After normalization
a zero is a real, plausible pose or mel frame, so feeding zeros would teach the model that missing data looks
like the mean. Instead the fusion replaces an absent modality's token by a learned "missing" embedding, and the
camera encoder does not even run on masked frames.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
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


BIGRAM_BUCKETS = 4096  # hashed byte pairs; collisions only blur two pairs into one embedding


def _ngram_ids(tokens: Tensor, vocab: int) -> Tensor:
    """(N, L) byte tokens -> (N, 2L) ids: each token, and each pair of neighbouring tokens hashed into
    ``BIGRAM_BUCKETS`` ids after the vocabulary; 0 (padding) wherever a token of the pair is padding."""
    prev = torch.nn.functional.pad(tokens[:, :-1], (1, 0))
    pair = vocab + (prev * vocab + tokens) % BIGRAM_BUCKETS
    pair = torch.where(
        (prev != 0) & (tokens != 0), pair, torch.zeros((), dtype=pair.dtype, device=pair.device)
    )
    return torch.cat([tokens, pair], dim=1)


class TextEncoder(nn.Module):
    """The byte tokens of a step's text (pad id 0) -> the mean embedding of its bytes and byte pairs -> one token.

    Why pairs: a mean of single bytes barely tells "reach left" from "reach right" (most bytes are shared);
    byte pairs carry local order ("le", "ef", "ft" against "ri", "ig", "gh", "ht") at the cost of one lookup
    each. Through ``embedding_bag``: the mean is taken while gathering, so the (B, T, L, D) tensor of every
    token's embedding is never built (64 tokens x 256 wide per step, most of them padding)."""

    def __init__(self, vocab: int, d_model: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.embed = nn.Embedding(vocab + BIGRAM_BUCKETS, d_model, padding_idx=0)
        # the mean of ~100 small random embeddings is ~0 at the start: normalised, text reaches the trunk at the
        # scale of the other inputs from the first step instead of having to grow into it
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, d_model)

    def pooled(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """(B, T, D) mean embedding and (B, T) "has any token" of (B, T, L) tokens."""
        b, t, length = tokens.shape
        flat = _ngram_ids(tokens.reshape(b * t, length), self.vocab)
        mean = F.embedding_bag(flat, self.embed.weight, mode="mean", padding_idx=0)  # pads left out
        return self.norm(mean).reshape(b, t, -1), (flat != 0).any(dim=-1).reshape(b, t)

    def forward(self, tokens: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        mean, real = self.pooled(tokens)
        return self.out(mean), mask & real


MAX_AGE = 255  # steps; an older instruction counts as this old (8.5 s at 30 Hz)


class ActiveTextEncoder(TextEncoder):
    """The instruction in force (replay/active_text.py) and how long ago it was said -> one token.

    The age matters as much as the words: the motion an instruction announces starts a while after it, and a
    model that knows both can time it. An MLP over both, so "which instruction" and "how old" combine."""

    def __init__(self, vocab: int, d_model: int) -> None:
        super().__init__(vocab, d_model)
        self.age = nn.Sequential(nn.Embedding(MAX_AGE + 1, d_model), nn.LayerNorm(d_model))
        self.out = _mlp(2 * d_model, d_model)  # type: ignore[assignment]

    def forward(self, tokens: Tensor, mask: Tensor, age: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        mean, real = self.pooled(tokens)
        age_token = self.age(age.clamp(0, MAX_AGE))
        return self.out(torch.cat([mean, age_token.to(mean.dtype)], dim=-1)), mask & real
