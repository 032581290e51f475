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
import contextlib
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


AUTOGROUP = Path("/proc/self/autogroup")


def raise_priority(nice: int, rt_priority: int = 0) -> int:
    """Ask for niceness ``nice`` (< 0: ahead of ordinary processes, as audio servers do) before any thread
    starts, so every thread of the recording inherits it. Needs CAP_SYS_NICE or RLIMIT_NICE; without them the
    recorder keeps the priority it was started with (the API process's threads still run below it).

    With autogrouping (Linux, ``kernel.sched_autogroup_enabled=1``, the default on desktops) a thread's nice
    value only ranks it within its session's group; the CPU is shared between groups by the group's own nice
    value. The recorder runs in a session of its own (the API starts it so), so its group holds only the
    recording, and the group's value is set too: otherwise every busy terminal on the machine gets as much CPU
    as the frame clock, whatever its threads' nice (measured: 115 dropped frames in a quiet 20 s run).

    ``rt_priority`` > 0 asks for SCHED_RR at that priority, for every thread (set before any starts: a frame
    loop that is real time while the camera thread holding the GIL is not still waits for it). Ordinary
    processes, however many, then never keep the recording off the CPU; the recorder needs a fraction of a core.
    """
    with contextlib.suppress(OSError):  # not permitted: keep the inherited priority
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    if (
        rt_priority > 0
    ):  # round-robin real time, as audio servers ask for; the kernel caps it at 95% of a core
        try:
            os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(rt_priority))
        except (OSError, AttributeError) as exc:  # not permitted (no CAP_SYS_NICE / RLIMIT_RTPRIO): nice only
            log.warning(
                "real-time priority %d refused (%s); the recording runs at nice %d", rt_priority, exc, nice
            )
    if os.getsid(0) == os.getpid():  # our own session: the group is ours alone, never the user's terminal
        with contextlib.suppress(OSError):  # no autogrouping, or not permitted
            AUTOGROUP.write_text(f"{nice}\n")
    return os.getpriority(os.PRIO_PROCESS, 0)


def autogroup_nice() -> int | None:
    """The nice value of this process's autogroup; None without autogrouping."""
    try:
        return int(AUTOGROUP.read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        return None


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


if __name__ == "__main__":
    sys.exit(main())
