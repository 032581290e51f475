"""Paths the API touches stay inside the server's root, and no symbolic link is ever followed on the way.

A link under ``<root>/sessions`` or ``<root>/datasets`` (or those folders themselves being links) could make a
listing read, a replay read or a job write anywhere the server's user can. Every path a route builds from a
name goes through ``checked``: each component from the root down is ``lstat``-ed and a link is refused, and the
resolved path must still be under the resolved root.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from server.errors import ApiError

DIR_MODE = 0o750  # the server's folders: the owner writes, its group may read, others nothing (any umask)


def is_link_free(root: Path, path: Path) -> bool:
    """True when no component of ``path`` below ``root`` is a symbolic link and it resolves under ``root``."""
    try:
        relative = path.relative_to(root)
    except ValueError:
        return False
    current = root
    for part in relative.parts:
        current = current / part
        try:
            if stat.S_ISLNK(os.lstat(current).st_mode):
                return False
        except FileNotFoundError:
            break  # the rest does not exist yet (an output about to be created): nothing to follow
    return os.path.realpath(path).startswith(os.path.realpath(root) + os.sep)


def checked(root: Path, path: Path, what: str) -> Path:
    """``path`` when it is safe to use; otherwise 403 naming it relative to the root."""
    if not is_link_free(root, path):
        raise ApiError(
            403,
            "unsafe-path",
            f"{what} {relative(root, path)} is a symbolic link or leads outside the server's root",
            "the server follows no links: move the data itself under the root",
        )
    return path


def relative(root: Path, path: Path) -> str:
    """How clients see a path: relative to the root, never the server's absolute layout."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return path.name


def make_dir(path: Path, mode: int = DIR_MODE) -> None:
    """Create ``path`` (and parents) and set ``mode`` explicitly: ``mkdir``'s mode is masked by the umask."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)
