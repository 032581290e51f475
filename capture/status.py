"""The live status line `vrcap record` shows: what a person watching a recording needs at a glance."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RecordingStatus:
    session: str
    elapsed_s: float = 0.0
    frames: int = 0
    bytes_written: int = 0
    drops: dict[str, int] = field(default_factory=dict)
    audio_dbfs: float = float("-inf")

    @property
    def total_drops(self) -> int:
        return sum(self.drops.values())

    def line(self) -> str:
        minutes, seconds = divmod(self.elapsed_s, 60)
        rate = self.frames / self.elapsed_s if self.elapsed_s > 0 else 0.0
        level = " quiet" if self.audio_dbfs < -90 else f"{self.audio_dbfs:6.1f}"
        return (
            f"● REC {self.session}  {int(minutes):02d}:{seconds:04.1f}  frames {self.frames} ({rate:.1f}/s)  "
            f"{self.bytes_written / 1e6:.1f} MB  drops {self.total_drops}  audio {level} dBFS"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "elapsed_s": round(self.elapsed_s, 3),
            "frames": self.frames,
            "bytes": self.bytes_written,
            "drops": dict(self.drops),
            "audio_dbfs": None if math.isinf(self.audio_dbfs) else round(self.audio_dbfs, 1),
        }


class StatusLine:
    """Rewrites one terminal line in place; on a pipe or log file it prints a line every few seconds instead."""

    def __init__(self, stream: Any = None, log_every_s: float = 5.0) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.log_every_s = log_every_s
        self._last_logged = -math.inf
        self._width = 0

    def update(self, status: RecordingStatus) -> None:
        text = status.line()
        if self.tty:
            pad = max(0, self._width - len(text))
            self.stream.write("\r" + text + " " * pad)
            self._width = len(text)
            self.stream.flush()
        elif status.elapsed_s - self._last_logged >= self.log_every_s:
            self._last_logged = status.elapsed_s
            self.stream.write(text + "\n")
            self.stream.flush()

    def finish(self, status: RecordingStatus) -> None:
        if self.tty:
            self.update(status)
            self.stream.write("\n")
        else:
            self.stream.write(status.line() + "\n")
        self.stream.flush()
