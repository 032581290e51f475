"""A session as MCAP with Foxglove's well-known protobuf schemas: what Foxglove (and Rerun) open directly.

Mapping (docs/INTEROP.md has the table): pose streams → ``foxglove.FrameTransforms`` (parent ``stage``, child
the stream), hands → ``foxglove.PosesInFrame`` (26 joints), cameras → ``foxglove.CompressedImage`` with the
JPEG bytes exactly as recorded (no re-encoding: that is what keeps MCAP near read speed), audio →
``foxglove.RawAudio`` (``pcm-s16``), text → ``foxglove.Log``, controls and any other numeric stream → a
JSON-schema channel. Every message's log time and header timestamp are the sample's host time mapped to
wall clock; ``publish_time`` is the same; ``sequence`` counts per channel from 1.

The file is written by foxglove-sdk's MCAP writer (Rust, mcap-rust inside): the `mcap` package's pure-Python
writer spent ~45 µs a message framing records and building indexes, 75% of the whole export. Foxglove
messages are built as foxglove-sdk objects and encoded in Rust; hands are packed by
replay/export/mcap_poses.py (26 joints through any object API cost 20-50 µs a message). Samples are handled
straight from each decoded packet by one function per stream chosen up front, with no per-sample object.

The SDK reports a failed write by logging it and failing every later write, so the file goes through
``_Output``, which keeps the first OSError: the export stops at the next packet with that error (a full disk
is "cannot write OUT: No space left on device", not a log line per message), and the SDK's log is silenced.

Chunks are LZ4-compressed (``mcap.compression``) and the summary section (chunk and message indexes,
statistics) is written, so readers can seek. A channel is written when its first message is, so the order of
the file follows the sample order of the session, which makes the file the same bytes on every run.
"""

from __future__ import annotations

import json
import logging
import math
import struct
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from replay.export.config import McapConfig
from replay.export.mcap_poses import PosesInFramePacker
from replay.export.source import SessionSource
from vrcap.packets import S_DATA, S_TIME, SAMPLES, TIME
from vrcap.streams import StreamDescriptor

PARENT_FRAME = "stage"
POSE_KINDS = ("pose", "gaze")
JSON_KINDS = ("controls", "signal")
MESSAGE_KINDS = ("pose", "gaze", "hand", "video", "audio", "text")
IMAGE_ENCODINGS = ("jpeg", "png")

Handler = Callable[[dict[str, Any]], None]  # one sample map (docs/FORMAT.md §4) → one message logged


def topic(stream: str) -> str:
    return f"/{stream}"


def json_schema(desc: StreamDescriptor) -> dict[str, Any]:
    """The JSON schema of a controls/signal message: its fields by name, null where the value was not valid."""
    number = {"type": ["number", "null"]}
    return {
        "title": f"vrcap.{desc.kind}",
        "type": "object",
        "properties": {
            "timestamp_ns": {"type": "integer", "description": "wall clock ns (host monotonic mapped)"},
            "valid": {"type": ["integer", "null"], "description": "validity bits as recorded"},
            **{name: number for name in field_names(desc)},
        },
    }


def field_names(desc: StreamDescriptor) -> tuple[str, ...]:
    return desc.fields or tuple(f"ch{i}" for i in range(int(math.prod(d for d in desc.shape if d > 0))))


def _float32_unpacker(desc: StreamDescriptor) -> Callable[[bytes], tuple[float, ...]]:
    """The values of one raw sample as Python floats; struct is ~5x quicker than numpy for a handful."""
    count = int(math.prod(d for d in desc.shape if d > 0))
    if desc.dtype == "float32":
        return struct.Struct(f"<{count}f").unpack_from
    import numpy as np

    dtype = np.dtype(desc.dtype).newbyteorder("<")
    return lambda data: tuple(np.frombuffer(data, dtype, count).astype(float).tolist())


class _Output:
    """The file the SDK writes (it calls write/seek/flush); the first OSError is kept for the exporter."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.raw.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        return self.raw.tell()

    def flush(self) -> None:
        try:
            self.raw.flush()
        except OSError as exc:
            self.error = self.error or exc
            raise


class McapExporter:
    """One session into one .mcap file. Use as a context manager; ``close()`` is idempotent."""

    def __init__(self, source: SessionSource, target: Path, config: McapConfig | None = None) -> None:
        import foxglove
        from foxglove.mcap import MCAPCompression, MCAPWriteOptions

        config = config or McapConfig()
        self.source = source
        compression = {"lz4": MCAPCompression.Lz4, "zstd": MCAPCompression.Zstd, "none": None}
        options = MCAPWriteOptions(
            compression=compression[config.compression], chunk_size=config.chunk_mb * 1024 * 1024, profile=""
        )
        sdk_log = logging.getLogger("foxglove")  # its write errors reach us through _Output instead
        if not any(isinstance(h, logging.NullHandler) for h in sdk_log.handlers):
            sdk_log.addHandler(logging.NullHandler())
            sdk_log.propagate = False
        self._context = foxglove.Context()  # this export's own: nothing leaks to the global context
        self._file = open(target, "wb")  # noqa: SIM115 (closed by close())
        self.output = _Output(self._file)
        self._writer = foxglove.open_mcap(self.output, context=self._context, writer_options=options)
        self._channels: list[Any] = []
        self._handlers: dict[str, Handler] = {}
        self.counts: dict[str, int] = {}
        self.skipped: dict[str, str] = {}
        self._order = {s.name: i for i, s in enumerate(source.meta.streams)}
        self._closed = False
        for desc in source.meta.streams:
            handler = self._handler(desc)
            if handler is None:
                self.skipped[desc.name] = (
                    f"no MCAP mapping for kind {desc.kind!r} / encoding {desc.encoding!r}"
                )
                continue
            self._handlers[desc.name] = handler
            self.counts[desc.name] = 0
        meta = source.meta
        self._writer.write_metadata(
            "vrcap.session",
            {
                "name": meta.name,
                "start_wall_utc": str(meta.start.get("wall_utc", "")),
                "start_wall_ns": str(meta.start["wall_ns"]),
                "start_mono_ns": str(meta.start["mono_ns"]),
                "format_version": str(meta.version),
                "status": str(meta.status),
                "not_exported": json.dumps(self.skipped, sort_keys=True),
            },
        )

    def _handler(self, desc: StreamDescriptor) -> Handler | None:
        """The function that logs one sample of ``desc``, or None when the stream has no mapping."""
        import foxglove
        import foxglove.channels as fc
        import foxglove.messages as fm

        kind, name, ctx, wall_of = desc.kind, desc.name, self._context, self.source.wall_ns
        timestamp = fm.Timestamp
        if kind in POSE_KINDS and desc.encoding == "raw":
            channel: Any = fc.FrameTransformsChannel(topic(name), context=ctx)
            unpack = _float32_unpacker(desc)
            transform, vector, quaternion = fm.FrameTransform, fm.Vector3, fm.Quaternion
            frames = fm.FrameTransforms

            def pose(raw: dict[str, Any]) -> None:
                wall = wall_of(raw[S_TIME])
                p = unpack(raw[S_DATA])
                tf = transform(
                    timestamp=timestamp(*divmod(wall, 1_000_000_000)), parent_frame_id=PARENT_FRAME,
                    child_frame_id=name, translation=vector(x=p[0], y=p[1], z=p[2]),
                    rotation=quaternion(x=p[3], y=p[4], z=p[5], w=p[6]),
                )  # fmt: skip
                channel.log(frames(transforms=[tf]), log_time=wall)

            handler: Handler = pose
        elif kind == "hand" and desc.encoding == "raw":
            channel = foxglove.Channel(
                topic(name), message_encoding="protobuf", schema=fm.PosesInFrame.get_schema(), context=ctx
            )
            packer = PosesInFramePacker(PARENT_FRAME, desc)
            log = channel.base.log

            def hand(raw: dict[str, Any]) -> None:
                wall = wall_of(raw[S_TIME])
                log(packer.pack(wall, raw[S_DATA]), wall, None)

            handler = hand
        elif kind == "video" and desc.encoding in IMAGE_ENCODINGS:
            channel = fc.CompressedImageChannel(topic(name), context=ctx)
            image, fmt = fm.CompressedImage, desc.encoding

            def video(raw: dict[str, Any]) -> None:
                wall = wall_of(raw[S_TIME])
                stamp = timestamp(*divmod(wall, 1_000_000_000))
                channel.log(
                    image(timestamp=stamp, frame_id=name, data=raw[S_DATA], format=fmt), log_time=wall
                )

            handler = video
        elif kind == "audio" and desc.encoding == "pcm_s16le":
            channel = fc.RawAudioChannel(topic(name), context=ctx)
            audio, rate, channels = fm.RawAudio, round(desc.rate_hz), int(desc.shape[-1])

            def pcm(raw: dict[str, Any]) -> None:
                wall = wall_of(raw[S_TIME])
                stamp = timestamp(*divmod(wall, 1_000_000_000))
                message = audio(timestamp=stamp, data=raw[S_DATA], format="pcm-s16", sample_rate=rate,
                                number_of_channels=channels)  # fmt: skip
                channel.log(message, log_time=wall)

            handler = pcm
        elif kind == "text":
            channel = fc.LogChannel(topic(name), context=ctx)
            log_message, info = fm.Log, fm.LogLevel.Info

            def text(raw: dict[str, Any]) -> None:
                wall = wall_of(raw[S_TIME])
                d = raw[S_DATA]
                message = log_message(
                    timestamp=timestamp(*divmod(wall, 1_000_000_000)), level=info,
                    message=str(d.get("text", "")), name=f"{d.get('kind', 'marker')}/{d.get('channel', 'external')}",
                )  # fmt: skip
                channel.log(message, log_time=wall)

            handler = text
        elif kind in JSON_KINDS and desc.encoding == "raw":
            schema = foxglove.Schema(
                name=f"vrcap.{name}", encoding="jsonschema",
                data=json.dumps(json_schema(desc), sort_keys=True).encode(),
            )  # fmt: skip
            channel = foxglove.Channel(topic(name), message_encoding="json", schema=schema, context=ctx)
            handler = _json_handler(desc, channel.base.log, wall_of)
        else:
            return None
        self._channels.append(channel)
        return handler

    def add_packet(self, packet: dict[str, Any]) -> None:
        """Every sample of one decoded packet: declared streams in the session's order, each in file order."""
        per_stream = packet.get(SAMPLES)
        if not per_stream:
            return
        handlers, order, counts = self._handlers, self._order, self.counts
        names = [n for n in per_stream if n in handlers]
        if len(names) > 1:
            names.sort(key=order.__getitem__)
        for name in names:
            handler = handlers[name]
            samples = per_stream[name]
            for raw in samples:
                handler(raw)
            counts[name] += len(samples)

    def check(self) -> None:
        """Raise the first write error, if any: the SDK itself only logs it."""
        if self.output.error is not None:
            raise self.output.error

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            for channel in self._channels:
                channel.close()
            self._writer.close()
        except (
            RuntimeError
        ) as exc:  # FoxgloveError: a failed write (kept by _Output) or an I/O error of its own
            self.check()
            raise OSError(f"the MCAP writer failed: {exc}") from None
        finally:
            self._file.close()
        self.check()

    def __enter__(self) -> McapExporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _json_handler(desc: StreamDescriptor, log: Callable[..., None], wall_of: Callable[[int], int]) -> Handler:
    """Controls/signal samples as compact JSON, from a %-template (json.dumps of a dict cost ~10 µs).

    Floats are written with ``repr`` as json.dumps does; a NaN or infinity (an invalid value) is ``null``,
    which only the slow path handles: the values' sum is finite exactly when every float32 value is.
    """
    unpack = _float32_unpacker(desc)
    keys = [json.dumps(f) for f in field_names(desc)]
    template = '{"timestamp_ns":%d,"valid":%s,' + ",".join(f"{key}:%r" for key in keys) + "}"
    isfinite = math.isfinite

    def encode(raw: dict[str, Any]) -> None:
        wall = wall_of(raw[S_TIME])
        valid = raw.get("v")
        values = unpack(raw[S_DATA])
        head = (wall, "null" if valid is None else int(valid))
        if isfinite(sum(values)):
            text = template % (*head, *values)
        else:
            body = ",".join(
                f"{k}:{v!r}" if isfinite(v) else f"{k}:null" for k, v in zip(keys, values, strict=True)
            )
            text = f'{{"timestamp_ns":{head[0]},"valid":{head[1]},' + body + "}"
        log(text.encode(), wall, None)

    return encode


def export_mcap(
    source: SessionSource, target: Path, progress: Any = None, config: McapConfig | None = None
) -> dict[str, Any]:
    """Write ``target`` (a temporary path: the caller renames it); returns counts per topic."""
    with McapExporter(source, target, config) as exporter:
        last_t: int | None = None
        for packet in source.reader.packets():
            exporter.add_packet(packet)
            exporter.check()
            if progress is not None:
                t = int(packet[TIME])
                progress(0.0 if last_t is None else (t - last_t) / 1e9)
                last_t = t
    return {"messages": dict(exporter.counts), "not_exported": exporter.skipped}
