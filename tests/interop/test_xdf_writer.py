"""The XDF writer's bytes against the spec, worked out by hand (a few bytes each: the format pinned)."""

from __future__ import annotations

import io
import struct

import numpy as np

from replay.export.xdf_writer import XdfWriter, _varlen


def test_chunk_lengths_use_the_smallest_width_the_spec_allows() -> None:
    assert _varlen(255) == b"\x01\xff"
    assert _varlen(256) == b"\x04\x00\x01\x00\x00"
    assert _varlen(2**32) == b"\x08" + struct.pack("<Q", 2**32)


def test_file_header_and_samples_chunks_byte_for_byte() -> None:
    out = io.BytesIO()
    writer = XdfWriter(out)
    info = {
        "name": "m",
        "type": "Markers",
        "channel_count": 1,
        "nominal_srate": "0",
        "channel_format": "string",
    }
    writer.stream_header(7, info)
    writer.string_samples(7, [1.5], [["hi"]])
    writer.stream_header(8, {**info, "name": "n", "channel_format": "int16", "channel_count": 2})
    writer.numeric_samples(8, np.array([2.0]), np.array([[1, -2]], np.int16))
    data = out.getvalue()
    header_xml = b'<?xml version="1.0"?><info><version>1.0</version></info>'
    assert data.startswith(b"XDF:" + bytes([1, len(header_xml) + 2]) + b"\x01\x00" + header_xml)
    # Samples, string: u32 id, NumSampleBytes 8 + u64 count 1, TimeStampBytes 8 + f64, NumLengthBytes 1 + len 2 + "hi"
    strings = (
        struct.pack("<I", 7)
        + b"\x08"
        + struct.pack("<Q", 1)
        + b"\x08"
        + struct.pack("<d", 1.5)
        + b"\x01\x02hi"
    )
    assert bytes([1, len(strings) + 2]) + b"\x03\x00" + strings in data
    numbers = struct.pack("<I", 8) + b"\x08" + struct.pack("<Q", 1) + b"\x08" + struct.pack("<d", 2.0)
    numbers += struct.pack("<hh", 1, -2)
    assert data.endswith(bytes([1, len(numbers) + 2]) + b"\x03\x00" + numbers)
