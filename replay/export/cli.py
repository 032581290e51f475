"""`vrcap export`: argparse only at import time; the exporters load inside the command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

FORMATS = ("mcap", "xdf", "lerobot")
# What each format imports beyond vrcap itself: checked first, so a missing extra is one line, not a traceback.
NEEDS = {"mcap": ("foxglove",), "xdf": (), "lerobot": ("pyarrow", "av", "cv2")}


def register(sub: Any) -> None:
    """Add the ``export`` subcommand to vrcap's subparsers."""
    exp = sub.add_parser(
        "export",
        help="write sessions as MCAP (Foxglove), XDF (LSL/LabRecorder) or a LeRobot v3.0 dataset",
        description=(
            "Export sessions for other tools (mappings in docs/INTEROP.md). mcap/xdf: one file per session "
            "(OUT.mcap for a single session, else OUT/<name>.mcap); lerobot: OUT is the dataset folder. "
            "Exit 0 done, 1 a session could not be exported (the others were), 2 usage error."
        ),
    )
    exp.add_argument("paths", nargs="+", metavar="SESSION", help="a session folder or a folder of sessions")
    exp.add_argument("--format", required=True, choices=FORMATS, help="output format")
    exp.add_argument("--out", required=True, type=Path, metavar="PATH", help="output file or folder")
    exp.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="export settings, e.g. lerobot.codec=h264 lerobot.fps=15 lerobot.episodes=task",
    )  # fmt: skip
    exp.add_argument(
        "--config", default=None, metavar="NAME|PATH",
        help="export settings file (default: the shipped export.yaml; `vrcap config show export` prints it)",
    )  # fmt: skip
    exp.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    import importlib

    from replay.export.config import load_export_config
    from replay.export.run import export_sessions
    from vrcap.errors import UsageError

    for module in NEEDS[args.format]:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise UsageError(
                f"--format {args.format} needs the Python package {module!r}, which is not installed ({exc}); "
                "install the export extra: pip install 'vrcap[interop]'"
            ) from None

    config = load_export_config(args.config, list(args.set))
    result = export_sessions([Path(p) for p in args.paths], args.format, args.out, config)
    for failure in result.failures:
        print(f"vrcap export: error: {failure}", file=sys.stderr)
    for path in result.outputs:
        print(f"wrote {path}", file=sys.stderr)
    return 1 if result.failures else 0
