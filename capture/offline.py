"""`vrcap record --source sim --offline`: a sim session written as fast as the CPU allows.

Why: benchmarks, tests and users who want an hour of data now should not wait an hour. Every sim value is a
function of time (capture/sim.py), so nothing needs a real clock: ``SimPacketGenerator`` builds packet ``seq``
at once and the same ``SessionWriter`` a live recording uses writes it. The result has the streams, clocks and
format of a live sim recording; only the host timestamps are synthetic (sim time zero is the host's monotonic
time when the recording started, and frames follow at exactly 1/rate), and nothing is ever dropped.

The live engine (capture/engine.py) is not involved: it owns a frame clock, threads and device sources, none
of which an offline run needs.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from capture.config import CaptureConfig
from capture.engine import RecordingResult
from capture.sim_source import SimPacketGenerator, audio_clock, sim_clock
from vrcap.errors import ConfigError
from vrcap.writer import SessionWriter

STOP_REASON = "duration reached (offline)"


def check_offline(config: CaptureConfig) -> None:
    """Refuse, before anything is written, what an offline run cannot do: every stream must be simulated."""
    rec = config.record
    if rec.source != "sim":
        raise ConfigError(
            f"--offline needs the simulator (--source sim), got --source {rec.source}; "
            "live devices can only be recorded in real time"
        )
    if str(rec.audio) != "sim" and str(rec.audio) != "none":
        raise ConfigError(
            f"--offline records the simulated microphone only, got --audio {rec.audio}; "
            "use --audio sim or --audio none"
        )
    if rec.cameras:
        raise ConfigError(
            "--offline records the simulated cameras only; drop --camera (sim.cameras picks the sim's cameras)"
        )
    if not rec.duration_s > 0:
        raise ConfigError("--offline needs a length: add --duration SECONDS (e.g. --duration 3600)")


def sim_clocks(config: CaptureConfig, t0_ns: int) -> dict[str, Any]:
    """The clock mappings a live sim recording stores, keyed as the engine keys them (by source name)."""
    clocks: dict[str, Any] = {"headset": sim_clock(t0_ns)}
    if str(config.record.audio) == "sim":
        clocks["audio"] = audio_clock(config.sim.audio_rate_hz, t0_ns)
    clocks.update({f"camera_{cam}": sim_clock(t0_ns) for cam in config.sim.cameras})
    return clocks


def record_offline(path: Path, config: CaptureConfig, *, progress: bool = True) -> RecordingResult:
    """Write ``config.record.duration_s`` seconds of the sim to ``path`` through SessionWriter, unpaced."""
    check_offline(config)
    t0 = time.monotonic_ns()
    generator = SimPacketGenerator(
        config.sim, config.record.jpeg_quality, t0_ns=t0, audio=str(config.record.audio) == "sim"
    )
    frames = math.ceil(config.record.duration_s * config.sim.headset_rate_hz)
    writer = SessionWriter.create(
        path,
        list(generator.streams),
        config=config.writer,
        clocks=sim_clocks(config, t0),
        capture_config=asdict(config),
        start_mono_ns=t0,
    )
    started = time.perf_counter()
    with writer, _progress_bar(progress, config.record.duration_s) as bar:
        task = bar.add_task("offline", total=config.record.duration_s)
        rate = config.sim.headset_rate_hz
        for seq in range(frames):
            writer.write_packet(generator.packet(seq))
            if seq % 30 == 0:
                bar.update(task, completed=seq / rate)
        bar.update(task, completed=config.record.duration_s)
        writer.meta.extra["offline"] = {"wall_s": round(time.perf_counter() - started, 3)}
        writer.close(STOP_REASON)
    stats = writer.stats()
    return RecordingResult(
        path, frames, 0, stats["duration_s"], writer.bytes_written, STOP_REASON, dict(writer.drops), [], {}
    )


def _progress_bar(enabled: bool, seconds: float) -> Any:
    """Recorded seconds against the total, with the speed in "x real time" and the time left."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

    class _Speed(TextColumn):
        def render(self, task: Any) -> Any:
            from rich.text import Text

            return Text(f"{task.speed:.1f}x real time" if task.speed else "")

    console = Console(stderr=True)
    return Progress(
        TextColumn("[bold]record --offline"), BarColumn(), TaskProgressColumn(),
        TextColumn(f"{{task.completed:.0f}}/{seconds:.0f} s"), _Speed(""), TimeRemainingColumn(),
        console=console, disable=not enabled or not console.is_terminal, transient=True,
    )  # fmt: skip
