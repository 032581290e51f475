"""A forgiving scan of one segment: every intact record, and every damaged byte range, in file order.

The reader stops at the first damage; validation and repair need to see past it, so they resynchronise on
the next record whose header check and checksum both pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from vrcap.errors import CorruptRecord, FormatError, TruncatedRecord
from vrcap.layout import segment_number
from vrcap.reader import _Mapping
from vrcap.records import (
    DEFAULT_MAX_RECORD_BYTES,
    RECORD_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
    RecordHeader,
    decode_record_header,
    decode_segment_header,
    find_next_record,
    payload_crc,
)


@dataclass(frozen=True)
class Damage:
    """Bytes [start, end) of a segment that hold no intact record. ``torn`` marks a cut-off tail."""

    segment: Path
    start: int
    end: int
    torn: bool
    error: FormatError


@dataclass(frozen=True)
class GoodRecord:
    segment: Path
    header: RecordHeader
    payload: memoryview  # valid until the scan advances


def scan_segment(
    path: Path, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
) -> Iterator[GoodRecord | Damage]:
    """Intact records and damaged ranges of one segment; UnsupportedVersion (a newer major) propagates."""
    mapping = _Mapping(path)
    try:
        buf, size = mapping.view, mapping.size
        try:
            decode_segment_header(buf, path, segment_number(path))
        except TruncatedRecord as exc:
            yield Damage(path, 0, size, True, exc)
            return
        except CorruptRecord as exc:  # a damaged header does not doom the records behind it
            if size <= SEGMENT_HEADER_SIZE:
                yield Damage(path, 0, size, False, exc)
                return
            yield Damage(path, 0, SEGMENT_HEADER_SIZE, False, exc)
        offset = SEGMENT_HEADER_SIZE
        while offset < size:
            try:
                header = decode_record_header(buf, offset, size, path, max_record_bytes)
                payload = buf[offset + RECORD_HEADER_SIZE : header.end]
                if payload_crc(header.kind, header.flags, payload) != header.crc:
                    payload.release()
                    raise CorruptRecord(path, offset, "payload checksum (CRC-32) mismatch")
            except TruncatedRecord as exc:
                following = find_next_record(buf, offset + 1, size, path, max_record_bytes)
                if following is None:  # nothing intact after it: the recorder was cut off here
                    yield Damage(path, offset, size, True, exc)
                    return
                yield Damage(path, offset, following.offset, False, exc)
                offset = following.offset
                continue
            except CorruptRecord as exc:
                following = find_next_record(buf, offset + 1, size, path, max_record_bytes)
                end = size if following is None else following.offset
                yield Damage(path, offset, end, False, exc)
                if following is None:
                    return
                offset = following.offset
                continue
            try:
                yield GoodRecord(path, header, payload)
            finally:
                payload.release()
            offset = header.end
    finally:
        mapping.close()
