"""The model: per-modality encoders, fused into one token per step, a causal transformer, a head per output.

    batch ──► encoders (pose, hands, motion, controls, audio, camera, text.internal, text.external, text.active)
          ──► fusion: sum of present tokens; an absent (or dropped) modality adds its learned "missing" embedding
          ──► + position ──► causal transformer over the T steps  # (B, T, D)
          ──► heads: the hidden state at step t predicts
                animation      steps t+1..t+K of pose (3x7) + hands (2x26x7): normalised changes from the base
                               path (training/targets.py); regression, or quantized bins (training/token_head.py)
                audio          steps t+1..t+K of M x mel_bins log-mel: changes from step t's last frame
                internal_text  step t+1's text: first token "bos" (text follows) or "eos" (no text at this step),
                external_text  then, where text follows, its L byte tokens one by one (a small causal decoder)

The animation and audio heads start at zero: an untrained model predicts its base (constant velocity, or
hold-last with model.animation_base hold) and repeat-last-frame, the baselines it must beat. motion (the last
step's velocity and acceleration, training/motion.py) and text.active (the instruction in force and its age,
replay/active_text.py) are derived inputs. Causal attention also keeps the padding that `collate` adds at
the end of short windows away from real steps.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.profiler import record_function

from replay.tokenizer import BOS, EOS
from training.config import ModelConfig
from training.encoders import ActiveTextEncoder, AudioEncoder, CameraEncoder, PartsEncoder, TextEncoder
from training.motion import MotionStats
from training.targets import ANIMATION_DIM, PART_DIM, PARTS
from training.token_head import TokenHead

TEXT_STREAMS = {"internal_text": "text.internal", "external_text": "text.external"}
DROPPABLE = (
    "pose",
    "hands",
    "motion",
    "controls",
    "audio",
    "camera",
    "text",
    "text.internal",
    "text.external",
    "text.active",
)


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

    @torch.no_grad()
    def generate(self, hidden: Tensor, max_len: int) -> Tensor:
        """Greedy decoding, (N, max_len) tokens; a row whose first token is eos says "no text at this step"."""
        n = hidden.shape[0]
        tokens = torch.zeros(n, max_len, dtype=torch.long, device=hidden.device)
        done = torch.zeros(n, dtype=torch.bool, device=hidden.device)
        for i in range(max_len):
            nxt = self.forward(hidden, tokens[:, : i + 1])[:, i].argmax(-1)
            tokens[:, i] = torch.where(done, torch.zeros_like(nxt), nxt)
            done |= nxt == EOS
            if bool(done.all()):
                break
        return tokens


class VrcapModel(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        encoders: dict[str, nn.Module] = {
            "pose": PartsEncoder(3, 7, d),
            "hands": PartsEncoder(2, 26 * 7, d),
            "motion": PartsEncoder(PARTS, 2 * PART_DIM, d),  # velocity + acceleration (training/motion.py)
            "controls": PartsEncoder(2, 8, d),
            "audio": AudioEncoder(cfg.mel_frames, cfg.mel_bins, d),
            "text.internal": TextEncoder(cfg.vocab_size, d),
            "text.external": TextEncoder(cfg.vocab_size, d),
            "text.active": ActiveTextEncoder(cfg.vocab_size, d),  # the instruction in force, and its age
        }
        if cfg.cameras:
            encoders["camera"] = CameraEncoder(cfg.cameras, cfg.patch_size, d)
        self.encoders = nn.ModuleDict({k.replace(".", "_"): v for k, v in encoders.items()})
        self.motion_stats = MotionStats()
        self.missing = nn.Parameter(torch.zeros(len(self.encoders), d))
        self.position = nn.Parameter(torch.zeros(cfg.max_window, d))
        self.blocks = nn.ModuleList(
            Block(d, cfg.n_heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.n_layers)
        )
        self.norm = nn.LayerNorm(d)
        self.heads = nn.ModuleDict(
            {
                "animation": (
                    TokenHead(
                        d, cfg.horizon, cfg.token_bins, cfg.token_coarse, cfg.token_range, cfg.token_sample
                    )
                    if cfg.animation_head == "tokens"
                    else nn.Linear(d, cfg.horizon * ANIMATION_DIM)
                ),
                "audio": nn.Linear(d, cfg.horizon * cfg.mel_frames * cfg.mel_bins),
                "internal_text": TextHead(cfg),
                "external_text": TextHead(cfg),
            }
        )
        self.apply(_init_weights)
        for p in (self.missing, self.position):
            nn.init.normal_(p, std=0.02)
        for name in ("animation", "audio"):  # "no change" until trained: the baselines, not noise on top
            if isinstance(self.heads[name], nn.Linear):
                nn.init.zeros_(self.heads[name].weight)
                nn.init.zeros_(self.heads[name].bias)

    # --- encoding --------------------------------------------------------------------------------------------

    def _encode(
        self, name: str, batch: dict[str, Tensor], b: int, t: int, drop: frozenset[str] = frozenset()
    ) -> tuple[Tensor | None, Tensor]:
        """A modality's (token, present) for each step; (None, all False) when the batch lacks it or it is dropped."""
        absent = torch.zeros(b, t, dtype=torch.bool, device=batch["step_mask"].device)
        key = name.replace("_", ".")
        if key in drop or key.split(".")[0] in drop:
            return None, absent
        encoder = self.encoders[name]
        if name == "camera":
            keys = [f"camera.{c}" for c in self.cfg.cameras]
            if not any(k in batch for k in keys):
                return None, absent
            frames = [batch.get(k) for k in keys]
            masks = [batch[f"{k}.mask"] if k in batch else absent for k in keys]
            return encoder(frames, masks)
        if name == "motion":
            found = self.motion_stats.features(batch, drop)
            return (None, absent) if found is None else encoder(*found)
        if name == "text_active":
            if key not in batch:
                return None, absent
            return encoder(batch[key], batch[f"{key}.mask"], batch[f"{key}.age"])
        data_key = "audio.mel" if name == "audio" else key
        if data_key not in batch:
            return None, absent
        return encoder(batch[data_key], batch[f"{key}.mask"])

    def hidden(self, batch: dict[str, Tensor], drop: frozenset[str] = frozenset()) -> Tensor:
        """Fused step tokens through the causal transformer: (B, T, D). ``drop``: inputs to treat as absent."""
        b, t = batch["step_mask"].shape
        fused = self.position[:t].expand(b, t, -1)
        for i, name in enumerate(self.encoders):
            with record_function(f"encoder/{name}"):
                token, present = self._encode(name, batch, b, t, drop)
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

    def forward(self, batch: dict[str, Tensor], drop: frozenset[str] = frozenset()) -> dict[str, Any]:
        """Every step's horizon of animation and audio changes, and the next step's text (see TextOutput)."""
        h = self.hidden(batch, drop)  # (B, T, D)
        b, t, _ = h.shape
        k = self.cfg.horizon
        out: dict[str, Any] = {}
        with record_function("head/animation"):
            head = self.heads["animation"]
            if isinstance(head, TokenHead):
                out.update(head(h))
            else:
                out["animation"] = head(h).reshape(b, t, k, ANIMATION_DIM)
        with record_function("head/audio"):
            out["audio"] = self.heads["audio"](h).reshape(b, t, k, -1)  # (B, T, K, M*bins)
        for head, key in TEXT_STREAMS.items():
            with record_function(f"head/{head}"):
                out[head] = self._text(head, key, batch, h)
        return out

    def _text(self, head: str, key: str, batch: dict[str, Tensor], h: Tensor) -> dict[str, Tensor]:
        """Step t's hidden state against step t+1's text. Every real step pair gets a first-token target (bos:
        text follows, eos: none); only steps whose next step holds text run the decoder over all L tokens (by
        causality its first output equals the one-token run, so silent steps cost one token, not L)."""
        step_next = batch["step_mask"][:, 1:] & batch["step_mask"][:, :-1]
        hs = h[:, :-1][step_next]  # (N, D)
        if key in batch:
            said = (batch[f"{key}.mask"][:, 1:] & (batch[key][:, 1:, 0] == BOS))[step_next]  # (N,)
            rows = batch[key][:, 1:][step_next][said]  # (N_said, L)
        else:
            said = torch.zeros(hs.shape[0], dtype=torch.bool, device=h.device)
            rows = torch.zeros(0, self.cfg.text_len, dtype=torch.long, device=h.device)
        first_target = torch.where(said, BOS, EOS).to(torch.long)
        text_head = self.heads[head]
        first = text_head(hs, first_target[:, None])[:, 0]  # (N, V)
        logits = text_head(hs[said], rows)  # (N_said, L, V)
        return {"first": first, "first_target": first_target, "logits": logits, "targets": rows}


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
