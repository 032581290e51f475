"""`vrcap profile`: a few real training steps under torch.profiler, a TensorBoard trace, and a report that says
where the time and memory go, per operator and per modality, with recommendations.

The modality regions are the model's record_function ranges (encoder/<name>, transformer, head/<output>) and
the loop's (data, forward, backward, optimizer). Backward kernels run on autograd's side, outside the forward
ranges, so per-modality figures are forward cost; the backward's total is its own row.
"""

from __future__ import annotations

import dataclasses
import json
import resource
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, schedule, tensorboard_trace_handler

from training.config import TrainConfig
from training.distributed import World, pick_device
from training.loop import RunOptions, Trainer
from training.metrics import Throughput

WARMUP_STEPS = 2
REGION_PREFIXES = ("encoder/", "head/", "transformer", "data", "forward", "backward", "optimizer")


def peak_memory_mb(device: torch.device) -> dict[str, float]:
    """The process's peak resident memory so far (and the GPU's peak allocation): what a machine must hold."""
    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        out["peak_cuda_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def profile_run(cfg: TrainConfig, data_dir: Path, out_dir: Path, steps: int) -> Path:
    device = pick_device(cfg.device, 0)
    cfg = dataclasses.replace(cfg, eval_interval=0)  # profiles training steps, not validation passes
    trainer = Trainer(cfg, RunOptions(data_dir, out_dir, one_run_per_folder=False), World(device=device))
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    meter = Throughput()
    trace_dir = out_dir / "runs" / "profile"
    try:
        trainer.model.train()
        with profile(
            activities=activities,
            schedule=schedule(wait=0, warmup=WARMUP_STEPS, active=steps, repeat=1),
            on_trace_ready=tensorboard_trace_handler(str(trace_dir)),
            profile_memory=True,
        ) as prof:
            for _ in range(WARMUP_STEPS + steps):
                trainer.one_step(meter)
                prof.step()
        perf = meter.report()
        report = build_report(prof, steps, cfg, device, trainer.params, perf)
        report["memory"] = peak_memory_mb(device) | {
            "note": "peak_rss_mb: the highest resident memory of the process during the run (getrusage); "
            "operators' net_cpu_alloc_mb_per_step are net allocations (allocated minus freed, may be negative)"
        }
    finally:
        trainer.close()
    path = out_dir / "profile_report.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


def build_report(
    prof: Any, steps: int, cfg: TrainConfig, device: torch.device, params: int, perf: dict[str, float]
) -> dict[str, Any]:
    averages = prof.key_averages()
    cuda = device.type == "cuda"
    regions: dict[str, dict[str, float]] = {}
    operators = []
    for ev in averages:
        row = {
            "calls": ev.count,
            "cpu_time_ms_per_step": ev.cpu_time_total / 1e3 / steps,
            "self_cpu_time_ms_per_step": ev.self_cpu_time_total / 1e3 / steps,
            "net_cpu_alloc_mb_per_step": ev.self_cpu_memory_usage / 2**20 / steps,
        }
        if cuda:
            row["device_time_ms_per_step"] = getattr(ev, "device_time_total", 0) / 1e3 / steps
            row["self_device_memory_mb_per_step"] = getattr(ev, "self_device_memory_usage", 0) / 2**20 / steps
        if ev.key.startswith(REGION_PREFIXES):
            regions[ev.key] = row
        elif not ev.key.startswith("ProfilerStep"):
            operators.append({"name": ev.key, **row})
    operators.sort(key=lambda r: r["self_cpu_time_ms_per_step"], reverse=True)
    step_ms = sum(
        regions.get(k, {}).get("cpu_time_ms_per_step", 0.0)
        for k in ("data", "forward", "backward", "optimizer")
    )
    for row in regions.values():
        row["share_of_step"] = row["cpu_time_ms_per_step"] / step_ms if step_ms else 0.0
    return {
        "config": {
            "device": str(device),
            "params": params,
            "batch_size": cfg.data.batch_size,
            "window": cfg.data.window,
        },
        "steps_profiled": steps,
        "step_time_ms": step_ms,
        "throughput": perf,
        "regions": dict(sorted(regions.items(), key=lambda kv: -kv[1]["cpu_time_ms_per_step"])),
        "operators": operators[:30],
        "recommendations": recommend(regions, perf, cfg, device),
        "notes": [
            "region times are CPU wall time inside each record_function range, per step",
            "encoder/* and head/* are forward cost; their backward is inside 'backward'",
            "the trace opens in TensorBoard's profiler plugin (pip install torch-tb-profiler) or chrome://tracing",
        ],
    }


def recommend(
    regions: dict[str, dict[str, float]], perf: dict[str, float], cfg: TrainConfig, device: torch.device
) -> list[str]:
    out = []
    share = {k: v.get("share_of_step", 0.0) for k, v in regions.items()}
    if share.get("data", 0.0) > 0.05:
        out.append(
            f"data loading takes {share['data']:.0%} of each step: raise data.num_workers (now {cfg.data.num_workers})"
        )
    forward = regions.get("forward", {}).get("cpu_time_ms_per_step", 0.0)
    for name, row in regions.items():
        if name.startswith("encoder/") and forward and row["cpu_time_ms_per_step"] / forward > 0.3:
            hint = (
                "lower images.size in the replay config or raise model.patch_size"
                if name == "encoder/camera"
                else "check its input size"
            )
            out.append(f"{name} is {row['cpu_time_ms_per_step'] / forward:.0%} of the forward pass: {hint}")
    if device.type == "cpu":
        out.append(
            "running on CPU: bf16 autocast and torch.compile are off by default here; a GPU runs the same config "
            "with precision=auto (bf16) and compile=true"
        )
        if cfg.threads == 0:
            out.append(
                f"threads=0 uses torch's default ({torch.get_num_threads()}); set threads to the physical cores"
            )
    if not cfg.compile and device.type == "cuda":
        out.append("compile=false: torch.compile usually gains 10-30% on GPUs for this model")
    if not out:
        out.append("nothing stands out: the transformer dominates, as it should")
    return out
