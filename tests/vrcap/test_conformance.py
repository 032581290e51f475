"""The conformance corpus (tests/data/conformance/, docs/FORMAT.md §10): vrcap's reader, validate and --fix
reach the outcome each case's JSON states — the same outcome any reader written from the spec must reach."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO, run_vrcap
from tests.vrcap.conformance_corpus import CASES, PERIOD, T0
from vrcap.cli import main
from vrcap.errors import CorruptRecord, NotASession, TruncatedRecord, UnsupportedVersion
from vrcap.metadata import load_meta
from vrcap.reader import SessionReader

CORPUS = REPO / "tests" / "data" / "conformance"
ERRORS = {"torn": TruncatedRecord, "corrupt": CorruptRecord, "unsupported-version": UnsupportedVersion}


def _expected(case: str) -> dict[str, Any]:
    return json.loads((CORPUS / f"{case}.json").read_text())


def _snapshot(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.is_file()}


def test_the_corpus_holds_every_case() -> None:
    assert sorted(p.stem for p in CORPUS.glob("*.json")) == sorted(CASES)
    assert sorted(p.name for p in CORPUS.iterdir() if p.is_dir()) == sorted(CASES)


@pytest.mark.parametrize("case", CASES)
def test_reader_reaches_the_stated_outcome(case: str) -> None:
    want = _expected(case)["read"]
    path = CORPUS / case
    if not want["opens"]:
        with pytest.raises(NotASession, match="validate --fix"):
            SessionReader(path)
        return
    with SessionReader(path) as reader:
        seqs = [p["seq"] for p in reader.packets(errors="stop")]
        assert seqs == want["seqs"]
        assert len(reader.skipped) == want["skipped_records"]
        stop = want["stops_at"]
        if stop is None:
            assert reader.problem is None, reader.problem
        else:
            assert isinstance(reader.problem, ERRORS[stop["error"]]), reader.problem
            assert reader.problem.path.name == stop["file"]
            if stop["error"] != "unsupported-version":
                assert reader.problem.offset == stop["offset"]  # type: ignore[attr-defined]
        for seq in seqs:  # random access agrees with the stream, whatever the stored index says
            assert reader.packet_at(seq)["seq"] == seq
            assert reader.packet_at_time(T0 + seq * PERIOD + PERIOD // 2)["seq"] == seq
        with pytest.raises(KeyError, match="starts later"):
            reader.packet_at_time(T0 - 1)  # before the first frame: no frame was current


@pytest.mark.parametrize("case", CASES)
def test_validate_and_fix_reach_the_stated_outcome(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    want = _expected(case)
    work = shutil.copytree(CORPUS / case, tmp_path / case)
    assert main(["validate", "--json", str(work)]) == want["validate"]["exit"]
    report = json.loads(capsys.readouterr().out)
    codes = {f["code"] for f in report["findings"] if f["level"] == "error"}
    assert set(want["validate"]["errors_include"]) <= codes, report["findings"]
    before = _snapshot(work)
    code = main(["validate", "--fix", "--json", str(work)])
    out, err = capsys.readouterr()
    assert code == want["fix"]["exit"], (out, err)
    assert err == ""  # never an internal error
    fixed = json.loads(out)
    assert fixed["valid"] is want["fix"]["valid_after"], fixed["findings"]
    if want["fix"]["untouched"]:
        assert _snapshot(work) == before
    if want["fix"]["valid_after"]:
        assert not (work / ".reserve").exists()  # the recorder's disk-full reserve is not part of a session
        with SessionReader(work) as reader:
            assert [p["seq"] for p in reader.packets()] == want["fix"]["seqs"]
        assert main(["validate", "--fix", "--json", str(work)]) == 0  # a second --fix finds nothing to do
        assert json.loads(capsys.readouterr().out)["repairs"] == []


def test_a_fixed_crash_stops_at_the_last_frame_on_both_clocks(tmp_path: Path) -> None:
    work = shutil.copytree(CORPUS / "torn-tail", tmp_path / "s")
    assert main(["validate", "--fix", str(work)]) == 0
    meta = load_meta(work)
    last_t = T0 + 7 * PERIOD
    assert meta.stop is not None and meta.stop["mono_ns"] == last_t
    assert meta.stop["wall_ns"] - meta.start["wall_ns"] == last_t - meta.start["mono_ns"]
    assert meta.stats["bytes"] == sum(p.stat().st_size for p in work.glob("packets-*.vrc"))


def test_a_rebuilt_session_json_says_what_was_guessed(tmp_path: Path) -> None:
    work = shutil.copytree(CORPUS / "no-session-json", tmp_path / "s")
    assert main(["validate", "--fix", str(work)]) == 0
    meta = load_meta(work)
    assert [(s.name, s.kind, s.shape, s.encoding) for s in meta.streams] == [
        ("audio", "audio", (-1, 1), "pcm_s16le"),
        ("head", "pose", (13,), "raw"),
    ]
    assert meta.stream("head").rate_hz == pytest.approx(90.0, rel=1e-3)  # type: ignore[union-attr]
    assert meta.stream("audio").rate_hz == pytest.approx(48000, rel=1e-3)  # type: ignore[union-attr]
    guessed = meta.repairs[-1]["guessed"]
    assert any("start wall clock" in g for g in guessed) and any("stream kinds" in g for g in guessed)


def test_the_installed_command_on_a_refused_segment_is_one_line(tmp_path: Path) -> None:
    work = shutil.copytree(CORPUS / "newer-major-segment", tmp_path / "s")
    result = run_vrcap("validate", "--fix", str(work))
    assert result.returncode == 1
    assert "not repaired" in result.stdout and "pip install -U vrcap" in result.stdout
    assert "internal error" not in result.stderr


def test_piped_findings_stay_one_line_under_a_long_path(tmp_path: Path) -> None:
    """Piped output is not wrapped: under a 160-character path (an xdist worker's tmp dir wrapped it at 200
    columns) the refusal is still one line holding both the problem and the fix, for grep and for logs."""
    work = shutil.copytree(CORPUS / "newer-major-segment", tmp_path / ("x" * 160) / "s")
    result = run_vrcap("validate", "--fix", str(work))
    lines = [line for line in result.stdout.splitlines() if "not repaired" in line]
    assert len(lines) == 1 and "pip install -U vrcap" in lines[0] and str(work) in lines[0], result.stdout
