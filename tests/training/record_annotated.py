"""Record a sim session with text: an annotation every 0.1 s, alternating internal and external channels.

    python tests/training/record_annotated.py SESSION_DIR SECONDS

`vrcap record` has no text source (text comes from people, through the server), so the training tests use the
engine's own `annotate()` while it records, the same call the server makes. The phrases repeat, so a model can
learn them: the text losses get real targets.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path

from capture.config import CaptureConfig
from capture.session import make_engine
from vrcap.config import load_config
from vrcap.errors import CaptureError

PHRASES = ("reach for the cup", "look left", "the door is open", "wave hello")


async def record(path: Path, seconds: float) -> None:
    config = load_config(CaptureConfig, None, [f"record.duration_s={seconds}", "sim.seed=7"], "capture.yaml")
    engine = make_engine(path, config)

    async def annotate() -> None:
        i = 0
        while not engine.stopping:
            await asyncio.sleep(0.1)
            with contextlib.suppress(CaptureError):  # before the start and after the stop
                engine.annotate(PHRASES[i // 2 % len(PHRASES)], "transcript", ("internal", "external")[i % 2])
                i += 1

    task = asyncio.create_task(annotate())
    try:
        await engine.run()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


if __name__ == "__main__":
    asyncio.run(record(Path(sys.argv[1]), float(sys.argv[2])))
