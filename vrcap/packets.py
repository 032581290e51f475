"""The packet: one msgpack map per headset frame (schema in docs/FORMAT.md, "Packets").

Packets stay plain dicts on purpose: msgpack builds and reads them in C, and a reader written from the spec in
another language sees the same keys. Readers look keys up with ``.get`` so a newer writer's extra keys are
ignored rather than fatal.
"""

from __future__ import annotations

import struct
from typing import Any, Literal, get_args

import lz4.frame
import msgpack

from vrcap.records import RecordFlags

# Top-level packet keys.
SEQ = "seq"  # int: frame sequence number, +1 per headset frame; a jump is a dropped frame
TIME = "t"  # int: frame time, host CLOCK_MONOTONIC, nanoseconds
SOURCE_TIME = "st"  # int: frame time in the frame source's own clock (see the stream's `clock`)
SAMPLES = "s"  # map: stream name -> list of samples that arrived since the previous packet

# Sample keys.
S_TIME = "t"  # int: host monotonic ns (mapped from the source's clock)
S_SOURCE_TIME = "st"  # int: the source's own timestamp
S_DATA = "d"  # bytes (array streams) or map (text streams)
S_VALID = "v"  # int: validity bits (poses, hands), see POSE_* below
S_INDEX = "i"  # int: audio: sample-counter index of the block's first frame
S_COUNT = "n"  # int: audio: frames in the block
S_FRAME = "f"  # int: camera: the camera's own frame number

# Text samples' `d` map (FORMAT.md §4): the one definition capture, replay and the server share.
AnnotationKind = Literal["instruction", "transcript", "marker"]
AnnotationChannel = Literal["internal", "external"]
ANNOTATION_KINDS: tuple[str, ...] = get_args(AnnotationKind)
ANNOTATION_CHANNELS: tuple[str, ...] = get_args(AnnotationChannel)

# Validity bits, mirroring XrSpaceLocationFlags so an OpenXR source can store them unchanged.
POSE_ORIENTATION_VALID = 0x1
POSE_POSITION_VALID = 0x2
POSE_ORIENTATION_TRACKED = 0x4
POSE_POSITION_TRACKED = 0x8
POSE_LINEAR_VELOCITY_VALID = 0x10
POSE_ANGULAR_VELOCITY_VALID = 0x20
POSE_ALL_VALID = 0x3F

_packer = msgpack.Packer(use_bin_type=True, autoreset=True)


def encode_packet(
    packet: dict[str, Any], *, compress: bool = True, min_bytes: int = 512, min_saving: float = 0.1
) -> tuple[int, bytes]:
    """Return (record flags, payload). Compressed only when LZ4 saves at least ``min_saving`` of the size.

    JPEG-heavy packets do not shrink, so storing them raw spares every reader a decompression pass.
    """
    raw = _packer.pack(packet)
    if compress and len(raw) >= min_bytes:
        packed = lz4.frame.compress(raw, compression_level=0, store_size=True)
        if len(packed) <= len(raw) * (1.0 - min_saving):
            return int(RecordFlags.LZ4), packed
    return int(RecordFlags.NONE), raw


_LZ4 = int(RecordFlags.LZ4)  # a plain int: `flags & IntFlag` goes through enum code on every record


# The decompressed form is bounded like the stored one: a 1 KiB LZ4 frame can claim gigabytes.
DEFAULT_MAX_DECOMPRESSED_BYTES = 64 * 1024 * 1024


_LZ4_MAGIC = b"\x04\x22\x4d\x18"
_CONTENT_SIZE = struct.Struct("<Q")


def _declared_size(payload: bytes | memoryview) -> int:
    """The frame's content size from its header (docs/FORMAT.md §3), read here when the header is the usual
    one (magic, version 01, content-size flag): lz4's own get_frame_info releases and retakes the GIL on
    every packet, which stalls the reader whenever another thread holds it. Anything else goes to lz4."""
    if len(payload) >= 15 and payload[:4] == _LZ4_MAGIC and payload[4] & 0xC8 == 0x48:
        return _CONTENT_SIZE.unpack_from(payload, 6)[0]
    return lz4.frame.get_frame_info(payload).get("content_size", 0)


def decode_payload(
    flags: int, payload: bytes | memoryview, max_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES
) -> dict[str, Any]:
    if flags & _LZ4:
        declared = _declared_size(payload)
        if not declared:
            raise ValueError("LZ4 frame does not store its content size (docs/FORMAT.md §3 requires it)")
        if declared > max_bytes:
            raise ValueError(
                f"LZ4 frame declares {declared} decompressed bytes, over the {max_bytes}-byte limit"
            )
        payload = lz4.frame.decompress(payload)
        if len(payload) != declared:
            raise ValueError(
                f"LZ4 frame decompresses to {len(payload)} bytes, not the {declared} it declares"
            )
    packet = msgpack.unpackb(payload, raw=False)
    if not isinstance(packet, dict):
        raise ValueError(f"packet is a msgpack {type(packet).__name__}, not a map")
    return packet
