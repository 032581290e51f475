"""`vrcap record` as one function: resolve the name, load the config, run the recorder under signals."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

from capture.config import CaptureConfig
from capture.recorder import Recorder, RecordingResult
from capture.status import StatusLine
from vrcap.config import load_config
from vrcap.errors import SessionExists
from vrcap.names import session_path


def record_session(
    name: str,
    *,
    root: str | Path | None = None,
    config_path: Path | None = None,
    overrides: list[str] | None = None,
    show_status: bool = True,
) -> RecordingResult:
    """Record until the duration is reached or SIGINT/SIGTERM arrives; the session is finalized either way."""
    path = session_path(name, root)  # refuses unsafe names before anything is touched
    config = load_config(CaptureConfig, config_path, overrides, default_name="capture.yaml")
    if path.exists():
        raise SessionExists(path)
    recorder = Recorder(path, config)
    status_line = StatusLine() if show_status else None
    previous = {}

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        recorder.stop(f"stopped by {signal.Signals(signum).name}")

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        result = recorder.run(on_status=status_line.update if status_line else None)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if status_line is not None:
        status_line.finish(recorder.status)
    return result
