"""A Python process that builds chunks for the converter: started once, fed pickled chunks over a pipe.

Why a plain subprocess and not multiprocessing: spawn and forkserver both import the parent's ``__main__``
again in the child, so a user's unguarded script calling the converter would run twice. Here the child runs
only this module (``python -m replay.chunk_process R W``) and talks over two pipes of its own: stdout stays
free for whatever a library prints, and stderr goes nowhere (a child that dies is noticed by its pipe, and
the chunk is built on the reader's side instead).

Frames are an 8-byte little-endian length and a pickle (protocol 5). A request is ``(function name, args)``;
a reply ``(True, result)`` or ``(False, exception)``.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, BinaryIO

_LEN = struct.Struct("<Q")


class WorkerGone(Exception):
    """The builder process is not there (never started, killed, or its pipe broke)."""


def _send(stream: BinaryIO, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=5)
    stream.write(_LEN.pack(len(data)))
    stream.write(data)
    stream.flush()


def _recv(stream: BinaryIO) -> Any:
    head = stream.read(_LEN.size)
    if len(head) < _LEN.size:
        raise EOFError("pipe closed")
    (size,) = _LEN.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("pipe closed mid-frame")
    return pickle.loads(data)


class BuilderProcess:
    """The child process and its two pipes. One session at a time owns it (``claim``/``release``) and sends
    its chunks in order: ``send`` returns once the request is in the pipe, ``receive`` waits for the oldest
    reply, so the caller reads on while the child builds."""

    def __init__(self) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        for fd in (to_child_w, from_child_w):  # a chunk is a few MB: 1 MB pipes, not 64 KB (Linux only)
            with contextlib.suppress(AttributeError, OSError):
                import fcntl  # POSIX; the builder process is never used elsewhere (chunk_builder.resolve)

                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 1 << 20)
        root = str(
            Path(__file__).resolve().parents[1]
        )  # this checkout or site-packages: the child imports us
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        env.setdefault("OPENBLAS_NUM_THREADS", "1")  # one BLAS thread, as on the converter's own threads
        env.setdefault("OMP_NUM_THREADS", "1")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "replay.chunk_process", str(to_child_r), str(from_child_w)],
                pass_fds=(to_child_r, from_child_w),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
            )
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self._out = os.fdopen(to_child_w, "wb")
        self._in = os.fdopen(from_child_r, "rb")
        self._owner = threading.Lock()

    def claim(self) -> bool:
        """Take the process for one session; False when another session (another thread) has it."""
        return self._owner.acquire(blocking=False)

    def release(self) -> None:
        self._owner.release()

    def send(self, function: str, *args: Any) -> None:
        try:
            _send(self._out, (function, args))
        except (OSError, ValueError) as exc:  # ValueError: the pipe was closed on our side
            raise WorkerGone(str(exc)) from exc

    def receive(self) -> Any:
        """The oldest reply's value, or its exception raised here."""
        try:
            ok, value = _recv(self._in)
        except (OSError, ValueError, EOFError, pickle.UnpicklingError) as exc:
            raise WorkerGone(str(exc)) from exc
        if not ok:
            raise value
        return value

    def call(self, function: str, *args: Any) -> Any:
        self.send(function, *args)
        return self.receive()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        for stream in (self._out, self._in):
            with contextlib.suppress(OSError):
                stream.close()
        try:
            self.proc.wait(timeout=5)  # it exits when its request pipe closes
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _serve(read_fd: int, write_fd: int) -> None:
    import signal

    from replay import chunk_builder
    from replay.heap import keep_heap_now

    keep_heap_now()  # this process only builds chunks: their arrays reuse pages (replay/heap.py)

    # Ctrl-C reaches the whole process group: the converter decides (it stops, or finishes the chunk it
    # waits for), and this process exits when the converter closes its pipe or exits.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    functions = {"build": chunk_builder.build_elsewhere, "pid": os.getpid}
    with os.fdopen(read_fd, "rb") as requests, os.fdopen(write_fd, "wb") as replies:
        while True:
            try:
                name, args = _recv(requests)
            except EOFError:
                return  # the converter closed the pipe or exited
            try:
                reply: tuple[bool, Any] = (True, functions[name](*args))
            except Exception as exc:  # handed back and raised by the caller, as on the thread
                reply = (False, exc)
            try:
                _send(replies, reply)
            except (pickle.PicklingError, TypeError, AttributeError):
                _send(replies, (False, RuntimeError(f"{type(reply[1]).__name__}: {reply[1]}")))


if __name__ == "__main__":
    _serve(int(sys.argv[1]), int(sys.argv[2]))
