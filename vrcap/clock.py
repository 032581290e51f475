"""The one clock: host CLOCK_MONOTONIC in ns. How each source's own time maps onto it (docs/FORMAT.md §5)."""

from __future__ import annotations

import bisect
from typing import Any


def map_sample_index(clock: dict[str, Any], index: int) -> float:
    """Host monotonic ns of sample ``index`` under a ``{"type": "linear", "segments": [...]}`` mapping.

    Each segment holds from its ``from_index`` up to the next one's (a new segment starts at every overflow).
    """
    if clock.get("type") != "linear" or not clock.get("segments"):
        raise ValueError(f"not a linear sample-index clock: {clock.get('type')!r}")
    segments = clock["segments"]
    starts = [int(s["from_index"]) for s in segments]
    seg = segments[max(0, bisect.bisect_right(starts, index) - 1)]
    return float(seg["a_ns"]) + float(seg["b_ns"]) * index
