"""Compression and disk writes on a worker thread, so the frame loop never waits on the disk.

Backpressure policy: the queue is measured in bytes. Past ``soft_limit_bytes`` the camera frames of each new
packet are dropped (counted per stream) while poses and audio still go in; past ``hard_limit_bytes`` the disk
is not keeping up even with poses, and the recording stops with an error rather than eat all memory.
A write error (a full disk) stops the thread; the engine then stops the recording and finalizes what was written.
"""

from __future__ import annotations

import queue
import threading
import time
from array import array
from typing import Any

from vrcap.errors import WriterError
from vrcap.packets import S_DATA, SAMPLES
from vrcap.writer import SessionWriter

_STOP = object()


def packet_bytes(packet: dict[str, Any]) -> int:
    total = 64
    for items in packet[SAMPLES].values():
        for sample in items:
            data = sample.get(S_DATA)
            total += len(data) if isinstance(data, (bytes, bytearray)) else 64
    return total


class WriterThread:
    def __init__(
        self,
        writer: SessionWriter,
        droppable: set[str],
        soft_limit_bytes: int = 32 * 1024 * 1024,
        hard_limit_bytes: int = 512 * 1024 * 1024,
    ) -> None:
        self.writer = writer
        self.droppable = droppable
        self.soft_limit = soft_limit_bytes
        self.hard_limit = hard_limit_bytes
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self.queued_bytes = 0
        self.queued_packets = 0
        self.max_queued_packets = 0
        self.drops: dict[str, int] = {}
        self.error: Exception | None = None
        self.latencies_ns = array("q")  # frame time → handed to the OS, per packet (8 bytes each)
        self._thread = threading.Thread(target=self._run, name="vrcap-writer", daemon=True)
        self._thread.start()

    def submit(self, packet: dict[str, Any]) -> None:
        """Queue a packet; applies the overload policy. Raises the writer's error once it has failed."""
        if self.error is not None:
            raise self.error
        if self.queued_bytes > self.soft_limit:
            for name in self.droppable & packet[SAMPLES].keys():
                self.drops[name] = self.drops.get(name, 0) + len(packet[SAMPLES].pop(name))
        size = packet_bytes(packet)
        with self._lock:
            if self.queued_bytes + size > self.hard_limit:
                raise WriterError(
                    f"the disk is not keeping up: {self.queued_bytes / 1e6:.0f} MB waiting even after dropping camera "
                    "frames; record to a faster disk or lower camera resolution/fps"
                )
            self.queued_bytes += size
            self.queued_packets += 1
            self.max_queued_packets = max(self.max_queued_packets, self.queued_packets)
        self._queue.put((packet, size))

    def close(self, timeout: float = 60.0) -> None:
        """Write everything queued, then return; the SessionWriter itself is closed by the caller."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)

    def _run(self) -> None:
        interval = self.writer.config.flush_interval_s
        while True:
            try:
                item = self._queue.get(timeout=interval / 2)
            except queue.Empty:
                item = None
            try:
                if item is _STOP:
                    return
                if item is not None:
                    packet, size = item
                    if self.error is None:
                        self.writer.write_packet(packet)
                        self.latencies_ns.append(time.monotonic_ns() - packet["t"])
                    with self._lock:
                        self.queued_bytes -= size
                        self.queued_packets -= 1
                elif self.error is None:
                    self.writer.maybe_flush()  # idle: the flush interval still bounds the loss
            except Exception as exc:  # a full disk, an I/O error: stop writing, keep draining
                self.error = exc
