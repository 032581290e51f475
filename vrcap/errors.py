"""Every error vrcap raises on purpose, and the one root the CLI catches.

The CLI turns any ``VrcapError`` into one line on stderr and an exit code; anything else is a bug and is
reported as such. Each class formats its own message, so the text a user reads names the problem and the fix
in the same words everywhere.

    VrcapError
    ├── UsageError                 a bad argument or path (exit code 2)
    │   ├── NotASession
    │   ├── SessionNameError
    │   └── SessionExists
    ├── ConfigError                a bad value in a config file or override (exit code 2)
    ├── FormatError                what is on disk is not what the format promises
    │   ├── UnsupportedVersion
    │   ├── CorruptRecord
    │   │   └── RecordTooLarge
    │   └── TruncatedRecord
    ├── WriterError                the writer cannot go on (disk full, closed, read-only)
    └── CaptureError               a source cannot be opened or fails
"""

from __future__ import annotations

from pathlib import Path


class VrcapError(Exception):
    """Root of every error vrcap raises deliberately."""

    exit_code = 1


class UsageError(VrcapError):
    """The user asked for something that cannot be done as asked."""

    exit_code = 2


class NotASession(UsageError):
    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        super().__init__(
            f"{path} is not a vrcap session ({reason}); a session is a folder holding session.json "
            "and packets-*.vrc files"
        )


class SessionNameError(UsageError):
    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        super().__init__(
            f"session name {name!r} is not allowed: {reason}; use letters, digits, '-', '_' and '.', "
            "e.g. --session kitchen-01"
        )


class SessionExists(UsageError):
    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(
            f"session {path} already exists; nothing was touched. Pick another --session name "
            "or move the old one away"
        )


class ConfigError(VrcapError):
    exit_code = 2


class FormatError(VrcapError):
    """What is on disk does not follow docs/FORMAT.md."""


class UnsupportedVersion(FormatError):
    def __init__(self, path: Path | str, found: str, supported: str) -> None:
        self.path = Path(path)
        self.found = found
        super().__init__(
            f"{path} uses format version {found}, newer than this vrcap understands ({supported}.x); "
            "upgrade with: pip install -U vrcap"
        )


class CorruptRecord(FormatError):
    """A record whose header or checksum is wrong: the bytes from ``offset`` on cannot be trusted."""

    def __init__(self, path: Path | str, offset: int, reason: str) -> None:
        self.path = Path(path)
        self.offset = offset
        self.reason = reason
        super().__init__(
            f"corrupt record in {self.path.name} at byte {offset}: {reason}; "
            f"`vrcap validate --fix {self.path.parent}` keeps every intact record"
        )


class RecordTooLarge(CorruptRecord):
    def __init__(self, path: Path | str, offset: int, length: int, limit: int) -> None:
        self.length = length
        self.limit = limit
        super().__init__(path, offset, f"record claims {length} bytes, over the {limit}-byte limit")


class TruncatedRecord(FormatError):
    """The file ends inside a record: the recorder stopped while writing it (a torn tail)."""

    def __init__(self, path: Path | str, offset: int, needed: int, available: int) -> None:
        self.path = Path(path)
        self.offset = offset
        self.needed = needed
        self.available = available
        super().__init__(
            f"{self.path.name} ends inside a record at byte {offset} ({available} of {needed} bytes present): "
            f"the recorder was interrupted; `vrcap validate --fix {self.path.parent}` truncates the torn tail"
        )


class WriterError(VrcapError):
    """The session writer cannot continue; what was flushed before stays readable."""


class CaptureError(VrcapError):
    """A source could not be opened or stopped working."""
