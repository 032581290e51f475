"""Errors of the exporters. Part of replay's tree, so the CLI prints each as one line with an exit code.

ReplayError (replay.errors)
└── ExportError                  exit 1
    ├── SessionNotExported       one session could not be exported (why, and the fix); the others go on
    ├── ExportRefused            a LeRobot dataset would hold no episode; names the first reason
    └── OutputFailed             the output cannot be written (disk full, permissions); nothing is left
UsageError (vrcap.errors)        bad --format, --out or options (exit 2)
"""

from __future__ import annotations

import errno
from pathlib import Path

from replay.errors import ReplayError

# What to do about a failed write depends on why it failed: "free some space" is no help for a folder that
# does not exist. Anything not listed gets the generic hint.
_FIXES = {
    errno.ENOSPC: "Free some space or pick another --out",
    errno.EDQUOT: "Free some space (the disk quota is reached) or pick another --out",
    errno.EFBIG: "The file system's file size limit is reached: pick another --out",
    errno.ENOENT: "This file system does not take new files there: pick another --out",
    errno.EACCES: "You may not write there: pick a folder you can write to",
    errno.EPERM: "You may not write there: pick a folder you can write to",
    errno.EROFS: "The file system is read-only: pick another --out",
}


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
        fix = _FIXES.get(exc.errno or 0, "Check the disk and the folder, or pick another --out")
        super().__init__(f"cannot write {target}: {exc.strerror or exc}; nothing was left behind. {fix}")
