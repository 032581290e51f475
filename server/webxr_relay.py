"""The API process's end of a WebXR recording's link: page messages handed to the recorder, never waited on.

The link is an AF_UNIX SOCK_SEQPACKET pair made when the recording starts (``webxr_link_pair``); the recorder
process inherits the other end. SOCK_SEQPACKET keeps each WebSocket message one datagram (no framing to get
wrong) and the API end is non-blocking: when the recorder cannot keep up, the kernel's buffer fills and the
message is dropped and counted here (``relay_drops``) instead of the event loop waiting. The recorder is told
the count with the next message that fits, so session.json has the drops of both sides.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

from capture.config import CaptureConfig
from capture.webxr_protocol import CLOSE_REPLACED, K_GONE, K_RELAY_DROPS, pack

LINK_BUFFER_BYTES = 4 << 20  # ~4 s of frames with hands at 90 Hz and audio: what a stalled recorder may lag


HEADSETS = {"webxr": "this headset (WebXR)", "openxr": "the PC's OpenXR runtime", "sim": "the simulator"}


def describe_capture(config: CaptureConfig) -> str:
    """What a recording records, in the page's words: the page always says it (issue 16 §1)."""
    rec = config.record
    mic = {"webxr": "this headset's microphone", "sim": "simulated microphone", "none": "no microphone"}.get(
        rec.audio, f"microphone {rec.audio}"
    )
    if rec.cameras:
        cameras = "cameras " + ", ".join(spec.partition("=")[0] for spec in rec.cameras)
    elif config.sim.cameras and rec.source != "webxr":
        cameras = "simulated cameras"
    else:
        cameras = "no cameras"
    return f"{HEADSETS.get(rec.source, rec.source)}, {mic}, {cameras}"


def webxr_link_pair() -> tuple[WebXRRelay, socket.socket]:
    """The relay (this process) and the socket the recorder process gets (inheritable, blocking)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for sock in (ours, theirs):
        with contextlib.suppress(OSError):  # the kernel caps it at net.core.wmem_max; the cap is fine
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, LINK_BUFFER_BYTES)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, LINK_BUFFER_BYTES)
    ours.setblocking(False)
    theirs.set_inheritable(True)
    return WebXRRelay(ours), theirs


class WebXRRelay:
    """Forwards page messages; knows which WebSocket is the recording's page (a newer one replaces it)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.page: Any = None  # the attached starlette WebSocket
        self.connections = 0
        self.forwarded = 0
        self.drops = 0  # messages the recorder's socket could not take
        self._unreported = 0
        self.closed = False

    async def attach(self, websocket: Any) -> None:
        """``websocket`` becomes the page; a previous one is closed with 4410 (the headset reloaded the page)."""
        previous, self.page = self.page, websocket
        self.connections += 1
        if previous is not None:
            with contextlib.suppress(Exception):  # it may be half-gone already
                await previous.close(CLOSE_REPLACED, "replaced by a newer connection to this recording")

    def is_page(self, websocket: Any) -> bool:
        return self.page is websocket

    def forward(self, data: bytes) -> bool:
        """Hand one message on; False only when the recorder's end is gone (the recording has ended)."""
        if self.closed:
            return False
        if self._unreported and self._send(pack({"k": K_RELAY_DROPS, "count": self._unreported})):
            self._unreported = 0
        if self._send(data):
            self.forwarded += 1
        return not self.closed

    def gone(self, websocket: Any, reason: str) -> None:
        """The page's WebSocket closed: the recorder notes the gap (unless a newer page took over already)."""
        if self.page is websocket:
            self.page = None
            self._send(pack({"k": K_GONE, "reason": reason}))

    def _send(self, data: bytes) -> bool:
        try:
            self.sock.send(data)
        except BlockingIOError:
            self.drops += 1
            self._unreported += 1
            return False
        except OSError:  # EPIPE/ECONNRESET: the recorder process has exited
            self.closed = True
            return False
        return True

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.close()
