"""`vrcap record` and `vrcap devices`: capture's subcommands, registered through the `vrcap.cli` entry point.

Only argparse at import time: the sources (OpenCV, OpenXR, sounddevice) load inside the command, so
`vrcap --help` stays fast and vrcap itself never imports capture.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    """Add ``record`` and ``devices`` to vrcap's subparsers."""
    rec = sub.add_parser(
        "record", help="record a session", description="Record a session until Ctrl-C or --duration."
    )
    rec.add_argument("--session", required=True, help="name of the new session (a folder under --root)")
    rec.add_argument("--root", default=None, help="where sessions live (default: $VRCAP_ROOT or ./sessions)")
    rec.add_argument(
        "--source", choices=["sim", "openxr"], default=None, help="pose source (default from the config: sim)"
    )
    rec.add_argument("--duration", type=float, default=None, metavar="SECONDS", help="stop after this long")
    rec.add_argument("--audio", default=None, metavar="DEVICE", help="microphone name or index, sim, or none")
    rec.add_argument(
        "--camera", action="append", default=[], metavar="NAME=SPEC",
        help="a camera: index, /dev/videoN, video file or http/rtsp/udp/tcp URL; repeat for more",
    )  # fmt: skip
    rec.add_argument(
        "--lsl", action="append", default=[], metavar="NAME_OR_QUERY",
        help="record a Lab Streaming Layer stream: its name, or a query such as \"type='EEG'\"; repeat for more",
    )  # fmt: skip
    rec.add_argument(
        "--lsl-out",
        action="store_true",
        help="publish the recording's streams as LSL outlets while recording",
    )
    rec.add_argument(
        "--offline", action="store_true",
        help="sim only: write --duration seconds as fast as the CPU allows instead of in real time",
    )  # fmt: skip
    rec.add_argument(
        "--config",
        type=Path,
        default=None,
        help="capture config: a shipped NAME or a YAML PATH (default: the shipped capture.yaml)",
    )
    rec.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. sim.camera_fps=15"
    )
    rec.set_defaults(func=cmd_record)

    dev = sub.add_parser("devices", help="list microphones, cameras and the OpenXR runtime")
    dev.add_argument("--json", action="store_true", help="an object with keys audio, cameras, openxr")
    dev.set_defaults(func=cmd_devices)


def cmd_record(args: argparse.Namespace) -> int:
    from capture.session import record_session

    overrides = list(args.overrides)
    if args.source:
        overrides.append(f"record.source={args.source}")
    if args.duration is not None:
        overrides.append(f"record.duration_s={args.duration}")
    if args.audio is not None:
        overrides.append(f"record.audio={args.audio}")
    if args.camera:
        overrides.append("record.cameras=" + json.dumps(args.camera))
    if args.lsl:
        overrides.append("record.lsl=" + json.dumps(args.lsl))
    if args.lsl_out:
        overrides.append("record.lsl_out=true")
    if args.offline:
        overrides.append("record.offline=true")
    started = time.perf_counter()
    result = record_session(
        args.session, root=args.root, config_path=args.config, overrides=overrides, prioritize=True
    )
    from vrcap.wording import dropped_words

    speed = ""
    if args.offline:  # the point of --offline is its speed: say it
        speed = f", {result.duration_s / max(time.perf_counter() - started, 1e-9):.1f}x real time"
    print(
        f"recorded {result.path}: {result.frames} frames, {result.duration_s:.2f} s, "
        f"{dropped_words(result.dropped_frames, result.drops)} ({result.stop_reason}{speed})",
        file=sys.stderr,
    )
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    from capture.devices import list_devices
    from vrcap.cli import console

    found = list_devices()
    if args.json:
        sys.stdout.write(json.dumps(found, indent=2) + "\n")
        return 0
    out = console()
    out.print("[bold]Microphones[/] (--audio NAME or INDEX)")
    for mic in found["audio"]:
        out.print(f"  {mic.get('index')!s:>3}  {mic.get('name')}  ({mic.get('max_input_channels', '?')} ch)")
    if not found["audio"]:
        out.print("  none found (is PulseAudio/PipeWire running? is a microphone plugged in?)")
    out.print("[bold]Cameras[/] (--camera NAME=SPEC)")
    for cam in found["cameras"]:
        out.print(f"  {cam}")
    if not found["cameras"]:
        out.print("  no local cameras; video files and network streams work as --camera NAME=URL")
    xr = found["openxr"]
    out.print("[bold]OpenXR[/] (--source openxr)")
    if xr.get("available"):
        out.print(f"  runtime {xr.get('runtime')} {xr.get('runtime_version')}, system {xr.get('system')}")
        out.print(f"  extensions: {', '.join(xr.get('extensions', []))}")
    else:
        out.print(f"  unavailable: {xr.get('reason')}")
    return 0
