"""Training benchmark: `vrcap train` against a minimal hand-written PyTorch loop, same model, same batches, one run.

    /work/main/.venv/bin/python tools/bench/train.py [--config small] [--steps 60]
        [--repeat 2] [--data DIR] [--json OUT] [KEY=VALUE ...]

Data: two simulator sessions recorded with `vrcap record` (8 s each, real time) and converted with
`vrcap replay`, unless --data names a tensor folder already.

Contenders (each in its own process, alternating, best of --repeat):
    vrcap train      the command as users run it (DataLoader with the config's workers, logging to TensorBoard and
                     metrics.jsonl, NaN checks, a final checkpoint). samples/s and data-wait are read from its
                     metrics.jsonl, over the logged intervals after the first (warm-up excluded).
    reference        the same model (training.model.build_model) and loss (training.losses.compute_losses),
                     AdamW + clipping, on batches that were loaded into memory beforehand, so it pays no data
                     loading, no logging, no checks: the ceiling. The first 10 steps are warm-up.

Goal: vrcap >= 0.9x the reference, with data-wait < 5% of vrcap's wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Run as a plain script from a checkout: the repository first, and not this folder, whose replay.py (the replay
# benchmark) would otherwise shadow the replay package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

GOAL_RATIO = 0.9
GOAL_DATA_WAIT = 0.05
WARMUP_STEPS = 10
BIN = Path(sys.executable).parent


def make_data(root: Path) -> Path:
    sessions = root / "sessions"
    record = [str(BIN / "vrcap"), "record", "--root", str(sessions), "--source", "sim", "--duration", "8"]
    procs = [
        subprocess.Popen(
            [*record, "--session", f"bench-{i}", f"sim.seed={i}"], stderr=subprocess.PIPE, text=True
        )
        for i in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode:
            sys.exit(f"recording failed: {err}")
    out = root / "tensors"
    subprocess.run([str(BIN / "vrcap"), "replay", str(sessions), "--to-tensors", str(out), "split.gap_steps=32"],
                   check=True, stderr=subprocess.DEVNULL)  # fmt: skip
    return out


def run_vrcap_train(
    config: Path, data: Path, steps: int, overrides: list[str], out: Path
) -> dict[str, float]:
    log_every = max(1, steps // 6)
    cmd = [str(BIN / "vrcap"), "train", "--config", str(config), "--data", str(data), "--out", str(out),
           "--max-steps", str(steps), f"log_interval={log_every}", f"save_interval={steps * 10}",
           "eval_interval=0", *overrides]  # fmt: skip
    subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "perf/samples_per_s" in r][1:]  # the first interval holds the warm-up
    samples = sum(r["perf/samples_per_s"] for r in rows) / len(rows)
    wait = sum(r["perf/data_wait_frac"] for r in rows) / len(rows)
    return {"samples_per_s": samples, "data_wait_frac": wait}


def reference_loop(config: Path, data: Path, steps: int, overrides: list[str]) -> dict[str, float]:
    """The hand-written loop, in this (fresh) process: nothing but forward, backward, clip, step."""
    import torch

    from replay.dataset import SessionDataset, collate
    from training.config import load_train_config
    from training.data import default_modalities
    from training.losses import compute_losses
    from training.model import build_model
    from training.targets import TargetBuilder, change_scales

    cfg = load_train_config(config, overrides)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    manifest = json.loads((data / "manifest.json").read_text())
    stride = cfg.data.stride or cfg.data.window
    ds = SessionDataset(data, window=cfg.data.window, stride=stride, modalities=default_modalities(manifest))
    b = cfg.data.batch_size
    batches = [collate([ds[(i * b + j) % len(ds)] for j in range(b)]) for i in range(max(1, len(ds) // b))]
    scales = change_scales(data, manifest, "train", cfg.model.horizon, cfg.model.animation_base)
    scales.pop("counts")
    targets = TargetBuilder(cfg.model.horizon, manifest["normalization"], scales, cfg.model.animation_base)
    model = build_model(cfg.model).train()
    model.motion_stats.set_from(targets)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, betas=(cfg.optim.beta1, cfg.optim.beta2))
    weights = cfg.loss_weights.as_dict()
    start = 0.0
    for step in range(steps + WARMUP_STEPS):
        if step == WARMUP_STEPS:
            start = time.perf_counter()
        batch = batches[step % len(batches)]
        total, _ = compute_losses(model(batch), targets.build(batch), weights)
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
    elapsed = time.perf_counter() - start
    return {"samples_per_s": steps * b / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "vrcap" / "configs" / "train" / "small.yaml")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--reference-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args()
    if args.reference_only:  # the child process of the reference contender
        print(json.dumps(reference_loop(args.config, args.data, args.steps, args.overrides)))
        return
    with tempfile.TemporaryDirectory(prefix="vrcap-bench-train-") as tmp:
        data = args.data or make_data(Path(tmp))
        results: dict[str, list[dict[str, float]]] = {"vrcap train": [], "reference": []}
        for i in range(args.repeat):
            out = Path(tmp) / f"run-{i}"
            results["vrcap train"].append(run_vrcap_train(args.config, data, args.steps, args.overrides, out))
            ref = subprocess.run(
                [sys.executable, __file__, "--reference-only", "--config", str(args.config), "--data", str(data),
                 "--steps", str(args.steps), *args.overrides],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            results["reference"].append(json.loads(ref.stdout.strip().splitlines()[-1]))
    report(args, results)


def report(args: argparse.Namespace, results: dict[str, list[dict[str, float]]]) -> None:
    best = {name: max(runs, key=lambda r: r["samples_per_s"]) for name, runs in results.items()}
    ratio = best["vrcap train"]["samples_per_s"] / best["reference"]["samples_per_s"]
    wait = best["vrcap train"]["data_wait_frac"]
    import torch

    print(f"training benchmark: {args.config.name}, {args.steps} steps, best of {args.repeat}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads by default")  # fmt: skip
    for name, runs in results.items():
        figures = ", ".join(f"{r['samples_per_s']:.1f}" for r in runs)
        print(f"  {name:<12} {best[name]['samples_per_s']:7.1f} samples/s  (runs: {figures})")
    print(f"  data wait    {wait:.1%} of vrcap train's wall time (goal < {GOAL_DATA_WAIT:.0%})")
    verdict = "pass" if ratio >= GOAL_RATIO and wait < GOAL_DATA_WAIT else "miss"
    print(f"  ratio        {ratio:.2f}x the reference (goal >= {GOAL_RATIO}x): {verdict}")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "ratio": ratio, "data_wait": wait}, indent=2))


if __name__ == "__main__":
    main()
