"""`vrcap train`, `infer`, `profile` and `estimate`. Argument parsing only: torch is imported inside each
command, so `vrcap --help` does not pay the 2-3 s of `import torch`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

DEFAULT_DATA = Path("tensors")


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="NAME|PATH",
        help="train config: a shipped NAME (tiny, small, 1b) or a YAML PATH (default small)",
    )
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. optim.lr=1e-3")


def _drop_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--drop",
        action="append",
        default=[],
        metavar="MODALITY",
        help="treat this input as absent (pose, hands, controls, audio, camera, text, text.internal, "
        "text.external); repeatable",
    )


def _default_out(config: Path | None) -> Path:
    return Path("outputs") / (config.stem if config else "small")


def register(sub: Any) -> None:
    tr = sub.add_parser(
        "train",
        help="train a model on converted sessions",
        description="Train on the output of `vrcap replay --to-tensors`. Under `torchrun --nproc-per-node N` "
        "the same command trains with DistributedDataParallel.",
    )
    _config_args(tr)
    tr.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, metavar="DIR", help="tensor folder (default ./tensors)"
    )
    tr.add_argument(
        "--out", type=Path, default=None, metavar="DIR", help="run folder (default outputs/<config>)"
    )
    tr.add_argument(
        "--resume", default=None, metavar="auto|PATH", help="continue from the newest valid checkpoint"
    )
    tr.add_argument(
        "--max-steps", type=int, default=None, metavar="N", help="stop at step N (schedule unchanged)"
    )
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser(
        "eval",
        help="a checkpoint's errors on a split, in mm / degrees / log-mel / token accuracy, beside baselines",
        description="Evaluate a checkpoint on the shards of a tensor folder (no re-conversion): head, controller "
        "and hand-joint errors at 0.1 / 0.5 / 1.0 s ahead, audio log-mel MSE, text token accuracy, each beside "
        "hold-last, constant velocity, repeat-last-frame and no-text measured on the same windows.",
    )
    ev.add_argument(
        "--checkpoint", type=Path, required=True, metavar="FILE", help="e.g. RUN/checkpoints/best.pt"
    )
    ev.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, metavar="DIR", help="tensor folder (default ./tensors)"
    )
    ev.add_argument("--split", default="val", choices=("train", "val", "test"), help="default val")
    _drop_arg(ev)
    ev.add_argument("--json", action="store_true", help="print the report as JSON")
    ev.set_defaults(func=cmd_eval)

    inf = sub.add_parser("infer", help="run a checkpoint over a session and report errors beside baselines")
    inf.add_argument(
        "--checkpoint",
        type=Path,
        required=True,
        metavar="FILE",
        help="a ckpt-*.pt, best.pt or final.pt of `vrcap train`",
    )
    inf.add_argument("--session", type=Path, required=True, metavar="PATH", help="a recorded session folder")
    _drop_arg(inf)
    inf.add_argument("--out", type=Path, default=None, metavar="FILE", help="also write the report as JSON")
    inf.set_defaults(func=cmd_infer)

    pro = sub.add_parser("profile", help="a few steps under torch.profiler: trace + profile_report.json")
    _config_args(pro)
    pro.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        metavar="DIR",
        help="tensors from `vrcap replay` (default tensors)",
    )
    pro.add_argument("--out", type=Path, default=None, metavar="DIR", help="default outputs/<config>-profile")
    pro.add_argument(
        "--steps", type=int, default=6, metavar="N", help="profiled steps (after 2 warm-up steps)"
    )
    pro.set_defaults(func=cmd_profile)

    est = sub.add_parser(
        "estimate", help="parameters, tokens, FLOPs and GPU time of a config (no data needed)"
    )
    _config_args(est)
    est.add_argument("--json", action="store_true", help="machine-readable (includes params)")
    est.set_defaults(func=cmd_estimate)


def cmd_train(args: argparse.Namespace) -> int:
    from training.config import load_train_config
    from training.loop import RunOptions, train
    from vrcap.errors import UsageError

    cfg = load_train_config(args.config, args.overrides)
    if args.max_steps is not None and args.max_steps < 1:
        raise UsageError(f"--max-steps must be >= 1, got {args.max_steps}")
    resume = args.resume
    if resume not in (None, "auto") and not Path(resume).is_file():
        raise UsageError(f"--resume {resume}: no such checkpoint file; use --resume auto or a ckpt-*.pt path")
    out = args.out or _default_out(args.config)
    result = train(cfg, RunOptions(args.data, out, resume, args.max_steps))
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 speaks for the run
        return 0
    losses = "  ".join(f"{k} {v:.4f}" for k, v in result.losses.items())
    if result.stopped:
        print(
            f"stopped at step {result.step} ({result.stopped}); continue with --resume auto", file=sys.stderr
        )
        return 128 + 15 if result.stopped == "SIGTERM" else 130
    print(f"trained to step {result.step}: {losses}; checkpoint {result.checkpoint}", file=sys.stderr)
    return 0


def cmd_estimate(args: argparse.Namespace) -> int:
    from training.config import load_train_config
    from training.estimate import estimate, render

    cfg = load_train_config(args.config, args.overrides)
    result = estimate(cfg)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(render(result, args.config))
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    from training.config import load_train_config
    from training.profile import profile_run

    cfg = load_train_config(args.config, args.overrides)
    out = args.out or Path(str(_default_out(args.config)) + "-profile")
    report_path = profile_run(cfg, args.data, out, args.steps)
    report = json.loads(report_path.read_text())
    mem = report["memory"]
    print(f"step {report['step_time_ms']:.0f} ms over {report['steps_profiled']} profiled steps; peak memory "
          f"{mem['peak_rss_mb']:.0f} MB resident" + (f", {mem['peak_cuda_allocated_mb']:.0f} MB on the GPU"
          if "peak_cuda_allocated_mb" in mem else ""))  # fmt: skip
    print("recommendations:")
    for line in report["recommendations"]:
        print(f"  - {line}")
    print(f"wrote {report_path} and a TensorBoard trace under {out / 'runs'}", file=sys.stderr)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from training.infer import evaluate_folder, render_report
    from training.infer_checks import check_checkpoint_path

    check_checkpoint_path(args.checkpoint)
    report = evaluate_folder(args.checkpoint, args.data, args.split, args.drop)
    print(json.dumps(report, indent=2) if args.json else render_report(report))
    return 0


def cmd_infer(args: argparse.Namespace) -> int:
    from replay.errors import SessionRefused
    from training.errors import TrainingError
    from training.infer import infer_session, render_report
    from training.infer_checks import check_checkpoint_path, session_refused_hint

    check_checkpoint_path(args.checkpoint)
    try:
        report = infer_session(args.checkpoint, args.session, args.drop)
    except SessionRefused as exc:
        raise TrainingError(session_refused_hint(args.session, next(iter(exc.refused.values())))) from None
    print(render_report(report))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0
