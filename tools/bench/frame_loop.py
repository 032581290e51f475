"""What the engine's frame clock costs by itself: CPU per frame at 90 Hz with nothing to capture.

    .venv/bin/python tools/bench/frame_loop.py [--seconds 10]

Three references measured in the same run, each pacing an empty loop at 90 Hz in one thread: a thread's
``time.sleep`` until the frame is due (what the engine does since 2026-12-02), an asyncio coroutine sleeping
until due (what it did before), and the same with the ``asyncio.sleep(0)`` it yielded after every frame. Then
the engine itself with a frame source that returns one 28-byte pose and no push sources, writing a real session
(msgpack + LZ4 + write + fsync on the writer thread): its process CPU per frame, over the thread-sleep
reference. Why a bench of its own: the capture bench's ratio moves ±8% from run to run with the sim's rendering,
which hides a change of 0.1 ms a frame; here the clock is all there is.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a plain script from a checkout

from capture.engine import CaptureEngine  # noqa: E402
from vrcap.streams import StreamDescriptor  # noqa: E402
from vrcap.writer import WriterConfig  # noqa: E402

RATE_HZ = 90.0


class EmptyHeadset:
    """A frame source with one pose a frame and nothing else to do: the engine's own cost is what is left."""

    name, rate_hz = "headset", RATE_HZ

    def streams(self) -> list[StreamDescriptor]:
        return [
            StreamDescriptor("head", "pose", RATE_HZ, (7,), "float32", "raw", "", "", (), "bench", "host_ns")
        ]

    def open(self) -> None: ...

    def start(self, t0_ns: int) -> None:
        self.t0 = t0_ns

    def frame(self, seq: int, t_ns: int) -> dict[str, list[dict[str, Any]]]:
        return {"head": [{"t": t_ns, "st": t_ns, "d": bytes(28)}]}

    def close(self) -> None: ...

    def clock_info(self) -> dict[str, Any]:
        return {"type": "host"}


def _thread_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_THREAD)
    return r.ru_utime + r.ru_stime


def paced_sleep(frames: int) -> None:
    period, t0 = 1e9 / RATE_HZ, time.monotonic_ns()
    seq = 0
    while seq < frames:
        lag = time.monotonic_ns() - (t0 + round(seq * period))
        if lag < 0:
            time.sleep(-lag / 1e9)
            continue
        seq += 1


async def paced_asyncio(frames: int, yield_after: bool) -> None:
    period, t0 = 1e9 / RATE_HZ, time.monotonic_ns()
    seq = 0
    while seq < frames:
        lag = time.monotonic_ns() - (t0 + round(seq * period))
        if lag < 0:
            await asyncio.sleep(-lag / 1e9)
            continue
        seq += 1
        if yield_after:
            await asyncio.sleep(0)


def per_frame_us(fn: Any, frames: int) -> float:
    before = _thread_cpu()
    fn()
    return (_thread_cpu() - before) / frames * 1e6


def engine_per_frame_us(seconds: float) -> tuple[float, int]:
    """Process CPU per frame of a real recording (every thread: frame clock, writer, event loop)."""
    with tempfile.TemporaryDirectory(prefix="vrcap-bench-loop-") as tmp:
        engine = CaptureEngine(
            Path(tmp) / "s", EmptyHeadset(), [], writer_config=WriterConfig(), duration_s=seconds
        )
        before = time.process_time()
        result = asyncio.run(engine.run())
        return (time.process_time() - before) / result.frames * 1e6, result.frames


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    frames = round(args.seconds * RATE_HZ)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; {frames} frames at 90 Hz"
    )
    sleep_us = per_frame_us(lambda: paced_sleep(frames), frames)
    print(f"reference: thread time.sleep until due           {sleep_us:6.0f} us CPU a frame")
    coro_us = per_frame_us(lambda: asyncio.run(paced_asyncio(frames, False)), frames)
    print(f"reference: asyncio sleep until due              {coro_us:6.0f} us ({coro_us / sleep_us:.2f}x)")
    both_us = per_frame_us(lambda: asyncio.run(paced_asyncio(frames, True)), frames)
    print(f"reference: asyncio, plus sleep(0) every frame   {both_us:6.0f} us ({both_us / sleep_us:.2f}x)")
    engine_us, recorded = engine_per_frame_us(args.seconds)
    print(
        f"engine: {recorded} frames recorded, process CPU  {engine_us:6.0f} us a frame "
        f"({engine_us / sleep_us:.2f}x the thread-sleep reference; the writer thread's msgpack, LZ4, write and "
        "fsync included)"
    )
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
