"""`vrcap annotate`: argparse only at import time; the import itself loads inside the command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    """Add the ``annotate`` subcommand to vrcap's subparsers."""
    ann = sub.add_parser(
        "annotate",
        help="import timestamped transcripts or instructions (SRT, WebVTT, JSON) into a session",
        description=(
            "Add text to a recorded session from an SRT, WebVTT or JSON file ([{start, end, text, kind, channel}]). "
            "Times are seconds from the session's first frame unless --absolute. The text goes into a sidecar "
            "file named by its content, so importing the same text twice changes nothing. "
            "Exit 0 imported (or already there), 2 bad file or usage."
        ),
    )
    ann.add_argument("session", type=Path, metavar="SESSION", help="a session folder")
    ann.add_argument(
        "--import", dest="file", type=Path, required=True, metavar="FILE", help="the file to import"
    )
    ann.add_argument(
        "--format", choices=["srt", "vtt", "json"], default=None, help="default: from the extension"
    )
    ann.add_argument(
        "--absolute", action="store_true",
        help="times are wall-clock (JSON: ISO 8601 with zone or Unix s; SRT/VTT: UTC time of day), not from the start",
    )  # fmt: skip
    ann.add_argument(
        "--kind", default="transcript", help="instruction, transcript or marker, where the file does not say"
    )
    ann.add_argument(
        "--channel", default="external", help="internal or external, where the file does not say"
    )
    ann.set_defaults(func=cmd_annotate)


def cmd_annotate(args: argparse.Namespace) -> int:
    from vrcap.annotate import import_annotations

    result = import_annotations(
        args.session, args.file, fmt=args.format, absolute=args.absolute, kind=args.kind, channel=args.channel
    )
    verb = "imported" if result.written else "already imported (nothing written):"
    print(
        f"{verb} {result.events} events from {args.file.name} into {result.sidecar} "
        f"({result.first_s:.3f} s to {result.last_s:.3f} s)",
        file=sys.stderr,
    )
    return 0
