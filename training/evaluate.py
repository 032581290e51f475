"""Held-out evaluation in physical units, each figure beside the trivial baselines on the same windows.

One code path for the validation pass inside `vrcap train`, for `vrcap eval` (a split of a tensor folder) and
for `vrcap infer` (one session): ``Evaluator.run(batches)`` returns flat metrics such as

    animation/head_pos_mm@0.5s            the model: head position error at 0.5 s ahead, mm
    animation/head_pos_mm@0.5s|hold       hold-last: the pose does not move
    animation/head_pos_mm@0.5s|const_vel  constant velocity (and constant angular velocity) from steps t-1, t
    audio/logmel_mse@0.1s  (|repeat_last) log-mel MSE (natural-log units) against repeating step t's last frame
    external_text/token_accuracy (|no_text)  teacher-forced accuracy on the tokens of steps where text was said
    external_text/when_accuracy  (|no_text)  "text or no text at the next step" decided right

Why baselines in the same pass: "does the model beat holding still on sessions it never saw" is the question a
user asks, and a number without its baseline on the same windows cannot answer it. Animation errors count only
targets where step t-1 is tracked too (not the first step of a window, not just after a dropout), so every
guess — model, hold, constant velocity — is scored on exactly the same targets.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from training.losses import compute_losses
from training.targets import POSE_PARTS, FutureTargets, TargetBuilder
from vrcap.quaternion import quat_conj, quat_mul

HORIZONS_S = (0.1, 0.5, 1.0)
GROUPS = {"head": slice(0, 1), "controllers": slice(1, POSE_PARTS), "hands": slice(POSE_PARTS, None)}
TEXT_HEADS = ("internal_text", "external_text")
ALL_ONE = {"animation": 1.0, "audio": 1.0, "internal_text": 1.0, "external_text": 1.0}


@dataclass
class _Sums:
    totals: dict[str, float] = field(default_factory=dict)
    counts: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, total: float, count: float) -> None:
        self.totals[name] = self.totals.get(name, 0.0) + total
        self.counts[name] = self.counts.get(name, 0.0) + count

    def means(self) -> dict[str, float]:
        return {k: self.totals[k] / self.counts[k] for k in self.totals if self.counts[k] > 0}


def _angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    dot = np.abs((a * b).sum(-1)) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)
    return np.degrees(2 * np.arccos(np.clip(dot, 0.0, 1.0)))


def constant_velocity(current: np.ndarray, previous: np.ndarray, ok: np.ndarray, steps: int) -> np.ndarray:
    """(..., 55, 7) poses ``steps`` ahead at the velocity from ``previous`` to ``current``; hold where not ``ok``."""
    pos = current[..., :3] + steps * (current[..., :3] - previous[..., :3])
    delta = quat_mul(current[..., 3:7], quat_conj(previous[..., 3:7]))  # world-frame rotation per step
    delta = delta * np.where(delta[..., 3:4] < 0, -1.0, 1.0)
    sin_half = np.linalg.norm(delta[..., :3], axis=-1, keepdims=True)
    half = np.arctan2(sin_half, delta[..., 3:4])
    axis = delta[..., :3] / np.maximum(sin_half, 1e-12)
    power = np.concatenate([axis * np.sin(steps * half), np.cos(steps * half)], axis=-1)
    quat = quat_mul(power, current[..., 3:7])
    out = np.concatenate([pos, quat], axis=-1)
    return np.where(ok[..., None], out, current)


class Evaluator:
    """Runs a model over batches and reduces errors in physical units with their baselines."""

    def __init__(self, model: Any, builder: TargetBuilder, step_hz: float, drop: Iterable[str] = ()) -> None:
        self.model, self.builder, self.step_hz = model, builder, step_hz
        self.drop = frozenset(drop)
        self.horizons = [(h, round(h * step_hz) - 1) for h in HORIZONS_S]  # (seconds, k index)
        for module in model.modules() if hasattr(model, "modules") else ():
            if hasattr(module, "decode_steps"):  # the tokens head decodes only the horizons scored here
                module.decode_steps = [k for _, k in self.horizons]

    @torch.no_grad()
    def run(self, batches: Iterable[dict[str, Any]]) -> dict[str, float]:
        sums = _Sums()
        was_training = self.model.training
        self.model.eval()
        try:
            for batch in batches:
                out = self.model(batch, self.drop) if self.drop else self.model(batch)
                targets = self.builder.build(batch)
                _, losses = compute_losses(out, targets, ALL_ONE)
                for name, value in losses.items():
                    sums.add(f"loss/{name}", float(value), 1.0)
                self._animation(sums, out["animation"], targets)
                self._audio(sums, out["audio"], targets)
                for head in TEXT_HEADS:
                    self._text(sums, head, out[head])
        finally:
            self.model.train(was_training)
        means = sums.means()
        losses = [means[f"loss/{n}"] for n in ALL_ONE if f"loss/{n}" in means]
        if losses:
            means["loss/total"] = float(sum(losses))
        return means

    def _animation(self, sums: _Sums, pred_change: torch.Tensor, tg: FutureTargets) -> None:
        horizon = pred_change.shape[2]
        pred = self.builder.animation_from_change(pred_change, tg.base).cpu().numpy().astype(np.float64)
        future = tg.future.cpu().numpy().astype(np.float64)
        valid = tg.animation_valid.cpu().numpy()
        current = tg.current.cpu().numpy().astype(np.float64)
        previous = tg.previous.cpu().numpy().astype(np.float64)
        prev_ok = tg.previous_valid.cpu().numpy()
        for seconds, k in self.horizons:
            if k >= horizon or k < 0:
                continue
            guesses = {
                "": pred[:, :, k],
                "|hold": current,
                "|const_vel": constant_velocity(current, previous, prev_ok, k + 1),
            }
            truth, ok = future[:, :, k], valid[:, :, k] & prev_ok  # targets every guess can be made for
            for suffix, guess in guesses.items():
                pos_mm = np.linalg.norm(guess[..., :3] - truth[..., :3], axis=-1) * 1000.0
                rot_deg = _angle_deg(guess[..., 3:7], truth[..., 3:7])
                for group, parts in GROUPS.items():
                    m = ok[..., parts]
                    n = float(m.sum())
                    if n == 0:
                        continue
                    sums.add(
                        f"animation/{group}_pos_mm@{seconds:g}s{suffix}",
                        float(pos_mm[..., parts][m].sum()),
                        n,
                    )
                    sums.add(
                        f"animation/{group}_rot_deg@{seconds:g}s{suffix}",
                        float(rot_deg[..., parts][m].sum()),
                        n,
                    )

    def _audio(self, sums: _Sums, pred: torch.Tensor, tg: FutureTargets) -> None:
        if tg.audio is None or tg.audio_valid is None or self.builder.audio_scale is None:
            return
        scale = self.builder.audio_scale.to(pred.device)  # (K, M*bins) change scale in z units
        bins = tg.mel_std.numel() if tg.mel_std is not None else 1
        std = (tg.mel_std if tg.mel_std is not None else torch.ones(1)).to(pred.device)
        to_logmel = (
            scale.reshape(scale.shape[0], -1, bins) * std
        )  # (K, M, bins): normalised change -> log-mel
        b, t, k, _ = pred.shape
        err = ((pred.float() - tg.audio).reshape(b, t, k, -1, bins) * to_logmel).square().mean(dim=(-1, -2))
        base = (
            (tg.audio.reshape(b, t, k, -1, bins) * to_logmel).square().mean(dim=(-1, -2))
        )  # repeat-last = 0
        valid = tg.audio_valid.float()
        n = float(valid.sum())
        if n > 0:
            sums.add("audio/logmel_mse", float((err * valid).sum()), n)
            sums.add("audio/logmel_mse|repeat_last", float((base * valid).sum()), n)
        for seconds, ki in self.horizons:
            if 0 <= ki < k and float(valid[:, :, ki].sum()) > 0:
                nk = float(valid[:, :, ki].sum())
                sums.add(f"audio/logmel_mse@{seconds:g}s", float((err[:, :, ki] * valid[:, :, ki]).sum()), nk)
                sums.add(
                    f"audio/logmel_mse@{seconds:g}s|repeat_last",
                    float((base[:, :, ki] * valid[:, :, ki]).sum()),
                    nk,
                )

    def _text(self, sums: _Sums, head: str, text: dict[str, torch.Tensor]) -> None:
        first, target = text["first"], text["first_target"]
        if target.numel():
            from replay.tokenizer import BOS, EOS

            # the decision is bos (text follows) against eos (none), whatever other token scores higher
            right = (first[:, BOS] > first[:, EOS]) == (target == BOS)
            sums.add(f"{head}/when_accuracy", float(right.sum()), float(target.numel()))
            sums.add(f"{head}/when_accuracy|no_text", float((target == EOS).sum()), float(target.numel()))
        rows, logits = text["targets"], text["logits"]
        real = rows != 0
        n = float(real.sum())
        if n > 0:
            hits = (logits.argmax(-1) == rows) & real
            sums.add(f"{head}/token_accuracy", float(hits.sum()), n)
            sums.add(f"{head}/token_accuracy|no_text", 0.0, n)  # saying nothing gets no token right


def beyond_horizon(horizon_steps: int, step_hz: float) -> list[str]:
    """Why a horizon of HORIZONS_S has no figures: the model predicts only K steps ahead. Not extrapolated on
    purpose: holding or extending the last predicted step would score a rule we made up, not the model."""
    notes = []
    for seconds in HORIZONS_S:
        needed = round(seconds * step_hz)
        if needed > horizon_steps:
            notes.append(
                f"{seconds:g} s ahead: not evaluated: the model predicts {horizon_steps} steps "
                f"({horizon_steps / step_hz:g} s at {step_hz:g} Hz); train with model.horizon={needed} (and a "
                f"data.window longer than it) to have it"
            )
    return notes


def render_table(metrics: dict[str, float], title: str) -> str:
    """Model | baselines per metric, and which baselines the model beats (lower is better, accuracy: higher)."""
    names = sorted(k for k in metrics if "|" not in k and "/" in k and not k.startswith("loss/"))
    lines = [title, f"  {'metric':<34} {'model':>10} {'hold/rep/none':>14} {'const-vel':>10}  beats"]
    for name in names:
        model = metrics[name]
        first = metrics.get(
            f"{name}|hold", metrics.get(f"{name}|repeat_last", metrics.get(f"{name}|no_text"))
        )
        cv = metrics.get(f"{name}|const_vel")
        higher = "accuracy" in name
        beats = []
        for label, base in (("first", first), ("const-vel", cv)):
            if base is not None and ((model > base) if higher else (model < base)):
                beats.append(label if label == "const-vel" else _first_label(name))
        lines.append(
            f"  {name:<34} {_fmt(model):>10} {_fmt(first):>14} {_fmt(cv):>10}  {', '.join(beats) or 'none'}"
        )
    return "\n".join(lines)


def _first_label(name: str) -> str:
    if name.startswith("animation/"):
        return "hold"
    return "repeat-last" if name.startswith("audio/") else "no-text"


def _fmt(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
