"""The live status line `vrcap record` shows: one line rewritten in place, or a line every few seconds in a log."""

from __future__ import annotations

import math
import sys
from typing import Any, Protocol


class HasLine(Protocol):
    elapsed_s: float

    def line(self) -> str: ...


class HasUpdate(Protocol):
    """What ``capture.session.run_engine`` reports live stats to: this status line, or the recorder's channel."""

    def update(self, status: Any) -> None: ...

    def finish(self, status: Any) -> None: ...


class StatusLine:
    def __init__(self, stream: Any = None, log_every_s: float = 5.0) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.log_every_s = log_every_s
        self._last_logged = -math.inf
        self._width = 0

    def update(self, status: HasLine) -> None:
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

    def finish(self, status: HasLine) -> None:
        if self.tty:
            self.update(status)
            self.stream.write("\n")
        else:
            self.stream.write(status.line() + "\n")
        self.stream.flush()
