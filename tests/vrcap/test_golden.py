"""Golden sessions pin format 1.0 byte for byte; see tests/data/README.md."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import REPO, run_vrcap
from tests.vrcap.golden import GOLDEN_T0, golden_packets
from vrcap.errors import TruncatedRecord, UnsupportedVersion
from vrcap.metadata import load_meta
from vrcap.reader import SessionReader
from vrcap.repair import repair_session
from vrcap.validate import validate_session
from vrcap.writer import SessionWriter, WriterConfig

DATA = REPO / "tests" / "data"


def test_writer_reproduces_the_golden_bytes(tmp_path: Path) -> None:
    meta = load_meta(DATA / "golden-1.0")
    with SessionWriter.create(tmp_path / "g", meta.streams, config=WriterConfig(fsync=False)) as w:
        for p in golden_packets():
            w.write_packet(p)
    for name in ("packets-000000.vrc", "index.vri"):
        assert (tmp_path / "g" / name).read_bytes() == (DATA / "golden-1.0" / name).read_bytes(), name


def test_writer_reproduces_the_consistent_golden_session_json(tmp_path: Path) -> None:
    """session.json pinned too, key by key; only what a run cannot reproduce (host, pid, stop time) is set aside."""
    golden = DATA / "golden-1.0-consistent"
    meta = load_meta(golden)
    target = tmp_path / golden.name
    config = WriterConfig(fsync=False)
    with SessionWriter.create(
        target, meta.streams, config=config, clocks=meta.clocks, capture_config=meta.config,
        start_mono_ns=meta.start["mono_ns"], start_wall_ns=meta.start["wall_ns"],
    ) as w:  # fmt: skip
        for p in golden_packets():
            w.write_packet(p)
    written = json.loads((target / "session.json").read_text())
    expected = json.loads((golden / "session.json").read_text())
    for data in (written, expected):
        data.pop("created_by")
        data["stop"] = {k: v for k, v in data["stop"].items() if k == "reason"}
    written["stop"]["reason"] = expected["stop"]["reason"]  # the golden says "duration reached"
    assert written == expected


def test_golden_reads_back_exactly() -> None:
    with SessionReader(DATA / "golden-1.0") as reader:
        packets = list(reader.packets())
        assert packets == golden_packets()
        assert [p["seq"] for p in packets] == [0, 1, 2, 3, 5, 6]
        head = np.frombuffer(reader.packet_at(5)["s"]["head"][0]["d"], dtype="<f4")
        assert head[0] == pytest.approx(0.5) and head[1] == pytest.approx(1.6)
        assert reader.packet_at_time(GOLDEN_T0 + 4 * 11_111_111)["seq"] == 3  # frame 4 was dropped
        assert reader.packet_at(5)["s"]["annotations"][0]["d"]["text"] == "pick up the cup"
    report = validate_session(DATA / "golden-1.0")
    assert report.ok and report.dropped_frames == 1 and report.packets == 6


def test_crashed_golden_reads_up_to_the_tear_and_fixes(tmp_path: Path) -> None:
    with SessionReader(DATA / "golden-crashed") as reader, pytest.raises(TruncatedRecord) as info:
        seqs = [p["seq"] for p in reader.packets()]
    assert "packets-000000.vrc" in str(info.value) and "validate --fix" in str(info.value)
    with SessionReader(DATA / "golden-crashed") as reader:
        seqs = [p["seq"] for p in reader.packets(errors="stop")]
        assert seqs == [0, 1, 2, 3, 5]
        assert reader.problem is not None and reader.problem.offset == 863 - 125  # type: ignore[attr-defined]  # golden-1.0 size − last record
    work = shutil.copytree(DATA / "golden-crashed", tmp_path / "c")
    codes = {f.code for f in validate_session(work).errors}
    assert codes == {"torn-tail", "not-finalized"}
    repair_session(work)
    report = validate_session(work)
    assert report.ok and report.packets == 5
    assert load_meta(work).status == "repaired"


def test_newer_minor_version_is_read_skipping_what_it_does_not_know() -> None:
    path = DATA / "golden-1.9-future"
    meta = load_meta(path)
    assert meta.version == "1.9" and meta.extra == {"future_key": {"x": 1}}
    with SessionReader(path) as reader:
        packets = list(reader.packets())
    assert [p["seq"] for p in packets] == [0, 1, 2, 3, 5, 6, 7]
    assert packets[-1]["future"] == [1, 2, 3]  # unknown keys pass through untouched


def test_newer_major_version_is_refused_with_a_hint() -> None:
    with pytest.raises(UnsupportedVersion, match=r"2\.0.*pip install -U vrcap"):
        SessionReader(DATA / "golden-2.0-refused")
    result = run_vrcap("info", str(DATA / "golden-2.0-refused"))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "upgrade" in result.stderr
