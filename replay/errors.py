"""Errors of the replay package; all are VrcapError, so the CLI prints one line and an exit code.

VrcapError
└── ReplayError                  exit 1
    ├── SessionRefused           a session failed validation (hint: vrcap validate --fix)
    └── DatasetError             a tensor folder cannot serve what was asked
        ├── ManifestError        no manifest, or one from a newer vrcap
        └── EmptyDataset         the request leaves nothing to iterate (says why, with numbers)
UsageError (vrcap.errors)        bad paths and arguments (exit 2)
"""

from __future__ import annotations

from vrcap.errors import VrcapError


class ReplayError(VrcapError):
    """Root of replay's deliberate errors."""


class SessionRefused(ReplayError):
    def __init__(self, refused: dict[str, str], converted: int) -> None:
        self.refused = refused
        first, problem = next(iter(refused.items()))
        more = f" (and {len(refused) - 1} more session(s))" if len(refused) > 1 else ""
        super().__init__(
            f"session {first} failed validation: {problem}{more}; {converted} other session(s) converted. "
            f"Repair with `vrcap validate --fix {first}`, or pass --allow-invalid to convert what is readable"
        )


class DatasetError(ReplayError):
    """The Dataset cannot be built as asked."""


class ManifestError(DatasetError):
    pass


class EmptyDataset(DatasetError):
    pass
