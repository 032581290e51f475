"""Errors of the exporters. Part of replay's tree, so the CLI prints each as one line with an exit code.

ReplayError (replay.errors)
└── ExportError                  exit 1
    ├── SessionNotExported       one session could not be exported (why, and the fix); the others go on
    ├── ExportRefused            a LeRobot dataset would hold no episode; names the first reason
    └── OutputFailed             the output cannot be written (disk full, permissions); nothing is left
UsageError (vrcap.errors)        bad --format, --out or options (exit 2)
"""

from __future__ import annotations

from pathlib import Path

from replay.errors import ReplayError


class ExportError(ReplayError):
    """Root of the exporters' deliberate errors."""


class SessionNotExported(ExportError):
    def __init__(self, session: Path, reason: str) -> None:
        self.session = session
        self.reason = reason
        super().__init__(f"session {session} was not exported: {reason}")


class ExportRefused(ExportError):
    def __init__(self, failures: list[SessionNotExported], exported: int) -> None:
        self.failures = failures
        first = failures[0]
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        super().__init__(f"{first}{more}; {exported} session(s) exported")


class OutputFailed(ExportError):
    def __init__(self, target: Path, exc: OSError) -> None:
        self.target = target
        super().__init__(
            f"cannot write {target}: {exc.strerror or exc}; nothing was left behind. Free some space or pick "
            "another --out"
        )
