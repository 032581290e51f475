"""Reading the ends of growing files in bounded, linear time: job logs and training metrics.

A log tail reads at most ``MAX_TAIL_BYTES`` from the end in one read, whatever the line count asked for or
the file's size (a log without newlines cannot make it quadratic), and is reused while the log is unchanged. Metrics are read incrementally: each poll
reads only what was appended since the last one, from the remembered offset, and keeps the last points.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import deque
from pathlib import Path

MAX_TAIL_BYTES = 1 << 20  # a log tail reads at most this much from the end of the file
MAX_LINE_CHARS = 4096  # longer log lines are cut (a progress bar without newlines would be one huge line)
MAX_METRIC_POINTS = 2000  # points kept per job for the loss curve
FIRST_READ_BYTES = (
    4 << 20
)  # a metrics file met for the first time is read from at most this far before its end
TAIL_BLOCK = 64 << 10  # ... going back a block at a time until it holds the lines to keep

Point = dict[str, float | int]


def tail_lines(path: Path, count: int, max_bytes: int = MAX_TAIL_BYTES) -> list[str]:
    """The last ``count`` lines among the last ``max_bytes`` of a file; each cut to ``MAX_LINE_CHARS``."""
    if count <= 0:
        return []
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        start = max(0, size - max_bytes)
        f.seek(start)
        data = f.read(size - start)
    if start > 0:  # the first line is probably cut: drop it unless it is all there is
        newline = data.find(b"\n")
        if 0 <= newline < len(data) - 1:
            data = data[newline + 1 :]
    lines = data.decode("utf-8", errors="replace").splitlines()[-count:]
    return [line[:MAX_LINE_CHARS] for line in lines]


def first_offset(path: Path, size: int, keep: int, block: int = TAIL_BLOCK) -> int:
    """Where a first read of a metrics file starts: far enough back for ``keep`` lines, at most
    ``FIRST_READ_BYTES``. Only the last ``keep`` points are kept, and parsing a whole 4 MB file held the GIL
    for a third of a second (the event loop waited for it); counting newlines backwards is cheap."""
    start, newlines = size, 0
    with open(path, "rb") as f:
        while start > 0 and newlines <= keep and size - start < FIRST_READ_BYTES:
            step = min(block, start)
            start -= step
            f.seek(start)
            newlines += f.read(step).count(b"\n")
    return start


def _point(line: bytes) -> Point | None:
    with contextlib.suppress(ValueError):
        data = json.loads(line)
        if isinstance(data, dict) and "event" not in data:  # events (start, checkpoint, done) aren't points
            return {k: v for k, v in data.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return None


class MetricsTail:
    """The points of one metrics.jsonl, updated from where the last read stopped."""

    def __init__(self, path: Path, keep: int = MAX_METRIC_POINTS) -> None:
        self.path = path
        self.points: deque[Point] = deque(maxlen=keep)
        self._offset = 0
        self._partial = b""
        self._inode: tuple[int, int] | None = None

    def read(self) -> list[Point]:
        """Everything appended since the last call is parsed; the kept points are returned (oldest first)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return list(self.points)
        inode = (st.st_dev, st.st_ino)
        if inode != self._inode or st.st_size < self._offset:  # replaced or truncated: start again
            self.points.clear()
            self._inode, self._partial = inode, b""
            self._offset = first_offset(self.path, st.st_size, self.points.maxlen or MAX_METRIC_POINTS)
            skip_first = self._offset > 0
        else:
            skip_first = False
        if st.st_size > self._offset:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read(st.st_size - self._offset)
            self._offset += len(data)
            data = self._partial + data
            lines = data.split(b"\n")
            self._partial = lines.pop()  # an unfinished last line waits for the rest
            if skip_first and lines:
                lines = lines[1:]
            for line in lines:
                point = _point(line)
                if point is not None:
                    self.points.append(point)
        return list(self.points)


class LogTails:
    """Log tails reused while the log is unchanged (same size and mtime): clients polling an idle job's log back
    to back cost a ``stat`` each, not a 1 MiB read and split. Holds the last ``entries`` tails asked for."""

    def __init__(self, entries: int = 32) -> None:
        self.entries = entries
        self._cache: dict[tuple[str, int], tuple[tuple[int, int, int], list[str]]] = {}

    def lines(self, path: Path, count: int) -> list[str]:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return []
        key, version = (str(path), count), (st.st_ino, st.st_size, st.st_mtime_ns)
        cached = self._cache.get(key)
        if cached is not None and cached[0] == version:
            return cached[1]
        lines = tail_lines(path, count)
        if len(self._cache) >= self.entries:
            self._cache.pop(next(iter(self._cache)), None)
        self._cache[key] = (version, lines)
        return lines
