"""The frame assembler's inbox: push sources deliver here from their threads; each frame takes what arrived.

Policy under overload (stated once, here): pose and audio samples are never dropped; camera samples are, first.
A camera stream holds at most ``camera_backlog`` frames waiting for the next packet; older ones are dropped and
counted per stream. The writer side strips camera frames from packets when its queue backs up (see
``capture.writer_thread``).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

DROPPABLE_KINDS = ("video",)


class FrameAssembler:
    """Thread-safe ``SampleSink``: ``put`` never blocks a device callback (a deque append under a short lock)."""

    def __init__(self, kinds: dict[str, str], camera_backlog: int = 8) -> None:
        self._kinds = kinds
        self._backlog = camera_backlog
        self._lock = threading.Lock()
        self._pending: dict[str, deque[dict[str, Any]]] = {name: deque() for name in kinds}
        self.received: dict[str, int] = dict.fromkeys(kinds, 0)
        self.drops: dict[str, int] = {}
        self.incidents: deque[dict[str, Any]] = deque()

    def put(self, stream: str, sample: dict[str, Any]) -> None:
        with self._lock:
            queue = self._pending.get(stream)
            if queue is None:  # a stream the session did not declare: refuse loudly once
                self._pending[stream] = queue = deque()
                self.incidents.append(
                    {
                        "t": time.monotonic_ns(),
                        "stream": stream,
                        "kind": "undeclared",
                        "message": "undeclared stream",
                    }
                )
            queue.append(sample)
            self.received[stream] = self.received.get(stream, 0) + 1
            if self._kinds.get(stream) in DROPPABLE_KINDS and len(queue) > self._backlog:
                queue.popleft()
                self.drops[stream] = self.drops.get(stream, 0) + 1

    def drop(self, stream: str, count: int = 1) -> None:
        with self._lock:
            self.drops[stream] = self.drops.get(stream, 0) + count

    def incident(self, stream: str, kind: str, message: str) -> None:
        self.incidents.append({"t": time.monotonic_ns(), "stream": stream, "kind": kind, "message": message})

    def take(self) -> dict[str, list[dict[str, Any]]]:
        """Everything that arrived since the last call, per stream, in arrival order."""
        out: dict[str, list[dict[str, Any]]] = {}
        with self._lock:
            for name, queue in self._pending.items():
                if queue:
                    out[name] = list(queue)
                    queue.clear()
        return out

    def take_incidents(self) -> list[dict[str, Any]]:
        out = []
        while self.incidents:
            out.append(self.incidents.popleft())
        return out
