"""One camera's frames into an mp4 at the dataset's step rate, through PyAV (FFmpeg's libraries in the wheel).

AV1 with libsvtav1 is LeRobot's default (a keyframe every ``gop`` frames so random access decodes little);
libx264 is the faster alternative. Frame ``k`` has pts ``k`` in a 1/fps time base, so its time is exactly
``k / fps``, which is what LeRobot's decoder looks up.

This is the exporter's real cost: every image is decoded from its JPEG, converted to YUV and encoded again
(docs/PERFORMANCE.md). Each camera therefore runs in a thread of its own (``CameraWorker``): OpenCV's JPEG
decoder and PyAV's encode release the GIL, so the cameras and the parquet rows of the main thread overlap
on several cores. The queue between them is bounded, so memory stays constant.

Colour: BT.601 limited range, what decoders assume for an untagged stream. For ``yuv420p`` the decoded
JPEG (BGR) goes to YCbCr in one OpenCV matrix transform and the chroma planes are halved by area averaging:
0.4 ms a 320×240 frame against 1.1 ms for PyAV's RGB → swscale path, and 0.3 dB closer to the recording
(swscale's bilinear chroma: 38.0 dB RGB after the round trip on the sim's images, this 38.3 dB; OpenCV's own
I420 conversion, which subsamples without averaging: 35.9 dB). ``yuv420p`` halving the chroma resolution is
what caps these images near 38 dB; ``yuv444p`` (libx264 only: SVT-AV1 encodes 4:2:0 alone) keeps it, through
swscale.
"""

from __future__ import annotations

import os
import queue
import threading
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from replay.export.config import CODECS, LeRobotConfig
from replay.export.lerobot_meta import RunningStats

STATS_GRID = 8  # image stats from every frame on a 1-in-8 pixel grid each way (all pixels: 10x the cost)
# BGR → BT.601 limited-range Y, Cb, Cr as rows of (B, G, R, offset): Y in 16..235, chroma in 16..240.
_KR, _KB = 0.299, 0.114
_KG = 1 - _KR - _KB
BGR_TO_YCBCR = np.array(
    [
        [_KB * 219 / 255, _KG * 219 / 255, _KR * 219 / 255, 16.0],
        [0.5 * 224 / 255, -0.5 * _KG / (1 - _KB) * 224 / 255, -0.5 * _KR / (1 - _KB) * 224 / 255, 128.0],
        [-0.5 * _KB / (1 - _KR) * 224 / 255, -0.5 * _KG / (1 - _KR) * 224 / 255, 0.5 * 224 / 255, 128.0],
    ],
    np.float32,
)
QUEUE_FRAMES = 8  # frames waiting per camera: bounds memory (8 JPEGs) while the encoder catches up
_STOP = object()


def fps_fraction(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001)


def encoder_options(config: LeRobotConfig) -> dict[str, str]:
    if CODECS[config.codec] == "libsvtav1":
        options = {"crf": str(config.crf), "preset": str(config.preset), "g": str(config.gop)}
        if config.threads:
            options["svtav1-params"] = f"lp={config.threads}"
        return options
    return {"crf": str(config.h264_crf), "preset": config.h264_preset, "g": str(config.gop)}


class VideoEncoder:
    """Context manager; ``close()`` flushes the encoder and is idempotent."""

    def __init__(self, path: Path, width: int, height: int, config: LeRobotConfig) -> None:
        import av

        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its whole config per file at its default level
        self.path = path
        self.frames = 0
        self.pix_fmt = config.pix_fmt
        self._container: Any = av.open(str(path), "w", format="mp4")
        rate = fps_fraction(config.fps)
        self._stream: Any = self._container.add_stream(
            CODECS[config.codec], rate=rate, options=encoder_options(config)
        )
        self._stream.width, self._stream.height = width, height
        self._stream.pix_fmt = config.pix_fmt
        if config.threads and config.codec != "av1":
            self._stream.codec_context.thread_count = config.threads
        self._stream.time_base = 1 / rate
        self._time_base = self._stream.time_base
        self._av = av
        self._closed = False

    def add(self, bgr: np.ndarray) -> None:
        """One frame, from the image as OpenCV decodes it (H, W, 3 BGR)."""
        height, width = bgr.shape[:2]
        if self.pix_fmt == "yuv420p" and height % 2 == 0 and width % 2 == 0:
            frame = self._av.VideoFrame.from_ndarray(bgr_to_i420(bgr), format="yuv420p")
        else:
            frame = self._av.VideoFrame.from_ndarray(bgr, format="bgr24").reformat(format=self.pix_fmt)
        frame.pts = self.frames
        frame.time_base = self._time_base
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        finally:
            self._container.close()

    def __enter__(self) -> VideoEncoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CameraWorker:
    """A camera's thread: JPEG (or "same as before") in, one video frame per step out, plus image stats.

        ``put(None)`` repeats the current image (the step holds the last frame; black before the first).
    Image stats are taken in RGB order, in 0..1, as LeRobot's stats.json has them.
        ``close()`` waits for the thread, flushes the encoder and re-raises the thread's error, if any.
    """

    def __init__(
        self, path: Path, width: int, height: int, config: LeRobotConfig, stats: RunningStats
    ) -> None:
        self.encoder = VideoEncoder(path, width, height, config)
        self.stats = stats
        self._image = np.zeros((height, width, 3), np.uint8)
        self._queue: queue.Queue[Any] = queue.Queue(QUEUE_FRAMES)
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(
            target=self._run, name=f"encode {path.parent.parent.name}", daemon=True
        )
        self._thread.start()

    def put(self, encoded: bytes | None) -> None:
        if self._error is not None:
            self.close()  # raises the worker's error
        self._queue.put(encoded)

    def _run(self) -> None:
        try:
            while (item := self._queue.get()) is not _STOP:
                if item is not None:
                    self._image = _decode(item, self._image)
                self.encoder.add(self._image)
                grid = self._image[::STATS_GRID, ::STATS_GRID, ::-1].reshape(-1, 3) / 255.0  # RGB order
                self.stats.add_image(grid)
        except BaseException as exc:  # handed to the main thread by close()
            self._error = exc
            while self._queue.get() is not _STOP:  # drain, so put() never blocks on a dead worker
                pass

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
            self._thread.join()
            self.encoder.close()
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def _decode(jpeg: bytes, previous: np.ndarray) -> np.ndarray:
    """The recorded image (BGR); one that does not decode keeps the previous image (as replay does)."""
    bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or bgr.shape != previous.shape:
        return previous
    return bgr


def bgr_to_i420(bgr: np.ndarray) -> np.ndarray:
    """(H*3/2, W) uint8: the Y plane, then Cb and Cr at half size each way (2×2 area averages)."""
    height, width = bgr.shape[:2]
    ycc = cv2.transform(bgr, BGR_TO_YCBCR)
    half = (width // 2, height // 2)
    cb = cv2.resize(ycc[:, :, 1], half, interpolation=cv2.INTER_AREA)
    cr = cv2.resize(ycc[:, :, 2], half, interpolation=cv2.INTER_AREA)
    planes = (ycc[:, :, 0].reshape(-1), cb.reshape(-1), cr.reshape(-1))
    return np.concatenate(planes).reshape(height * 3 // 2, width)
