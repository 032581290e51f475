"""`vrcap record --lsl NAME_OR_QUERY`: any Lab Streaming Layer stream on the network, recorded as a stream.

A push source (like capture/audio.py and capture/camera.py): ``open()`` resolves the stream and reads its full
description (channel labels and units) before the session exists, so a stream that is not there refuses to
start a recording; ``start()`` runs one thread that pulls chunks and hands each sample to the sink with
``st`` = the sender's LSL time in ns and ``t`` = that time mapped to host monotonic (capture/lsl_clock.py).

A stream that vanishes mid-recording (the sender quit, the network dropped) is an incident ``stream-lost``
and a gap; the thread keeps resolving it (by its source_id, else by the same query) and, when it is back,
records an incident ``stream-resumed`` and goes on. The rest of the recording never waits for it.

``NAME_OR_QUERY``: a plain stream name (``BioSemi``), or an LSL XPath predicate (``type='EEG'``,
``name='Tobii' and hostname='lab-pc'``) when it contains ``=``, ``(`` or ``[``.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from capture.lsl_clock import LslClockMap, lsl_to_mono_ns
from capture.source import SampleSink
from vrcap.errors import CaptureError, ConfigError
from vrcap.packets import S_DATA, S_SOURCE_TIME, S_TIME
from vrcap.streams import StreamDescriptor

INSTALL_HINT = "install it with: pip install 'vrcap[lsl]'"
LSL_DTYPES = {"float32": "float32", "double64": "float64", "int8": "int8", "int16": "int16",
              "int32": "int32", "int64": "int64", "string": ""}  # fmt: skip
_FORMAT_NAMES = {1: "float32", 2: "double64", 3: "string", 4: "int32", 5: "int16", 6: "int8", 7: "int64"}
_NOT_NAME = re.compile(r"[^a-z0-9_]+")


@dataclass
class LslInletConfig:
    """One ``--lsl`` stream."""

    query: str  # a stream name, or an XPath predicate such as "type='EEG'"
    stream: str = ""  # the vrcap stream name; "" = lsl_<the LSL stream's name>
    resolve_timeout_s: float = 5.0  # how long open() looks for the stream before refusing to record
    correction_interval_s: float = 2.0  # time_correction() this often (LabRecorder measures every 5 s)
    pull_timeout_s: float = 0.1  # longest a pull waits, which bounds how long stop() takes

    def __post_init__(self) -> None:
        if not self.query.strip():
            raise ConfigError("--lsl needs a stream name or a query such as \"type='EEG'\"")
        if min(self.resolve_timeout_s, self.correction_interval_s, self.pull_timeout_s) <= 0:
            raise ConfigError("LSL timeouts and intervals must be > 0")

    @property
    def predicate(self) -> str:
        if any(c in self.query for c in "=(["):
            return self.query
        return f"name='{self.query}'"


def _pylsl() -> Any:
    try:
        import pylsl
    except ImportError as exc:  # also a wheel whose liblsl cannot load
        raise CaptureError(f"--lsl needs pylsl ({exc}); {INSTALL_HINT}") from exc
    return pylsl


def describe_channels(info: Any) -> list[dict[str, str]]:
    """label/unit/type of each channel from the stream's <desc><channels> (LSL conventions), if it has them."""
    out = []
    channel = info.desc().child("channels").child("channel")
    while not channel.empty() and len(out) < info.channel_count():
        out.append({k: channel.child_value(k) for k in ("label", "unit", "type")})
        channel = channel.next_sibling("channel")
    return out


class LslInletSource:
    """Push source for one LSL stream. ``stop()`` is idempotent and joins the thread."""

    def __init__(self, config: LslInletConfig) -> None:
        self.config = config
        self.name = config.stream
        self._info: Any = None
        self._inlet: Any = None
        self._clock: LslClockMap | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._format = ""
        self._started_ns = 0
        self._resolver: Any = None
        self._uid = ""  # the connected outlet's uid: a restarted sender has a new one
        self._lost_uid = ""
        self.received = 0

    def open(self) -> None:
        lsl = _pylsl()
        found = lsl.resolve_bypred(self.config.predicate, 1, self.config.resolve_timeout_s)
        if not found:
            raise CaptureError(
                f"no LSL stream matches {self.config.query!r} within {self.config.resolve_timeout_s:g} s; "
                "is its sender running on this network? `python -m pylsl.examples.ResolveStreams` lists them"
            )
        self._inlet = self._connect(lsl, found[0])
        self._info = self._inlet.info(self.config.resolve_timeout_s)
        self._format = _FORMAT_NAMES.get(self._info.channel_format(), "")
        if self._format not in LSL_DTYPES:
            raise CaptureError(
                f"LSL stream {self._info.name()!r} has channel format {self._format!r}, not supported"
            )
        if not self.name:
            self.name = "lsl_" + (_NOT_NAME.sub("_", self._info.name().lower()).strip("_") or "stream")
        self._clock = LslClockMap(lsl_to_mono_ns(lsl.local_clock))
        self._clock.measured(self._inlet.time_correction(self.config.resolve_timeout_s))

    def _connect(self, lsl: Any, info: Any) -> Any:
        # recover=False: a lost stream raises LostError, so the gap is seen and recorded, not papered over.
        inlet = lsl.StreamInlet(info, max_buflen=360, recover=False, processing_flags=0)
        inlet.open_stream(self.config.resolve_timeout_s)
        self._uid = info.uid()
        return inlet

    def streams(self) -> list[StreamDescriptor]:
        info = self._require_open()
        channels = describe_channels(info)
        labels = tuple(c["label"] for c in channels) if len(channels) == info.channel_count() else ()
        units = ", ".join(sorted({c["unit"] for c in channels if c["unit"]}))
        extra = {
            "lsl_name": info.name(), "lsl_type": info.type(), "source_id": info.source_id(),
            "hostname": info.hostname(), "uid": info.uid(), "channel_format": self._format,
            "nominal_srate": info.nominal_srate(), "channels": channels, "query": self.config.query,
        }  # fmt: skip
        if self._format == "string":
            return [
                StreamDescriptor(self.name, "text", 0.0, (), "", "utf8", "", "", (), "lsl", "lsl_ns", extra)
            ]
        rate = float(info.nominal_srate())
        count = info.channel_count()
        return [StreamDescriptor(self.name, "signal", rate, (count,), LSL_DTYPES[self._format], "raw", units,
                                 "", labels, "lsl", "lsl_ns", extra)]  # fmt: skip

    def _require_open(self) -> Any:
        if self._info is None:
            raise CaptureError(f"LSL source {self.config.query!r} is not open; call open() first")
        return self._info

    def start(self, sink: SampleSink) -> None:
        self._require_open()
        self._started_ns = time.monotonic_ns()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(sink,), name=f"lsl-{self.name}", daemon=True)
        self._thread.start()

    def _run(self, sink: SampleSink) -> None:
        lsl = _pylsl()
        lost_error = lsl.util.LostError
        next_correction = time.monotonic() + self.config.correction_interval_s
        while not self._stop.is_set():
            try:
                if self._inlet is None:
                    self._reconnect(lsl, sink)
                    continue
                samples, stamps = self._inlet.pull_chunk(timeout=self.config.pull_timeout_s)
                if stamps:
                    self._deliver(sink, samples, stamps)
                if time.monotonic() >= next_correction:
                    assert self._clock is not None
                    self._clock.measured(self._inlet.time_correction(self.config.pull_timeout_s * 5))
                    next_correction = time.monotonic() + self.config.correction_interval_s
            except lost_error:
                self._lost_uid = self._uid
                self._close_inlet()
                sink.incident(
                    self.name, "stream-lost", f"LSL stream {self.config.query!r} vanished; a gap follows"
                )
            except lsl.util.TimeoutError:
                continue  # a time_correction that found the sender busy: measured again next interval
        self._close_inlet()

    def _reconnect(self, lsl: Any, sink: SampleSink) -> None:
        """Look for the stream again without blocking: a plain resolve can hang ~5 s once its sender is gone."""
        if self._resolver is None:
            source_id = self._info.source_id()
            predicate = f"source_id='{source_id}'" if source_id else self.config.predicate
            self._resolver = lsl.ContinuousResolver(pred=predicate, forget_after=5.0)
        fresh = [info for info in self._resolver.results() if info.uid() != self._lost_uid]
        if not fresh:
            self._stop.wait(self.config.pull_timeout_s)
            return
        try:
            self._inlet = self._connect(lsl, fresh[0])
        except Exception:  # gone again between resolve and connect: keep looking
            self._stop.wait(self.config.pull_timeout_s)
            return
        self._resolver = None
        sink.incident(self.name, "stream-resumed", f"LSL stream {self.config.query!r} is back")

    def _deliver(self, sink: SampleSink, samples: list[Any], stamps: list[float]) -> None:
        assert self._clock is not None
        if self._format == "string":
            for row, ts in zip(samples, stamps, strict=True):
                st = round(ts * 1e9)
                if st + (self._clock.offset_ns or 0) < self._started_ns:
                    continue
                text = row[0] if len(row) == 1 else "\t".join(row)
                data = {"text": text, "kind": "marker", "channel": "external"}
                sink.put(self.name, {S_TIME: self._clock.map(st), S_SOURCE_TIME: st, S_DATA: data})
        else:
            values = np.asarray(samples, dtype=np.dtype(LSL_DTYPES[self._format]).newbyteorder("<"))
            for row, ts in zip(values, stamps, strict=True):
                st = round(ts * 1e9)
                if st + (self._clock.offset_ns or 0) < self._started_ns:
                    continue  # queued between open() and start(): before the recording
                sink.put(self.name, {S_TIME: self._clock.map(st), S_SOURCE_TIME: st, S_DATA: row.tobytes()})
        self.received += len(stamps)

    def _close_inlet(self) -> None:
        inlet, self._inlet = self._inlet, None
        if inlet is not None:
            inlet.close_stream()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5 * self.config.pull_timeout_s + 2)
        self._thread = None
        self._close_inlet()

    def clock_info(self) -> dict[str, Any]:
        return self._clock.info() if self._clock is not None else {"type": "offset_segments", "segments": []}

    def live_stats(self) -> dict[str, Any]:
        return {"received": self.received}
