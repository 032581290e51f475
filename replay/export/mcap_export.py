"""A session as MCAP with Foxglove's well-known protobuf schemas: what Foxglove (and Rerun) open directly.

Mapping (docs/INTEROP.md has the table): pose streams → ``foxglove.FrameTransforms`` (parent ``stage``, child
the stream), hands → ``foxglove.PosesInFrame`` (26 joints), cameras → ``foxglove.CompressedImage`` with the
JPEG bytes exactly as recorded (no re-encoding: that is what keeps MCAP near read speed), audio →
``foxglove.RawAudio`` (``pcm-s16``), text → ``foxglove.Log``, controls and any other numeric stream → a
JSON-schema channel. Every message's log time and header timestamp are the sample's host time mapped to
wall clock; ``publish_time`` is the same; ``sequence`` counts per channel from 1.

The file is written by foxglove-sdk's MCAP writer (Rust, mcap-rust inside): the `mcap` package's pure-Python
writer spent ~45 µs a message framing records and building indexes, 75% of the whole export. Every protobuf
message but text (poses, hands, images, audio: 36,598 of the 47,434 in a 60 s sim session) is packed by
hand and handed to the writer as bytes, because building SDK objects per sample (a FrameTransform is 5 of
them) cost more than the writer itself: replay/export/mcap_wire.py packs FrameTransforms, CompressedImage
and RawAudio from templates (google.protobuf's bytes, which are the SDK's but for -0.0: that 60 s session
exports to the same file as through SDK objects), replay/export/mcap_poses.py the hands' 26 joints (20-50
µs a message through any object API). Measured on that session, time in each stream's function per message
(best of 3, a shared 2-core machine): controller poses 7-8 → 4.5 µs (the head, first in each packet, ~9.5
either way), hands 15-20 → 11-14.5 µs (their buffer now reused, their timestamp shared), audio 9 → 7 µs,
images 109-160 → 105-154 µs (the JPEG copy and LZ4 in Rust are most of it); the whole export 0.79 → 0.70
CPU-s, ~14.5 → ~12.6 µs a message beyond reading. Text stays on SDK objects (a few messages a session);
controls are JSON (below). Samples are handled straight from each decoded packet by one function per stream
chosen up front, with no per-sample object.

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
from typing import IO, TYPE_CHECKING, Any

from replay.export.config import McapConfig
from replay.export.mcap_poses import PosesInFramePacker
from replay.export.mcap_wire import BytesMessagePacker, FrameTransformsPacker
from replay.export.source import SessionSource
from vrcap.packets import S_DATA, S_TIME, SAMPLES, TIME
from vrcap.streams import StreamDescriptor

if TYPE_CHECKING:  # imported when an exporter is made: foxglove-sdk is the interop extra
    import foxglove

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
            channel: Any = _protobuf_channel(name, fm.FrameTransforms, ctx)
            unpack, log = _float32_unpacker(desc), channel.base.log
            pack_pose = FrameTransformsPacker(PARENT_FRAME, name).pack

            def pose(raw: dict[str, Any]) -> None:
                wall = wall_of(raw[S_TIME])
                log(pack_pose(wall, unpack(raw[S_DATA])), wall, None)

            handler: Handler = pose
        elif kind == "hand" and desc.encoding == "raw":
            channel = _protobuf_channel(name, fm.PosesInFrame, ctx)
            pack_hand = PosesInFramePacker(PARENT_FRAME, desc).pack
            handler = _bytes_handler(pack_hand, channel.base.log, wall_of)
        elif kind == "video" and desc.encoding in IMAGE_ENCODINGS:
            channel = _protobuf_channel(name, fm.CompressedImage, ctx)
            pack_image = BytesMessagePacker.compressed_image(name, desc.encoding).pack
            handler = _bytes_handler(pack_image, channel.base.log, wall_of)
        elif kind == "audio" and desc.encoding == "pcm_s16le":
            channel = _protobuf_channel(name, fm.RawAudio, ctx)
            rate, channels = round(desc.rate_hz), int(desc.shape[-1])
            pack_audio = BytesMessagePacker.raw_audio("pcm-s16", rate, channels).pack
            handler = _bytes_handler(pack_audio, channel.base.log, wall_of)
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


def _protobuf_channel(name: str, message: Any, context: foxglove.Context) -> foxglove.Channel:
    """A channel of a Foxglove schema that takes bytes: what the packers make (typed channels take objects).

    ``message`` is a class of foxglove.messages (anything with ``get_schema()``).
    """
    import foxglove

    schema = message.get_schema()
    return foxglove.Channel(topic(name), message_encoding="protobuf", schema=schema, context=context)


def _bytes_handler(
    pack: Callable[[int, bytes], bytes], log: Callable[..., None], wall_of: Callable[[int], int]
) -> Handler:
    """Hands, images and audio blocks: ``pack`` turns the recorded bytes into the message's."""

    def handle(raw: dict[str, Any]) -> None:
        wall = wall_of(raw[S_TIME])
        log(pack(wall, raw[S_DATA]), wall, None)

    return handle


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
