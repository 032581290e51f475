"""One pass over a session's packets, handing out a chunk of steps at a time once no later packet can change it.

Why chunks: held whole, a session's samples, audio and decoded frames grew memory with its length (781 MB for
five minutes). ``SessionCollector`` keeps what the next chunk needs — samples back to the longest gap that can
still bridge a step, audio blocks a window can reach, camera frames chosen but not yet written — and emits chunk
k0..k1-1 once the packets have run ``lookahead`` past step k1. Camera frames are not kept as pixels:
``CameraSelector`` keeps, per step, only the best candidate frame's JPEG bytes and decodes each step as soon as
no later frame can be nearer, on a thread pool.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import chain, repeat
from operator import itemgetter
from typing import Any

import cv2
import numpy as np

from replay.audio_stream import AudioAccumulator, AudioLayout, audio_stream
from replay.images import decode_frame, output_shape
from vrcap.metadata import SessionMeta
from vrcap.packets import (
    POSE_ORIENTATION_VALID,
    POSE_POSITION_VALID,
    S_DATA,
    S_FRAME,
    S_INDEX,
    S_TIME,
    S_VALID,
)
from vrcap.streams import StreamDescriptor

POSE_STREAMS = ("head", "controller_left", "controller_right")
HAND_STREAMS = ("hand_left", "hand_right")
CONTROL_STREAMS = ("controls_left", "controls_right")
POSE_VALID = POSE_ORIENTATION_VALID | POSE_POSITION_VALID


class ArrayStream:
    """Samples of one fixed-shape stream: host times, raw bytes, validity bits.

    Why lists of sample lists: ``add`` keeps each packet's list of samples as it is (one append a packet), and
    the fields are pulled out into columns only when a chunk needs them, in C (``map`` with ``itemgetter``),
    instead of three appends per sample in Python.
    """

    def __init__(self, descriptor: StreamDescriptor) -> None:
        self.descriptor = descriptor
        self.times: list[int] = []
        self.data: list[bytes] = []
        self.valid: list[int] = []
        self._pending: list[list[dict[str, Any]]] = []

    def add(self, samples: list[dict[str, Any]]) -> None:
        self._pending.append(samples)

    def __bool__(self) -> bool:
        return bool(self.times) or any(self._pending)

    def _settle(self) -> None:
        """Move the pending samples into the columns."""
        if not self._pending:
            return
        flat = list(chain.from_iterable(self._pending))
        self._pending = []
        self.times.extend(map(_get_time, flat))
        self.data.extend(map(_get_data, flat))
        self.valid.extend(map(dict.get, flat, repeat(S_VALID), repeat(POSE_VALID)))  # no bound method a call

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Times (N,) int64 sorted, values (N, *shape) float32, valid (N,) bool (position + orientation)."""
        return self.snapshot().arrays()

    def snapshot(self) -> StreamColumns:
        """The samples so far, to be made into arrays elsewhere (the list copies are pointers only)."""
        self._settle()
        return StreamColumns(self.descriptor, list(self.times), list(self.data), list(self.valid))

    def forget_before(self, t: float) -> None:
        """Drop samples older than ``t`` (no later step can bridge to them)."""
        self._settle()
        times = np.asarray(self.times, np.int64)
        keep = np.nonzero(times >= t)[0]
        if keep.size == times.size:
            return
        if keep.size and keep[-1] - keep[0] + 1 == keep.size:  # the usual case: a tail
            first = int(keep[0])
            del self.times[:first], self.data[:first], self.valid[:first]
        else:
            idx = keep.tolist()
            self.times = [self.times[i] for i in idx]
            self.data = [self.data[i] for i in idx]
            self.valid = [self.valid[i] for i in idx]


@dataclass
class StreamColumns:
    """One stream's samples at the end of a chunk, as plain lists: ``arrays()`` runs on the chunk builder's
    thread, so the reader only copies list pointers."""

    descriptor: StreamDescriptor
    times: list[int]
    data: list[bytes]
    valid: list[int]

    def packed(self) -> PackedColumns:
        """The same samples as a few flat buffers: what crosses to the builder process (one pickled buffer
        each instead of thousands of small objects; replay/chunk_builder.py)."""
        return PackedColumns(
            self.descriptor,
            np.asarray(self.times, np.int64),
            np.frombuffer(b"".join(self.data), np.uint8),  # an array: shared with the builder, not pickled
            np.fromiter(map(len, self.data), np.int64, len(self.data)),
            np.asarray(self.valid, np.int64),
        )

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Times (N,) int64 sorted, values (N, *shape) float32, valid (N,) bool (position + orientation)."""
        return self.packed().arrays()


@dataclass
class PackedColumns:
    """One stream's samples as arrays and one byte string of every sample's data back to back."""

    descriptor: StreamDescriptor
    times: np.ndarray  # (N,) int64, as received
    blob: np.ndarray  # (bytes,) uint8: the N samples' data, joined
    sizes: np.ndarray  # (N,) int64 bytes of each sample's data
    valid: np.ndarray  # (N,) int64 validity bits

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Times (N,) int64 sorted, values (N, *shape) float32, valid (N,) bool (position + orientation)."""
        d = self.descriptor
        shape = tuple(d.shape)
        item = int(np.prod(shape)) * np.dtype(d.dtype).itemsize
        good = self.sizes == item  # a wrong-sized sample is dropped, not guessed
        blob = self.blob
        if not good.all():
            ends = np.cumsum(self.sizes)
            starts = ends - self.sizes
            blob = b"".join(
                blob[a:b] for a, b in zip(starts[good].tolist(), ends[good].tolist(), strict=True)
            )
        values = np.frombuffer(blob, dtype=np.dtype(d.dtype).newbyteorder("<"))
        values = values.reshape(int(good.sum()), *shape).astype(np.float32)
        times = self.times[good]
        valid = (self.valid[good] & POSE_VALID) == POSE_VALID
        order = np.argsort(times, kind="stable")
        return times[order], values[order], valid[order]


_get_time = itemgetter(S_TIME)
_get_data = itemgetter(S_DATA)


def _ignore(items: list[dict[str, Any]]) -> None:
    """Samples of a stream replay does not convert."""


def _decoder_pool() -> ThreadPoolExecutor:
    """Threads for JPEG decoding: cv2.imdecode releases the GIL, and entropy decoding (~1 ms for a 640x480
    q90 frame, even at reduced scale) is what bounds camera conversion."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="vrcap-decode")
    return _POOL


_POOL: ThreadPoolExecutor | None = None
_MAX_PENDING = 64  # decodes in flight per camera: bounds the JPEG bytes held when reading outruns decoding


class CameraSelector:
    """Nearest frame per step within a tolerance, decided while streaming and decoded on a thread pool."""

    def __init__(
        self,
        descriptor: StreamDescriptor,
        t0: int,
        rate_hz: float,
        tolerance_ns: float,
        size: int,
        crop: bool,
    ) -> None:
        self.t0, self.period, self.tol = t0, 1e9 / rate_hz, tolerance_ns
        self.size, self.crop, self.encoding = size, crop, descriptor.encoding
        shape = tuple(descriptor.shape)
        self.src_hw = (int(shape[0]), int(shape[1])) if len(shape) >= 2 else (0, 0)
        h, w = self.src_hw if self.src_hw[0] > 0 else (size, size)
        self.out_hw = output_shape(h, w, size, crop)
        self._best: dict[int, tuple[float, int, int, bytes]] = {}  # step -> (|dt|, t, frame number, bytes)
        self._chosen: dict[int, tuple[int, Future[np.ndarray | None]]] = {}  # step -> (frame number, decode)
        self._last: tuple[int, Future[np.ndarray | None]] | None = (
            None  # a frame shared by neighbouring steps
        )
        self._pending: deque[Future[np.ndarray | None]] = deque()
        self.undecodable = 0

    def _step_time(self, k: int) -> int:
        return self.t0 + round(k * self.period)

    def add(self, t: int, frame: int, data: bytes) -> None:
        lo = max(0, int(np.ceil((t - self.tol - self.t0) / self.period)) - 1)
        hi = int(np.floor((t + self.tol - self.t0) / self.period)) + 1
        for k in range(lo, hi + 1):
            dt = abs(t - self._step_time(k))
            if dt <= self.tol and (k not in self._best or dt < self._best[k][0]):
                self._best[k] = (dt, t, frame, data)
        self._flush(before=t - self.tol)

    def _flush(self, before: float) -> None:
        """Start decoding steps whose window closed (no later frame can be nearer)."""
        done = [k for k in self._best if self._step_time(k) < before]
        for k in sorted(done):
            _, t, frame, data = self._best.pop(k)
            if self._last is None or self._last[0] != t:
                while len(self._pending) >= _MAX_PENDING:
                    self._pending.popleft().result()
                future = _decoder_pool().submit(self._decode, data)
                self._pending.append(future)
                self._last = (t, future)
            self._chosen[k] = (frame, self._last[1])

    def _decode(self, data: bytes) -> np.ndarray | None:
        image = decode_frame(data, self.src_hw, self.size, self.crop, self.encoding)
        if image is not None and image.shape[1:] != self.out_hw:
            image = cv2.resize(image.transpose(1, 2, 0), self.out_hw[::-1]).transpose(2, 0, 1)
        return image

    def take(self, k0: int, k1: int) -> CameraChunk:
        """Steps k0..k1-1, whose frames have all arrived: their chosen frames (decodes may still run)."""
        self._flush(
            before=self._step_time(k1)
        )  # steps before k1 only: later ones may still get nearer frames
        chosen = {k: self._chosen.pop(k) for k in range(k0, k1) if k in self._chosen}
        for k in [k for k in self._chosen if k < k0]:  # cannot happen with ordered packets; never kept
            del self._chosen[k]
        return CameraChunk(k0, k1, self.out_hw, chosen)


@dataclass
class CameraChunk:
    """One camera's frames for steps k0..k1-1: ``images()`` waits for their decodes."""

    k0: int
    k1: int
    out_hw: tuple[int, int]
    chosen: dict[int, tuple[int, Future[np.ndarray | None]]]

    def images(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """(n, 3, H, W) uint8, frame numbers (n,) int64 (-1 masked), mask (n,), frames that did not decode."""
        n = self.k1 - self.k0
        images = np.zeros((n, 3, *self.out_hw), np.uint8)
        frames = np.full(n, -1, np.int64)
        mask = np.zeros(n, bool)
        failed: set[int] = set()
        for k, (frame, future) in self.chosen.items():
            image = future.result()
            if image is None:
                failed.add(id(future))
            else:
                i = k - self.k0
                images[i], frames[i], mask[i] = image, frame, True
        return images, frames, mask, len(failed)


@dataclass
class ChunkInput:
    """What chunk k0..k1-1 is built from; built on another thread while the reader goes on."""

    k0: int
    k1: int
    steps: np.ndarray  # (k1 - k0,) int64 step times
    arrays: dict[str, StreamColumns | PackedColumns]  # stream -> its samples; .arrays(): times, values, valid
    audio: Any  # replay.audio_stream.AudioChunk, or None without an audio stream
    cameras: dict[str, CameraChunk]
    texts: list[
        tuple[int, str, str]
    ]  # (step in the chunk, channel, text): text events already placed on their step


def camera_streams(meta: SessionMeta) -> list[StreamDescriptor]:
    return [s for s in meta.streams if s.kind == "video" and s.encoding in ("jpeg", "png")]


def tensor_camera_name(stream: str) -> str:
    """``camera_left`` -> ``left``: the tensor is ``camera.left``."""
    return stream.removeprefix("camera_")


class SessionCollector:
    """Reads packets one by one (``add``) and hands each finished chunk of steps to ``emit``.

    The step clock starts at the first packet's frame time. Chunk k0..k1-1 is emitted once a packet's frame time
    passes t_{k1} + ``lookahead_ns``: by then every sample that can shape those steps has arrived (samples come
    at most a few frames late). ``finish()`` emits the rest, up to the last step at or before the last packet,
    and returns the number of steps. Text events are placed on their step as they come; one that comes after its
    step was emitted goes to the next step still open (moved, never lost).
    """

    def __init__(
        self,
        meta: SessionMeta,
        rate_hz: float,
        tolerance_ns: float,
        image_size: int,
        crop: bool,
        audio_layout: AudioLayout,
        chunk_steps: int,
        lookahead_ns: float,
        keep_ns: dict[str, float],
        emit: Callable[[ChunkInput], None],
    ) -> None:
        self.meta, self.rate_hz, self.period = meta, rate_hz, 1e9 / rate_hz
        self.tolerance_ns, self.image_size, self.crop = tolerance_ns, image_size, crop
        self.audio_layout, self.chunk_steps, self.lookahead_ns = (
            audio_layout,
            max(1, chunk_steps),
            lookahead_ns,
        )
        self.keep_ns = keep_ns  # stream -> how far back a step may still bridge to a sample
        self.emit = emit
        self.first_t: int | None = None
        self.last_t: int | None = None
        self.packets = 0
        self.emitted = 0  # steps handed out
        self._emit_at = float("inf")  # the packet time that completes the next chunk
        self.arrays: dict[str, ArrayStream] = {}
        self.audio: AudioAccumulator | None = None
        self.cameras: dict[str, CameraSelector] = {}
        self.texts: list[tuple[int, str, str]] = []  # (t, channel, text) not yet emitted
        self._kinds = {s.name: s for s in meta.streams}
        self._wanted = set(POSE_STREAMS + HAND_STREAMS + CONTROL_STREAMS)
        audio = audio_stream(meta)
        self._audio_name = audio.name if audio is not None else None
        self._text_names = {s.name for s in meta.streams if s.kind == "text"}
        self._cams = {s.name for s in camera_streams(meta)}
        self._handlers: dict[str, Callable[[list[dict[str, Any]]], None]] = {}

    def step_time(self, k: int) -> int:
        assert self.first_t is not None
        return self.first_t + round(k * self.period)

    def add(self, packet: dict[str, Any]) -> None:
        t = int(packet["t"])
        if self.first_t is None:
            self._start(t)
        self.last_t = t
        self.packets += 1
        handlers = self._handlers
        for name, items in (packet.get("s") or {}).items():
            handler = handlers.get(name)
            if handler is None:
                handler = handlers[name] = self._handler(name)
            handler(items)
        while t >= self._emit_at:
            self._emit(self.emitted + self.chunk_steps, final=False)
            self._emit_at = self.step_time(self.emitted + self.chunk_steps) + self.lookahead_ns

    def _handler(self, name: str) -> Callable[[list[dict[str, Any]]], None]:
        """What ``add`` does with a stream's samples, decided once per stream name (the hot loop then makes
        one call per stream and packet: pose-like samples are kept as the packet's list, split later)."""
        if name in self._wanted and name in self._kinds:
            stream = self.arrays[name] = ArrayStream(self._kinds[name])
            return stream.add
        if name == self._audio_name:
            return self._add_audio
        if name in self._cams:
            return self._camera_adder(self.cameras[name])
        if name in self._text_names:
            return self._add_texts
        return _ignore

    def _add_audio(self, items: list[dict[str, Any]]) -> None:
        assert self.audio is not None
        for sample in items:
            self.audio.add(int(sample[S_INDEX]), sample[S_DATA], int(sample[S_TIME]))

    @staticmethod
    def _camera_adder(selector: CameraSelector) -> Callable[[list[dict[str, Any]]], None]:
        def add(items: list[dict[str, Any]]) -> None:
            for sample in items:
                selector.add(int(sample[S_TIME]), int(sample.get(S_FRAME, -1)), sample[S_DATA])

        return add

    def _add_texts(self, items: list[dict[str, Any]]) -> None:
        for sample in items:
            d = sample.get(S_DATA)
            if isinstance(d, dict) and isinstance(d.get("text"), str):
                self.texts.append((int(sample[S_TIME]), str(d.get("channel", "external")), d["text"]))

    def _start(self, t: int) -> None:
        self.first_t = t
        self._emit_at = self.step_time(self.chunk_steps) + self.lookahead_ns  # packet time of the first chunk
        for name in sorted(self._cams):
            self.cameras[name] = CameraSelector(
                self._kinds[name], t, self.rate_hz, self.tolerance_ns, self.image_size, self.crop
            )
        if self._audio_name is not None:
            self.audio = AudioAccumulator(
                self.audio_layout, self.meta.clocks.get(self._audio_name), t, self.rate_hz
            )

    def finish(self) -> int:
        """Emit every step left; the number of steps in the session."""
        if self.first_t is None or self.last_t is None:
            total = 0
        else:
            total = int(
                np.floor((self.last_t - self.first_t) / self.period + 1e-9) + 1
            )  # as align.step_times counts them
        while self.emitted < total:
            self._emit(
                min(total, self.emitted + self.chunk_steps), final=self.emitted + self.chunk_steps >= total
            )
        if total == 0:  # an empty session still has every tensor, with no rows
            self._emit(0, final=True)
        return total

    def _emit(self, k1: int, final: bool) -> None:
        k0 = self.emitted
        steps = (
            np.zeros(0, np.int64)
            if self.first_t is None
            else self.first_t + np.round(np.arange(k0, k1) * self.period).astype(np.int64)
        )
        arrays = {name: stream.snapshot() for name, stream in self.arrays.items() if stream}
        if self.first_t is not None:
            t_next = self.step_time(k1)
            for name, stream in self.arrays.items():
                stream.forget_before(t_next - self.keep_ns.get(name, 0.0))
        audio = self.audio.take(k0, k1) if self.audio is not None else None
        cameras = {name: sel.take(k0, k1) for name, sel in sorted(self.cameras.items())}
        texts: list[tuple[int, str, str]] = []
        if self.texts and steps.size:
            end = float("inf") if final else self.step_time(k1)
            mine = [e for e in self.texts if e[0] < end]
            self.texts = [e for e in self.texts if e[0] >= end]
            where = np.searchsorted(steps, np.array([e[0] for e in mine], np.int64), side="right") - 1
            texts = [
                (int(np.clip(w, 0, steps.size - 1)), ch, text)
                for w, (_, ch, text) in zip(where.tolist(), mine, strict=True)
            ]
        self.emitted = k1
        self.emit(ChunkInput(k0, k1, steps, arrays, audio, cameras, texts))

    def close(self) -> None:
        """Drop what was gathered (a refused session): queued frame decodes are cancelled, not run."""
        for selector in self.cameras.values():
            for future in selector._pending:
                future.cancel()
        self.cameras.clear()
        self.arrays.clear()
        if self.audio is not None:
            self.audio.close()
