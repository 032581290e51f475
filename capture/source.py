"""What the capture engine expects of a source, and what it offers one.

Two kinds of source:
- a **frame source** (the headset: sim or OpenXR) is polled once per frame by the engine, which owns the frame
  clock; it returns the samples of that frame;
- a **push source** (microphone, camera) produces on its own thread or device callback and hands each
  timestamped sample to a ``SampleSink``; the engine puts whatever arrived since the last frame into the next
  packet.

Every sample carries the host-monotonic time ``t`` (ns) *and* the source's own time ``st``; every source
describes how it maps one to the other in ``clock_info()``, which the engine stores in session.json.
"""

from __future__ import annotations

from typing import Any, Protocol

from vrcap.streams import StreamDescriptor


class SampleSink(Protocol):
    """Where push sources deliver. Thread-safe; never blocks the caller (a device callback)."""

    def put(self, stream: str, sample: dict[str, Any]) -> None:
        """Hand over one sample (keys as in docs/FORMAT.md). Camera samples may be dropped under overload."""

    def drop(self, stream: str, count: int = 1) -> None:
        """Count samples the source itself lost (a camera's missed grab, audio overflow frames)."""

    def incident(self, stream: str, kind: str, message: str) -> None:
        """Report a failure or gap ("device-error", "stream-ended", "overflow"); it goes into session.json."""


class PushSource(Protocol):
    name: str

    def streams(self) -> list[StreamDescriptor]:
        """The streams this source writes, known before it starts (session.json is written at start)."""

    def open(self) -> None:
        """Open the device; raise CaptureError naming the device and how to list devices when it cannot."""

    def start(self, sink: SampleSink) -> None:
        """Begin producing into ``sink`` (from the source's own thread or callback)."""

    def stop(self) -> None:
        """Stop producing and release the device. Idempotent; joins every thread the source started."""

    def clock_info(self) -> dict[str, Any]:
        """How this source's time maps to host monotonic ns, with the measured offset and drift."""

    def live_stats(self) -> dict[str, Any]:
        """Cheap figures for the status line (e.g. ``{"level_dbfs": -23.5}``); called a few times a second."""


class FrameSource(Protocol):
    name: str
    rate_hz: float

    def streams(self) -> list[StreamDescriptor]: ...

    def open(self) -> None: ...

    def start(self, t0_ns: int) -> None:
        """The engine's frame clock starts at host monotonic ``t0_ns``."""

    def frame(self, seq: int, t_ns: int) -> dict[str, list[dict[str, Any]]]:
        """The samples of frame ``seq`` due at host monotonic ``t_ns``."""

    def close(self) -> None: ...

    def clock_info(self) -> dict[str, Any]: ...


class PacketTap(Protocol):
    """Sees every packet the engine writes (e.g. LSL outlets). ``put`` runs on the frame loop: it must not block."""

    def open(self, streams: list[StreamDescriptor]) -> None:
        """Called once the session's streams are known, before the first frame."""

    def put(self, packet: dict[str, Any]) -> None:
        """A packet as written (the tap must not change it)."""

    def close(self) -> None:
        """Idempotent; called whatever happened."""
