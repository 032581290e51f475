"""The model: per-modality encoders, fused into one token per step, a causal transformer, a head per output.

    batch ──► encoders (pose, hands, controls, audio, camera, text.internal, text.external)
          ──► fusion: sum of present tokens; an absent modality adds its learned "missing" embedding
          ──► + position ──► causal transformer over the T steps  # (B, T, D)
          ──► heads: hidden state at step t predicts step t+1
                animation      pose (3x7) + hands (2x26x7), regression of the change from step t
                audio          M x mel_bins log-mel, regression
                internal_text  the next step's L byte tokens, one by one (a small causal decoder)
                external_text  the same for external text

Causal attention also keeps the padding that `collate` adds at the end of short windows away from real steps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.profiler import record_function

from training.config import ModelConfig
from training.encoders import AudioEncoder, CameraEncoder, PartsEncoder, TextEncoder

ANIMATION_DIM = 3 * 7 + 2 * 26 * 7  # pose + hands of one step
TEXT_STREAMS = {"internal_text": "text.internal", "external_text": "text.external"}


class Block(nn.Module):
    """Pre-norm transformer block; attention through scaled_dot_product_attention (flash/efficient kernels)."""

    def __init__(self, d_model: int, n_heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        hidden = int(d_model * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(d_model, hidden), nn.GELU(), nn.Linear(hidden, d_model))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)  # (B, H, T, D/H)
        x = x + self.drop(self.proj(y.transpose(1, 2).reshape(b, t, d)))
        return x + self.drop(self.mlp(self.ln2(x)))


class TextHead(nn.Module):
    """Next-step text, next token: step t's hidden state conditions a decoder over step t+1's L tokens."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.embed = nn.Embedding(cfg.vocab_size, d)
        self.start = nn.Parameter(torch.zeros(d))
        self.pos = nn.Parameter(torch.zeros(cfg.text_len, d))
        self.context = nn.Linear(d, d)
        self.blocks = nn.ModuleList(
            Block(d, cfg.n_heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.text_decoder_layers)
        )
        self.norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, cfg.vocab_size)

    def forward(self, hidden: Tensor, targets: Tensor) -> Tensor:
        n, length = targets.shape
        previous = self.embed(targets[:, :-1])  # teacher forcing: token i is predicted from tokens < i
        x = torch.cat([self.start.expand(n, 1, -1).to(previous.dtype), previous], dim=1)
        x = x + self.pos[:length] + self.context(hidden).unsqueeze(1)  # (N, L, D)
        for block in self.blocks:
            x = block(x)
        return self.out(self.norm(x))  # (N, L, V)


class VrcapModel(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        encoders: dict[str, nn.Module] = {
            "pose": PartsEncoder(3, 7, d),
            "hands": PartsEncoder(2, 26 * 7, d),
            "controls": PartsEncoder(2, 8, d),
            "audio": AudioEncoder(cfg.mel_frames, cfg.mel_bins, d),
            "text.internal": TextEncoder(cfg.vocab_size, d),
            "text.external": TextEncoder(cfg.vocab_size, d),
        }
        if cfg.cameras:
            encoders["camera"] = CameraEncoder(cfg.cameras, cfg.patch_size, d)
        self.encoders = nn.ModuleDict({k.replace(".", "_"): v for k, v in encoders.items()})
        self.missing = nn.Parameter(torch.zeros(len(self.encoders), d))
        self.position = nn.Parameter(torch.zeros(cfg.max_window, d))
        self.blocks = nn.ModuleList(
            Block(d, cfg.n_heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.n_layers)
        )
        self.norm = nn.LayerNorm(d)
        self.heads = nn.ModuleDict(
            {
                "animation": nn.Linear(d, ANIMATION_DIM),
                "audio": nn.Linear(d, cfg.mel_frames * cfg.mel_bins),
                "internal_text": TextHead(cfg),
                "external_text": TextHead(cfg),
            }
        )
        self.apply(_init_weights)
        for p in (self.missing, self.position):
            nn.init.normal_(p, std=0.02)

    # --- encoding --------------------------------------------------------------------------------------------

    def _encode(self, name: str, batch: dict[str, Tensor], b: int, t: int) -> tuple[Tensor | None, Tensor]:
        """A modality's (token, present) for each step; (None, all False) when the batch lacks it."""
        absent = torch.zeros(b, t, dtype=torch.bool, device=batch["step_mask"].device)
        key = name.replace("_", ".")
        encoder = self.encoders[name]
        if name == "camera":
            keys = [f"camera.{c}" for c in self.cfg.cameras]
            if not any(k in batch for k in keys):
                return None, absent
            frames = [batch.get(k) for k in keys]
            masks = [batch[f"{k}.mask"] if k in batch else absent for k in keys]
            return encoder(frames, masks)
        data_key = "audio.mel" if name == "audio" else key
        if data_key not in batch:
            return None, absent
        return encoder(batch[data_key], batch[f"{key}.mask"])

    def hidden(self, batch: dict[str, Tensor]) -> Tensor:
        """Fused step tokens through the causal transformer: (B, T, D)."""
        b, t = batch["step_mask"].shape
        fused = self.position[:t].expand(b, t, -1)
        for i, name in enumerate(self.encoders):
            with record_function(f"encoder/{name}"):
                token, present = self._encode(name, batch, b, t)
                missing = self.missing[i].expand(b, t, -1)
                if token is None:
                    fused = fused + missing
                else:
                    fused = fused + torch.where(present.unsqueeze(-1), token, missing.to(token.dtype))
        with record_function("transformer"):
            x = fused
            for block in self.blocks:
                x = block(x)
            return self.norm(x)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor | tuple[Tensor, Tensor]]:
        """Predictions for steps 1..T-1 from the hidden states of steps 0..T-2."""
        h = self.hidden(batch)[:, :-1]  # (B, T-1, D)
        out: dict[str, Tensor | tuple[Tensor, Tensor]] = {}
        with record_function("head/animation"):
            out["animation"] = self.heads["animation"](h) + self._current_pose(batch)  # (B, T-1, 385)
        with record_function("head/audio"):
            out["audio"] = self.heads["audio"](h)  # (B, T-1, M*bins)
        step_next = batch["step_mask"][:, 1:]
        for head, key in TEXT_STREAMS.items():
            with record_function(f"head/{head}"):
                if key in batch:
                    rows = batch[f"{key}.mask"][:, 1:] & step_next  # only steps whose next text was recorded
                    targets = batch[key][:, 1:][rows]  # (N, L)
                    hidden = h[rows]
                else:
                    targets = torch.zeros(0, self.cfg.text_len, dtype=torch.long, device=h.device)
                    hidden = h.new_zeros(0, h.shape[-1])
                out[head] = (self.heads[head](hidden, targets), targets)
        return out

    def _current_pose(self, batch: dict[str, Tensor]) -> Tensor:
        """Steps 0..T-2 of pose + hands (0 where masked): the animation head predicts the change from them,
        because bodies move little in 1/30 s and "no change" is already a strong guess."""
        b, t = batch["step_mask"].shape
        parts = []
        for key, n, width in (("pose", 3, 7), ("hands", 2, 26 * 7)):
            if key in batch:
                x = batch[key][:, :-1].reshape(b, t - 1, n, width) * batch[f"{key}.mask"][:, :-1].unsqueeze(
                    -1
                )
                parts.append(x.flatten(2))
            else:
                parts.append(batch["step_mask"].new_zeros(b, t - 1, n * width, dtype=torch.float32))
        return torch.cat(parts, dim=-1)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
        if module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()


def build_model(cfg: ModelConfig, device: torch.device | str | None = None) -> VrcapModel:
    """The model on ``device``; on "meta" nothing is allocated, which is how `vrcap estimate` counts 1e9."""
    with torch.device(device or "cpu"):
        return VrcapModel(cfg)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
