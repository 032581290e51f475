"""Where a chunk's tensors are built: in a process of its own beside the reader, or on a thread.

Why a process: the reader (decoding, validation, gathering samples) and the builder (interpolation, log-mel)
are both Python that holds the GIL most of the time. On a thread the two ran one after the other: for 60 s of
poses + audio the reader took 0.13 s and the builder 0.25 s alone, and 0.37-0.46 s side by side. In a process
of its own the builder runs on another core while the reader goes on. Camera frames never cross: they are
decoded on the reader process's own pool (cv2 releases the GIL) and joined to the chunk's other tensors here,
so only samples, audio blocks and the finished arrays travel (a few MB per 10 s chunk).

The process (replay.chunk_process) is started once per converting process and kept for every session after (the first session pays
its start). Worker processes (``--workers N``, Dask) keep the thread: their sessions already fill the cores;
so do sessions with cameras, where the JPEG decodes do.
Either way the shard's bytes are the same: the same function builds the same chunk from the same input.
"""

from __future__ import annotations

import atexit
import dataclasses
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from replay.audio_stream import AudioLayout
from replay.chunk_process import BuilderProcess, WorkerGone
from replay.config import ReplayConfig
from replay.extract import ChunkInput, camera_streams
from replay.tensors import ChunkTensors, Periods, add_cameras, build_chunk, build_samples
from vrcap.metadata import SessionMeta

_PROCESS: BuilderProcess | None = None
_UNAVAILABLE = False  # the process could not be started or died: the thread from then on


def resolve(mode: str, cameras: bool = False) -> str:
    """``auto``: a process when this is a top-level process on a machine with two cores or more and the
    session has no camera to convert. A worker process of a pool or a Dask worker has ``parent_process()``
    and converts on a thread; so does a session with cameras, whose JPEG decodes already fill the cores (two
    640x480 cameras: 16.0-17.3x real time either way, measured) and where the process would only add its
    ~100 MB."""
    if mode != "auto":
        return mode
    top_level = multiprocessing.parent_process() is None
    wanted = top_level and not cameras and (os.cpu_count() or 1) >= 2 and os.name == "posix"  # pass_fds
    return "process" if wanted and not _UNAVAILABLE else "thread"


def builder_process() -> BuilderProcess:
    """The converter's builder process, started on first use and kept (closed at exit)."""
    global _PROCESS
    if _PROCESS is None or not _PROCESS.alive():
        if _PROCESS is not None:
            _PROCESS.close()
        _PROCESS = BuilderProcess()
    return _PROCESS


def _give_up(process: BuilderProcess | None) -> None:
    global _PROCESS, _UNAVAILABLE
    _UNAVAILABLE = True
    if process is not None:
        process.close()
    _PROCESS = None


@atexit.register
def _close() -> None:
    if _PROCESS is not None:
        _PROCESS.close()


def build_elsewhere(
    chunk: ChunkInput, meta: SessionMeta, config: ReplayConfig, layout: AudioLayout, known: dict[str, float]
) -> tuple[ChunkTensors, dict[str, float]]:
    """Runs in the builder process: the chunk's tensors but its cameras, and the periods fixed so far."""
    periods = Periods(meta, known)
    return build_samples(chunk, meta, config, layout, periods), periods.known


class ChunkBuilder:
    """Builds one session's chunks in order: ``submit`` a chunk, and call what it returns (which waits for
    the tensors) before the next ``submit``.

    In the process, ``submit`` only sends the chunk's samples (the caller, the reader, goes on at once) and
    the wait receives the child's reply and adds the camera tensors: the reader's process then runs one Python
    thread, and nothing takes the GIL from the reader while it decodes. On the thread, ``submit`` queues the
    build beside the reader, as before the process existed.
    """

    def __init__(
        self, meta: SessionMeta, config: ReplayConfig, layout: AudioLayout, periods: Periods, mode: str
    ) -> None:
        self.meta, self.config, self.layout, self.periods = meta, config, layout, periods
        self.mode = resolve(mode, cameras=bool(camera_streams(meta)))
        self._process: BuilderProcess | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._unread = 0  # replies the child owes us: read before the process serves another session
        if self.mode == "process":
            try:
                process = builder_process()  # starts importing while the first chunk is read
            except (OSError, ValueError):  # no such executable, no pass_fds (not POSIX)
                _give_up(None)
            else:
                if process.claim():
                    self._process = process
        if self._process is None:
            self.mode = "thread"
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="vrcap-chunk")

    def __enter__(self) -> ChunkBuilder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._process is not None:
            try:
                while self._unread:  # a refused session stops early: its last reply must not reach the next
                    self._unread -= 1
                    self._process.receive()
            except WorkerGone:
                self._fall_back()
            except Exception:  # a failed build of a chunk nobody waits for any more
                pass
        if self._process is not None:
            self._process.release()
            self._process = None
        if self._thread is not None:
            self._thread.shutdown(wait=True, cancel_futures=True)

    def submit(self, chunk: ChunkInput) -> Callable[[], ChunkTensors]:
        """Start building ``chunk``; the returned function waits for its tensors."""
        if self._process is not None:
            packed = {name: columns.packed() for name, columns in chunk.arrays.items()}
            bare = dataclasses.replace(chunk, arrays=packed, cameras={})
            try:
                self._process.send("build", bare, self.meta, self.config, self.layout, self.periods.known)
            except WorkerGone:
                self._fall_back()
            else:
                self._unread += 1
                return lambda: self._receive(chunk)
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="vrcap-chunk")
        future = self._thread.submit(build_chunk, chunk, self.meta, self.config, self.layout, self.periods)
        return future.result

    def _receive(self, chunk: ChunkInput) -> ChunkTensors:
        if self._process is None:  # the process went away after this chunk was sent
            return build_chunk(chunk, self.meta, self.config, self.layout, self.periods)
        try:
            self._unread -= 1
            out, known = self._process.receive()
        except WorkerGone:  # killed mid-chunk: this chunk again here, and every later one
            self._fall_back()
            return build_chunk(chunk, self.meta, self.config, self.layout, self.periods)
        self.periods.known.update(known)
        add_cameras(out, chunk)
        return out

    def _fall_back(self) -> None:
        _give_up(self._process)
        self._process, self.mode = None, "thread"
