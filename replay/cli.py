"""`vrcap replay`: argparse only at import time; the conversion modules load inside the command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


class _IntermixedParser(argparse.ArgumentParser):
    """Lets KEY=VALUE overrides follow the options (``vrcap replay S --to-tensors T images.size=96``).

    Plain argparse stops filling positionals once options start; the intermixed parse collects them from
    anywhere. vrcap's top-level parser builds this subparser, so its class is swapped after creation.
    """

    _inner = False

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:  # type: ignore[override]
        if self._inner:  # parse_known_intermixed_args calls back into parse_known_args
            return super().parse_known_args(args, namespace)
        self._inner = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inner = False


def register(sub: Any) -> None:
    """Add the ``replay`` subcommand to vrcap's subparsers."""
    rep = sub.add_parser(
        "replay",
        help="convert sessions to training tensors (safetensors shards + manifest.json)",
        description=(
            "Align every stream of each session onto one step clock and write safetensors shards plus "
            "OUT/manifest.json. Re-running skips sessions already converted with the same config. "
            "Exit 0 done, 1 a session was refused (invalid), 2 usage or config error."
        ),
    )
    rep.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="a session folder or a folder of sessions; or a URL of either (s3://bucket/sessions, gs://, file://)",
    )
    rep.add_argument(
        "--to-tensors", required=True, metavar="OUT", help="output folder, or a URL (s3://bucket/tensors)"
    )
    rep.add_argument(
        "--config",
        type=Path,
        default=None,
        help="replay config: a shipped NAME or a YAML PATH (default: the shipped replay.yaml)",
    )
    rep.add_argument("--rate", type=float, default=None, metavar="HZ", help="step clock rate (step.rate_hz)")
    rep.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="sessions converted in parallel by local processes; memory is N x one conversion's bound, which "
        "does not depend on session length (measured peak RSS under 0.5 GB at the default config, under "
        "0.7 GB at images.size=224 with two cameras: docs/PERFORMANCE.md)",
    )
    rep.add_argument(
        "--engine",
        choices=("local", "dask"),
        default="local",
        help="local: this machine (--workers); dask: one task per session on a Dask distributed cluster",
    )
    rep.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDR",
        help="the Dask scheduler, e.g. tcp://10.0.0.5:8786 (--engine dask; default: a local cluster)",
    )
    rep.add_argument(
        "--allow-invalid",
        action="store_true",
        help="convert what is readable of sessions that fail validation",
    )
    rep.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. images.size=96"
    )
    rep.set_defaults(func=cmd_replay)
    rep.__class__ = _IntermixedParser


def cmd_replay(args: argparse.Namespace) -> int:
    from replay.config import load_replay_config
    from replay.convert import convert_sessions
    from vrcap.errors import UsageError

    # argparse puts KEY=VALUE words among the paths when they follow them: sort them out by the "="
    words = list(args.paths) + list(args.overrides)
    paths = [w for w in words if "=" not in w or "://" in w or Path(w).exists()]
    overrides = [w for w in words if w not in paths]
    if not paths:
        raise UsageError("no session given; usage: vrcap replay PATH... --to-tensors OUT")
    if args.rate is not None:
        overrides.append(f"step.rate_hz={args.rate}")
    config = load_replay_config(args.config, overrides)
    manifest = convert_sessions(
        paths,
        args.to_tensors,
        config,
        workers=args.workers,
        allow_invalid=args.allow_invalid,
        engine=args.engine,
        scheduler=args.scheduler,
    )
    splits = ", ".join(f"{k} {len(v)}" for k, v in manifest["splits"].items())
    steps = sum(e["steps"] for e in manifest["sessions"].values())
    print(
        f"wrote {str(args.to_tensors).rstrip('/')}/manifest.json: {len(manifest['sessions'])} session(s), {steps} steps "
        f"at {manifest['step_hz']:g} Hz ({splits})",
        file=sys.stderr,
    )
    return 0
