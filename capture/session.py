"""`vrcap record` as one function: resolve the name, load the config, build the sources, run the engine."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

from capture.config import CaptureConfig
from capture.engine import CaptureEngine, LiveStats, RecordingResult
from capture.priority import raise_priority
from capture.sim_source import SimCamera, SimHeadset, SimMicrophone
from capture.source import FrameSource, PushSource
from capture.status import HasUpdate, StatusLine
from vrcap.config import load_config
from vrcap.errors import SessionExists
from vrcap.names import session_path


def build_sources(
    config: CaptureConfig, webxr_channel: socket.socket | None = None
) -> tuple[FrameSource, list[PushSource]]:
    """The headset, then the microphone and cameras the config asks for (sim ones unless told otherwise).

    ``webxr_channel``: the socket the API process hands the recorder for ``record.source: webxr``.
    """
    rec = config.record
    headset: SimHeadset | None = None
    push: list[PushSource] = []
    if rec.source == "webxr":
        from capture.webxr_source import webxr_sources

        frame_source, inbox = webxr_sources(config.webxr, webxr_channel, audio=rec.audio == "webxr")
        push.append(inbox)
    elif rec.source == "openxr":
        from capture.openxr_source import OpenXRHeadset

        frame_source: FrameSource = OpenXRHeadset(config.openxr)
    else:
        headset = SimHeadset(config.sim, transcripts=str(rec.audio) == "sim")
        frame_source = headset
    audio = str(rec.audio)
    if audio == "webxr":
        pass  # the page's microphone comes through the WebXR inbox
    elif audio == "sim":
        push.append(SimMicrophone(config.sim, headset))
    elif audio != "none":
        from capture.audio import AudioConfig, AudioSource

        device: str | int = int(audio) if audio.isdigit() else audio
        push.append(AudioSource(AudioConfig(device=device)))
    if rec.cameras:
        from capture.camera import CameraSource, parse_camera_arg

        for spec in rec.cameras:
            push.append(CameraSource(parse_camera_arg(spec, jpeg_quality=rec.jpeg_quality)))
    elif rec.source != "webxr":  # the simulator's cameras film the simulated room, not a real headset's
        push.extend(SimCamera(config.sim, cam, rec.jpeg_quality, headset) for cam in config.sim.cameras)
    if rec.lsl:
        from capture.lsl_inlet import LslInletConfig, LslInletSource

        push.extend(LslInletSource(LslInletConfig(query)) for query in rec.lsl)
    return frame_source, push


def make_engine(
    path: Path, config: CaptureConfig, webxr_channel: socket.socket | None = None
) -> CaptureEngine:
    frame_source, push = build_sources(config, webxr_channel)
    taps = []
    if config.record.lsl_out:
        from capture.lsl_outlet import LslOutlets

        taps.append(LslOutlets(path.name, config.record.lsl_out_wait_s))
    engine = CaptureEngine(
        path,
        frame_source,
        push,
        writer_config=config.writer,
        duration_s=config.record.duration_s,
        capture_config=asdict(config),
        taps=taps,
    )
    if hasattr(frame_source, "on_stop"):
        frame_source.on_stop = engine.stop  # the runtime ending its session stops the recording cleanly
    if hasattr(frame_source, "link"):
        frame_source.link.annotate = engine.annotate  # notes from the headset page, stamped with page time
    return engine


async def run_engine(
    engine: CaptureEngine, status_line: HasUpdate | None, interval: float
) -> RecordingResult:
    """The one way a recording runs, for `vrcap record` and for the server's recorder process alike.

    SIGINT/SIGTERM stop it cleanly; ``status_line`` (the terminal's line, or the recorder's channel to the
    API process) gets a snapshot every ``interval`` while frames flow and the final one at the end.
    """
    loop = asyncio.get_running_loop()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, engine.stop, f"stopped by {signal.Signals(sig).name}")

    async def show() -> None:
        last: LiveStats | None = None
        async for stats in engine.live(interval):
            if stats.state == "recording":
                last = stats
                if status_line is not None:
                    status_line.update(stats)
        if status_line is not None and last is not None:  # a recording that never started shows no status
            status_line.finish(engine.stats)

    shower = asyncio.create_task(show())
    try:
        return await engine.run()
    finally:
        await shower
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


def record_session(
    name: str,
    *,
    root: str | Path | None = None,
    config_path: Path | None = None,
    overrides: list[str] | None = None,
    show_status: bool = True,
    status_stream: Any = None,
    prioritize: bool = False,
) -> RecordingResult:
    """Record until the duration is reached or SIGINT/SIGTERM arrives; the session is finalized either way."""
    path = session_path(name, root)  # refuses unsafe names before anything is touched
    config = load_config(CaptureConfig, config_path, overrides, default_name="capture.yaml")
    if path.exists():
        raise SessionExists(path)
    if config.record.offline:
        from capture.offline import record_offline

        return record_offline(path, config, progress=show_status)
    if prioritize:  # before any thread of the recording starts: they inherit it
        raise_priority(config.record.nice, config.record.rt_priority)
    engine = make_engine(path, config)
    status_line = StatusLine(status_stream or sys.stderr) if show_status else None
    return asyncio.run(run_engine(engine, status_line, config.record.status_interval_s))
