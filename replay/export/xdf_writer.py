"""A small XDF 1.0 writer, written from the format's specification (the chunk layout LabRecorder writes).

There is no maintained Python XDF writer, so this one does only what the spec asks:

    file    = "XDF:" chunk*
    chunk   = NumLengthBytes (u8: 1, 4 or 8) · Length (that many bytes, LE; counts tag + content) · Tag (u16) · content
    tags    1 FileHeader   XML <info><version>1.0</version>…</info>
            2 StreamHeader u32 StreamId · XML <info> (name, type, channel_count, nominal_srate, channel_format, …)
            3 Samples      u32 StreamId · NumSampleBytes (u8) · NumSamples (that many bytes) · sample*
                           sample = TimeStampBytes (u8: 0 or 8) · [f64 timestamp] · values
                           a string value = NumLengthBytes (u8) · Length · UTF-8 bytes; numbers are LE
            4 ClockOffset  u32 StreamId · f64 CollectionTime · f64 OffsetValue
            5 Boundary     16-byte UUID 43 A5 46 DC CB F5 41 0F B3 0E D5 46 73 83 CB E4 (lets a reader resync)
            6 StreamFooter u32 StreamId · XML <info> (first_timestamp, last_timestamp, sample_count, clock_offsets)

Numeric samples are packed with numpy in one go per chunk (a structured array of tag byte, timestamp and
values), so a 48 kHz audio stream costs no Python loop per sample.
"""

from __future__ import annotations

import struct
from typing import IO
from xml.sax.saxutils import escape

import numpy as np

MAGIC = b"XDF:"
FILE_HEADER, STREAM_HEADER, SAMPLES, CLOCK_OFFSET, BOUNDARY, STREAM_FOOTER = 1, 2, 3, 4, 5, 6
BOUNDARY_UUID = bytes.fromhex("43A546DCCBF5410FB30ED5467383CBE4")
CHANNEL_FORMATS = {
    "float32": "<f4",
    "double64": "<f8",
    "int8": "<i1",
    "int16": "<i2",
    "int32": "<i4",
    "int64": "<i8",
    "string": "",
}


def _varlen(n: int) -> bytes:
    """NumLengthBytes followed by the length: 1 byte when it fits, else 4, else 8 (the spec's choices)."""
    if n < 256:
        return struct.pack("<BB", 1, n)
    if n < 2**32:
        return struct.pack("<BI", 4, n)
    return struct.pack("<BQ", 8, n)


def xml_element(tag: str, value: object) -> str:
    """``<tag>value</tag>``; a dict value nests, a list value repeats its items under ``tag``."""
    if isinstance(value, dict):
        return f"<{tag}>" + "".join(xml_element(k, v) for k, v in value.items()) + f"</{tag}>"
    if isinstance(value, list):
        return "".join(xml_element(tag, item) for item in value)
    return f"<{tag}>{escape(str(value))}</{tag}>"


def xml_info(fields: dict[str, object]) -> bytes:
    return ('<?xml version="1.0"?>' + xml_element("info", fields)).encode("utf-8")


class XdfWriter:
    """Write an XDF file chunk by chunk. A context manager; ``close()`` is idempotent and leaves the stream open."""

    def __init__(self, out: IO[bytes], file_info: dict[str, object] | None = None) -> None:
        self._out = out
        self._formats: dict[int, str] = {}
        self._channels: dict[int, int] = {}
        self.bytes_written = 0
        self._write(MAGIC)
        self._chunk(FILE_HEADER, xml_info({"version": "1.0", **(file_info or {})}))

    def _write(self, data: bytes) -> None:
        self._out.write(data)
        self.bytes_written += len(data)

    def _chunk(self, tag: int, content: bytes) -> None:
        self._write(_varlen(len(content) + 2) + struct.pack("<H", tag))
        self._write(content)

    def stream_header(self, stream_id: int, info: dict[str, object]) -> None:
        fmt = str(info["channel_format"])
        if fmt not in CHANNEL_FORMATS:
            raise ValueError(f"XDF channel_format must be one of {', '.join(CHANNEL_FORMATS)}, got {fmt!r}")
        self._formats[stream_id] = fmt
        self._channels[stream_id] = int(str(info["channel_count"]))
        self._chunk(STREAM_HEADER, struct.pack("<I", stream_id) + xml_info(info))

    def numeric_samples(self, stream_id: int, timestamps: np.ndarray, values: np.ndarray) -> None:
        """One Samples chunk: ``timestamps`` (n,) float64 seconds, ``values`` (n, channels)."""
        n = int(timestamps.shape[0])
        if n == 0:
            return
        channels = self._channels[stream_id]
        dtype = np.dtype(
            [("tag", "u1"), ("ts", "<f8"), ("v", CHANNEL_FORMATS[self._formats[stream_id]], (channels,))]
        )
        packed = np.empty(n, dtype=dtype)
        packed["tag"] = 8
        packed["ts"] = timestamps
        packed["v"] = np.asarray(values).reshape(n, channels)
        head = struct.pack("<I", stream_id) + struct.pack("<BQ", 8, n)
        self._chunk(SAMPLES, head + packed.tobytes())

    def string_samples(self, stream_id: int, timestamps: list[float], values: list[list[str]]) -> None:
        if not timestamps:
            return
        parts = [struct.pack("<I", stream_id), struct.pack("<BQ", 8, len(timestamps))]
        for ts, row in zip(timestamps, values, strict=True):
            parts.append(struct.pack("<Bd", 8, ts))
            for value in row:
                raw = value.encode("utf-8")
                parts.append(_varlen(len(raw)) + raw)
        self._chunk(SAMPLES, b"".join(parts))

    def clock_offset(self, stream_id: int, collection_time: float, offset: float) -> None:
        self._chunk(CLOCK_OFFSET, struct.pack("<Idd", stream_id, collection_time, offset))

    def boundary(self) -> None:
        self._chunk(BOUNDARY, BOUNDARY_UUID)

    def stream_footer(self, stream_id: int, info: dict[str, object]) -> None:
        self._chunk(STREAM_FOOTER, struct.pack("<I", stream_id) + xml_info(info))

    def close(self) -> None:
        self._out.flush()

    def __enter__(self) -> XdfWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
