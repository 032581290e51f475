"""The recorder process: one recording, run by the same engine code as `vrcap record`, controlled over pipes.

    API process ──stdin: start, stop, annotate──► recorder process (this module) ──► session on disk
                ◄─stdout: stats, replies, result─┘

Why a process of its own: threads of the API process (request handlers, JSON encoding, file reads) hold the
GIL and starve a frame loop that shares it, whatever the handlers do. Here the frame clock has an interpreter
to itself; the API process may be slow, hammered or killed.

When the API process dies, its end of the pipes closes: stdin reads EOF and the recording is stopped and
finalized cleanly (reason "control plane went away"), so the session validates without ``--fix``. It is
not re-attached to a later server (see docs/RECORDER.md for why).

Run as ``python -m capture.recorder_process``; the first stdin line is the start message.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import sys
import threading
from pathlib import Path
from typing import IO, Any

from capture.config import CaptureConfig
from capture.engine import CaptureEngine, LiveStats, RecordingResult
from capture.priority import raise_priority
from capture.recorder_protocol import (
    MSG_FAILED,
    MSG_REPLY,
    MSG_RESULT,
    MSG_STATS,
    OP_ANNOTATE,
    OP_START,
    OP_STOP,
    PROTOCOL_VERSION,
    Sender,
    decode,
)
from capture.session import make_engine, run_engine
from vrcap.config import load_config
from vrcap.errors import SessionExists, VrcapError

log = logging.getLogger("vrcap.recorder")
CHANNEL_CLOSED = "control plane went away"
EXIT_OK, EXIT_FAILED = 0, 1


class ChannelStatus:
    """The status line of a recording whose viewer is the API process: each snapshot goes down the pipe."""

    def __init__(self, sender: Sender) -> None:
        self.sender = sender

    def update(self, status: LiveStats) -> None:
        self.sender.stats({"type": MSG_STATS, "stats": status.to_dict(), "total_drops": status.total_drops})

    def finish(self, status: LiveStats) -> None:
        self.update(status)


def result_body(result: RecordingResult) -> dict[str, Any]:
    return {
        "frames": result.frames, "dropped_frames": result.dropped_frames, "duration_s": result.duration_s,
        "bytes_written": result.bytes_written, "stop_reason": result.stop_reason, "drops": dict(result.drops),
        "latency_ms": dict(result.latency_ms),
    }  # fmt: skip


def _control(engine: CaptureEngine, stdin: IO[bytes], sender: Sender) -> None:
    """Commands from the API process until its end of the pipe closes; EOF stops the recording."""
    for line in stdin:
        try:
            command = decode(line)
        except ValueError:
            log.warning("ignored a line that is not a command: %r", line[:80])
            continue
        op = command.get("op")
        if op == OP_STOP:
            engine.stop(str(command.get("reason") or "stopped"))
        elif op == OP_ANNOTATE:
            reply: dict[str, Any] = {"type": MSG_REPLY, "id": command.get("id")}
            try:
                reply["t_ns"] = engine.annotate(
                    str(command["text"]), str(command["kind"]), str(command["channel"]), command.get("t_ns")
                )
            except (VrcapError, ValueError, KeyError) as exc:
                reply["error"] = str(exc)
            sender.send(reply)
    engine.stop(CHANNEL_CLOSED)


def _failed(sender: Sender, exc: BaseException, path: Path, ours: bool, frames: int) -> None:
    """Report a failure; a session this process created but never recorded a frame into is removed."""
    removed = False
    if ours and frames == 0 and path.is_dir():
        shutil.rmtree(path, ignore_errors=True)  # nothing was recorded: keep the name free for a retry
        removed = not path.exists()
    error = str(exc) if isinstance(exc, VrcapError) else f"{type(exc).__name__}: {exc}"
    sender.send({"type": MSG_FAILED, "error": error, "kind": type(exc).__name__, "removed": removed})


def serve_one(stdin: IO[bytes], stdout: IO[bytes]) -> int:
    """Read the start message, record, report; the exit code says whether the session was finalized."""
    start_line = stdin.readline() or b"{}"
    path = Path(".")
    ours = False
    engine: CaptureEngine | None = None
    try:
        start = decode(start_line)
    except ValueError:
        start = {}
    if isinstance(start.get("nice"), int):
        rt = start.get("rt_priority", 0)
        raise_priority(start["nice"], rt if isinstance(rt, int) and 0 <= rt <= 99 else 0)
    sender = Sender(stdout)
    try:
        if start.get("op") != OP_START or start.get("version") != PROTOCOL_VERSION:
            raise ValueError(f"expected a version-{PROTOCOL_VERSION} start message, got {start!r:.120}")
        path = Path(start["path"])
        config = load_config(CaptureConfig, None, list(start["items"]), default_name="capture.yaml")
        if path.exists():
            raise SessionExists(path)
        fd = start.get("webxr_fd")  # the WebXR page's link, handed over by the API process (pass_fds)
        engine = make_engine(path, config, socket.socket(fileno=int(fd)) if fd is not None else None)
        ours = True
        threading.Thread(
            target=_control, args=(engine, stdin, sender), name="vrcap-control", daemon=True
        ).start()
        interval = float(start.get("stats_interval_s", config.record.status_interval_s))
        result = asyncio.run(run_engine(engine, ChannelStatus(sender), interval))
        sender.send({"type": MSG_RESULT, "result": result_body(result)})
        return EXIT_OK
    except Exception as exc:  # every failure becomes one message; a bug's traceback goes to the log too
        if not isinstance(exc, (VrcapError, ValueError)):
            log.exception("the recording failed")
        _failed(sender, exc, path, ours, engine.stats.frames if engine is not None else 0)
        return EXIT_FAILED
    finally:
        sender.close()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s recorder: %(message)s")
    # The channel gets its own descriptor; fd 1 becomes stderr, so a library that prints cannot corrupt it.
    channel = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return serve_one(sys.stdin.buffer, channel)


def exit_now(code: int) -> None:
    """End without the interpreter's shutdown: the control thread is blocked in a read of stdin, and finalizing
    the interpreter under it aborts the process (SIGABRT, "could not acquire lock for <stdin>"). Everything that
    matters is already on disk and in the channel, which serve_one closed."""
    logging.shutdown()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
