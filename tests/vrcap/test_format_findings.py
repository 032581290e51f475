"""Issue 13 §1: each format finding reproduced as a test that fails on the code before the fix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import REPO, run_vrcap, write_synthetic
from tests.vrcap.golden import disagreements
from vrcap.cli import main
from vrcap.errors import FormatError
from vrcap.metadata import load_meta
from vrcap.reader import SessionReader
from vrcap.repair import repair_session
from vrcap.validate import validate_session
from vrcap.writer import WriterConfig

DATA = REPO / "tests" / "data"


def test_the_old_goldens_disagree_with_themselves_and_the_new_ones_do_not() -> None:
    """§1.12: the old goldens stay as they are (they pin bytes); the corrected ones sit beside them."""
    assert disagreements(DATA / "golden-1.0") == [
        "stop.wall_utc -1600 s from stop.wall_ns",
        "stats.bytes 847, files 863",
        "audio t 22 ms from its clock model",
    ]
    assert "stats.last_seq 6, segments 7" in disagreements(DATA / "golden-1.9-future")
    assert disagreements(DATA / "golden-1.0-consistent") == []
    assert disagreements(DATA / "golden-1.9-future-consistent") == []
    for name in ("golden-1.0-consistent", "golden-1.9-future-consistent"):
        report = validate_session(DATA / name)
        assert report.ok and {f.code for f in report.warnings} <= {"dropped-frames", "index-missing",
                                                                   "unreadable-records"}  # fmt: skip
    old = {f.code for f in validate_session(DATA / "golden-1.0").warnings}
    assert {"wall-clock-mismatch", "stats-bytes"} <= old


def test_the_segments_of_the_golden_are_the_same_bytes_in_the_corrected_copy() -> None:
    for name in ("packets-000000.vrc", "index.vri"):
        assert (DATA / "golden-1.0-consistent" / name).read_bytes() == (
            DATA / "golden-1.0" / name
        ).read_bytes()


def test_writer_stats_bytes_is_the_size_of_the_segment_files(tmp_path: Path) -> None:
    """§1.5: the writer counted records only, repair whole files; both now count whole files."""
    path = write_synthetic(tmp_path / "s", 300, WriterConfig(fsync=False, segment_max_seconds=1.0))
    meta = load_meta(path)
    files = sorted(path.glob("packets-*.vrc"))
    assert len(files) == 4
    assert meta.stats["bytes"] == sum(p.stat().st_size for p in files)
    assert [s["bytes"] for s in meta.segments] == [p.stat().st_size for p in files]
    assert [s["packets"] for s in meta.segments] == [s["records"] for s in meta.segments] == [91, 91, 91, 27]


def test_fix_keeps_unknown_keys_of_stream_descriptors(tmp_path: Path) -> None:
    """§1.3: `future_field` of golden-1.9-future survived no --fix."""
    work = shutil.copytree(DATA / "golden-1.9-future", tmp_path / "g")
    result = repair_session(work)
    assert result.changed  # the index was missing and the stats were off
    data = json.loads((work / "session.json").read_text())
    assert data["streams"][0]["future_field"] == 3
    assert data["future_key"] == {"x": 1}
    assert validate_session(work).ok


@pytest.mark.parametrize("streams", [["head"], [1, 2], "head", [{"name": "x"}]])
def test_malformed_stream_descriptors_are_one_line_not_a_crash(tmp_path: Path, streams: object) -> None:
    """§1.1: a non-object entry in `streams` raised AttributeError from validate and info (exit 70)."""
    path = write_synthetic(tmp_path / "s", 5)
    data = json.loads((path / "session.json").read_text())
    data["streams"] = streams
    (path / "session.json").write_text(json.dumps(data))
    info = run_vrcap("info", str(path))
    assert info.returncode == 1, info.stderr
    assert info.stderr.count("\n") == 1 and "internal error" not in info.stderr
    validate = run_vrcap("validate", str(path))
    assert validate.returncode == 1 and "internal error" not in validate.stderr


def test_a_wrong_index_falls_back_to_a_scan(tmp_path: Path) -> None:
    """§1.9: an index whose offsets are off blamed an intact segment; now the lookup rescans."""
    path = write_synthetic(tmp_path / "s", 50)
    index = bytearray((path / "index.vri").read_bytes())
    for i in range(50):  # every offset 4 bytes too far: no entry points at a record header any more
        at = 16 + i * 32 + 24
        index[at : at + 8] = (int.from_bytes(index[at : at + 8], "little") + 4).to_bytes(8, "little")
    (path / "index.vri").write_bytes(bytes(index))
    with SessionReader(path) as reader:
        assert [reader.packet_at(s)["seq"] for s in (0, 17, 49)] == [0, 17, 49]
        assert reader.packet_at_time(1_000_000_000_000 + 20 * 11_111_111 + 5)["seq"] == 20


def test_a_record_with_a_reserved_flag_is_reported_apart_from_drops(tmp_path: Path) -> None:
    """§1.11: the skipped record showed only as a dropped frame."""
    work = shutil.copytree(DATA / "conformance" / "reserved-flag", tmp_path / "s")
    report = validate_session(work)
    assert report.skipped_records == 1 and report.dropped_frames == 1
    warning = next(f for f in report.warnings if f.code == "unreadable-records")
    assert "kind 1 flags 0x02" in warning.message


def test_stray_files_beside_the_segments_are_ignored_by_the_cli(tmp_path: Path) -> None:
    """§1.1: `packets-000000 (copy).vrc` made validate, --fix and info exit 70."""
    path = write_synthetic(tmp_path / "s", 20)
    shutil.copyfile(path / "packets-000000.vrc", path / "packets-000000 (copy).vrc")
    for args in (["validate", str(path)], ["validate", "--fix", str(path)], ["info", str(path)]):
        result = run_vrcap(*args)
        assert result.returncode == 0, (args, result.stderr)
    assert main(["validate", str(path)]) == 0


@pytest.mark.parametrize("version", ["1", "1.0.0", "v1.0", "0.9", 1.0, ""])
def test_only_major_dot_minor_versions_are_read(tmp_path: Path, version: object) -> None:
    path = write_synthetic(tmp_path / "s", 3)
    data = json.loads((path / "session.json").read_text())
    data["version"] = version
    (path / "session.json").write_text(json.dumps(data))
    with pytest.raises(FormatError, match="version"):
        load_meta(path)


def test_only_exact_segment_names_are_segments(tmp_path: Path) -> None:
    from vrcap.layout import list_segments

    for name in ("packets-000000.vrc", "packets-000001.vrc", "packets-000000 (copy).vrc", "packets-1.vrc",
                 "packets-٠٠٠٠٠٢.vrc", "packets-000002.vrc.bak", "notes.txt"):  # fmt: skip
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in list_segments(tmp_path)] == ["packets-000000.vrc", "packets-000001.vrc"]
