"""Byte layout of segment files: the file header and the framed record (docs/FORMAT.md, "Segments").

Kept free of msgpack and lz4 so the framing can be checked, scanned and repaired without decoding packets.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from pathlib import Path

from vrcap.errors import CorruptRecord, RecordTooLarge, TruncatedRecord, UnsupportedVersion

try:  # ISA-L's CRC-32 is the same function as zlib's, ~20x faster with carry-less multiply instructions
    from isal.isal_zlib import crc32
except ImportError:  # pragma: no cover - platforms without an isal wheel fall back to zlib
    from zlib import crc32

FORMAT_MAJOR = 1
FORMAT_MINOR = 0
FORMAT_VERSION = f"{FORMAT_MAJOR}.{FORMAT_MINOR}"

# PNG-style magic: the high bit catches 7-bit transfers, CR LF and ^Z catch text-mode newline mangling.
SEGMENT_MAGIC = b"\x89VRC\r\n\x1a\n"
SEGMENT_HEADER = struct.Struct("<8sHHI")  # magic, major, minor, segment number
SEGMENT_HEADER_SIZE = SEGMENT_HEADER.size  # 16

# length u32 | crc32 u32 (over kind, flags, payload) | kind u8 | flags u8 | header check u16
RECORD_HEADER = struct.Struct("<IIBBH")
RECORD_HEADER_SIZE = RECORD_HEADER.size  # 12
_HCHECK_PREFIX = struct.Struct("<IIBB")

# Refused before allocating: a flipped bit in a length must not make a reader ask for gigabytes.
DEFAULT_MAX_RECORD_BYTES = 64 * 1024 * 1024


class RecordKind(IntEnum):
    PACKET = 1
    ANNOTATIONS = 2  # only in annotations-*.vra sidecars (vrcap/annotate_format.py), never in a segment


class RecordFlags(IntFlag):
    NONE = 0
    LZ4 = 1  # payload is one LZ4 frame wrapping the msgpack bytes


KNOWN_FLAGS = int(RecordFlags.LZ4)


_CRC_SEEDS = {(k, f): zlib.crc32(bytes((k, f))) for k in range(256) for f in range(4)}


def payload_crc(kind: int, flags: int, payload: bytes | memoryview) -> int:
    """CRC-32 (zlib's polynomial) of kind, flags and payload: a flipped flag is caught like a flipped byte."""
    seed = _CRC_SEEDS.get((kind, flags))
    return crc32(payload, zlib.crc32(bytes((kind, flags))) if seed is None else seed)


def header_check(length: int, crc: int, kind: int, flags: int) -> int:
    """Low 16 bits of the CRC-32 of the first ten header bytes.

    Without it a flipped bit in ``length`` of a record mid-file would look like a torn tail, and a repair
    would cut every good record after it.
    """
    return zlib.crc32(_HCHECK_PREFIX.pack(length, crc, kind, flags)) & 0xFFFF


def encode_record(kind: int, flags: int, payload: bytes | memoryview) -> bytes:
    crc = payload_crc(kind, flags, payload)
    length = len(payload)
    return RECORD_HEADER.pack(length, crc, kind, flags, header_check(length, crc, kind, flags))


def encode_segment_header(segment_number: int) -> bytes:
    return SEGMENT_HEADER.pack(SEGMENT_MAGIC, FORMAT_MAJOR, FORMAT_MINOR, segment_number)


@dataclass(frozen=True, slots=True)
class SegmentHeader:
    major: int
    minor: int
    segment_number: int


def decode_segment_header(
    buf: bytes | memoryview, path: Path, expected_number: int | None = None
) -> SegmentHeader:
    """Check the 16-byte file header (docs/FORMAT.md §2).

    A segment shorter than 16 bytes is torn; a bad magic, a major version of 0 (no such version exists) or a
    segment number other than the file name's is corrupt; a newer major version is refused, never guessed at.
    """
    if len(buf) < SEGMENT_HEADER_SIZE:
        raise TruncatedRecord(path, 0, SEGMENT_HEADER_SIZE, len(buf))
    magic, major, minor, number = SEGMENT_HEADER.unpack_from(buf, 0)
    if magic != SEGMENT_MAGIC:
        raise CorruptRecord(path, 0, "file does not start with the vrcap segment magic")
    if major > FORMAT_MAJOR:
        raise UnsupportedVersion(path, f"{major}.{minor}", str(FORMAT_MAJOR))
    if major < 1:
        raise CorruptRecord(path, 8, f"segment header says format major version {major}; versions start at 1")
    if expected_number is not None and number != expected_number:
        raise CorruptRecord(
            path, 12, f"segment header says segment {number}, the file name {expected_number}"
        )
    return SegmentHeader(major, minor, number)


@dataclass(frozen=True, slots=True)
class RecordHeader:
    offset: int
    length: int
    crc: int
    kind: int
    flags: int

    @property
    def end(self) -> int:
        return self.offset + RECORD_HEADER_SIZE + self.length


def decode_record_header(
    buf: bytes | memoryview, offset: int, size: int, path: Path, max_record_bytes: int
) -> RecordHeader:
    """Parse and sanity-check the header at ``offset`` of a buffer holding ``size`` bytes.

    Raises TruncatedRecord when the file ends inside the header or the payload, CorruptRecord when the
    header check fails, RecordTooLarge when the length is over the limit (before anything is allocated).
    """
    available = size - offset
    if available < RECORD_HEADER_SIZE:
        raise TruncatedRecord(path, offset, RECORD_HEADER_SIZE, available)
    length, crc, kind, flags, check = RECORD_HEADER.unpack_from(buf, offset)
    if header_check(length, crc, kind, flags) != check:
        raise CorruptRecord(path, offset, "record header check failed")
    if length > max_record_bytes:
        raise RecordTooLarge(path, offset, length, max_record_bytes)
    if available < RECORD_HEADER_SIZE + length:
        raise TruncatedRecord(path, offset, RECORD_HEADER_SIZE + length, available)
    return RecordHeader(offset, length, crc, kind, flags)


def verify_payload(header: RecordHeader, payload: bytes | memoryview, path: Path) -> None:
    if payload_crc(header.kind, header.flags, payload) != header.crc:
        raise CorruptRecord(path, header.offset, "payload checksum (CRC-32) mismatch")


def find_next_record(
    buf: bytes | memoryview, start: int, size: int, path: Path, max_record_bytes: int
) -> RecordHeader | None:
    """Resynchronise after corruption: the first offset ≥ start holding a record whose header and payload check.

    A byte-by-byte search; used only by validation and repair, never on the normal read path.
    """
    for offset in range(start, size - RECORD_HEADER_SIZE + 1):
        try:
            header = decode_record_header(buf, offset, size, path, max_record_bytes)
        except (CorruptRecord, TruncatedRecord):
            continue
        body = buf[offset + RECORD_HEADER_SIZE : header.end]
        if payload_crc(header.kind, header.flags, body) == header.crc:
            return header
    return None
