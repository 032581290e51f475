"""The content size read from an LZ4 frame's header by hand is lz4's own, and anything unusual goes to lz4."""

from __future__ import annotations

import lz4.frame
import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vrcap.packets import _declared_size, decode_payload


@given(st.binary(max_size=5000), st.sampled_from([0, 4, 16]), st.booleans(), st.booleans())
def test_header_size_equals_lz4s(data: bytes, level: int, checksum: bool, block_checksum: bool) -> None:
    frame = lz4.frame.compress(
        data,
        compression_level=level,
        store_size=True,
        content_checksum=checksum,
        block_checksum=block_checksum,
    )
    assert _declared_size(frame) == lz4.frame.get_frame_info(frame)["content_size"] == len(data)


def test_a_frame_without_its_size_is_still_refused() -> None:
    frame = lz4.frame.compress(msgpack.packb({"t": 1}) * 100, store_size=False)
    assert _declared_size(frame) == 0  # lz4 reads this header: no size flag
    with pytest.raises(ValueError, match="does not store its content size"):
        decode_payload(1, frame)


def test_a_lying_size_is_caught_by_the_length_check() -> None:
    payload = msgpack.packb({"t": 1, "s": {"x": [1] * 200}})
    frame = bytearray(lz4.frame.compress(payload, store_size=True))
    frame[6] ^= 0x01  # content size off by one; lz4 itself checks the header's checksum byte
    with pytest.raises((ValueError, RuntimeError)):
        decode_payload(1, bytes(frame))
    assert decode_payload(1, lz4.frame.compress(payload, store_size=True))["t"] == 1
