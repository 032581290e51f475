"""Map the page's clock to host monotonic time from NTP-style exchanges over the WebSocket.

One exchange: the page sends ``t1`` (its clock), the server stamps ``t2`` on receipt and ``t3`` on reply (host
monotonic), the page notes ``t4`` on the pong's arrival and reports all four. Then

    offset θ = ((t2 − t1) + (t3 − t4)) / 2      (host − page, at page time (t1 + t4) / 2)
    round trip δ = (t4 − t1) − (t3 − t2)

θ is exact when both directions took equally long; otherwise it errs by half their difference, at most δ/2.
Queueing (a busy event loop, Wi-Fi retries, a jittery proxy) only ever adds delay, so the exchanges with the
smallest δ are the least wrong:

1. **Minimum-RTT filter.** Exchanges are grouped into buckets of ``bucket_s`` of page time; only the one with
   the smallest δ in each is kept (NTP's clock filter does the same over its last eight samples), and of those
   only the best quarter by δ enters the fit: under load a whole bucket can be slow (chromium's main thread
   busy rendering stamps t4 late), and its minimum is then biased too.
2. **Offset + drift.** A least-squares line θ(x) = c0 + c1·x through those minima of the last ``window_s``
   gives the offset and the drift c1 (the page's crystal against the host's; 100 ppm is 0.1 ms/s). Least squares
   and not a lower envelope (capture/clockfit.py) because here the error is two-sided: a late request pushes θ
   up, a late reply pushes it down, and symmetric jitter averages out. The fitted slope is used only once its
   standard error is below ``max_slope_stderr_ppm``; until then the previous segment's slope is kept (0 in the
   first). On loopback that takes a few seconds; through 20 ± 10 ms of jitter, about half a minute — before
   that, a slope fitted over 8 s was measured 1000 ppm off, and extrapolated 3 s it moved the mapping by 3 ms,
   while a reconnecting page keeps its crystal, so the previous slope is the better guess.
3. **Uncertainty.** ``bound_ms`` is half the smallest δ in the window (the true offset is provably within it);
   ``scatter_ms`` is the RMS residual of the minima about the line (how well they agree with each other).

Segments: each WebSocket connection starts one (a reloaded page has a new time origin, and the gap between
connections has no exchanges). ``segments()`` is what session.json stores under ``clocks``.
Numerics: page times are ns since the Unix epoch (~1.8e18) and host times ~1e13; the fit runs on values
centered on the segment's first exchange, so float64 keeps sub-µs precision.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class _Segment:
    connection: int
    ref_page: int | None = None  # page ns of the first exchange (x = page − ref_page)
    ref_offset: int | None = None  # its θ (y = θ − ref_offset)
    first_page: int | None = None
    exchanges: int = 0
    minima: deque[tuple[float, float, float]] = field(default_factory=deque)  # closed buckets: (x, y, δ)
    open_bucket: int = -1
    open_min: tuple[float, float, float] | None = None
    c0: float = 0.0
    c1: float = 0.0
    prior_c1: float = 0.0
    scatter_ns: float = 0.0
    bound_ns: float = 0.0
    slope_stderr: float = float("inf")  # standard error of the last fitted slope (dimensionless)


class PageClockFit:
    """host_ns = page_ns + θ(page_ns), per connection. Not thread-safe: the caller holds one lock around it."""

    def __init__(
        self,
        *,
        bucket_s: float = 0.5,
        window_s: float = 60.0,
        min_span_s: float = 2.0,
        max_slope_stderr_ppm: float = 25.0,
    ) -> None:
        self.max_slope_stderr = max_slope_stderr_ppm * 1e-6
        self.keep_fraction = 4
        self.bucket_ns = int(bucket_s * 1e9)
        self.max_buckets = max(2, round(window_s / bucket_s))
        self.min_span_ns = min_span_s * 1e9
        self._segments: list[_Segment] = []

    def new_segment(self, connection: int) -> None:
        prior = self._segments[-1].c1 if self._segments else 0.0
        self._segments.append(_Segment(connection, prior_c1=prior, c1=prior))

    @property
    def ready(self) -> bool:
        return bool(self._segments) and self._segments[-1].exchanges > 0

    def observe(self, t1: int, t2: int, t3: int, t4: int) -> None:
        """One exchange: t1, t4 page ns; t2, t3 host ns. Exchanges that contradict causality are ignored."""
        if not self._segments:
            self.new_segment(0)
        seg = self._segments[-1]
        rtt = (t4 - t1) - (t3 - t2)
        if rtt < 0 or t3 < t2 or t4 < t1:
            return
        theta2 = (t2 - t1) + (t3 - t4)  # 2θ, an exact integer
        mid2 = t1 + t4  # twice the page time of the exchange
        if seg.ref_page is None:
            seg.ref_page, seg.ref_offset, seg.first_page = mid2 // 2, theta2 // 2, t1
        assert seg.ref_offset is not None
        x = mid2 / 2 - seg.ref_page
        y = theta2 / 2 - seg.ref_offset
        seg.exchanges += 1
        # Buckets by send time t1, which only grows: a delayed exchange's midpoint lies later, and bucketing by
        # it would reopen buckets and let delayed exchanges through as minima.
        bucket = int((t1 - seg.first_page) // self.bucket_ns) if seg.first_page is not None else 0
        if bucket > seg.open_bucket:
            if seg.open_min is not None:
                seg.minima.append(seg.open_min)
                while len(seg.minima) > self.max_buckets:
                    seg.minima.popleft()
            seg.open_bucket, seg.open_min = bucket, (x, y, float(rtt))
        elif seg.open_min is None or rtt < seg.open_min[2]:
            seg.open_min = (x, y, float(rtt))
        self._refit(seg)

    def _refit(self, seg: _Segment) -> None:
        every = list(seg.minima) + ([seg.open_min] if seg.open_min is not None else [])
        # The best quarter of the bucket minima (smallest round trips, at least 3): a busy page thread or a
        # jitter peak lengthens a whole bucket's exchanges, and such a bucket's minimum is still biased.
        keep = max(3, len(every) // self.keep_fraction)
        points = sorted(every, key=lambda p: p[2])[:keep] if len(every) > keep else every
        xs = np.array([p[0] for p in points])
        ys = np.array([p[1] for p in points])
        seg.c1 = seg.prior_c1
        if len(points) >= 3 and xs.max() - xs.min() >= self.min_span_ns:
            slope, intercept = np.polyfit(xs, ys, 1)
            residual = ys - intercept - slope * xs
            spread = float(np.sum((xs - xs.mean()) ** 2))
            stderr = (
                float(np.sqrt(np.sum(residual**2) / (len(points) - 2) / spread)) if len(points) > 2 else 1.0
            )
            seg.slope_stderr = stderr
            if stderr < self.max_slope_stderr:  # the measured slope is better than what we had
                seg.c1 = float(slope)
        seg.c0 = float(np.mean(ys - seg.c1 * xs))
        seg.scatter_ns = float(np.sqrt(np.mean((ys - seg.c0 - seg.c1 * xs) ** 2)))
        seg.bound_ns = min(p[2] for p in every) / 2

    def map(self, page_ns: int) -> int:
        """Host monotonic ns of page time ``page_ns`` through the current segment's line."""
        seg = self._segments[-1] if self._segments else None
        if seg is None or seg.ref_page is None or seg.ref_offset is None:
            raise RuntimeError("the page clock has no exchange yet: map() needs observe() first")
        x = page_ns - seg.ref_page
        return int(page_ns + seg.ref_offset + round(seg.c0 + seg.c1 * x))

    def map_connection(self, connection: int, page_ns: int) -> int:
        """Host ns of ``page_ns`` through the current fit of connection ``connection``'s segment (the newest
        segment when that connection made no exchange: a page clock is only known through its own exchanges)."""
        seg = next(
            (s for s in reversed(self._segments) if s.connection == connection and s.ref_page is not None),
            None,
        )
        if seg is None:
            return self.map(page_ns)
        assert seg.ref_page is not None and seg.ref_offset is not None
        return int(page_ns + seg.ref_offset + round(seg.c0 + seg.c1 * (page_ns - seg.ref_page)))

    def segments(self) -> list[dict[str, Any]]:
        """``host = a_ns + b·page_ns`` per connection, plus the exact reference pair and the fit's quality."""
        out = []
        for seg in self._segments:
            if seg.ref_page is None or seg.ref_offset is None:
                continue
            b = 1.0 + seg.c1
            ref_host = seg.ref_page + seg.ref_offset + seg.c0  # host time at the reference page time
            out.append(
                {
                    "connection": seg.connection,
                    "from_index": seg.first_page,
                    "a_ns": ref_host - b * seg.ref_page,
                    "b_ns": b,
                    "ref_index": seg.ref_page,
                    "ref_ns": round(ref_host),
                    "observations": seg.exchanges,
                    "buckets": len(seg.minima) + (seg.open_min is not None),
                    "drift_ppm": seg.c1 * 1e6,
                    "fitted_slope_stderr_ppm": min(seg.slope_stderr * 1e6, 1e6),
                    "bound_ns": seg.bound_ns,
                    "scatter_ns": seg.scatter_ns,
                }
            )
        return out

    def figures(self) -> dict[str, float]:
        """Live figures of the current segment: drift, the uncertainty bound and scatter, exchanges so far."""
        if not self.ready:
            return {}
        seg = self._segments[-1]
        return {
            "drift_ppm": seg.c1 * 1e6,
            "uncertainty_ms": seg.bound_ns / 1e6,
            "scatter_ms": seg.scatter_ns / 1e6,
            "exchanges": float(seg.exchanges),
        }
