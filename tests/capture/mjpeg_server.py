"""A tiny MJPEG-over-HTTP camera on 127.0.0.1, for tests of network cameras without a network camera.

Why: IP cameras and phone camera apps serve ``multipart/x-mixed-replace`` JPEG streams; OpenCV reads them through
FFmpeg. This server plays that part with SimRig frames, whose barcode carries the frame number, and records when
it sent each frame (host monotonic ns), so a test can compare the recorder's grab stamps with the truth.

Each connection gets its own stream starting at frame 0, paced at ``fps`` from the moment it connected. Every
part carries ``Content-Length``, so a reader has the whole frame without waiting for the next boundary.

    with MjpegServer(fps=30) as server:
        cap = cv2.VideoCapture(server.url, cv2.CAP_FFMPEG)
        ...
        server.send_times[k]  # when frame k went out on the last connection

The server is bounded: it serves until ``close()`` (the context's exit) or ``max_seconds``, whichever is first.
"""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

import cv2

from capture.sim import SimConfig, SimRig

BOUNDARY = "vrcapframe"


class MjpegServer:
    """Serves SimRig camera frames as MJPEG at ``fps``; records each frame's send time per connection."""

    def __init__(
        self,
        fps: float = 30.0,
        width: int = 640,
        height: int = 480,
        camera: str = "left",
        stop_after_frames: int | None = None,  # end the stream (close the connection) after this many frames
        stall: bool = False,  # with stop_after_frames: keep the connection open but silent instead of closing
        jpeg_quality: int = 90,
        max_seconds: float = 60.0,  # a forgotten server stops on its own
    ) -> None:
        self.fps = fps
        self.camera = camera
        self.stop_after_frames = stop_after_frames
        self.stall = stall
        self.max_seconds = max_seconds
        self._rig = SimRig(
            SimConfig(cameras=(camera,), camera_width=width, camera_height=height, camera_fps=fps)
        )
        self._jpeg_params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self.connections: list[dict[int, int]] = []  # per connection: frame number -> monotonic ns sent
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("MjpegServer is not running; use it as a context manager")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/cam.mjpg"

    @property
    def send_times(self) -> dict[int, int]:
        """Frame number -> host monotonic ns at which it was handed to the socket, for the last connection."""
        with self._lock:
            return dict(self.connections[-1]) if self.connections else {}

    def __enter__(self) -> MjpegServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server._serve(self)

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: a test's output should show its own numbers, not access logs."""

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        httpd.block_on_close = False
        self._httpd = httpd
        self._deadline = time.monotonic() + self.max_seconds
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving; idempotent. Streaming handlers see ``_closing`` within one frame period and return."""
        self._closing.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        """Stream frames to one client until it leaves, the server closes, or ``stop_after_frames``."""
        handler.send_response(200)
        handler.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        handler.send_header("Cache-Control", "no-cache")
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.close_connection = True
        handler.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sent: dict[int, int] = {}
        with self._lock:
            self.connections.append(sent)
        start = time.monotonic_ns()
        period_ns = 1e9 / self.fps
        k = 0
        while not self._closing.is_set() and time.monotonic() < self._deadline:
            if self.stop_after_frames is not None and k >= self.stop_after_frames:
                if self.stall:
                    self._closing.wait(max(0.0, self._deadline - time.monotonic()))
                return
            part = self._part(k)  # render before the due time, so the send time is the due time
            delay = (start + k * period_ns - time.monotonic_ns()) / 1e9
            if delay > 0 and self._closing.wait(delay):
                return
            now = time.monotonic_ns()
            try:
                handler.wfile.write(part)
                handler.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                return  # the client went away
            with self._lock:
                sent[k] = now
            k += 1

    def _part(self, k: int) -> bytes:
        ok, jpeg = cv2.imencode(".jpg", self._rig.camera_frame(self.camera, k), self._jpeg_params)
        if not ok:
            raise RuntimeError(f"cannot JPEG-encode sim frame {k}")
        data = jpeg.tobytes()
        head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n".encode(
            "ascii"
        )
        return head + data + b"\r\n"
