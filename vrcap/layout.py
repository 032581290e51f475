"""Which files of a session folder are segments, and which number each one has (docs/FORMAT.md §1).

One place for the file-name rule, so a stray ``packets-000000 (copy).vrc`` or ``notes.txt`` is ignored by the
reader, validation and repair alike instead of crashing whichever one parses the name first.
"""

from __future__ import annotations

import re
from pathlib import Path

SEGMENT_PATTERN = "packets-{:06d}.vrc"
SEGMENT_RE = re.compile(r"packets-([0-9]{6})\.vrc")  # fullmatch; [0-9], as \d takes any Unicode digit
# Filler the recorder sets aside at start and frees on a full disk; a killed recorder leaves it behind.
RESERVE_FILE = ".reserve"


def segment_name(number: int) -> str:
    return SEGMENT_PATTERN.format(number)


def segment_number(path: Path) -> int:
    """The number in a segment's file name; ValueError for a name that is not a segment's."""
    match = SEGMENT_RE.fullmatch(path.name)
    if match is None:
        raise ValueError(f"{path.name} is not a segment file name (packets-NNNNNN.vrc)")
    return int(match.group(1))


def list_segments(session_dir: Path) -> list[Path]:
    """Segment files in ascending number order; any other file (a copy, a note) is not a segment."""
    found = [p for p in session_dir.iterdir() if SEGMENT_RE.fullmatch(p.name) and p.is_file()]
    return sorted(found, key=segment_number)
