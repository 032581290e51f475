"""Protobuf wire bytes for the MCAP exporter's most frequent messages, packed by hand instead of by SDK objects.

Why: building a foxglove-sdk object per sample (a FrameTransform is 5 objects) and letting the SDK encode it
costs microseconds of Python-to-Rust conversion for messages whose wire layout is known in advance. Here
each message is a precomputed template around the few bytes that change per sample: the timestamp varints,
the doubles of a pose, the length of an image or audio block. The bytes are the same as google.protobuf's
``SerializeToString`` of the same message (fields in number order, proto3 defaults left out), which is also
what the SDK writes, except for -0.0: the SDK drops it like +0.0 (so it reads back as +0.0), protobuf and
this module keep it. tests/interop/test_mcap_wire.py decodes these bytes against both.

Field numbers, from the schemas foxglove-sdk ships (``foxglove.messages.X.get_schema()``):

    google.protobuf.Timestamp: 1 seconds (int64 varint), 2 nanos (int32 varint)
    FrameTransforms: 1 transforms (FrameTransform, repeated)
    FrameTransform: 1 timestamp, 2 parent_frame_id, 3 child_frame_id, 4 translation (Vector3), 5 rotation
    Vector3: 1 x, 2 y, 3 z (double); Quaternion: 1 x, 2 y, 3 z, 4 w (double)
    CompressedImage: 1 timestamp, 2 data (bytes), 3 format (string), 4 frame_id (string)
    RawAudio: 1 timestamp, 2 data (bytes), 3 format (string), 4 sample_rate, 5 number_of_channels (fixed32)
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Sequence

NS = 1_000_000_000
DOUBLE = struct.Struct("<d")
FIXED32 = struct.Struct("<I")
# A FrameTransform's translation (tag 0x22, 27 bytes: three tagged doubles) and rotation (0x2A, 36 bytes: four)
# when no value is +0.0, i.e. when every double is written: each is its tag byte (number << 3 | 1) and 8 bytes.
_VECTORS = struct.Struct("<BBBdBdBd" + "BBBdBdBdBd")


def varint(value: int) -> bytes:
    """An unsigned varint; a negative int64 as protobuf writes it (two's complement, 10 bytes)."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (string, bytes, sub-message)."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def string_field(number: int, text: str) -> bytes:
    """A string field, or nothing for "" (the proto3 default is not written)."""
    return field(number, text.encode()) if text else b""


def fixed32_field(number: int, value: int) -> bytes:
    return varint(number << 3 | 5) + FIXED32.pack(value) if value else b""


@functools.lru_cache(maxsize=4)
def _stamp_heads(seconds: int) -> tuple[bytes, ...]:
    """Field 1 up to its nanos varint, for a nanos varint of k = 0 (nanos 0: not written) .. 5 bytes.

    The same for a whole second of messages, so only the nanos varint is computed per message.
    """
    body = b"\x08" + varint(seconds) if seconds else b""  # seconds 0 is not written either
    with_nanos = (b"\x0a" + bytes((len(body) + 1 + k,)) + body + b"\x10" for k in range(1, 6))
    return (b"\x0a" + bytes((len(body),)) + body, *with_nanos)


@functools.lru_cache(maxsize=8)
def timestamp_field(wall_ns: int) -> bytes:
    """Field 1 as a google.protobuf.Timestamp, always written (even empty: a set sub-message is).

    Cached: OpenXR locates every space at one time per frame, so the poses, hands and cameras of a frame
    share their timestamp and 4 in 5 calls are hits. A miss is the nanos varint (0 < nanos < 2**30),
    unrolled, longest first (3 in 4 are 5 bytes): a loop costs twice as much.
    """
    seconds, v = divmod(wall_ns, NS)
    heads = _stamp_heads(seconds)
    if v >= 0x10000000:
        return heads[5] + bytes((v & 0x7F | 0x80, v >> 7 & 0x7F | 0x80, v >> 14 & 0x7F | 0x80,
                                 v >> 21 & 0x7F | 0x80, v >> 28))  # fmt: skip
    if v >= 0x200000:
        return heads[4] + bytes((v & 0x7F | 0x80, v >> 7 & 0x7F | 0x80, v >> 14 & 0x7F | 0x80, v >> 21))
    if v >= 0x4000:
        return heads[3] + bytes((v & 0x7F | 0x80, v >> 7 & 0x7F | 0x80, v >> 14))
    if v >= 0x80:
        return heads[2] + bytes((v & 0x7F | 0x80, v >> 7))
    return heads[1] + bytes((v,)) if v else heads[0]


def _is_plus_zero(value: float) -> bool:
    return value == 0.0 and math.copysign(1.0, value) > 0


def _doubles(values: Sequence[float]) -> bytes:
    """Fields 1.. of a Vector3/Quaternion body: every double but +0.0, which proto3 leaves out."""
    return b"".join(
        bytes(((i + 1) << 3 | 1,)) + DOUBLE.pack(v) for i, v in enumerate(values) if not _is_plus_zero(v)
    )


class FrameTransformsPacker:
    """``foxglove.FrameTransforms`` holding one transform of a fixed parent and child frame."""

    def __init__(self, parent_frame_id: str, child_frame_id: str) -> None:
        self.frames = string_field(2, parent_frame_id) + string_field(3, child_frame_id)
        # FrameTransforms' field 1 header for each possible Timestamp field length (2 .. 19 bytes)
        fixed = len(self.frames) + _VECTORS.size
        self.heads = [b"\x0a" + varint(stamp + fixed) for stamp in range(20)]

    def pack(self, wall_ns: int, values: Sequence[float]) -> bytes:
        """``values``: px py pz qx qy qz qw (more are ignored)."""
        x, y, z, qx, qy, qz, qw = values[:7]
        if not (x and y and z and qx and qy and qz and qw):  # a 0.0 or -0.0 (NaN is true)
            return self._pack_zeros(wall_ns, (x, y, z), (qx, qy, qz, qw))
        stamp = timestamp_field(wall_ns)
        vectors = _VECTORS.pack(0x22, 27, 0x09, x, 0x11, y, 0x19, z, 0x2A, 36, 0x09, qx, 0x11, qy, 0x19, qz,
                                0x21, qw)  # fmt: skip
        return self.heads[len(stamp)] + stamp + self.frames + vectors

    def _pack_zeros(self, wall_ns: int, translation: Sequence[float], rotation: Sequence[float]) -> bytes:
        """The general case, for a sample holding a 0.0 (a field protobuf does not write when +0.0)."""
        body = timestamp_field(wall_ns) + self.frames
        body += field(4, _doubles(translation)) + field(5, _doubles(rotation))
        return field(1, body)


class BytesMessagePacker:
    """A message of a Timestamp (field 1), a bytes field 2 and fields after it that never change.

    ``foxglove.CompressedImage`` (then format, frame_id) and ``foxglove.RawAudio`` (format, rate, channels)
    are this shape; the payload is copied once, into the message, as the SDK's own encoder copies it.
    """

    def __init__(self, suffix: bytes) -> None:
        self.suffix = suffix
        self._length = -1  # the payload length whose field header is in _head (audio blocks keep one)
        self._head = b""

    @classmethod
    def compressed_image(cls, frame_id: str, image_format: str) -> BytesMessagePacker:
        return cls(string_field(3, image_format) + string_field(4, frame_id))

    @classmethod
    def raw_audio(cls, audio_format: str, sample_rate: int, channels: int) -> BytesMessagePacker:
        return cls(string_field(3, audio_format) + fixed32_field(4, sample_rate) + fixed32_field(5, channels))

    def pack(self, wall_ns: int, data: bytes) -> bytes:
        length = len(data)
        if length != self._length:  # empty data is the bytes default: no field at all
            self._length, self._head = length, b"\x12" + varint(length) if length else b""
        return b"".join((timestamp_field(wall_ns), self._head, data, self.suffix))
