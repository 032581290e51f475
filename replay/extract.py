"""One pass over a session's packets, gathering each stream in the shape alignment needs.

Poses, controls, audio and text are small and kept whole (a few hundred KB per recorded second). Camera
frames are not: ``CameraSelector`` keeps, per step, only the best candidate frame's JPEG bytes, and decodes
each step as soon as no later frame can be nearer — memory stays at a few frames per camera.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
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


@dataclass
class ArrayStream:
    """Samples of one fixed-shape stream: host times, raw bytes, validity bits."""

    descriptor: StreamDescriptor
    times: list[int] = field(default_factory=list)
    data: list[bytes] = field(default_factory=list)
    valid: list[int] = field(default_factory=list)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Times (N,) int64 sorted, values (N, *shape) float32, valid (N,) bool (position + orientation)."""
        d = self.descriptor
        shape = tuple(d.shape)
        times = np.asarray(self.times, np.int64)
        item = int(np.prod(shape)) * np.dtype(d.dtype).itemsize
        sizes = np.fromiter(map(len, self.data), np.int64, len(self.data))
        good = sizes == item  # a wrong-sized sample is dropped, not guessed
        kept = self.data if good.all() else [b for b, ok in zip(self.data, good, strict=True) if ok]
        values = np.frombuffer(b"".join(kept), dtype=np.dtype(d.dtype).newbyteorder("<"))
        values = values.reshape(len(kept), *shape).astype(np.float32)
        times = times[good]
        valid = (np.asarray(self.valid, np.int64)[good] & POSE_VALID) == POSE_VALID
        order = np.argsort(times, kind="stable")
        return times[order], values[order], valid[order]


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

    def finish(self, steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(S, 3, H, W) uint8, frame numbers (S,) int64 (-1 masked), mask (S,)."""
        self._flush(before=float("inf"))
        images = np.zeros((steps, 3, *self.out_hw), np.uint8)
        frames = np.full(steps, -1, np.int64)
        mask = np.zeros(steps, bool)
        failed: set[int] = set()
        for k, (frame, future) in self._chosen.items():
            image = future.result()
            if image is None:
                failed.add(id(future))
            elif k < steps:
                images[k], frames[k], mask[k] = image, frame, True
        self.undecodable = len(failed)
        return images, frames, mask


@dataclass
class Collected:
    """Everything one pass gathered."""

    first_t: int | None = None
    last_t: int | None = None
    packets: int = 0
    arrays: dict[str, ArrayStream] = field(default_factory=dict)
    audio: AudioAccumulator | None = None  # audio features, computed on a worker thread while reading
    texts: list[tuple[int, str, str]] = field(default_factory=list)  # (t, channel, text)
    cameras: dict[str, CameraSelector] = field(default_factory=dict)

    def close(self) -> None:
        """Drop what was gathered (a refused session): queued frame decodes are cancelled, not run."""
        for selector in self.cameras.values():
            for future in selector._pending:
                future.cancel()
        self.cameras.clear()
        self.arrays.clear()
        if self.audio is not None:
            self.audio.close()


def camera_streams(meta: SessionMeta) -> list[StreamDescriptor]:
    return [s for s in meta.streams if s.kind == "video" and s.encoding in ("jpeg", "png")]


def tensor_camera_name(stream: str) -> str:
    """``camera_left`` -> ``left``: the tensor is ``camera.left``."""
    return stream.removeprefix("camera_")


def collect(
    packets: Iterable[dict[str, Any]],
    meta: SessionMeta,
    rate_hz: float,
    tolerance_ns: float,
    image_size: int,
    crop: bool,
    audio_layout: AudioLayout,
) -> Collected:
    """Read every packet once; the step clock starts at the first packet's frame time."""
    out = Collected()
    kinds = {s.name: s for s in meta.streams}
    wanted = set(POSE_STREAMS + HAND_STREAMS + CONTROL_STREAMS)
    audio = audio_stream(meta)
    audio_name = audio.name if audio is not None else None
    text_names = {s.name for s in meta.streams if s.kind == "text"}
    cams = {s.name for s in camera_streams(meta)}
    arrays = out.arrays
    for packet in packets:
        t = int(packet["t"])
        if out.first_t is None:
            out.first_t = t
            for name in sorted(cams):
                out.cameras[name] = CameraSelector(kinds[name], t, rate_hz, tolerance_ns, image_size, crop)
            if audio_name is not None:
                clock = meta.clocks.get(audio_name)
                out.audio = AudioAccumulator(audio_layout, clock, t, rate_hz, stream=not cams)
        out.last_t = t
        out.packets += 1
        for name, items in (packet.get("s") or {}).items():
            stream = arrays.get(name)
            if stream is None and name in wanted and name in kinds:
                stream = arrays[name] = ArrayStream(kinds[name])
            if stream is not None:  # the hot path: ~10 pose-like samples a frame
                times, data, valid = stream.times, stream.data, stream.valid
                for sample in items:
                    times.append(sample[S_TIME])
                    data.append(sample[S_DATA])
                    valid.append(sample.get(S_VALID, POSE_VALID))
            elif name == audio_name:
                assert out.audio is not None
                for sample in items:
                    out.audio.add(int(sample[S_INDEX]), sample[S_DATA], int(sample[S_TIME]))
            elif name in cams:
                selector = out.cameras[name]
                for sample in items:
                    selector.add(int(sample[S_TIME]), int(sample.get(S_FRAME, -1)), sample[S_DATA])
            elif name in text_names:
                for sample in items:
                    d = sample.get(S_DATA)
                    if isinstance(d, dict) and isinstance(d.get("text"), str):
                        out.texts.append((int(sample[S_TIME]), str(d.get("channel", "external")), d["text"]))
    return out
