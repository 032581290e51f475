"""One session's tensors on the step clock (docs/TENSORS.md), plus the sums normalization needs later.

The shard depends only on the session and the replay config. Normalization statistics need the whole train
split, so each session contributes sums (count, sum, sum of squares) that the manifest combines.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from replay import align, tokenizer
from replay.audio_stream import AudioResult, audio_layout, features
from replay.config import ReplayConfig
from replay.extract import CONTROL_STREAMS, HAND_STREAMS, POSE_STREAMS, Collected, tensor_camera_name
from vrcap.metadata import SessionMeta


@dataclass
class SessionTensors:
    tensors: dict[str, np.ndarray]
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)  # tensor -> {count, sum, sumsq}
    notes: list[str] = field(default_factory=list)


def _period_ns(meta: SessionMeta, name: str, times: np.ndarray) -> float:
    """Nominal sample period from the descriptor, else the median interval."""
    desc = meta.stream(name)
    if desc is not None and desc.rate_hz > 0:
        return 1e9 / desc.rate_hz
    return float(np.median(np.diff(times))) if times.size > 1 else 1e9


def _sums(values: np.ndarray, mask: np.ndarray, axis: tuple[int, ...]) -> dict[str, Any]:
    """Count/sum/sumsq of ``values`` where ``mask`` over ``axis``, as lists for JSON."""
    m = mask.astype(np.float64)
    while m.ndim < values.ndim:
        m = m[..., None]
    v = values.astype(np.float64) * m
    count = np.broadcast_to(m, values.shape).sum(axis=axis)
    return {
        "count": count.tolist(),
        "sum": v.sum(axis=axis).tolist(),
        "sumsq": (v * values).sum(axis=axis).tolist(),
    }


def build(collected: Collected, meta: SessionMeta, config: ReplayConfig) -> SessionTensors:
    rate = config.step.rate_hz
    if collected.first_t is None or collected.last_t is None:
        steps = np.zeros(0, np.int64)
    else:
        steps = align.step_times(collected.first_t, collected.last_t, rate)
    out = SessionTensors({"time_ns": steps})
    # Audio (FFTs, matrix products: numpy releases the GIL) runs beside the poses on the second core; each
    # part writes its own tensors. A session converts in about half the wall time of doing them in turn.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="vrcap-audio") as pool:
        audio = pool.submit(_audio, out, collected, meta, config, steps)
        _poses(out, collected, meta, config, steps)
        _controls(out, collected, meta, config, steps)
        _cameras(out, collected, steps)
        _text(out, collected, config, steps)
        audio.result()
    out.tensors = dict(sorted(out.tensors.items()))  # the same order whichever part finished first
    return out


def _poses(
    out: SessionTensors, c: Collected, meta: SessionMeta, config: ReplayConfig, steps: np.ndarray
) -> None:
    gap = config.pose.max_gap_periods
    for key, names, joint_shape in (("pose", POSE_STREAMS, ()), ("hands", HAND_STREAMS, (26,))):
        values = np.zeros((steps.size, len(names), *joint_shape, 7), np.float32)
        mask = np.zeros((steps.size, len(names)), bool)
        for j, name in enumerate(names):
            stream = c.arrays.get(name)
            if stream is None or not stream.times:
                continue
            times, data, valid = stream.arrays()
            if data.shape[1:-1] != joint_shape or data.shape[-1] < 7:
                out.notes.append(f"{name}: shape {data.shape[1:]} is not {(*joint_shape, '7+')}; masked")
                continue
            values[:, j], mask[:, j] = align.interpolate_pose(
                times, data, valid, steps, gap * _period_ns(meta, name, times)
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
    for key, axis in (("pose", (0,)), ("hands", (0,))):
        out.stats[key] = _sums(out.tensors[key], out.tensors[f"{key}.mask"], axis)


def _controls(
    out: SessionTensors, c: Collected, meta: SessionMeta, config: ReplayConfig, steps: np.ndarray
) -> None:
    values = np.zeros((steps.size, len(CONTROL_STREAMS), 8), np.float32)
    mask = np.zeros((steps.size, len(CONTROL_STREAMS)), bool)
    for j, name in enumerate(CONTROL_STREAMS):
        stream = c.arrays.get(name)
        if stream is None or not stream.times:
            continue
        times, data, _ = stream.arrays()
        data = data.reshape(data.shape[0], -1)[:, :8]
        gap = config.pose.max_gap_periods * _period_ns(meta, name, times)
        held, mask[:, j] = align.hold(times, data, steps, gap)
        values[:, j, : held.shape[1]] = held
    out.tensors["controls"], out.tensors["controls.mask"] = values, mask


def _audio(
    out: SessionTensors, c: Collected, meta: SessionMeta, config: ReplayConfig, steps: np.ndarray
) -> None:
    layout = audio_layout(meta, config.step.rate_hz, config.audio)
    if c.audio is None:  # no audio stream, or no packet at all
        starts = np.zeros(steps.size, np.int64)
        result = AudioResult(*features(None, starts, layout), starts, [])
    else:
        result = c.audio.finish(steps.size)
    out.notes.extend(result.notes)
    if config.audio.keep_pcm:
        out.tensors["audio.pcm"] = result.pcm
    out.tensors["audio.mel"] = result.mel
    out.tensors["audio.mask"] = result.mask
    out.tensors["audio.start_index"] = np.where(result.mask, result.starts, -1).astype(np.int64)
    out.stats["audio.mel"] = _sums(result.mel, result.mask, (0, 1))
    out.stats["audio"] = {
        "rate_hz": layout.rate,
        "channels": layout.channels,
        "samples_per_step": layout.length,
        "frames_per_step": layout.frames_per_step,
    }


def _cameras(out: SessionTensors, c: Collected, steps: np.ndarray) -> None:
    for stream, selector in sorted(c.cameras.items()):
        name = f"camera.{tensor_camera_name(stream)}"
        images, frames, mask = selector.finish(steps.size)
        out.tensors[name], out.tensors[f"{name}.frame"], out.tensors[f"{name}.mask"] = images, frames, mask
        if selector.undecodable:
            out.notes.append(f"{stream}: {selector.undecodable} frames did not decode; masked")


def _text(out: SessionTensors, c: Collected, config: ReplayConfig, steps: np.ndarray) -> None:
    width = config.text.max_tokens
    cut = 0
    for channel in ("internal", "external"):
        rows: dict[int, list[int]] = {}
        events = [(t, text) for t, ch, text in c.texts if ch == channel]
        if events:
            where = align.assign_events(
                np.array([t for t, _ in events], np.int64), steps, config.step.rate_hz
            )
            for k, (_, text) in zip(where.tolist(), events, strict=True):
                rows.setdefault(k, []).extend(tokenizer.encode(text))
        tokens = np.zeros((steps.size, width), np.int32)
        mask = np.zeros(steps.size, bool)
        for k, row in rows.items():
            if k < steps.size:
                cut += max(0, len(row) - width)
                tokens[k, : min(width, len(row))] = row[:width]
                mask[k] = True
        out.tensors[f"text.{channel}"], out.tensors[f"text.{channel}.mask"] = tokens, mask
    if cut:
        out.notes.append(f"text: {cut} tokens cut at text.max_tokens={width}")
