"""The page's microphone on the host clock: sample index → page time → host time, composed only when read.

The AudioContext's frame counter and ``performance.now()`` are two clocks of the same browser, and a worklet
block is stamped with ``performance.now()`` when the main thread receives it: late, never early, exactly what
capture/clockfit.py's lower envelope is made for. The network between page and host is another matter: the
page clock's mapping (capture/webxr_clock.py) is rough after its first exchanges and only settles as
minimum-RTT exchanges accumulate. Fitting audio directly against *host* times mapped through that young
mapping let one early, badly mapped block drag the envelope down for the whole window (the envelope is only
ever lowered): on a loaded machine the clicks of tests/server/test_webxr_audio.py once came out 2.9 s before
the recording's first head pose. So the audio fit stays in page time, where nothing but scheduling lateness
disturbs it, and the host line is the composition with the page clock's *current* fit for that connection —
the final one when session.json is written.

One fit per WebSocket connection: a reloaded page's AudioContext counts from 0 again and its page clock is a
new segment; the running sample index continues (``base``) across the gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from capture.clockfit import LinearClockFit
from capture.webxr_clock import PageClockFit


@dataclass
class _ConnectionAudio:
    connection: int
    base: int  # running sample index of this connection's AudioContext frame 0
    fit: LinearClockFit  # running index -> page ns since ``origin``
    origin: int | None = None  # page ns of the first block: keeps the fit's values small (float64 precision)
    first_index: int | None = None
    last_index: int | None = None


class PageAudioClock:
    """Not thread-safe: WebXRLink calls it under its own lock, as it does the page clock."""

    def __init__(self, rate_hz: float, page_clock: PageClockFit) -> None:
        self.rate_hz = rate_hz
        self.nominal_b = 1e9 / rate_hz
        self.page_clock = page_clock
        self._connections: list[_ConnectionAudio] = []

    def new_connection(self, connection: int, base: int) -> None:
        if self._connections and self._connections[-1].first_index is None:
            self._connections.pop()  # a connection that sent no audio says nothing
        self._connections.append(
            _ConnectionAudio(connection, base, LinearClockFit(self.rate_hz, min_span_s=10.0))
        )

    def observe(self, end_index: int, page_ns: int) -> None:
        """Samples up to ``end_index`` had reached the page's main thread by page time ``page_ns``."""
        if not self._connections:
            self.new_connection(0, 0)
        c = self._connections[-1]
        if c.origin is None:
            c.origin = page_ns
        if c.first_index is None:
            c.first_index = end_index
        c.last_index = end_index
        c.fit.observe(end_index, page_ns - c.origin)

    def map(self, index: int) -> int:
        """Host ns of running sample ``index``, through the newest connection's fit and its page clock now."""
        c = self._connections[-1]
        assert c.origin is not None
        return self.page_clock.map_connection(c.connection, c.origin + c.fit.map(index))

    def segments(self) -> list[dict[str, Any]]:
        """``host = a_ns + b_ns·index`` per connection, as session.json stores an audio clock."""
        out = []
        for c in self._connections:
            if c.origin is None or c.first_index is None or c.last_index is None:
                continue
            i0, i1 = c.base, max(c.last_index, c.base + 1)
            h0 = self.page_clock.map_connection(c.connection, c.origin + c.fit.map(i0))
            h1 = self.page_clock.map_connection(c.connection, c.origin + c.fit.map(i1))
            b = (h1 - h0) / (i1 - i0)
            seen = sum(s["observations"] for s in c.fit.segments())
            out.append({"from_index": c.base, "a_ns": h0 - b * i0, "b_ns": b, "observations": seen})
        return out

    @property
    def drift_ppm(self) -> float:
        """The newest connection's ns per sample on the host clock against the nominal rate, in ppm."""
        segments = self.segments()
        return (segments[-1]["b_ns"] / self.nominal_b - 1.0) * 1e6 if segments else 0.0

    @property
    def offset_ns(self) -> float:
        """Where the newest sample lies against a nominal-rate clock started at the first sample (cf. clockfit)."""
        segments = self.segments()
        seen = [c for c in self._connections if c.last_index is not None and c.origin is not None]
        if not segments or not seen:
            return 0.0
        first, last = segments[0], segments[-1]
        i0, i1 = seen[0].first_index or 0, seen[-1].last_index or 0
        start = first["a_ns"] + first["b_ns"] * i0
        return last["a_ns"] + last["b_ns"] * i1 - (start + self.nominal_b * (i1 - i0))
