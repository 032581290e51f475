"""`vrcap record --lsl-out`: the recording's streams published live as Lab Streaming Layer outlets.

Head, controllers, hands, controls, audio, annotations (and any recorded LSL or signal stream) each get an
outlet named ``vrcap-<stream>`` with ``source_id`` ``vrcap:<session>:<stream>``, the LSL type and per-channel
label/type/unit of vrcap/channels.py (the same as `vrcap export --format xdf`), so LabRecorder records them
beside EEG and eye trackers. Every sample is pushed with its own host-monotonic time in seconds (LSL's
``local_clock()`` on Linux); audio with one stamp per frame. Cameras are not published (LSL is no video bus).

A packet tap of the capture engine: ``put()`` runs on the frame loop, so it only queues (bounded; a full queue
drops and counts, it never blocks the frame clock); one thread pushes to the outlets.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from typing import Any

import numpy as np

from capture.lsl_inlet import INSTALL_HINT
from vrcap.channels import TEXT_CHANNELS, channel_format, channel_labels, lsl_type
from vrcap.errors import CaptureError
from vrcap.packets import S_COUNT, S_DATA, S_TIME, SAMPLES
from vrcap.streams import StreamDescriptor

PUBLISHED_KINDS = ("pose", "hand", "controls", "audio", "text", "gaze", "signal")
QUEUE_PACKETS = 512  # ~5 s of frames at 90 Hz
LINGER_S = 0.5  # outlets outlive the last push this long, so a consumer that pulls now and then gets the tail


def outlet_name(stream: str) -> str:
    return f"vrcap-{stream}"


class LslOutlets:
    """Packet tap: ``open(streams)`` makes the outlets, ``put(packet)`` queues, ``close()`` ends them."""

    def __init__(self, session: str, wait_s: float = 0.0) -> None:
        self.session = session
        self.wait_s = wait_s
        self._lsl: Any = None
        self._outlets: dict[str, tuple[Any, StreamDescriptor]] = {}
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(QUEUE_PACKETS)
        self._thread: threading.Thread | None = None
        self.dropped_packets = 0
        self.pushed: dict[str, int] = {}

    def open(self, streams: list[StreamDescriptor]) -> None:
        try:
            import pylsl
        except ImportError as exc:
            raise CaptureError(f"--lsl-out needs pylsl ({exc}); {INSTALL_HINT}") from exc
        self._lsl = pylsl
        for desc in streams:
            if desc.kind in PUBLISHED_KINDS and desc.encoding in ("raw", "pcm_s16le", "utf8"):
                self._outlets[desc.name] = (pylsl.StreamOutlet(self._info(desc), 0, 360), desc)
                self.pushed[desc.name] = 0
        self._wait_for_consumers()
        self._thread = threading.Thread(target=self._run, name="lsl-outlets", daemon=True)
        self._thread.start()

    def _info(self, desc: StreamDescriptor) -> Any:
        labels = channel_labels(desc)
        rate = desc.rate_hz if desc.kind != "text" else 0.0
        info = self._lsl.StreamInfo(outlet_name(desc.name), lsl_type(desc), len(labels), rate,
                                    channel_format(desc), f"vrcap:{self.session}:{desc.name}")  # fmt: skip
        channels = info.desc().append_child("channels")
        for label, kind, unit in labels:
            channel = channels.append_child("channel")
            channel.append_child_value("label", label)
            channel.append_child_value("type", kind)
            channel.append_child_value("unit", unit)
        info.desc().append_child("reference").append_child_value("frame", desc.frame or "stage")
        acquisition = info.desc().append_child("acquisition")
        acquisition.append_child_value("manufacturer", "vrcap")
        acquisition.append_child_value("session", self.session)
        return info

    def _wait_for_consumers(self) -> None:
        """With ``wait_s``: hold the start until every outlet has an inlet (or the time is up)."""
        deadline = time.monotonic() + self.wait_s
        for outlet, _ in self._outlets.values():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            outlet.wait_for_consumers(remaining)

    def put(self, packet: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(packet)
        except queue.Full:
            self.dropped_packets += 1

    def _run(self) -> None:
        while True:
            packet = self._queue.get()
            if packet is None:
                return
            for name, samples in (packet.get(SAMPLES) or {}).items():
                entry = self._outlets.get(name)
                if entry is not None:
                    self._push(name, entry[0], entry[1], samples)

    def _push(self, name: str, outlet: Any, desc: StreamDescriptor, samples: list[dict[str, Any]]) -> None:
        if desc.kind == "text":
            for s in samples:
                d = s[S_DATA]
                outlet.push_sample([str(d.get(k, "")) for k in TEXT_CHANNELS], s[S_TIME] / 1e9)
            self.pushed[name] += len(samples)
            return
        dtype = np.dtype(desc.dtype).newbyteorder("<")
        if desc.kind == "audio":
            period = 1e9 / desc.rate_hz
            for s in samples:
                frames = np.frombuffer(s[S_DATA], dtype).reshape(-1, desc.shape[-1])
                n = int(s.get(S_COUNT) or frames.shape[0])
                stamps = (s[S_TIME] + np.round(np.arange(n) * period)) / 1e9
                outlet.push_chunk(frames.astype(np.int16), stamps.tolist())
                self.pushed[name] += n
            return
        rows = np.stack([np.frombuffer(s[S_DATA], dtype).reshape(-1) for s in samples])
        stamps = [s[S_TIME] / 1e9 for s in samples]
        outlet.push_chunk(rows.astype(dtype.newbyteorder("=")), stamps)
        self.pushed[name] += len(samples)

    def close(self) -> None:
        """Push what is queued, then destroy the outlets (their inlets see the streams end). Idempotent."""
        if self._thread is not None:
            with contextlib.suppress(queue.Full):
                self._queue.put(None, timeout=5)
            self._thread.join(timeout=10)
            self._thread = None
            if any(outlet.have_consumers() for outlet, _ in self._outlets.values()):
                time.sleep(LINGER_S)
        self._outlets.clear()
