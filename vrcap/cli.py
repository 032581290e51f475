"""The `vrcap` command. Thin on purpose: each subcommand parses its arguments and calls one function.

Heavy modules (numpy, OpenCV, torch, OpenXR) are imported inside the subcommand that needs them, so
`vrcap --help` and `vrcap validate` start fast. Every deliberate error is one line on stderr and an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from vrcap import __version__
from vrcap.errors import VrcapError

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 70
PLUGIN_CLIS = ("replay.cli", "training.cli", "server.cli")


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Piped output gets wide lines rather than rich's 80 columns, so logs keep one finding per line.
    return Console(stderr=stderr, highlight=False, width=None if stream.isatty() else 200)


# --- record ------------------------------------------------------------------------------------------


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
    result = record_session(args.session, root=args.root, config_path=args.config, overrides=overrides)
    print(
        f"recorded {result.path}: {result.frames} frames, {result.duration_s:.2f} s, "
        f"{result.dropped_frames} dropped ({result.stop_reason})",
        file=sys.stderr,
    )
    return EXIT_OK


# --- devices -----------------------------------------------------------------------------------------


def cmd_devices(args: argparse.Namespace) -> int:
    from capture.devices import list_devices

    found = list_devices()
    if args.json:
        print(json.dumps(found, indent=2))
        return EXIT_OK
    console = _console()
    console.print("[bold]Microphones[/] (--audio NAME or INDEX)")
    for mic in found["audio"]:
        console.print(
            f"  {mic.get('index')!s:>3}  {mic.get('name')}  ({mic.get('max_input_channels', '?')} ch)"
        )
    if not found["audio"]:
        console.print("  none found (is PulseAudio/PipeWire running? is a microphone plugged in?)")
    console.print("[bold]Cameras[/] (--camera NAME=SPEC)")
    for cam in found["cameras"]:
        console.print(f"  {cam}")
    if not found["cameras"]:
        console.print("  no local cameras; video files and network streams work as --camera NAME=URL")
    xr = found["openxr"]
    console.print("[bold]OpenXR[/] (--source openxr)")
    if xr.get("available"):
        console.print(f"  runtime {xr.get('runtime')} {xr.get('runtime_version')}, system {xr.get('system')}")
        console.print(f"  extensions: {', '.join(xr.get('extensions', []))}")
    else:
        console.print(f"  unavailable: {xr.get('reason')}")
    return EXIT_OK


# --- validate ----------------------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from vrcap.render import print_report, summary_table
    from vrcap.sessions import expand_session_paths

    sessions = expand_session_paths(args.paths)
    console = _console()
    results = []
    # A folder of sessions can take minutes: a bar with ETA on stderr, shown only on a terminal.
    bar = Progress(
        TextColumn("validating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=_console(stderr=True), transient=True, disable=len(sessions) < 2 or not sys.stderr.isatty(),
    )  # fmt: skip
    with bar:
        for path in bar.track(sessions):
            results.append(_validate_one(path, args.fix))
            if not (args.json or args.summary):
                print_report(console, *results[-1])
    if args.json:
        out = [dict(r.to_dict(), repairs=rep or []) for r, rep in results]
        print(json.dumps(out if len(out) > 1 or len(args.paths) > 1 else out[0], indent=2))
    elif args.summary:
        console.print(summary_table([r for r, _ in results]))
    return EXIT_OK if all(r.ok for r, _ in results) else EXIT_PROBLEMS


def _validate_one(path: Path, fix: bool) -> tuple[Any, list[str] | None]:
    """Validate; with ``fix``, repair a session that has problems and validate it again."""
    from vrcap.repair import repair_session
    from vrcap.validate import validate_session

    report = validate_session(path)
    repairs: list[str] | None = None
    if fix and not report.ok:
        repairs = repair_session(path).actions
        report = validate_session(path)
    return report, repairs


# --- info --------------------------------------------------------------------------------------------


def cmd_info(args: argparse.Namespace) -> int:
    from vrcap.info import session_info
    from vrcap.render import info_table
    from vrcap.sessions import expand_session_paths

    infos = [session_info(p) for p in expand_session_paths([args.path])]
    if args.json:
        print(json.dumps(infos[0] if len(infos) == 1 else infos, indent=2))
        return EXIT_OK
    console = _console()
    for info in infos:
        console.print(info_table(info))
    return EXIT_OK


# --- parser ------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vrcap",
        description="Record what a person sees, hears and does in VR, and turn it into a trained model.",
    )
    parser.add_argument("--version", action="version", version=f"vrcap {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

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
        "--config", type=Path, default=None, help="capture config YAML (default configs/capture.yaml)"
    )
    rec.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. sim.camera_fps=15"
    )
    rec.set_defaults(func=cmd_record)

    val = sub.add_parser(
        "validate",
        help="check sessions; --fix repairs them",
        description="Check every record, sequence, timestamp and stream. Exit 0 valid, 1 problems, 2 usage error.",
    )
    val.add_argument("paths", nargs="+", metavar="PATH", help="a session folder or a folder of sessions")
    val.add_argument(
        "--fix", action="store_true", help="repair what can be repaired without losing a valid record"
    )
    val.add_argument("--summary", action="store_true", help="one row per session")
    val.add_argument("--json", action="store_true", help="machine-readable report")
    val.set_defaults(func=cmd_validate)

    dev = sub.add_parser("devices", help="list microphones, cameras and the OpenXR runtime")
    dev.add_argument("--json", action="store_true", help="an object with keys audio, cameras, openxr")
    dev.set_defaults(func=cmd_devices)

    inf = sub.add_parser("info", help="streams, rates, duration and size of a session")
    inf.add_argument("path", metavar="PATH")
    inf.add_argument("--json", action="store_true")
    inf.set_defaults(func=cmd_info)

    # The other packages add their own subcommands (replay, train, infer, profile, estimate, serve). Each
    # ``<package>/cli.py`` imports only argparse-level code at the top, so `vrcap --help` stays fast.
    for module_name in PLUGIN_CLIS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args))
    except VrcapError as exc:
        print(f"vrcap {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"vrcap {args.command}: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # a bug: say so in one line, keep the traceback for whoever asks
        if os.environ.get("VRCAP_DEBUG"):
            raise
        print(
            f"vrcap {args.command}: internal error: {type(exc).__name__}: {exc} "
            "(this is a bug; rerun with VRCAP_DEBUG=1 for the traceback and report it)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
