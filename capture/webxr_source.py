"""The headset's own browser as a capture source: XR frames, microphone and notes from the companion page.

    page ──WebSocket──► API process ──SOCK_SEQPACKET──► WebXRLink (thread) ─┬─► XR frames, audio ─► engine's sink
                                                                           └─► notes ─► engine.annotate(t)

The engine's frame clock runs as for any headset; each engine frame takes the XR frames that arrived since the
last one (the link puts them into the sink, like a push source's samples), with their own times (a sample's ``t`` is its XRFrame's predicted display time on the host clock, not
the time it reached us). The link is a socket handed over by the API process (``pass_fds``): the API only ever
writes to it without blocking, so neither side can stall the other — a full socket buffer is a counted drop.

Disconnects: the API process sends ``gone`` when the page's WebSocket closes. The recording goes on (frames are
simply absent, and replay masks them); the gap is an incident in session.json, and when no page is back within
``WebXRConfig.reconnect_s`` the recording stops cleanly. A reconnect starts a new clock segment.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from pydantic import Field
from pydantic.dataclasses import dataclass

from capture.source import SampleSink
from capture.webxr_audio_clock import PageAudioClock
from capture.webxr_clock import PageClockFit
from capture.webxr_protocol import (
    K_AUDIO,
    K_BYE,
    K_FRAME,
    K_GONE,
    K_HELLO,
    K_NOTE,
    K_RELAY_DROPS,
    K_SYNC,
    MAX_MESSAGE_BYTES,
    PAGE_KINDS,
    ProtocolViolation,
    parse,
)
from capture.webxr_streams import frame_samples, webxr_streams
from vrcap.errors import CaptureError, ConfigError, UsageError
from vrcap.packets import S_COUNT, S_DATA, S_INDEX, S_SOURCE_TIME, S_TIME
from vrcap.streams import StreamDescriptor

log = logging.getLogger("vrcap.webxr")
AUDIO_RATE = 48000
LINK_KINDS = (*PAGE_KINDS, K_GONE, K_RELAY_DROPS)
DROPS_UNSYNCED = "webxr_unsynced"  # frames that came before the first clock exchange (none with this page)
DROPS_PAGE = "webxr_page"  # frames and audio blocks the page itself dropped (its send buffer was full)
DROPS_RELAY = "webxr_relay"  # messages the API process could not hand to the recorder (socket full)


@dataclass
class WebXRConfig:
    """The headset's browser as a source (``record.source: webxr``); used only through `vrcap serve`."""

    rate_hz: float = Field(
        90.0, ge=1, le=1000,
        description="the engine's frame clock; XR frames are stored with their own times whatever it is",
    )  # fmt: skip
    reconnect_s: float = Field(
        10.0, ge=0, le=3600,
        description="a page gone longer than this ends the recording (the session stays valid)",
    )  # fmt: skip
    connect_timeout_s: float = Field(
        60.0, gt=0, le=3600,
        description="how long a started recording waits for the page's first connection",
    )  # fmt: skip

    def __post_init__(self) -> None:
        if not 1 <= self.rate_hz <= 1000:
            raise ConfigError(f"webxr.rate_hz must be between 1 and 1000 (got {self.rate_hz})")
        if self.reconnect_s < 0 or self.connect_timeout_s <= 0:
            raise ConfigError("webxr.reconnect_s must be >= 0 and webxr.connect_timeout_s > 0")


def page_ns(ms: float) -> int:
    return round(ms * 1e6)


class WebXRLink:
    """Reads the socket from the API process on its own thread; everything it learns is behind one lock."""

    def __init__(self, channel: socket.socket, config: WebXRConfig, audio: bool) -> None:
        self.channel = channel
        self.config = config
        self.audio = audio
        self.lock = threading.Lock()
        self.clock = PageClockFit()
        self.audio_fit = PageAudioClock(AUDIO_RATE, self.clock)
        self.sink: SampleSink | None = None
        self.annotate: Callable[..., int] | None = None
        self.connections = 0
        self.connected = False
        self.gone_at: float | None = None  # time.monotonic() the page left, None while connected
        self.started_at = time.monotonic()
        self.page_drops = 0
        self.received: dict[str, int] = {}  # messages by kind, as they arrived from the API process
        self.violations = 0
        self.intervals: deque[int] = deque(maxlen=4096)  # page ns between consecutive XR frames
        self._last_st: int | None = None
        self._audio_last_t = 0
        self._frame_last_t = 0
        self._audio_base = 0  # running sample index = base + the page's AudioContext frame
        self._audio_next = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.channel.settimeout(0.1)
        self._thread = threading.Thread(target=self._run, name="vrcap-webxr-link", daemon=True)
        self._thread.start()

    def _end_thread(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None

    def stop(self) -> None:
        self._end_thread()
        with contextlib.suppress(OSError):
            self.channel.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.channel.recv(MAX_MESSAGE_BYTES + 1)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:  # the API process closed its end: it is gone (stdin's EOF stops the recording)
                self._on_gone("the control plane closed the link")
                break
            self._handle_safely(data)

    def _handle_safely(self, data: bytes) -> None:
        """One message; whatever is wrong with it is counted and logged, never the end of the reader thread."""
        try:
            self._handle(parse(data, allowed=LINK_KINDS))
        except ProtocolViolation as exc:  # the API checked it already
            self.violations += 1
            log.warning("ignored a WebXR message: %s", exc)
        except Exception:  # a bug here must not silently end the recording's input
            self.violations += 1
            log.exception("a WebXR message could not be handled")

    def _handle(self, msg: dict[str, Any]) -> None:
        kind = msg["k"]
        self.received[kind] = self.received.get(kind, 0) + 1
        if kind == K_FRAME:
            self._on_frame(msg)
        elif kind == K_AUDIO:
            self._on_audio(msg)
        elif kind == K_SYNC:
            with self.lock:
                t1, t4 = page_ns(msg["t1"]), page_ns(msg["t4"])
                self.clock.observe(t1, int(msg["t2"]), int(msg["t3"]), t4)
        elif kind == K_HELLO:
            self._on_hello(msg)
        elif kind == K_NOTE:
            self._on_note(msg)
        elif kind in (K_GONE, K_BYE):
            self._on_gone(str(msg.get("reason") or "the page closed its connection"))
        elif kind == K_RELAY_DROPS and self.sink is not None:
            self.sink.drop(DROPS_RELAY, int(msg.get("count", 0)))

    def _on_hello(self, msg: dict[str, Any]) -> None:
        with self.lock:
            self.connections += 1
            self.clock.new_segment(self.connections)
            gap = None if self.gone_at is None else time.monotonic() - self.gone_at
            self.connected, self.gone_at = True, None
            self._last_st = None
            if self.audio:
                if self.connections > 1:  # a reloaded page's AudioContext counts from 0 again
                    self._audio_base = self._audio_next + (round(gap * AUDIO_RATE) if gap else 0)
                self.audio_fit.new_connection(self.connections, self._audio_base)
        if gap is not None and self.sink is not None:
            self.sink.incident(
                "head", "reconnected", f"the page reconnected after a gap of {gap * 1e3:.0f} ms"
            )

    def _on_gone(self, reason: str) -> None:
        with self.lock:
            if not self.connected:
                return
            self.connected, self.gone_at = False, time.monotonic()
        if self.sink is not None:
            self.sink.incident(
                "head", "disconnected", f"{reason}; waiting {self.config.reconnect_s:g} s for it"
            )

    def _on_frame(self, msg: dict[str, Any]) -> None:
        st = page_ns(msg["t"])
        with self.lock:
            ready = self.clock.ready
            # In order whatever the fit does: a refit that lowers the offset must not put a frame before the last.
            t = max(self.clock.map(st), self._frame_last_t + 1) if ready else 0
            if ready:
                self._frame_last_t = t
            dropped = int(msg.get("dropped", 0))
            new_drops, self.page_drops = max(0, dropped - self.page_drops), max(dropped, self.page_drops)
            if self._last_st is not None and 0 < st - self._last_st < 1_000_000_000:
                self.intervals.append(st - self._last_st)
            self._last_st = st
        sink = self.sink
        if sink is None:
            return
        if new_drops:
            sink.drop(DROPS_PAGE, new_drops)
        if not ready:
            sink.drop(DROPS_UNSYNCED)
            return
        for name, items in frame_samples(msg, t, st).items():  # into the next packet, like any push sample
            for sample in items:
                sink.put(name, sample)

    def _on_audio(self, msg: dict[str, Any]) -> None:
        if not self.audio or self.sink is None:
            return
        pcm: bytes = msg["pcm"]
        n = len(pcm) // 2
        with self.lock:
            if not self.clock.ready:
                self.sink.drop(DROPS_UNSYNCED)
                return
            index = self._audio_base + int(msg["i"])
            # The page stamps the block when its worklet hands it over: late, never early, like a callback. The
            # fit stays on the page's clock; the host line is composed with the page clock's current fit.
            self.audio_fit.observe(index + n, page_ns(msg["t"]))
            # The envelope only ever lowers its line: keep block times in order (replay maps by index anyway).
            t = max(self.audio_fit.map(index), self._audio_last_t + 1)
            self._audio_last_t = t
            self._audio_next = max(self._audio_next, index + n)
        self.sink.put("audio", {S_TIME: t, S_SOURCE_TIME: index, S_INDEX: index, S_COUNT: n, S_DATA: pcm})

    def _on_note(self, msg: dict[str, Any]) -> None:
        with self.lock:
            t = self.clock.map(page_ns(msg["t"])) if self.clock.ready else None
        if self.annotate is not None and t is not None:
            with contextlib.suppress(ValueError, CaptureError):
                self.annotate(
                    msg["text"], str(msg.get("kind", "marker")), str(msg.get("channel", "external")), t
                )

    def drain(self) -> None:
        """Stop the reader thread, then handle what is still queued in the socket: the page's last frames."""
        self._end_thread()
        with contextlib.suppress(OSError):
            self.channel.setblocking(False)
            while data := self.channel.recv(MAX_MESSAGE_BYTES + 1):
                self._handle_safely(data)

    def overdue(self) -> str | None:
        """Why the recording should end now, or None: a page that never came or did not come back in time."""
        with self.lock:
            now = time.monotonic()
            if self.connections == 0 and now - self.started_at > self.config.connect_timeout_s:
                return f"no page connected within {self.config.connect_timeout_s:g} s"
            if self.gone_at is not None and now - self.gone_at > self.config.reconnect_s:
                return f"the page did not reconnect within {self.config.reconnect_s:g} s"
        return None


class WebXRHeadset:
    """Frame source: the engine's frame clock; it ends a recording whose page is gone for too long."""

    name = "webxr"

    def __init__(self, config: WebXRConfig, link: WebXRLink) -> None:
        self.rate_hz = config.rate_hz
        self.link = link
        self.on_stop: Callable[[str], None] | None = None
        self.t0 = 0

    def streams(self) -> list[StreamDescriptor]:
        return webxr_streams(self.rate_hz)

    def open(self) -> None:
        self.link.start()

    def start(self, t0_ns: int) -> None:
        self.t0 = t0_ns
        self.link.started_at = time.monotonic()

    def frame(self, seq: int, t_ns: int) -> dict[str, list[dict[str, Any]]]:
        """Nothing of its own: the link puts each XR frame's samples into the engine's sink as they arrive."""
        reason = self.link.overdue()
        if reason is not None and self.on_stop is not None:
            self.on_stop(reason)
        return {}

    def close(self) -> None:
        self.link.stop()

    def final_streams(self, streams: list[StreamDescriptor]) -> list[StreamDescriptor]:
        """The XR streams' rate as the page delivered it (the median frame interval), known only at the end.

        Replay treats a gap of more than 1.5 periods as missing, so a nominal 90 Hz on a 72 Hz headset would
        mask every step; the measured rate is what the frames really are.
        """
        with self.link.lock:
            intervals = sorted(self.link.intervals)
        if not intervals:
            return streams
        rate = round(1e9 / intervals[len(intervals) // 2], 3)
        out = []
        for s in streams:
            if s.source == "webxr" and s.kind != "audio":
                extra = {**s.extra, "rate": "measured: median interval of the page's XR frames"}
                s = dataclasses.replace(s, rate_hz=rate, extra=extra)
            out.append(s)
        return out

    def clock_info(self) -> dict[str, Any]:
        with self.link.lock:
            return {
                "type": "linear", "unit": CLOCK_UNIT, "segments": self.link.clock.segments(),
                "received": dict(self.link.received), "page_drops": self.link.page_drops,
                "violations": self.link.violations,
            }  # fmt: skip

    def live_clock(self) -> dict[str, float]:
        """Figures for live stats: drift, uncertainty and scatter of the page clock's mapping."""
        with self.link.lock:
            figures = self.link.clock.figures()
            figures["connected"] = float(self.link.connected)
            figures["page_drops"] = float(self.link.page_drops)
            figures["frames_received"] = float(self.link.received.get(K_FRAME, 0))
            return figures


CLOCK_UNIT = "page_ns"


class WebXRInbox:
    """Push source: gives the link the engine's sink (audio, drops, incidents); declares the page's microphone."""

    def __init__(self, link: WebXRLink) -> None:
        self.link = link
        self.name = "audio" if link.audio else "webxr_link"  # session.json keys an audio clock by its stream

    def streams(self) -> list[StreamDescriptor]:
        if not self.link.audio:
            return []
        return [
            StreamDescriptor(
                "audio", "audio", float(AUDIO_RATE), (-1, 1), "int16", "pcm_s16le", "PCM, full scale 32767", "",
                (), "webxr", "sample_index",
                extra={"device": "the page's getUserMedia microphone (AudioWorklet)",
                       "clock": "AudioContext frame counter, continued across reconnects"},
            )
        ]  # fmt: skip

    def open(self) -> None:
        pass

    def start(self, sink: SampleSink) -> None:
        self.link.sink = sink

    def stop(self) -> None:
        """The engine's last call before its final packet: what the page sent until now goes into it."""
        if self.link.sink is not None:
            self.link.drain()
        self.link.sink = None

    def clock_info(self) -> dict[str, Any]:
        if not self.link.audio:
            return {}
        with self.link.lock:
            fit = self.link.audio_fit
            return {
                "type": "linear", "unit": "sample_index", "segments": fit.segments(),
                "offset_ns": fit.offset_ns, "drift_ppm": fit.drift_ppm, "via": "page clock (headset)",
            }  # fmt: skip

    def live_stats(self) -> dict[str, Any]:
        return {}


def webxr_sources(
    config: WebXRConfig, channel: socket.socket | None, audio: bool
) -> tuple[WebXRHeadset, WebXRInbox]:
    if channel is None:  # `vrcap record record.source=webxr`: a usage mistake (exit 2), not a device failure
        raise UsageError(
            "the webxr source records the headset's browser through `vrcap serve`: start the server, open its "
            "page on the headset and press 'Record from this headset'"
        )
    link = WebXRLink(channel, config, audio)
    return WebXRHeadset(config, link), WebXRInbox(link)
