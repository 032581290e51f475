"""How tests/data/conformance/ was made: one base session, then one kind of damage or edge case per copy.

Run once (``python -m tests.vrcap.conformance_corpus``) and committed; like the goldens, the corpus is never
regenerated to make a test pass. The expected outcome of every case is stated here **by construction** (which
records the damage hits, which file and byte it starts at), not by running vrcap's reader on the result, so the
corpus can catch the reader. docs/FORMAT.md §10 describes the JSON.
"""

from __future__ import annotations

import json
import shutil
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from vrcap.index import ENTRY, INDEX_HEADER
from vrcap.records import RECORD_HEADER, header_check
from vrcap.streams import StreamDescriptor
from vrcap.writer import SessionWriter, WriterConfig

CORPUS = Path(__file__).resolve().parent.parent / "data" / "conformance"
T0 = 7_000_000_000_000  # monotonic ns of frame 0
WALL0 = 1_790_000_000_000_000_000  # Unix ns of start.mono_ns
PERIOD = 11_111_111  # 90 Hz
N = 9  # packets, three per segment
STREAMS = [
    StreamDescriptor(
        "head", "pose", 90.0, (13,), "float32", "raw", units="m", frame="stage", source="corpus"
    ),
    StreamDescriptor(
        "audio", "audio", 48000.0, (-1, 1), "int16", "pcm_s16le", source="corpus", clock="sample_index"
    ),
]


def _packet(seq: int) -> dict[str, Any]:
    """Frame ``seq``: a head pose (raw record); every third frame also 480 frames of silence (an LZ4 record)."""
    t = T0 + seq * PERIOD
    head = np.array([0.1 * seq, 1.6, -0.2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0], dtype="<f4")
    packet: dict[str, Any] = {"seq": seq, "t": t, "s": {"head": [{"t": t, "d": head.tobytes(), "v": 0x3F}]}}
    if seq % 3 == 0:
        index = seq // 3 * 480
        audio_t = T0 + round(index * 1e9 / 48000)
        packet["s"]["audio"] = [{"t": audio_t, "i": index, "n": 480, "d": bytes(960)}]
    return packet


def _base(path: Path) -> None:
    """Three segments of three frames (rotated by frame time), finalized with deterministic metadata."""
    config = WriterConfig(fsync=False, reserve_bytes=0, segment_max_seconds=2.5 * PERIOD / 1e9)
    clocks = {"audio": {"type": "linear", "unit": "sample_index",
                        "segments": [{"from_index": 0, "a_ns": float(T0), "b_ns": 1e9 / 48000}]}}  # fmt: skip
    w = SessionWriter.create(
        path, STREAMS, config=config, clocks=clocks, start_mono_ns=T0, start_wall_ns=WALL0
    )
    with w:
        for seq in range(N):
            w.write_packet(_packet(seq))
    meta = json.loads((path / "session.json").read_text())
    last_t = T0 + (N - 1) * PERIOD
    meta["created_by"] = {
        "vrcap": "0.1.0",
        "host": "corpus",
        "platform": "Linux",
        "python": "3.11",
        "pid": "1",
    }
    meta["stop"] = {"wall_utc": "2026-09-21T13:46:40.088889+00:00", "wall_ns": WALL0 + last_t - T0,
                    "mono_ns": last_t, "reason": "duration reached"}  # fmt: skip
    meta["start"]["wall_utc"] = "2026-09-21T13:46:40.000000+00:00"
    (path / "session.json").write_text(json.dumps(meta, indent=2) + "\n")


def _offsets(path: Path) -> dict[int, tuple[int, int]]:
    """seq → (segment number, byte offset), from the index the writer wrote (not from vrcap's reader)."""
    data = (path / "index.vri").read_bytes()[INDEX_HEADER.size :]
    return {s: (g, o) for s, _t, g, _r, o in ENTRY.iter_unpack(data)}


def _seg(path: Path, number: int) -> Path:
    return path / f"packets-{number:06d}.vrc"


def _record(kind: int, flags: int, payload: bytes) -> bytes:
    crc = zlib.crc32(bytes((kind, flags)) + payload)
    return (
        RECORD_HEADER.pack(len(payload), crc, kind, flags, header_check(len(payload), crc, kind, flags))
        + payload
    )


def _flip(path: Path, offset: int, mask: int = 0x01) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))


def _crashed(path: Path) -> None:
    """What a killed recorder leaves in session.json: status recording, no stop, stats or segments."""
    meta = json.loads((path / "session.json").read_text())
    meta.update(status="recording", stop=None, segments=[], stats={})
    (path / "session.json").write_text(json.dumps(meta, indent=2) + "\n")


def _xxh32(data: bytes, seed: int = 0) -> int:
    """xxHash32 (for the LZ4 frame descriptor's checksum byte); inputs here are under 16 bytes."""
    p1, p2, p3, p4, p5, mask = 2654435761, 2246822519, 3266489917, 668265263, 374761393, 0xFFFFFFFF
    h = (seed + p5 + len(data)) & mask
    i = 0
    while i + 4 <= len(data):
        h = (h + int.from_bytes(data[i : i + 4], "little") * p3) & mask
        h = (((h << 17) | (h >> 15)) & mask) * p4 & mask
        i += 4
    for b in data[i:]:
        h = (h + b * p5) & mask
        h = (((h << 11) | (h >> 21)) & mask) * p1 & mask
    h ^= h >> 15
    h = h * p2 & mask
    h ^= h >> 13
    h = h * p3 & mask
    return h ^ (h >> 16)


ALL = list(range(N))


def _expect(
    description: str,
    *,
    seqs: list[int] = ALL,
    stops: dict[str, Any] | None = None,
    opens: bool = True,
    skipped: int = 0,
    validate_exit: int = 0,
    errors: list[str] | None = None,
    fix_exit: int = 0,
    fix_seqs: list[int] | None = None,
    fix_untouched: bool = False,
) -> dict[str, Any]:
    return {
        "description": description,
        "read": {
            "opens": opens,
            "seqs": seqs if opens else [],
            "stops_at": stops,
            "skipped_records": skipped,
        },
        "validate": {"exit": validate_exit, "errors_include": sorted(errors or [])},
        "fix": {
            "exit": fix_exit,
            "seqs": ALL if fix_seqs is None else fix_seqs,
            "valid_after": fix_exit == 0,
            "untouched": fix_untouched,
        },
    }


def build(case: str, path: Path) -> dict[str, Any]:
    """Make ``path`` into case ``case`` and return what every reader must make of it."""
    at = _offsets(path)
    seg0, seg1, seg2 = _seg(path, 0), _seg(path, 1), _seg(path, 2)
    size2 = seg2.stat().st_size
    if case == "intact":
        return _expect("three segments, raw and LZ4 records; nothing wrong")
    if case == "torn-tail":
        seg2.write_bytes(seg2.read_bytes()[:-20])
        _crashed(path)
        stop = {"file": seg2.name, "offset": at[8][1], "error": "torn"}
        return _expect("killed while writing frame 8: its record lacks 20 bytes; session.json says recording",
                       seqs=ALL[:8], stops=stop, validate_exit=1, errors=["not-finalized", "torn-tail"],
                       fix_seqs=ALL[:8])  # fmt: skip
    if case == "torn-header":
        with open(seg2, "ab") as f:
            f.write(b"\x40\x00\x00\x00\x12")
        stop = {"file": seg2.name, "offset": size2, "error": "torn"}
        return _expect("the file ends 5 bytes into the header of a tenth record", stops=stop, validate_exit=1,
                       errors=["torn-tail"])  # fmt: skip
    if case == "payload-crc":
        _flip(seg1, at[4][1] + 12 + 20)
        stop = {"file": seg1.name, "offset": at[4][1], "error": "corrupt"}
        return _expect("one payload bit of frame 4 flipped: the CRC catches it", seqs=ALL[:4], stops=stop,
                       validate_exit=1, errors=["corrupt"],
                       fix_seqs=[s for s in ALL if s != 4])  # fmt: skip
    if case == "length-bit":
        _flip(seg0, at[1][1] + 1, 0x10)
        stop = {"file": seg0.name, "offset": at[1][1], "error": "corrupt"}
        return _expect("a bit of frame 1's length flipped: the header check calls it corrupt, not torn",
                       seqs=ALL[:1], stops=stop, validate_exit=1, errors=["corrupt"],
                       fix_seqs=[s for s in ALL if s != 1])  # fmt: skip
    if case == "bad-magic":
        _flip(seg1, 1)
        stop = {"file": seg1.name, "offset": 0, "error": "corrupt"}
        return _expect("segment 1 does not start with the magic; its records are intact", seqs=ALL[:3],
                       stops=stop, validate_exit=1, errors=["corrupt"])  # fmt: skip
    if case == "segment-number":
        data = bytearray(seg1.read_bytes())
        data[12] = 7
        seg1.write_bytes(bytes(data))
        stop = {"file": seg1.name, "offset": 12, "error": "corrupt"}
        return _expect("segment 1's header says segment 7", seqs=ALL[:3], stops=stop, validate_exit=1,
                       errors=["corrupt"])  # fmt: skip
    if case == "major-zero":
        data = bytearray(seg0.read_bytes())
        data[8:10] = b"\x00\x00"
        seg0.write_bytes(bytes(data))
        stop = {"file": seg0.name, "offset": 8, "error": "corrupt"}
        return _expect("segment 0's header says major version 0, which does not exist", seqs=[], stops=stop,
                       validate_exit=1, errors=["corrupt"])  # fmt: skip
    if case == "newer-major-segment":
        data = bytearray(seg2.read_bytes())
        data[8:10] = (2).to_bytes(2, "little")
        seg2.write_bytes(bytes(data))
        stop = {"file": seg2.name, "offset": 0, "error": "unsupported-version"}
        return _expect("segment 2 is major version 2 after two valid segments: refused, never guessed at",
                       seqs=ALL[:6], stops=stop, validate_exit=1, errors=["unsupported-version"], fix_exit=1,
                       fix_seqs=ALL[:6], fix_untouched=True)  # fmt: skip
    if case == "short-segment":
        _seg(path, 3).write_bytes(b"\x89VRC\r\n\x1a\n\x01\x00")
        _crashed(path)
        stop = {"file": "packets-000003.vrc", "offset": 0, "error": "torn"}
        return _expect("killed at rotation: segment 3 holds 10 of its 16 header bytes", stops=stop,
                       validate_exit=1, errors=["not-finalized", "torn-tail"])  # fmt: skip
    if case == "empty-middle-segment":
        seg1.write_bytes(b"")
        stop = {"file": seg1.name, "offset": 0, "error": "torn"}
        kept = [0, 1, 2, 6, 7, 8]
        return _expect("segment 1 is 0 bytes: --fix keeps it as a valid empty segment, numbering intact",
                       seqs=ALL[:3], stops=stop, validate_exit=1, errors=["torn-tail"], fix_seqs=kept)  # fmt: skip
    if case == "segment-gap":
        seg1.unlink()
        kept = [0, 1, 2, 6, 7, 8]
        return _expect("segment 1 was deleted: readers read 0 and 2; --fix renumbers 2 to 1", seqs=kept,
                       validate_exit=1, errors=["segment-missing"], fix_seqs=kept)  # fmt: skip
    if case == "unknown-kind":
        data = seg1.read_bytes()
        cut = at[4][1]
        seg1.write_bytes(data[:cut] + _record(7, 0, b"a record of a later minor version") + data[cut:])
        (path / "index.vri").unlink()
        return _expect("a record of kind 7 before frame 4: skipped by its length", skipped=1)
    if case == "reserved-flag":
        data = seg1.read_bytes()
        start = at[4][1]
        length = RECORD_HEADER.unpack_from(data, start)[0]
        payload = data[start + 12 : start + 12 + length]
        seg1.write_bytes(data[:start] + _record(1, 0x02, payload) + data[start + 12 + length :])
        (path / "index.vri").unlink()
        meta = json.loads((path / "session.json").read_text())
        meta["stats"].update(packets=N - 1)
        (path / "session.json").write_text(json.dumps(meta, indent=2) + "\n")
        kept = [s for s in ALL if s != 4]
        return _expect("frame 4 has reserved flag bit 1 set: skipped and reported, not a dropped frame",
                       seqs=kept, skipped=1, fix_seqs=kept)  # fmt: skip
    if case == "missing-index":
        (path / "index.vri").unlink()
        return _expect("no index.vri: optional, readers scan; --fix writes one")
    if case == "stale-index":
        data = bytearray((path / "index.vri").read_bytes())
        entry = INDEX_HEADER.size + 4 * ENTRY.size + 24  # frame 4's offset now points at frame 5
        data[entry : entry + 8] = at[5][1].to_bytes(8, "little")
        (path / "index.vri").write_bytes(bytes(data))
        return _expect("index.vri points frame 4 at frame 5's record: lookups fall back to a scan",
                       validate_exit=1, errors=["index-stale"])  # fmt: skip
    if case == "newer-major-index":
        data = bytearray((path / "index.vri").read_bytes())
        data[8:10] = (2).to_bytes(2, "little")
        (path / "index.vri").write_bytes(bytes(data))
        return _expect(
            "index.vri is major version 2: not used, and --fix leaves it alone", fix_untouched=True
        )
    if case == "no-session-json":
        (path / "session.json").unlink()
        return _expect("session.json was lost: readers refuse; --fix rebuilds it from the segments, saying "
                       "what it guessed", opens=False, validate_exit=1, errors=["metadata-missing"])  # fmt: skip
    if case == "stray-files":
        shutil.copyfile(seg0, path / "packets-000000 (copy).vrc")
        (path / "packets-1.vrc").write_bytes(b"not a segment")
        (path / "notes.txt").write_text("a note\n")
        return _expect("a copied segment, a misnamed one and a note: none of them is a segment")
    if case == "reserve-left":
        (path / ".reserve").write_bytes(bytes(4096))
        _crashed(path)
        return _expect("killed cleanly between frames: .reserve left behind, session.json says recording",
                       validate_exit=1, errors=["not-finalized"])  # fmt: skip
    if case == "oversize-length":
        length, crc = 0x7FFF_FFF0, 0
        header = RECORD_HEADER.pack(length, crc, 1, 0, header_check(length, crc, 1, 0))
        with open(seg2, "ab") as f:
            f.write(header + b"\0" * 8)
        stop = {"file": seg2.name, "offset": size2, "error": "corrupt"}
        return _expect("a record whose (checked) header claims 2 GiB: over the limit, corrupt before torn",
                       stops=stop, validate_exit=1, errors=["corrupt"])  # fmt: skip
    if case == "lz4-bomb":
        descriptor = bytes([0x68, 0x40]) + (2**40).to_bytes(8, "little")  # content size stored: 1 TiB
        frame = b"\x04\x22\x4d\x18" + descriptor + bytes([(_xxh32(descriptor) >> 8) & 0xFF]) + bytes(4)
        with open(seg2, "ab") as f:
            f.write(_record(1, 1, frame))
        stop = {"file": seg2.name, "offset": size2, "error": "corrupt"}
        return _expect("an intact LZ4 record whose frame declares 1 TiB decompressed: refused before decoding",
                       stops=stop, validate_exit=1, errors=["undecodable"])  # fmt: skip
    raise KeyError(case)


CASES = [
    "intact", "torn-tail", "torn-header", "payload-crc", "length-bit", "bad-magic", "segment-number",
    "major-zero", "newer-major-segment", "short-segment", "empty-middle-segment", "segment-gap", "unknown-kind",
    "reserved-flag", "missing-index", "stale-index", "newer-major-index", "no-session-json", "stray-files",
    "reserve-left", "oversize-length", "lz4-bomb",
]  # fmt: skip


def main(target: Path = CORPUS) -> None:
    if target.exists():
        sys.exit(f"{target} exists: the corpus is never regenerated in place (see tests/data/README.md)")
    target.mkdir(parents=True)
    base = target / ".base"
    _base(base)
    for case in CASES:
        work = target / case
        shutil.copytree(base, work)
        expected = build(case, work)
        (target / f"{case}.json").write_text(json.dumps({"case": case, **expected}, indent=2) + "\n")
    shutil.rmtree(base)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else CORPUS)
