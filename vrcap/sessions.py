"""Turning command-line paths into session folders: a session, or a folder whose children are sessions."""

from __future__ import annotations

from pathlib import Path

from vrcap.errors import NotASession, UsageError
from vrcap.layout import list_segments
from vrcap.reader import is_session_dir


def expand_session_paths(paths: list[str | Path], lost_metadata: bool = False) -> list[Path]:
    """Session folders named by ``paths``; with ``lost_metadata``, a folder of segments without session.json
    counts as one too (validation reports it and --fix rebuilds session.json from the segments)."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise UsageError(f"{path} does not exist; give a session folder or a folder of sessions")
        if is_session_dir(path) or (lost_metadata and path.is_dir() and list_segments(path)):
            found.append(path)
            continue
        if not path.is_dir():
            raise NotASession(path, "not a folder")
        children = sorted(p for p in path.iterdir() if p.is_dir() and is_session_dir(p))
        if not children:
            raise NotASession(path, "no session.json here or in its sub-folders")
        found.extend(children)
    return found
