"""The channel between the API process and the recorder process: one JSON object per line, over pipes.

The API process writes commands to the recorder's stdin; the recorder writes messages to its stdout. The
protocol is in docs/RECORDER.md; this module holds its names and the recorder's sending side.

Why a thread sends: a pipe whose reader is slow (an API process hammered by clients) or gone blocks ``write``.
The frame loop must never wait on that, so it only replaces the latest stats snapshot (a slow reader gets
fewer, never older ones) or queues a reply; this thread does the writing.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from typing import IO, Any

PROTOCOL_VERSION = 1

# API → recorder (stdin)
OP_START = "start"  # first line: {"op": "start", "version", "path", "items", "stats_interval_s", "nice"}
OP_STOP = "stop"  # {"op": "stop", "reason"}
OP_ANNOTATE = "annotate"  # {"op": "annotate", "id", "text", "kind", "channel", "t_ns"}

# recorder → API (stdout)
MSG_STATS = "stats"  # {"type": "stats", "stats": LiveStats as a dict, "total_drops"}
MSG_REPLY = "reply"  # {"type": "reply", "id", "t_ns"} or {"type": "reply", "id", "error"}
MSG_RESULT = "result"  # {"type": "result", "result": {...}}: the session is finalized
MSG_FAILED = "failed"  # {"type": "failed", "error", "kind", "removed"}: the recording failed


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), allow_nan=False).encode("utf-8") + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """One message; a line that is not a JSON object raises ValueError (the peer is not a vrcap recorder)."""
    data = json.loads(line)
    if not isinstance(data, dict):
        raise ValueError(f"not a message: {line[:80]!r}")
    return data


class Sender:
    """Writes messages to ``stream`` from its own thread; ``stats`` keeps only the latest snapshot."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._cond = threading.Condition()
        self._queue: deque[dict[str, Any]] = deque()
        self._stats: dict[str, Any] | None = None
        self._closing = False
        self.broken = False  # the reader went away: nothing more is written
        self._thread = threading.Thread(target=self._run, name="vrcap-recorder-send", daemon=True)
        self._thread.start()

    def send(self, message: dict[str, Any]) -> None:
        with self._cond:
            self._queue.append(message)
            self._cond.notify()

    def stats(self, message: dict[str, Any]) -> None:
        with self._cond:
            self._stats = message
            self._cond.notify()

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (stats first, in order), then stop; gives up after ``timeout`` on a stuck pipe."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and self._stats is None and not self._closing:
                    self._cond.wait()
                batch = []
                if self._stats is not None:
                    batch.append(self._stats)
                    self._stats = None
                batch.extend(self._queue)
                self._queue.clear()
                done = self._closing
            if not self.broken:
                try:
                    self._stream.write(b"".join(encode(m) for m in batch))
                    self._stream.flush()
                except (OSError, ValueError):  # EPIPE: the API process is gone; the recording goes on
                    self.broken = True
            if done:
                return
