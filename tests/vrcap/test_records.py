"""Record framing: header checks, size limits, and what a flipped bit turns into."""

from __future__ import annotations

from pathlib import Path

import pytest

from vrcap.errors import CorruptRecord, RecordTooLarge, TruncatedRecord, UnsupportedVersion
from vrcap.records import (
    RECORD_HEADER,
    RECORD_HEADER_SIZE,
    SEGMENT_HEADER,
    SEGMENT_MAGIC,
    decode_record_header,
    decode_segment_header,
    encode_record,
    encode_segment_header,
    find_next_record,
    payload_crc,
)

P = Path("packets-000000.vrc")


def test_header_sizes_match_the_spec() -> None:
    assert RECORD_HEADER_SIZE == 12
    assert SEGMENT_HEADER.size == 16
    assert encode_segment_header(7)[:8] == SEGMENT_MAGIC


def test_record_roundtrip_and_crc_covers_flags() -> None:
    payload = b"hello world"
    buf = encode_record(1, 0, payload) + payload
    header = decode_record_header(buf, 0, len(buf), P, 1 << 20)
    assert (header.length, header.kind, header.flags, header.end) == (11, 1, 0, 23)
    assert header.crc == payload_crc(1, 0, payload)
    assert payload_crc(1, 1, payload) != payload_crc(1, 0, payload)


@pytest.mark.parametrize("bit", range(32))
def test_flipped_length_bit_is_corruption_not_a_torn_tail(bit: int) -> None:
    payload = b"x" * 100
    buf = bytearray(encode_record(1, 0, payload) + payload + encode_record(1, 0, payload) + payload)
    length = int.from_bytes(buf[0:4], "little") ^ (1 << bit)
    buf[0:4] = length.to_bytes(4, "little")
    with pytest.raises(CorruptRecord) as info:
        decode_record_header(buf, 0, len(buf), P, 1 << 20)
    assert info.value.offset == 0
    assert not isinstance(info.value, RecordTooLarge)


def test_oversized_record_refused_before_reading_it() -> None:
    header = bytearray(encode_record(1, 0, b"x" * 10))
    # forge a consistent header that claims 3 GB: the limit must refuse it without allocating
    _, crc, kind, flags, _ = RECORD_HEADER.unpack(bytes(header))
    from vrcap.records import header_check

    forged = RECORD_HEADER.pack(
        3_000_000_000, crc, kind, flags, header_check(3_000_000_000, crc, kind, flags)
    )
    with pytest.raises(RecordTooLarge) as info:
        decode_record_header(forged, 0, len(forged), P, 64 << 20)
    assert info.value.length == 3_000_000_000
    assert "3000000000 bytes" in str(info.value) and "67108864-byte limit" in str(info.value)


def test_truncated_header_and_payload() -> None:
    payload = b"y" * 50
    buf = encode_record(1, 0, payload) + payload
    for cut in (0, 5, 11):
        with pytest.raises(TruncatedRecord):
            decode_record_header(buf[:cut], 0, cut, P, 1 << 20)
    with pytest.raises(TruncatedRecord) as info:
        decode_record_header(buf[:40], 0, 40, P, 1 << 20)
    assert (info.value.needed, info.value.available) == (62, 40)


def test_newer_major_version_refused_with_upgrade_hint() -> None:
    buf = SEGMENT_HEADER.pack(SEGMENT_MAGIC, 2, 0, 0)
    with pytest.raises(UnsupportedVersion, match="pip install -U vrcap"):
        decode_segment_header(buf, P)
    assert decode_segment_header(SEGMENT_HEADER.pack(SEGMENT_MAGIC, 1, 9, 3), P).minor == 9


def test_resync_finds_the_next_intact_record() -> None:
    a, b = b"a" * 30, b"b" * 40
    buf = bytearray(encode_record(1, 0, a) + a + encode_record(1, 0, b) + b)
    buf[3] ^= 0xFF  # damage the first header
    found = find_next_record(buf, 1, len(buf), P, 1 << 20)
    assert found is not None and found.offset == 42 and found.length == 40
