"""`vrcap estimate`: what a config costs before anyone pays for it. Every number comes with its assumption.

The model is built on the meta device: shapes without storage, so counting the 1b config's parameters takes a
fraction of a second and no memory. Compute follows the usual 6·N·D rule (forward 2·N·D, backward 4·N·D per
token, N parameters, D tokens), plus the one place where it undercounts this model: the camera patch
convolution runs once per patch, not once per step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.config import TrainConfig
from training.model import build_model, count_parameters

# Dense bf16 tensor-core peaks from the vendors' data sheets (no sparsity).
GPUS = {"A100 SXM": 312e12, "H100 SXM": 989e12, "RTX 4090": 165e12}
UTILIZATION = (0.30, 0.50)  # model FLOPs utilization of well-tuned transformer training (range)
BYTES_PER_PARAM_TRAINING = (
    16  # fp32 weights (4) + grads (4) + AdamW moments (8); bf16 autocast copies are transient
)


STEP_HZ = 30.0  # replay's default step clock (vrcap/configs/replay.yaml step.rate_hz)
AUDIO_HZ = 48000  # the sim's and most headsets' microphone rate; mono


def step_bytes(cfg: TrainConfig) -> dict[str, int]:
    """Bytes of one time step: in the shards (uint8 cameras, int32 text) and as the float32 batch sent to the
    device (the Dataset scales cameras to float32, text to int64)."""
    m = cfg.model
    pixels = 3 * m.camera_height * m.camera_width * len(m.cameras)
    masks = 3 + 2 + 2 + 1 + len(m.cameras) + 2
    common = (21 + 364 + 16 + m.mel_frames * m.mel_bins) * 4 + masks
    pcm = round(AUDIO_HZ / STEP_HZ) * 2  # int16 audio.pcm, kept in the shards, not sent to the model
    return {
        "shard": common + pixels + 2 * m.text_len * 4 + pcm + 8,
        "device": common + pixels * 4 + 2 * m.text_len * 8 + 8,
    }


def estimate(cfg: TrainConfig) -> dict[str, Any]:
    model = build_model(cfg.model, "meta")
    params = count_parameters(model)
    parts = {
        "encoders": count_parameters(model.encoders),
        "transformer": sum(count_parameters(b) for b in model.blocks),
        "heads": count_parameters(model.heads),
    }
    parts["other"] = params - sum(parts.values())
    m, d = cfg.model, cfg.data
    effective_batch = d.batch_size * cfg.optim.grad_accum
    tokens_per_step = effective_batch * d.window  # one token = one time step of one window
    outputs_per_step = (
        effective_batch * d.window * (m.horizon * 2 + 2)
    )  # K animation + K audio steps, 2 texts
    total_tokens = tokens_per_step * cfg.max_steps
    flops_6nd = 6 * params * total_tokens
    patches = (m.camera_height // m.patch_size) * (m.camera_width // m.patch_size) if m.cameras else 0
    conv_params = 3 * m.patch_size**2 * m.d_model if m.cameras else 0
    camera_flops = 6 * conv_params * max(patches - 1, 0) * len(m.cameras) * total_tokens
    total_flops = flops_6nd + camera_flops
    wall = {gpu: {f"{u:.0%}": total_flops / (peak * u) for u in UTILIZATION} for gpu, peak in GPUS.items()}
    sizes = step_bytes(cfg)
    stride = d.stride or d.window
    seen_hours = total_tokens / STEP_HZ / 3600  # recorded time the windows cover, counting overlaps again
    epoch_hours = seen_hours * stride / d.window  # distinct recording if every step is seen once per epoch
    return {
        "step_hz": STEP_HZ,
        "audio_hz": AUDIO_HZ,
        "window_s": d.window / STEP_HZ,
        "horizon_s": m.horizon / STEP_HZ,
        "hours_seen": seen_hours,
        "hours_one_epoch": epoch_hours,
        "shard_bytes_per_step": sizes["shard"],
        "shard_bytes_one_epoch": sizes["shard"] * epoch_hours * 3600 * STEP_HZ,
        "host_to_device_bytes_per_step": sizes["device"] * tokens_per_step,
        "params": params,
        "params_by_part": parts,
        "max_steps": cfg.max_steps,
        "effective_batch": effective_batch,
        "micro_batch": d.batch_size,
        "grad_accum": cfg.optim.grad_accum,
        "window_steps": d.window,
        "tokens_per_step": tokens_per_step,
        "samples_per_step": effective_batch,
        "output_predictions_per_step": outputs_per_step,
        "total_tokens": total_tokens,
        "total_samples": effective_batch * cfg.max_steps,
        "total_output_predictions": outputs_per_step * cfg.max_steps,
        "training_flops_6nd": flops_6nd,
        "camera_patch_flops": camera_flops,
        "training_flops": total_flops,
        "memory_gb_weights_grads_adam": params * BYTES_PER_PARAM_TRAINING / 1e9,
        "wall_clock_s": wall,
        "assumptions": [
            f"step clock {STEP_HZ:g} Hz (replay's default step.rate_hz), audio {AUDIO_HZ} Hz mono: a window of "
            f"{d.window} steps is {d.window / STEP_HZ:.2f} s, the horizon of {m.horizon} steps "
            f"{m.horizon / STEP_HZ:.2f} s",
            "a token is one time step of one window; the transformer sees data.window tokens per sample",
            f"data: windows every data.stride={stride} steps, so max_steps covers {seen_hours:.3g} h of windows; "
            f"seeing each recorded step once means {epoch_hours:.3g} h of recording "
            f"({_bytes(sizes['shard'] * epoch_hours * 3600 * STEP_HZ)} of shards at {sizes['shard']:,} bytes per "
            "step incl. audio.pcm); fewer hours repeat epochs",
            f"host -> device: {sizes['device']:,} bytes per time step as the Dataset hands them over (cameras as "
            f"float32), {_bytes(sizes['device'] * tokens_per_step)} per optimizer step",
            f"effective batch = data.batch_size {d.batch_size} x optim.grad_accum {cfg.optim.grad_accum} "
            "(kept constant under torchrun: accumulation is divided by the number of processes, else the micro-batch)",
            "training FLOPs = 6 x params x tokens (forward 2, backward 4), + the camera patch convolution "
            f"counted per patch ({patches} patches x {len(m.cameras)} cameras per step)",
            "not counted: attention's T^2 term and the text decoders' L tokens per step with text "
            "(both small at these window and text lengths; text only runs on steps that hold text)",
            "peak = dense bf16 tensor throughput per GPU: "
            + ", ".join(f"{g} {p / 1e12:.0f} TFLOP/s" for g, p in GPUS.items()),
            f"utilization (MFU) {UTILIZATION[0]:.0%}-{UTILIZATION[1]:.0%}: the range of well-tuned training; "
            "data loading that cannot keep up lowers it",
            "wall clock is for ONE GPU; N GPUs at the same utilization take 1/N of it",
            f"memory: {BYTES_PER_PARAM_TRAINING} bytes per parameter for weights, gradients and AdamW state, "
            "before activations; over a GPU's memory, use strategy=fsdp across GPUs",
        ],
    }


def _human(n: float) -> str:
    for unit, size in (("e18", 1e18), ("e15", 1e15), ("e12", 1e12), ("e9", 1e9), ("e6", 1e6)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n:,.0f}"


def _duration(seconds: float) -> str:
    """In the unit that fits: 0.4 s, 12 s, 3.5 min, 2.1 h, 9.8 d (never "0.0 min")."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.2g} s" if seconds < 10 else f"{seconds:.0f} s"


def _bytes(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def render(r: dict[str, Any], config: Path | None) -> str:
    lines = [
        f"estimate for {config or 'small'}",
        f"  parameters           {r['params']:,} ({_human(r['params'])}): "
        + ", ".join(f"{k} {v:,}" for k, v in r["params_by_part"].items()),
        f"  steps                {r['max_steps']:,}",
        f"  effective batch      {r['effective_batch']} samples ({r['micro_batch']} x {r['grad_accum']} accumulation)",
        f"  per step             {r['samples_per_step']} samples, {r['tokens_per_step']:,} tokens, "
        f"{r['output_predictions_per_step']:,} output predictions (4 streams)",
        f"  in total             {r['total_samples']:,} samples, {r['total_tokens']:,} tokens ({_human(r['total_tokens'])})",
        f"  training FLOPs       {_human(r['training_flops'])} = 6ND {_human(r['training_flops_6nd'])}"
        f" + camera patches {_human(r['camera_patch_flops'])}",
        f"  data                 window {r['window_s']:.2f} s, horizon {r['horizon_s']:.2f} s at {r['step_hz']:g} Hz; "
        f"{r['hours_seen']:.3g} h of windows seen, {r['hours_one_epoch']:.3g} h of recording for one epoch "
        f"({_bytes(r['shard_bytes_one_epoch'])} of shards)",
        f"  host -> device       {_bytes(r['host_to_device_bytes_per_step'])} per optimizer step",
        f"  memory (no activations)  {r['memory_gb_weights_grads_adam']:.1f} GB",
        "  wall clock on one GPU:",
    ]
    for gpu, by_util in r["wall_clock_s"].items():
        utils = list(by_util.items())
        lines.append(
            f"    {gpu:<10} {_duration(utils[-1][1])} (at {utils[-1][0]}) to {_duration(utils[0][1])} (at {utils[0][0]})"
        )
    lines.append("  assumptions:")
    lines += [f"    - {a}" for a in r["assumptions"]]
    return "\n".join(lines)
