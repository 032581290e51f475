"""Torn tails and flipped bytes: the reader stops cleanly, validate names the place, --fix loses nothing."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import run_vrcap, synthetic_packet, write_synthetic
from vrcap.errors import FormatError
from vrcap.reader import SessionReader
from vrcap.repair import repair_session
from vrcap.scan import GoodRecord, scan_segment
from vrcap.streams import StreamDescriptor
from vrcap.validate import validate_session
from vrcap.writer import SessionWriter, WriterConfig

pytestmark = pytest.mark.realtime  # timing on the wall clock: run alone (tools/ci/run-tests.sh)

SMALL = [StreamDescriptor("head", "pose", 90.0, (13,), "float32", "raw")]


def _small_session(path: Path, n: int) -> Path:
    with SessionWriter.create(path, SMALL, config=WriterConfig(fsync=False)) as w:
        for seq in range(n):
            pose = (np.arange(13, dtype=np.float32) + seq).tobytes()
            w.write_packet(
                {"seq": seq, "t": 10**12 + seq * 11_111_111, "s": {"head": [{"t": 10**12 + seq, "d": pose}]}}
            )
    return path


def _record_ends(segment: Path) -> list[int]:
    return [r.header.end for r in scan_segment(segment) if isinstance(r, GoodRecord)]


def test_truncation_at_every_offset_of_the_last_records(tmp_path: Path) -> None:
    original = _small_session(tmp_path / "orig", 30)
    segment = original / "packets-000000.vrc"
    ends = _record_ends(segment)
    data = segment.read_bytes()
    first_cut = ends[-4]  # the last three records, every byte offset of them
    checked = 0
    for cut in range(first_cut, len(data)):
        work = tmp_path / f"cut{cut}"
        shutil.copytree(original, work)
        (work / "packets-000000.vrc").write_bytes(data[:cut])
        complete = sum(1 for e in ends if e <= cut)
        with SessionReader(work) as reader:
            got = list(reader.packets(errors="stop"))
            assert [p["seq"] for p in got] == list(range(complete))
            assert (reader.problem is None) == (cut in ends)
        before = validate_session(work)
        assert not before.ok  # torn tail, or stats that promise more packets than there are
        result = repair_session(work)
        assert result.changed
        after = validate_session(work)
        assert after.ok, [f.message for f in after.findings]
        assert after.packets == complete
        with SessionReader(work) as reader:
            assert [p["seq"] for p in reader.packets()] == list(range(complete))
            assert len(reader) == complete
        tails = list((work / "repair").glob("*")) if (work / "repair").exists() else []
        assert sum(p.stat().st_size for p in tails) == cut - (ends[complete - 1] if complete else 16)
        shutil.rmtree(work)
        checked += 1
    assert checked == len(data) - first_cut > 200


def test_fix_through_the_cli_reports_and_exits_zero(tmp_path: Path) -> None:
    path = write_synthetic(tmp_path / "s", 50)
    segment = path / "packets-000000.vrc"
    ends = _record_ends(segment)
    segment.write_bytes(segment.read_bytes()[: ends[39] + 7])
    bad = run_vrcap("validate", str(path))
    assert bad.returncode == 1
    assert "torn tail" in bad.stdout and f"byte {ends[39]}" in bad.stdout
    fixed = run_vrcap("validate", "--fix", str(path))
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "truncated packets-000000.vrc" in fixed.stdout
    assert run_vrcap("validate", str(path)).returncode == 0
    with SessionReader(path) as reader:
        assert len(list(reader.packets())) == 40


@pytest.mark.parametrize("seed", range(25))
def test_random_byte_flips_are_named_and_never_crash_the_reader(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    path = write_synthetic(tmp_path / "s", 40)
    segment = path / "packets-000000.vrc"
    data = bytearray(segment.read_bytes())
    ends = _record_ends(segment)
    flips = sorted(rng.randrange(16, len(data)) for _ in range(rng.randint(1, 3)))
    for offset in flips:
        data[offset] ^= 1 << rng.randrange(8)
    segment.write_bytes(bytes(data))
    damaged_record_start = max([16] + [e for e in ends if e <= flips[0]])
    with SessionReader(path) as reader:
        seen = []
        with pytest.raises(FormatError) as info:
            for packet in reader.packets():
                seen.append(packet["seq"])
        assert info.value.offset == damaged_record_start  # type: ignore[attr-defined]
        assert seen == list(
            range(ends.index(damaged_record_start) + 1 if damaged_record_start in ends else 0)
        )
    result = run_vrcap("validate", "--json", str(path))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    import json

    report = json.loads(result.stdout)
    located = [
        (f["segment"], f["offset"])
        for f in report["findings"]
        if f["level"] == "error" and f["offset"] is not None
    ]
    assert ("packets-000000.vrc", damaged_record_start) in located
    # --fix keeps every record the flips did not touch
    untouched = sum(
        1 for i, end in enumerate(ends) if not any((ends[i - 1] if i else 16) <= f < end for f in flips)
    )
    assert run_vrcap("validate", "--fix", str(path)).returncode == 0
    with SessionReader(path) as reader:
        assert len(list(reader.packets())) == untouched


def test_damaged_segment_header_keeps_the_records_behind_it(tmp_path: Path) -> None:
    path = write_synthetic(tmp_path / "s", 10)
    segment = path / "packets-000000.vrc"
    data = bytearray(segment.read_bytes())
    data[2] ^= 0x40
    segment.write_bytes(bytes(data))
    assert not validate_session(path).ok
    repair_session(path)
    assert validate_session(path).ok
    with SessionReader(path) as reader:
        assert [p["seq"] for p in reader.packets()] == list(range(10))
        assert reader.packet_at(7) == synthetic_packet(7)


# --- multi-segment sessions and what a kill can lose ---------------------------------------------------------

_CHILD = """
import sys, time
from pathlib import Path
from tests.helpers import STREAMS, synthetic_packet
from vrcap.writer import SessionWriter, WriterConfig

# No flush for an hour: nothing is fsynced, the index gets no entry; every record is only handed to the OS.
config = WriterConfig(flush_interval_s=3600.0, segment_max_seconds=0.5)
w = SessionWriter.create(Path(sys.argv[1]), STREAMS, config=config)
for seq in range(int(sys.argv[2])):
    w.write_packet(synthetic_packet(seq))
print("written", flush=True)
time.sleep(120)
"""


def test_sigkill_loses_no_record_handed_to_the_os(tmp_path: Path) -> None:
    """A SIGKILL cannot lose what write() returned for: the kernel has it. (A power cut can lose everything
    since the last fsync; no test here can cut the power, so test_flushes_follow_the_interval pins the fsync
    schedule that bounds that loss instead.)"""
    import signal
    import subprocess
    import sys

    from tests.helpers import REPO

    path, n = tmp_path / "killed", 200
    command = [sys.executable, "-c", _CHILD, str(path), str(n)]
    with subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True) as child:
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "written"
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
    segments = sorted(path.glob("packets-*.vrc"))
    assert len(segments) == 5  # 200 frames at 90 Hz, a segment every 0.5 s
    with SessionReader(path) as reader:
        assert [p["seq"] for p in reader.packets()] == list(range(n))  # all of them, none torn
    assert run_vrcap("validate", "--fix", str(path)).returncode == 0
    with SessionReader(path) as reader:
        assert len(reader) == n and reader.packet_at(n - 1) == synthetic_packet(n - 1)
    assert not (path / ".reserve").exists()


def test_flushes_follow_the_interval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The power-loss bound is the fsync schedule: segment then index, every flush_interval_s of the clock."""
    import vrcap.writer as writer_module

    now = [0.0]
    monkeypatch.setattr(writer_module.time, "monotonic", lambda: now[0])
    synced: list[tuple[float, str]] = []
    real_fsync = writer_module.os.fsync

    def fsync(fd: int) -> None:
        synced.append((now[0], Path(f"/proc/self/fd/{fd}").resolve().name))
        real_fsync(fd)

    monkeypatch.setattr(writer_module.os, "fsync", fsync)
    with SessionWriter.create(tmp_path / "s", SMALL, config=WriterConfig(flush_interval_s=0.5)) as w:
        for seq in range(10):
            now[0] = seq * 0.2
            w.write_packet({"seq": seq, "t": seq, "s": {}})
        synced_before_close = list(synced)
    # Packets at 0.0 .. 1.8 s: a flush at the first write at or past 0.5 s since the last one: 0.6, 1.2, 1.8.
    assert [t for t, name in synced_before_close if name == "packets-000000.vrc"] == pytest.approx(
        [0.6, 1.2, 1.8]
    )
    assert [t for t, name in synced_before_close if name == "index.vri"] == pytest.approx([0.6, 1.2, 1.8])


def test_damage_in_several_segments_keeps_every_intact_record(tmp_path: Path) -> None:
    path = write_synthetic(tmp_path / "s", 300, WriterConfig(fsync=False, segment_max_seconds=1.0))
    segments = sorted(path.glob("packets-*.vrc"))
    assert len(segments) == 4
    ends = {s.name: _record_ends(s) for s in segments}
    middle = segments[1]  # frames 91..181: flip a payload byte of its 10th record (frame 100)
    data = bytearray(middle.read_bytes())
    data[ends[middle.name][8] + 40] ^= 0x08
    middle.write_bytes(bytes(data))
    last = segments[3]  # frames 273..299: cut the last one short, as a kill mid-write would
    last.write_bytes(last.read_bytes()[:-9])
    with SessionReader(path) as reader:
        assert [p["seq"] for p in reader.packets(errors="stop")] == list(range(100))
    assert run_vrcap("validate", "--fix", str(path)).returncode == 0
    with SessionReader(path) as reader:
        assert [p["seq"] for p in reader.packets()] == [s for s in range(299) if s != 100]
    assert sorted(p.name for p in (path / "repair").iterdir()) == [
        f"packets-000001.vrc.damaged-at-{ends[middle.name][8]}",
        f"packets-000003.vrc.tail-at-{ends[last.name][-2]}",
    ]
