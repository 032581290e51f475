"""``lerobot.codec=mjpeg``: the recorded JPEG frames go into the mp4 as they are, with no decode and no re-encode.

Why: re-encoding is the LeRobot exporter's whole cost (AV1 ~52 ms and H.264 ~5 ms of CPU a frame here, see
docs/PERFORMANCE.md), while muxing a recorded JPEG as an MJPEG packet costs ~15 µs. The frames are then the
recording's own bytes (no second generation of compression), every frame is a keyframe (random access decodes one
JPEG), and FFmpeg-based readers (LeRobot's torchcodec and PyAV decoders) read MJPEG in mp4. The price is size: the
files are as large as the recorded camera streams (~2 MB/s a 640×480 q90 camera, 10–30× an AV1 file).

A step with no new camera frame repeats the previous JPEG (the step holds the last frame; a black JPEG before the
first), as the re-encoding path repeats the previous image. A JPEG whose header does not describe a frame of the
camera's size (a device that sent garbage) is replaced by the previous one, as the decoding path does.

Image statistics come from a sample of the frames: every ``STATS_EVERY``-th new one is decoded and read on the
same 1-in-8 pixel grid as the re-encoding path (LeRobot itself samples frames for its statistics); decoding every
frame would cost most of what the copy saves.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from replay.export.lerobot_meta import RunningStats
from replay.export.lerobot_video import STATS_GRID

STATS_EVERY = 4  # new frames between two decoded for image statistics
SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
# (horizontal, vertical) luma sampling over chroma -> FFmpeg's name for the decoded JPEG's pixel format
PIX_FMTS = {
    (2, 2): "yuvj420p",
    (2, 1): "yuvj422p",
    (1, 1): "yuvj444p",
    (4, 1): "yuvj411p",
    (1, 2): "yuvj440p",
}


def jpeg_frame(data: bytes) -> tuple[int, int, str] | None:
    """(height, width, pixel format) from a baseline or progressive JPEG's frame header; None if it is not one."""
    if data[:2] != b"\xff\xd8":
        return None
    pos, end = 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker in SOF_MARKERS:
            if pos + 4 + length - 2 > end or length < 8:
                return None
            height = int.from_bytes(data[pos + 5 : pos + 7], "big")
            width = int.from_bytes(data[pos + 7 : pos + 9], "big")
            components = data[pos + 9]
            if components == 1:
                return height, width, "gray"
            if components != 3 or length < 8 + 3 * components:
                return None
            luma, chroma = data[pos + 11], data[pos + 14]
            ratio = ((luma >> 4) // max(chroma >> 4, 1), (luma & 15) // max(chroma & 15, 1))
            return height, width, PIX_FMTS.get(ratio, "yuvj420p")
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            return None
        pos += 2 + length
    return None


def black_jpeg(height: int, width: int) -> bytes:
    ok, data = cv2.imencode(".jpg", np.zeros((height, width, 3), np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return data.tobytes()


class JpegCopier:
    """One camera's mp4 of recorded JPEGs, frame ``k`` at pts ``k`` in a 1/fps time base. Same interface as
    ``CameraWorker``: ``put(jpeg or None)`` per step, ``close()``; ``pix_fmt`` is what the frames decode to."""

    def __init__(self, path: Path, width: int, height: int, fps: Fraction, stats: RunningStats) -> None:
        import av

        self.path, self.stats = path, stats
        self.height, self.width = height, width
        self.frames = 0
        self.pix_fmt = "yuvj420p"  # until the first recorded frame says otherwise (the black frame is 4:2:0)
        self._av = av
        self._container: Any = av.open(str(path), "w", format="mp4")
        self._stream: Any = self._container.add_mux_stream("mjpeg", rate=fps, width=width, height=height)
        self._time_base = Fraction(1) / fps
        self._last = black_jpeg(height, width)
        self._new = 0
        self._first = True
        self._closed = False

    def put(self, encoded: bytes | None) -> None:
        if encoded is not None:
            frame = jpeg_frame(encoded)
            if frame is not None and frame[:2] == (self.height, self.width) and frame[2] != "gray":
                if self._first:
                    self.pix_fmt, self._first = frame[2], False
                self._last = encoded
                if self._new % STATS_EVERY == 0:
                    self._add_stats(encoded)
                self._new += 1
        packet = self._av.Packet(self._last)
        packet.stream = self._stream
        packet.pts = packet.dts = self.frames
        packet.time_base = self._time_base
        packet.is_keyframe = True
        self._container.mux(packet)
        self.frames += 1

    def _add_stats(self, jpeg: bytes) -> None:
        bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        # the re-encoding path's grid (a scaled decode averages away the spread: std -25%)
        if bgr is not None:
            # RGB order, 0..1, as LeRobot's
            self.stats.add_image(bgr[::STATS_GRID, ::STATS_GRID, ::-1].reshape(-1, 3) / 255.0)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._container.close()
