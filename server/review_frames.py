"""One camera image of a finished session by time, decoded at reduced size and re-encoded as a small JPEG.

Random access through the session's index: the packet current at the time, then a few packets either side for
the camera sample nearest to it (a camera delivers less often than the headset). OpenCV decodes at 1/2, 1/4 or
1/8 scale straight from the JPEG (``IMREAD_REDUCED_COLOR_*``), so a 320-pixel thumbnail of a 1280-pixel frame
costs a fraction of a full decode. cv2 releases the GIL while it decodes and encodes: a thread is enough here.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vrcap.packets import S_DATA, S_TIME, SAMPLES
from vrcap.reader import SessionReader

LOOK_AROUND = 48  # packets searched either side of the one current at the time
OPEN_READERS = 4  # sessions kept open between requests: playing one asks for a frame every few hundred ms
JPEG_QUALITY = 80
REDUCED = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))


class NoFrame(LookupError):
    """The session holds no image of that camera near that time (or no such camera)."""


@dataclass(frozen=True)
class Thumbnail:
    jpeg: bytes
    t_s: float  # the image's own time, seconds from the session's first frame
    width: int
    height: int


class _Open:
    def __init__(self, path: Path) -> None:
        self.reader = SessionReader(path)
        self.times = self.reader.index.times
        self.seqs = self.reader.index.seqs
        self.lock = threading.Lock()  # a reader's segment maps are filled lazily: one request at a time


class FrameSource:
    """Open readers of recently reviewed sessions, keyed by the session.json version they were opened at."""

    def __init__(self) -> None:
        self._open: OrderedDict[tuple[str, object], _Open] = OrderedDict()
        self._lock = threading.Lock()

    def _get(self, path: Path, key: object) -> _Open:
        with self._lock:
            entry = self._open.get((str(path), key))
            if entry is not None:
                self._open.move_to_end((str(path), key))
                return entry
        entry = _Open(path)  # outside the lock: loading an index reads a file
        with self._lock:
            other = self._open.get((str(path), key))
            if other is not None:  # another thread opened it meanwhile: keep one
                entry.reader.close()
                return other
            self._open[(str(path), key)] = entry
            while len(self._open) > OPEN_READERS:
                _, old = self._open.popitem(last=False)
                old.reader.close()
        return entry

    def thumbnail(self, path: Path, key: object, camera: str, t_s: float, width: int) -> Thumbnail:
        entry = self._get(path, key)
        stream = entry.reader.meta.stream(camera)
        if stream is None or stream.kind != "video":
            raise NoFrame(f"the session has no camera {camera!r}")
        if not len(entry.times):
            raise NoFrame("the session holds no frames")
        t0 = int(entry.times[0])
        target = t0 + int(t_s * 1e9)
        i = int(np.searchsorted(entry.times, target, side="right")) - 1
        lo, hi = max(i - LOOK_AROUND, 0), min(i + LOOK_AROUND, len(entry.times) - 1)
        best: tuple[int, bytes] | None = None
        with entry.lock:
            for j in range(max(i, 0), lo - 1, -1):  # backwards first: the image shown is the last one taken
                best = _nearest(entry.reader.packet_at(int(entry.seqs[j])), camera, target, best)
                if best is not None and best[0] <= target:
                    break
            if best is None or best[0] > target:
                for j in range(max(i, 0) + 1, hi + 1):
                    best = _nearest(entry.reader.packet_at(int(entry.seqs[j])), camera, target, best)
                    if best is not None:
                        break
        if best is None:
            raise NoFrame(f"no {camera} image within {LOOK_AROUND} frames of {t_s:.2f} s")
        return _small(
            best[1], int(stream.shape[1]) if len(stream.shape) > 1 else width, width, (best[0] - t0) / 1e9
        )

    def close(self) -> None:
        with self._lock:
            for entry in self._open.values():
                entry.reader.close()
            self._open.clear()


def _nearest(
    packet: dict[str, object], camera: str, target: int, best: tuple[int, bytes] | None
) -> tuple[int, bytes] | None:
    """The better of ``best`` and this packet's images: the latest at or before ``target``, else the earliest."""
    samples = packet.get(SAMPLES, {})
    for sample in samples.get(camera, []) if isinstance(samples, dict) else []:
        t = int(sample[S_TIME])
        if best is None or _better(t, best[0], target):
            best = (t, bytes(sample[S_DATA]))
    return best


def _better(t: int, than: int, target: int) -> bool:
    if t <= target:
        return than > target or t > than  # at or before the time, the latest wins over anything after it
    return than > target and t < than  # after the time only while nothing before it is known: the earliest


def _small(encoded: bytes, source_width: int, width: int, t_s: float) -> Thumbnail:
    buffer = np.frombuffer(encoded, dtype=np.uint8)
    flag = next((f for r, f in REDUCED if source_width // r >= width), cv2.IMREAD_COLOR)
    image = cv2.imdecode(buffer, flag)
    if image is None:
        raise NoFrame("the stored image does not decode")
    h, w = image.shape[:2]
    if w > width:
        image = cv2.resize(image, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
    ok, out = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise NoFrame("the image could not be encoded")
    return Thumbnail(out.tobytes(), round(t_s, 4), image.shape[1], image.shape[0])
