"""Map an audio device's sample counter to host monotonic time: ``t_ns = a + b·index``, fitted online.

The sound card's crystal and the host's clock disagree by tens of ppm, so the nominal ``1e9 / rate`` ns per
frame drifts by several ms per minute against ``time.monotonic_ns()``. Device timestamps cannot be used instead:
on ALSA→PulseAudio they are wall-clock seconds, elsewhere 0 or wrong (docs: FACTS.md). What every host API gives
is *when the callback ran*, which is an upper bound on when its last frame was captured: a callback is
scheduled late, never early. So the observations are ``(index, t_ns)`` pairs lying on or *above* the true line,
scattered upward by scheduling jitter (gaps up to ~24 ms with PulseAudio, more on a busy machine).

How the line is found, and why — a lower envelope, not least squares:

1. **Bucket minima.** Observations are grouped into buckets of ``bucket_s`` seconds of audio and only the
   earliest one per bucket (relative to the nominal line) is kept: late callbacks say nothing about the line.
   This also bounds memory and cost (~2 points per second, whatever the block size).
2. **The lower envelope of a sliding window of minima** (the linear-programming fit used for network clock
   skew, Moon et al. 1999): the line that lies below every point and is highest at their mean index. It is the
   edge of the points' lower convex hull that spans the mean. Points are never early, so every point is above
   the truth, the hull is too, and the fitted slope errs by at most twice the envelope points' own lateness
   divided by the window span.
   Least squares on the same minima was tried first and rejected: with PulseAudio the *minimum* lateness per
   bucket is not small noise but wanders by 0–9 ms over seconds (callback cadence beating against the server's
   render cadence), with a quarter of the minima within 0.5 ms of the envelope. On 70 s of real callbacks a
   least-squares fit over 10 s windows erred by up to 236 ppm and was biased by ~9 ppm over 60 s, where the
   envelope erred by up to 90 ppm (10 s) and its 60 s windows agreed within 3.5 ppm (std 1.1 ppm; the null sink
   really runs ~42 ppm fast against CLOCK_MONOTONIC). One-sided outlier rejection (drop minima more than k×MAD
   above the line) kept the late phases, because they are what inflates the MAD; iterated low-quantile
   regression matched the envelope but adds a quantile to tune.
   The window (``window_s``) lets the fit follow slow drift changes (temperature) and forget a stretch that was
   distorted, e.g. frames lost without an overflow flag.
3. Between refits (one per closed bucket) the line is only lowered, when a new point falls below it.

Until a segment spans ``min_span_s`` of audio with at least ``min_buckets`` buckets, its slope is the previous
segment's (the crystal did not change at an overflow) or, in the first, the nominal one, and only the offset is
fitted (the line through the lowest point): over a few seconds the envelope's slope error (~2 × 1–9 ms / span)
is larger than any real sound card's drift (tens of ppm: < 2 ms in 20 s even at 100 ppm, which bounds what the
nominal slope costs the mapping meanwhile).

Numerics: indices reach 1e10 and nanoseconds 1e13; their products and sums lose float64 precision. Everything is
taken over *centered* values — index minus the segment's first observed index, time minus the nominal line
through the first observation — so the quantities fitted are small (residuals of ms, spans of 1e10 at most).

Segments: an overflow breaks the link between index and time (PortAudio does not say how many frames were
lost), so ``restart(from_index)`` starts a fresh fit; ``segments()`` lists them in the form session.json stores
under ``clocks``: ``{"type": "linear", "unit": "sample_index", "segments": [...]}``.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class _Segment:
    """One stretch of a continuous sample counter, fitted in coordinates centered on its first observation."""

    from_index: int
    nominal_b: float
    ref_index: int | None = None  # first observed index: x = index - ref_index
    ref_ns: int | None = None  # its time: residual r = t - ref_ns - nominal_b·x
    observations: int = 0
    buckets: deque[tuple[float, float]] = field(default_factory=deque)  # closed buckets: (x, min residual)
    open_bucket: int = -1  # number of the bucket being filled
    open_min: tuple[float, float] | None = None  # its lowest (x, r) so far
    c0: float = 0.0  # fitted residual line r = c0 + c1·x
    c1: float = 0.0
    prior_c1: float = 0.0  # slope used until this segment spans enough: the previous segment's measured one
    fallback: tuple[float, float] | None = None  # (a_ns, b_ns) used while nothing is observed: the last line

    def map(self, index: int) -> float:
        if self.ref_index is None or self.ref_ns is None:
            if self.fallback is None:
                raise RuntimeError("the clock fit has no observation yet: call observe() first")
            a, b = self.fallback
            return a + b * index
        x = float(index - self.ref_index)
        return self.ref_ns + (self.nominal_b + self.c1) * x + self.c0

    def line(self) -> tuple[float, float]:
        """``(a_ns, b_ns)`` of ``t = a + b·index`` in absolute terms, for session.json."""
        if self.ref_index is None or self.ref_ns is None:
            assert self.fallback is not None
            return self.fallback
        b = self.nominal_b + self.c1
        return self.ref_ns + self.c0 - b * self.ref_index, b


class LinearClockFit:
    """Online fit of host monotonic ns = a + b·sample_index, per segment between overflows.

    Not thread-safe: callers serialize access (``AudioSource`` holds a lock around every call, since its drain
    thread feeds the fit while the engine reads ``segments()`` and the status line reads the figures).
    """

    def __init__(
        self,
        rate_hz: float,
        *,
        bucket_s: float = 0.5,
        window_s: float = 120.0,
        min_span_s: float = 20.0,
        min_buckets: int = 8,
    ) -> None:
        if rate_hz <= 0:
            raise ValueError(f"rate_hz must be positive, got {rate_hz}")
        self.rate_hz = float(rate_hz)
        self.nominal_b = 1e9 / self.rate_hz
        self.bucket_frames = max(1, round(bucket_s * self.rate_hz))
        self.max_buckets = max(2, round(window_s / bucket_s))
        self.min_span_frames = min_span_s * self.rate_hz
        self.min_buckets = min_buckets
        self._segments: list[_Segment] = [_Segment(0, self.nominal_b)]
        self._origin: tuple[int, float] | None = None  # (index, ns) of the very first observation
        self._last_index: int | None = None

    # -- feeding ---------------------------------------------------------------------------------------------

    def observe(self, index: int, t_ns: int) -> None:
        """Sample ``index`` was captured at or before host time ``t_ns`` (a callback's time for its block's end)."""
        seg = self._segments[-1]
        if seg.ref_index is None:
            seg.ref_index, seg.ref_ns = int(index), int(t_ns)
            if self._origin is None:
                self._origin = (int(index), float(t_ns))
        x = float(index - seg.ref_index)
        r = float(t_ns - seg.ref_ns) - self.nominal_b * x
        seg.observations += 1
        self._last_index = int(index)
        bucket = int(x // self.bucket_frames)
        if bucket != seg.open_bucket:
            if seg.open_min is not None:
                seg.buckets.append(seg.open_min)
                while len(seg.buckets) > self.max_buckets:
                    seg.buckets.popleft()
            seg.open_bucket, seg.open_min = bucket, (x, r)
            self._refit(seg)  # a bucket closed (or the first arrived): the slope may move, ~2 times a second
        elif seg.open_min is None or r < seg.open_min[1]:
            seg.open_min = (x, r)
            seg.c0 = min(seg.c0, r - seg.c1 * x)  # between refits only a new lowest point can move the line

    def restart(self, from_index: int) -> None:
        """Start a new segment at ``from_index``: what follows an overflow has no known relation to what preceded."""
        old = self._segments[-1]
        fallback = old.line() if (old.ref_index is not None or old.fallback is not None) else None
        prior = old.c1 if old.ref_index is not None else old.prior_c1  # the crystal did not change
        if old.observations == 0 and len(self._segments) > 1:
            self._segments.pop()  # two overflows in a row: the empty segment between them says nothing
        self._segments.append(
            _Segment(int(from_index), self.nominal_b, c1=prior, prior_c1=prior, fallback=fallback)
        )

    def _refit(self, seg: _Segment) -> None:
        points = [*seg.buckets, seg.open_min] if seg.open_min is not None else list(seg.buckets)
        xs = np.fromiter((p[0] for p in points), dtype=np.float64, count=len(points))
        rs = np.fromiter((p[1] for p in points), dtype=np.float64, count=len(points))
        c1 = seg.prior_c1
        if len(points) >= self.min_buckets and xs[-1] - xs[0] >= self.min_span_frames:
            c1 = _envelope_slope(points, float(xs.mean()))
        seg.c1 = c1
        seg.c0 = float(np.min(rs - c1 * xs))  # touch the lowest point: for the hull edge, its two vertices

    # -- reading ---------------------------------------------------------------------------------------------

    def map(self, index: int) -> int:
        """Host monotonic ns at which sample ``index`` was captured, by the segment that holds ``index``."""
        seg = next((s for s in reversed(self._segments) if index >= s.from_index), self._segments[0])
        return round(seg.map(index))

    def segments(self) -> list[dict[str, Any]]:
        """Every segment as session.json stores it: ``{"from_index", "a_ns", "b_ns", "observations"}``."""
        out = []
        for seg in self._segments:
            unseen = seg.ref_index is None and seg.fallback is None  # nothing observed at all yet
            line = (0.0, self.nominal_b) if unseen else seg.line()
            out.append(
                {
                    "from_index": seg.from_index,
                    "a_ns": line[0],
                    "b_ns": line[1],
                    "observations": seg.observations,
                }
            )
        return out

    @property
    def b_ns(self) -> float:
        """Fitted ns per frame of the current segment."""
        return self.nominal_b + self._segments[-1].c1

    @property
    def drift_ppm(self) -> float:
        """``b`` relative to the nominal ``1e9/rate``, in ppm: positive when a device frame lasts longer than it
        should (the sound card's clock runs slow against the host's), so the audio falls behind by that many µs/s.
        """
        return (self.b_ns / self.nominal_b - 1.0) * 1e6

    @property
    def offset_ns(self) -> float:
        """How far the audio clock has moved against the host clock since the first observation, in ns.

        The fitted time of the newest observed index minus where a perfect clock at the nominal rate, started at
        the first sample's fitted time, would place it. It grows by ``drift_ppm`` µs per second and jumps at an
        overflow whose lost frames were not counted. 0 before any observation.
        """
        if self._origin is None or self._last_index is None:
            return 0.0
        i0 = self._origin[0]
        first = self._segments[0]
        start = first.map(i0) if first.ref_index is not None else self._origin[1]
        return self.map(self._last_index) - (start + self.nominal_b * (self._last_index - i0))


def _envelope_slope(points: list[tuple[float, float]], x_mean: float) -> float:
    """Slope of the lower-convex-hull edge spanning ``x_mean`` (points sorted by x): the LP lower-envelope fit."""
    hull: list[tuple[float, float]] = []  # Andrew's monotone chain, lower half
    for p in points:
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (x2 - x1) * (p[1] - y1) - (y2 - y1) * (p[0] - x1) > 0:
                break  # p turns left: hull[-1] stays a vertex
            hull.pop()
        hull.append(p)
    for (x1, y1), (x2, y2) in itertools.pairwise(hull):
        if x2 >= x_mean:
            return (y2 - y1) / (x2 - x1)
    (x1, y1), (x2, y2) = hull[-2], hull[-1]
    return (y2 - y1) / (x2 - x1)
