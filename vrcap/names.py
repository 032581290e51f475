"""Session names and where sessions live: a name becomes a folder, so it must never become a path."""

from __future__ import annotations

import os
import re
from pathlib import Path

from vrcap.errors import SessionNameError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"  # FORMAT.md §1; the server's API models use it too
_NAME = re.compile(NAME_PATTERN)
ROOT_ENV = "VRCAP_ROOT"
DEFAULT_ROOT = "sessions"


def check_session_name(name: str) -> str:
    if not name:
        raise SessionNameError(name, "it is empty")
    if "/" in name or "\\" in name or os.sep in name:
        raise SessionNameError(name, "it contains a path separator")
    if ".." in name:
        raise SessionNameError(name, "it contains '..'")
    if "\x00" in name or not name.isprintable():
        raise SessionNameError(name, "it contains control characters")
    if not _NAME.match(name):
        raise SessionNameError(name, "it must start with a letter or digit and be at most 128 characters")
    return name


def sessions_root(root: str | Path | None = None) -> Path:
    """--root wins, then $VRCAP_ROOT, then ./sessions."""
    if root is not None:
        return Path(root)
    return Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT)


def session_path(name: str, root: str | Path | None = None) -> Path:
    return sessions_root(root) / check_session_name(name)
