"""An LSL stream's clock mapped to host monotonic ns: offset segments from repeated ``time_correction()``.

A sample's LSL timestamp is on the *sender's* ``local_clock()``; ``time_correction()`` measures (NTP-style,
over the inlet's connection) the offset that, added, puts it on this host's LSL clock, which on Linux is
CLOCK_MONOTONIC (``lsl_to_mono_ns`` stores the residual difference, measured back to back at open). The offset
is measured again every ``interval_s``; each measurement starts a segment, and every sample is mapped with
the segment current when it arrived, so the stored mapping reproduces each sample's ``t`` exactly:

    t_mono_ns = st + segments[k].offset_ns      for the last segment k with from_st_ns <= st

Never de-jittered: the sender's own stamps are kept, whatever its nominal rate (see FACTS.md: LSL's
de-jittering assumes the declared rate and was 20–43 ms wrong on a 75.6 Hz stream declared 90 Hz).
"""

from __future__ import annotations

import threading
import time
from typing import Any

CLOCK_TYPE = "offset_segments"


def lsl_to_mono_ns(local_clock: Any) -> int:
    """monotonic − LSL local clock, in ns: the best of a few back-to-back reads (~0 on Linux)."""
    best: tuple[int, int] | None = None
    for _ in range(5):
        a = time.monotonic_ns()
        lsl = local_clock()
        b = time.monotonic_ns()
        if best is None or b - a < best[0]:
            best = (b - a, (a + b) // 2 - round(lsl * 1e9))
    assert best is not None
    return best[1]


class LslClockMap:
    """Thread-safe list of offset segments; ``map`` is called per sample, ``measured`` per correction."""

    def __init__(self, base_ns: int) -> None:
        self.base_ns = base_ns  # lsl_to_mono_ns of this host
        self._lock = threading.Lock()
        self._segments: list[dict[str, int]] = []
        self._pending: int | None = None  # offset measured, awaiting the first sample it maps
        self.measurements = 0

    def measured(self, correction_s: float) -> None:
        with self._lock:
            self._pending = round(correction_s * 1e9) + self.base_ns
            self.measurements += 1

    def map(self, st_ns: int) -> int:
        with self._lock:
            if self._pending is not None:
                if not self._segments or self._segments[-1]["offset_ns"] != self._pending:
                    self._segments.append({"from_st_ns": st_ns, "offset_ns": self._pending})
                self._pending = None
            if not self._segments:
                return st_ns + self.base_ns
            return st_ns + self._segments[-1]["offset_ns"]

    @property
    def offset_ns(self) -> int | None:
        with self._lock:
            return self._segments[-1]["offset_ns"] if self._segments else self._pending

    def info(self) -> dict[str, Any]:
        with self._lock:
            segments = [dict(s) for s in self._segments]
        offset = segments[-1]["offset_ns"] if segments else None
        return {
            "type": CLOCK_TYPE,
            "unit": "lsl_ns",
            "lsl_to_mono_ns": self.base_ns,
            "segments": segments,
            "measurements": self.measurements,
            **({"offset_ns": offset} if offset is not None else {}),
        }
