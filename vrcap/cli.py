"""The `vrcap` command. Thin on purpose: each subcommand parses its arguments and calls one function.

vrcap itself owns only the format's commands (validate, info, config); every other package adds its own
through the ``vrcap.cli`` entry point group (pyproject.toml), so this module imports none of them. Heavy
modules (numpy, OpenCV, torch, OpenXR) are imported inside the subcommand that needs them, so `vrcap --help`
and `vrcap validate` start fast. Every deliberate error is one line on stderr and an exit code; a mistyped
subcommand or option gets the subcommand's usage and the closest spelling.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import signal
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, NoReturn

from vrcap import __version__
from vrcap.errors import FormatError, VrcapError

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 70
ENTRY_POINT_GROUP = "vrcap.cli"  # each entry point is a ``register(subparsers)`` function


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Piped output is never wrapped (a finding naming a long path stays one line for grep and logs); tables get
    # 200 columns rather than rich's 80.
    tty = stream.isatty()
    return Console(stderr=stderr, highlight=False, width=None if tty else 200, soft_wrap=not tty)


# --- validate ----------------------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from vrcap.render import print_report, summary_table
    from vrcap.sessions import expand_session_paths

    sessions = expand_session_paths(args.paths, lost_metadata=True)
    terminal = console()
    results = []
    # A folder of sessions can take minutes: a bar with ETA on stderr, shown only on a terminal.
    bar = Progress(
        TextColumn("validating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console(stderr=True), transient=True, disable=len(sessions) < 2 or not sys.stderr.isatty(),
    )  # fmt: skip
    with bar:
        for path in bar.track(sessions):
            results.append(_validate_one(path, args.fix))
            if not (args.json or args.summary):
                print_report(terminal, *results[-1])
    if args.json:
        out = [dict(r.to_dict(), repairs=rep or []) for r, rep in results]
        print(json.dumps(out if len(out) > 1 or len(args.paths) > 1 else out[0], indent=2))
    elif args.summary:
        terminal.print(summary_table([r for r, _ in results]))
    return EXIT_OK if all(r.ok for r, _ in results) else EXIT_PROBLEMS


def _validate_one(path: Path, fix: bool) -> tuple[Any, list[str] | None]:
    """Validate; with ``fix``, repair a session that has problems and validate it again."""
    from vrcap.repair import repair_session
    from vrcap.validate import validate_session

    report = validate_session(path)
    repairs: list[str] | None = None
    if fix and any(f.fixable for f in report.findings):
        try:
            result = repair_session(path)
        except FormatError as exc:  # a newer major version: refused, nothing touched
            return report, [f"not repaired: {exc}"]
        repairs = result.actions + result.notes
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
    terminal = console()
    for info in infos:
        terminal.print(info_table(info))
    return EXIT_OK


# --- parser ------------------------------------------------------------------------------------------


class VrcapParser(argparse.ArgumentParser):
    """argparse, plus "did you mean" for a mistyped subcommand."""

    def error(self, message: str) -> NoReturn:
        match = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if match:
            choices = re.findall(r"'([^']*)'", match.group(2))
            close = difflib.get_close_matches(match.group(1), choices, n=1)
            if close:
                message += f"; did you mean '{close[0]}'?"
        super().error(message)


def _suggest(parser: argparse.ArgumentParser, unknown: list[str]) -> str:
    """The closest option of ``parser`` to each unknown one, as a hint for the error line."""
    options = [o for a in parser._actions for o in a.option_strings]
    hints = []
    for word in unknown:
        if word.startswith("-"):
            close = difflib.get_close_matches(word.split("=", 1)[0], options, n=1, cutoff=0.6)
            if close:
                hints.append(f"did you mean {close[0]}?")
    return f" ({'; '.join(hints)})" if hints else ""


def _add_own_commands(sub: Any) -> None:
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

    inf = sub.add_parser("info", help="streams, rates, duration and size of a session")
    inf.add_argument("path", metavar="PATH", help="a session folder, or a folder of sessions")
    inf.add_argument("--json", action="store_true", help="machine-readable: one object per session")
    inf.set_defaults(func=cmd_info)

    from vrcap.config_show import register as register_config

    register_config(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = VrcapParser(
        prog="vrcap",
        description="Record what a person sees, hears and does in VR, and turn it into a trained model.",
    )
    parser.add_argument("--version", action="version", version=f"vrcap {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_own_commands(sub)
    # The other packages add their own subcommands (record, devices, replay, train, infer, ..., serve). Each
    # registered module imports only argparse-level code at the top, so `vrcap --help` stays fast.
    unique = {ep.name: ep for ep in reversed(list(entry_points(group=ENTRY_POINT_GROUP)))}  # first dist wins
    for ep in sorted(unique.values(), key=lambda e: e.name):
        try:
            register = ep.load()
        except ModuleNotFoundError as exc:  # a package of the checkout that is not installed here
            if not ep.value.startswith(f"{exc.name}"):
                raise
            continue
        register(sub)
    return parser


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse; arguments no option takes are blamed on the subcommand, with its usage and the closest option."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        chosen = parser
        if getattr(args, "command", None):
            chosen = parser._subparsers._group_actions[0].choices[args.command]  # type: ignore[union-attr]
        chosen.error(f"unrecognized arguments: {' '.join(unknown)}{_suggest(chosen, unknown)}")
    return args


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = _parse(parser, argv)
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
    except (
        OSError
    ) as exc:  # a path the user gave cannot be used (a file where a folder must be, no permission)
        if exc.filename is None or os.environ.get("VRCAP_DEBUG"):
            raise
        print(f"vrcap {args.command}: error: cannot use {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # a bug: say so in one line, keep the traceback for whoever asks
        if os.environ.get("VRCAP_DEBUG"):
            raise
        from vrcap.storage_errors import storage_error_message

        storage = storage_error_message(exc)  # an object store's set-up, not a bug
        if storage is not None:
            print(f"vrcap {args.command}: error: {storage}", file=sys.stderr)
            return EXIT_USAGE
        print(
            f"vrcap {args.command}: internal error: {type(exc).__name__}: {exc} "
            "(this is a bug; rerun with VRCAP_DEBUG=1 for the traceback and report it)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
