"""Nothing half-written: every export goes to a hidden temporary path beside its target, renamed when done.

A session that fails half-way (a corrupt record, a full disk, Ctrl-C) has its temporary file or folder
removed in ``finally``; a target that already exists is refused before anything is read, so an export never
replaces earlier output by surprise.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from vrcap.errors import UsageError


def refuse_existing(target: Path) -> None:
    """Refuse, before anything is read, an output that exists or whose folder can never be made."""
    if target.exists():
        raise UsageError(f"{target} already exists; nothing was written. Remove it or pick another --out")
    for parent in target.parents:  # the folders are made on demand, up to the first one that exists
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(
                    f"{parent} is a file, not a folder, so {target} cannot be written; pick another --out"
                )
            return


@contextlib.contextmanager
def staged(target: Path, *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success it becomes ``target`` (an atomic rename)."""
    refuse_existing(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.parent / f".{target.name}.partial-{os.getpid()}"
    _remove(temp)
    if directory:
        temp.mkdir()
    try:
        yield temp
        if directory:
            _fsync_tree(temp)
        else:
            with open(temp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(temp, target)
    finally:
        _remove(temp)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
