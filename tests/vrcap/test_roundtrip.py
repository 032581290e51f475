"""Packets of any content survive writer → disk → reader unchanged."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vrcap.errors import WriterError
from vrcap.reader import SessionReader
from vrcap.streams import StreamDescriptor
from vrcap.writer import SessionWriter, WriterConfig

STREAMS = [StreamDescriptor("x", "pose", 90.0, (13,), "float32", "raw")]
LIMIT = 1 << 20  # small record limit so "maximal" fields are cheap to build

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=50),
    st.binary(max_size=2000),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=20,
)
samples = st.lists(
    st.dictionaries(st.sampled_from(["t", "st", "d", "v", "i", "n", "f", "new_key"]), values), max_size=4
)
packet_bodies = st.dictionaries(st.sampled_from(["x", "y", ""]), samples, max_size=3)


def _roundtrip(packets: list[dict[str, Any]], config: WriterConfig) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s"
        with SessionWriter.create(path, STREAMS, config=config) as w:
            for p in packets:
                w.write_packet(p)
        with SessionReader(path, max_record_bytes=config.max_record_bytes) as r:
            got = list(r.packets())
            assert len(r) == len(packets)
            for p in packets[:: max(1, len(packets) // 3)]:
                assert r.packet_at(p["seq"]) == p
        return got


@given(
    bodies=st.lists(packet_bodies, min_size=0, max_size=12),
    extra=st.dictionaries(st.sampled_from(["zz", "future"]), values, max_size=2),
)
def test_random_packets_roundtrip(bodies: list[dict[str, Any]], extra: dict[str, Any]) -> None:
    packets = [{"seq": i * 2, "t": 10**12 + i, "s": body, **extra} for i, body in enumerate(bodies)]
    assert _roundtrip(packets, WriterConfig(fsync=False, max_record_bytes=LIMIT)) == packets


def test_empty_and_maximal_fields() -> None:
    config = WriterConfig(fsync=False, max_record_bytes=LIMIT, compress=False)
    empty = {"seq": 0, "t": 0, "s": {}}
    overhead = len(
        __import__("msgpack").packb({"seq": 1, "t": 1, "s": {"x": [{"d": b""}]}}, use_bin_type=True)
    )
    # the largest bin field that still fits the limit: msgpack's bin32 header adds 3 bytes over bin8's
    biggest = LIMIT - overhead - 3
    maximal = {"seq": 1, "t": 1, "s": {"x": [{"d": b"\xab" * biggest}]}}
    got = _roundtrip([empty, maximal], config)
    assert got[0] == empty
    assert len(got[1]["s"]["x"][0]["d"]) == biggest
    with pytest.raises(WriterError, match="over max_record_bytes"):
        _roundtrip([{"seq": 0, "t": 0, "s": {"x": [{"d": b"\x00" * (biggest + 1)}]}}], config)


def test_compressible_packets_are_compressed_and_jpeg_like_are_not(tmp_path: Path) -> None:
    import os

    from vrcap.records import RecordFlags
    from vrcap.scan import GoodRecord, scan_segment

    path = tmp_path / "s"
    with SessionWriter.create(path, STREAMS, config=WriterConfig(fsync=False)) as w:
        w.write_packet({"seq": 0, "t": 0, "s": {"x": [{"d": bytes(20000)}]}})  # zeros: compressible
        w.write_packet({"seq": 1, "t": 1, "s": {"x": [{"d": os.urandom(20000)}]}})  # noise: not
    scan = scan_segment(path / "packets-000000.vrc")
    flags = [r.header.flags for r in scan if isinstance(r, GoodRecord)]
    assert flags == [RecordFlags.LZ4, RecordFlags.NONE]
    assert (path / "packets-000000.vrc").stat().st_size < 20000 + 2000


def test_segments_rotate_by_size_and_by_duration(tmp_path: Path) -> None:
    from tests.helpers import STREAMS as SYNTHETIC_STREAMS
    from tests.helpers import synthetic_packet
    from vrcap.validate import validate_session

    blob = {"seq": 0, "t": 0, "s": {"x": [{"d": bytes(300_000)}]}}
    by_size = tmp_path / "size"
    with SessionWriter.create(
        by_size, STREAMS, config=WriterConfig(fsync=False, segment_max_bytes=1 << 20, compress=False)
    ) as w:
        for seq in range(10):
            w.write_packet({**blob, "seq": seq, "t": seq})
    files = sorted(p.name for p in by_size.glob("packets-*.vrc"))
    assert files == ["packets-000000.vrc", "packets-000001.vrc", "packets-000002.vrc", "packets-000003.vrc"]
    assert all(p.stat().st_size <= 1 << 20 for p in by_size.glob("packets-*.vrc"))
    with SessionReader(by_size) as r:
        assert [p["seq"] for p in r.packets()] == list(range(10))
        assert r.packet_at(9)["seq"] == 9 and r.index.find_seq(9).segment == 3  # type: ignore[union-attr]
    assert validate_session(by_size).ok
    by_time = tmp_path / "time"
    with SessionWriter.create(
        by_time, SYNTHETIC_STREAMS, config=WriterConfig(fsync=False, segment_max_seconds=1.0)
    ) as w:
        for seq in range(300):  # 90 Hz for 3.3 s: a new segment every second
            w.write_packet(synthetic_packet(seq))
    segments = [s["records"] for s in SessionReader(by_time).meta.segments]
    assert segments == [91, 91, 91, 27]  # 90 intervals of 11.11 ms are just under 1 s, so 91 frames fit
    assert validate_session(by_time).ok
