"""One chunk of a session's tensors on the step clock (docs/TENSORS.md), plus the sums normalization needs later.

A chunk's tensors depend only on the samples around its steps, so a session is built chunk by chunk
(``replay.extract.SessionCollector`` decides when one is complete) and the chunks' rows are appended to the shard
in order: the same values as building the whole session at once. Normalization statistics need the whole train
split, so each session contributes sums (count, sum, sum of squares) that ``SessionTotals`` adds up over the
chunks and the manifest combines over sessions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from replay import align, tokenizer
from replay.audio_stream import AudioLayout, features
from replay.config import ReplayConfig
from replay.extract import CONTROL_STREAMS, HAND_STREAMS, POSE_STREAMS, ChunkInput, tensor_camera_name
from vrcap.metadata import SessionMeta


@dataclass
class ChunkTensors:
    tensors: dict[str, np.ndarray]  # rows k0..k1-1 of each tensor
    stats: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # tensor -> count, sum, sumsq
    notes: list[str] = field(default_factory=list)
    undecodable: dict[str, int] = field(default_factory=dict)  # camera stream -> frames that did not decode
    text_cut: int = 0  # tokens cut at text.max_tokens


class Periods:
    """Each stream's nominal sample period: from its descriptor, else the median interval of the first chunk
    that has samples (then fixed, so every chunk bridges the same gaps)."""

    def __init__(self, meta: SessionMeta, known: dict[str, float] | None = None) -> None:
        self.meta = meta
        self.known: dict[str, float] = dict(known or {})  # stream -> period, fixed once seen

    def __call__(self, name: str, times: np.ndarray) -> float:
        if name not in self.known:
            desc = self.meta.stream(name)
            if desc is not None and desc.rate_hz > 0:
                self.known[name] = 1e9 / desc.rate_hz
            elif times.size > 1:
                self.known[name] = float(np.median(np.diff(times)))
            else:
                return 1e9
        return self.known[name]


def _sums(values: np.ndarray, mask: np.ndarray, axis: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Count/sum/sumsq of ``values`` where ``mask`` over ``axis`` (float64)."""
    m = mask.astype(np.float64)
    while m.ndim < values.ndim:
        m = m[..., None]
    v = values.astype(np.float64) * m
    count = np.broadcast_to(m, values.shape).sum(axis=axis)
    return {"count": count, "sum": v.sum(axis=axis), "sumsq": (v * values).sum(axis=axis)}


def build_chunk(
    chunk: ChunkInput, meta: SessionMeta, config: ReplayConfig, layout: AudioLayout, periods: Periods
) -> ChunkTensors:
    out = build_samples(chunk, meta, config, layout, periods)
    add_cameras(out, chunk)
    return out


def build_samples(
    chunk: ChunkInput, meta: SessionMeta, config: ReplayConfig, layout: AudioLayout, periods: Periods
) -> ChunkTensors:
    """Every tensor of the chunk but its cameras (what replay.chunk_builder builds in another process)."""
    out = ChunkTensors({"time_ns": chunk.steps})
    _poses(out, chunk, config, periods)
    _controls(out, chunk, config, periods)
    _audio(out, chunk, config, layout)
    _text(out, chunk, config)
    return out


def add_cameras(out: ChunkTensors, chunk: ChunkInput) -> None:
    """The chunk's camera tensors (waits for their decodes), then every tensor in name order."""
    _cameras(out, chunk)
    out.tensors = dict(sorted(out.tensors.items()))


class SessionTotals:
    """What the manifest says about a whole session, added up over its chunks."""

    def __init__(self) -> None:
        self.stats: dict[str, dict[str, np.ndarray]] = {}
        self.masked: dict[str, list[int]] = {}  # mask tensor -> [True count, element count]
        self.notes: list[str] = []
        self.undecodable: dict[str, int] = {}
        self.text_cut = 0

    def add(self, chunk: ChunkTensors) -> None:
        for key, sums in chunk.stats.items():
            have = self.stats.setdefault(key, {k: np.zeros_like(v) for k, v in sums.items()})
            for k, v in sums.items():
                have[k] = have[k] + v
        for name, arr in chunk.tensors.items():
            if name.endswith(".mask"):
                seen = self.masked.setdefault(name.removesuffix(".mask"), [0, 0])
                seen[0] += int(arr.sum())
                seen[1] += int(arr.size)
        self.notes.extend(n for n in chunk.notes if n not in self.notes)
        self.text_cut += chunk.text_cut
        for stream, n in chunk.undecodable.items():
            self.undecodable[stream] = self.undecodable.get(stream, 0) + n

    def masked_fractions(self) -> dict[str, float]:
        return {k: round(1.0 - t / n, 4) if n else 1.0 for k, (t, n) in sorted(self.masked.items())}

    def stats_json(self) -> dict[str, dict[str, Any]]:
        return {k: {n: v.tolist() for n, v in sums.items()} for k, sums in self.stats.items()}


def _poses(out: ChunkTensors, c: ChunkInput, config: ReplayConfig, periods: Periods) -> None:
    gap = config.pose.max_gap_periods
    steps = c.steps
    for key, names, joint_shape in (("pose", POSE_STREAMS, ()), ("hands", HAND_STREAMS, (26,))):
        values = np.zeros((steps.size, len(names), *joint_shape, 7), np.float32)
        mask = np.zeros((steps.size, len(names)), bool)
        for j, name in enumerate(names):
            if name not in c.arrays:
                continue
            times, data, valid = c.arrays[name].arrays()
            if data.shape[1:-1] != joint_shape or data.shape[-1] < 7:
                out.notes.append(f"{name}: shape {data.shape[1:]} is not {(*joint_shape, '7+')}; masked")
                continue
            values[:, j], mask[:, j] = align.interpolate_pose(
                times, data, valid, steps, gap * periods(name, times)
            )
        out.tensors[key], out.tensors[f"{key}.mask"] = values, mask
    if config.pose.frame == "head":
        head_ok = out.tensors["pose.mask"][:, 0]
        head = out.tensors["pose"][:, 0]
        for key in ("pose", "hands"):
            rel = align.to_head_frame(out.tensors[key], head)
            out.tensors[key] = np.where(head_ok.reshape((-1,) + (1,) * (rel.ndim - 1)), rel, 0).astype(
                np.float32
            )
            out.tensors[f"{key}.mask"] &= head_ok[:, None]
    for key in ("pose", "hands"):
        out.stats[key] = _sums(out.tensors[key], out.tensors[f"{key}.mask"], (0,))


def _controls(out: ChunkTensors, c: ChunkInput, config: ReplayConfig, periods: Periods) -> None:
    steps = c.steps
    values = np.zeros((steps.size, len(CONTROL_STREAMS), 8), np.float32)
    mask = np.zeros((steps.size, len(CONTROL_STREAMS)), bool)
    for j, name in enumerate(CONTROL_STREAMS):
        if name not in c.arrays:
            continue
        times, data, _ = c.arrays[name].arrays()
        data = data.reshape(data.shape[0], -1)[:, :8]
        gap = config.pose.max_gap_periods * periods(name, times)
        held, mask[:, j] = align.hold(times, data, steps, gap)
        values[:, j, : held.shape[1]] = held
    out.tensors["controls"], out.tensors["controls.mask"] = values, mask


def _audio(out: ChunkTensors, c: ChunkInput, config: ReplayConfig, layout: AudioLayout) -> None:
    if c.audio is None:  # no audio stream
        starts = np.zeros(c.steps.size, np.int64)
        pcm, mel, mask = features(None, starts, layout)
    else:
        result = c.audio.compute(layout)
        pcm, mel, mask, starts = result.pcm, result.mel, result.mask, result.starts
    if config.audio.keep_pcm:
        out.tensors["audio.pcm"] = pcm
    out.tensors["audio.mel"] = mel
    out.tensors["audio.mask"] = mask
    out.tensors["audio.start_index"] = np.where(mask, starts, -1).astype(np.int64)
    out.stats["audio.mel"] = _sums(mel, mask, (0, 1))


def audio_summary(layout: AudioLayout) -> dict[str, Any]:
    """The manifest's ``audio`` entry."""
    return {
        "rate_hz": layout.rate,
        "channels": layout.channels,
        "samples_per_step": layout.length,
        "frames_per_step": layout.frames_per_step,
    }


def _cameras(out: ChunkTensors, c: ChunkInput) -> None:
    for stream, chunk in sorted(c.cameras.items()):
        name = f"camera.{tensor_camera_name(stream)}"
        images, frames, mask, failed = chunk.images()
        out.tensors[name], out.tensors[f"{name}.frame"], out.tensors[f"{name}.mask"] = images, frames, mask
        if failed:
            out.undecodable[stream] = failed


def _text(out: ChunkTensors, c: ChunkInput, config: ReplayConfig) -> None:
    width = config.text.max_tokens
    cut = 0
    for channel in ("internal", "external"):
        rows: dict[int, list[int]] = {}
        for k, ch, text in c.texts:
            if ch == channel:
                rows.setdefault(k, []).extend(tokenizer.encode(text))
        tokens = np.zeros((c.steps.size, width), np.int32)
        mask = np.zeros(c.steps.size, bool)
        for k, row in rows.items():
            cut += max(0, len(row) - width)
            tokens[k, : min(width, len(row))] = row[:width]
            mask[k] = True
        out.tensors[f"text.{channel}"], out.tensors[f"text.{channel}.mask"] = tokens, mask
    out.text_cut = cut
