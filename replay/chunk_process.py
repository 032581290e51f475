"""A Python process that builds chunks for the converter: started once, fed pickled chunks over a pipe.

Why a plain subprocess and not multiprocessing: spawn and forkserver both import the parent's ``__main__``
again in the child, so a user's unguarded script calling the converter would run twice. Here the child runs
only this module (``python -m replay.chunk_process R W [M]``) and talks over two pipes of its own: stdout stays
free for whatever a library prints, and stderr goes nowhere (a child that dies is noticed by its pipe, and
the chunk is built on the reader's side instead).

A frame (``_send``) is two little-endian 8-byte counts (pickle bytes, out-of-band buffers), a (signed offset,
length) pair of 8-byte fields per buffer, the pickle (protocol 5), then the buffers whose offset is -1. The
others are in the shared region of that direction (a memfd both map, ``REGION_BYTES`` each way), 8-byte
aligned. A request is ``(function name, args)``; a reply ``(True, result)`` or ``(False, exception)``.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import pickle
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, BinaryIO

_HEAD = struct.Struct("<QQ")  # pickle bytes, number of out-of-band buffers
_WHERE = struct.Struct("<qQ")  # a buffer's offset in the shared region (-1: it follows in the pipe), bytes
REGION_BYTES = 16 * 1024 * 1024  # each direction's shared region: a 10 s chunk of poses + audio is ~3 MB


class WorkerGone(Exception):
    """The builder process is not there (never started, killed, or its pipe broke)."""


def _send(stream: BinaryIO, obj: Any, region: memoryview | None = None) -> None:
    """The pickle through the pipe; its arrays (protocol 5, out of band) copied into ``region``, a memory
    both processes map, when they fit, else after the pickle in the pipe.

    Why: through the pipe a chunk's arrays (~3 MB in, ~2 MB out for 10 s of poses + audio) cost the reader
    about a fifth of a conversion in pickling, pipe writes and reads. The receiver reads the region only
    until it answers, and the sender writes it only after the answer: one chunk is in the builder at a time.
    """
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    raws = [buffer.raw() for buffer in buffers]
    shared = region is not None and sum(-(-raw.nbytes // 8) * 8 for raw in raws) <= len(region)
    where, piped, offset = [], [], 0
    for raw in raws:
        if shared:
            assert region is not None
            region[offset : offset + raw.nbytes] = raw
            where.append(_WHERE.pack(offset, raw.nbytes))
            offset += -(-raw.nbytes // 8) * 8  # 8-byte aligned: every dtype's view is aligned
        else:
            where.append(_WHERE.pack(-1, raw.nbytes))
            piped.append(raw)
    stream.write(_HEAD.pack(len(data), len(raws)) + b"".join(where))
    stream.write(data)
    for raw in piped:
        stream.write(raw)
    stream.flush()


def _read_exactly(stream: BinaryIO, size: int) -> bytearray:
    buffer = bytearray(size)
    if size and stream.readinto(buffer) != size:  # a buffered pipe fills the whole buffer unless it closed
        raise EOFError("pipe closed mid-frame")
    return buffer


def _recv(stream: BinaryIO, region: memoryview | None = None, copy: bool = False) -> Any:
    """One frame of ``_send``. Arrays in the shared region are views of it unless ``copy`` (the converter
    copies what it receives: the region is written again with the next chunk)."""
    head = stream.read(_HEAD.size)
    if len(head) < _HEAD.size:
        raise EOFError("pipe closed")
    size, count = _HEAD.unpack(head)
    where = list(_WHERE.iter_unpack(_read_exactly(stream, _WHERE.size * count)))
    data = _read_exactly(stream, size)
    buffers: list[Any] = []
    for offset, nbytes in where:
        if offset < 0:
            buffers.append(_read_exactly(stream, nbytes))
        elif region is None or offset + nbytes > len(region):
            raise EOFError("frame names shared memory this process does not have")
        else:
            view = region[offset : offset + nbytes]
            buffers.append(bytearray(view) if copy else view)
    return pickle.loads(data, buffers=buffers)


def _shared_memory() -> tuple[int, mmap.mmap] | None:
    """An anonymous memory file for both directions' regions (Linux: memfd), or None (pipes only)."""
    if not hasattr(os, "memfd_create"):
        return None
    try:
        fd = os.memfd_create("vrcap-chunk-builder", os.MFD_CLOEXEC)
    except OSError:
        return None
    try:
        os.ftruncate(fd, 2 * REGION_BYTES)  # pages exist only once written
        return fd, mmap.mmap(fd, 2 * REGION_BYTES)
    except OSError:
        os.close(fd)
        return None


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
        shared = _shared_memory()
        self._map, self._to_child, self._to_parent = None, None, None
        fds = (to_child_r, from_child_w) + ((shared[0],) if shared else ())
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "replay.chunk_process", *map(str, fds)],
                pass_fds=fds,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
            )
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
            if shared:
                os.close(shared[0])  # the mapping stays; the child has its own descriptor
        if shared:
            self._map = shared[1]
            view = memoryview(self._map)
            self._to_child, self._to_parent = view[:REGION_BYTES], view[REGION_BYTES:]
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
            _send(self._out, (function, args), self._to_child)
        except (OSError, ValueError) as exc:  # ValueError: the pipe was closed on our side
            raise WorkerGone(str(exc)) from exc

    def receive(self) -> Any:
        """The oldest reply's value, or its exception raised here."""
        try:
            ok, value = _recv(self._in, self._to_parent, copy=True)
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
        if self._map is not None:
            for view in (self._to_child, self._to_parent):
                if view is not None:
                    view.release()
            with contextlib.suppress(BufferError):  # a view still held elsewhere: the mapping goes with it
                self._map.close()
            self._map = self._to_child = self._to_parent = None


def _serve(read_fd: int, write_fd: int, shared_fd: int | None = None) -> None:
    import signal

    from replay import chunk_builder
    from replay.heap import keep_heap_now

    keep_heap_now()  # this process only builds chunks: their arrays reuse pages (replay/heap.py)

    # Ctrl-C reaches the whole process group: the converter decides (it stops, or finishes the chunk it
    # waits for), and this process exits when the converter closes its pipe or exits.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    functions = {"build": chunk_builder.build_elsewhere, "pid": os.getpid}
    requests_region = replies_region = None
    if shared_fd is not None:
        view = memoryview(mmap.mmap(shared_fd, 2 * REGION_BYTES))
        requests_region, replies_region = view[:REGION_BYTES], view[REGION_BYTES:]
    with os.fdopen(read_fd, "rb") as requests, os.fdopen(write_fd, "wb") as replies:
        while True:
            try:
                name, args = _recv(requests, requests_region)
            except EOFError:
                return  # the converter closed the pipe or exited
            try:
                reply: tuple[bool, Any] = (True, functions[name](*args))
            except Exception as exc:  # handed back and raised by the caller, as on the thread
                reply = (False, exc)
            try:
                _send(replies, reply, replies_region)
            except (pickle.PicklingError, TypeError, AttributeError):
                _send(replies, (False, RuntimeError(f"{type(reply[1]).__name__}: {reply[1]}")))


if __name__ == "__main__":
    _serve(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else None)
