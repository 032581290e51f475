"""Log tails read a bounded number of bytes; metrics are read from where the last poll stopped."""

from __future__ import annotations

import json
from pathlib import Path

from server.tails import MAX_LINE_CHARS, TAIL_BLOCK, LogTails, MetricsTail, first_offset, tail_lines


def test_a_tail_reads_at_most_max_bytes_from_the_end(tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    log.write_bytes(b"".join(b"line %07d %s\n" % (i, b"x" * 86) for i in range(50_000)))  # 100 bytes a line
    lines = tail_lines(log, 10_000, max_bytes=100_000)
    assert len(lines) == 999  # 100 kB hold 1,000 lines; the first, probably cut, is dropped
    assert lines[-1].startswith("line 0049999") and lines[0].startswith("line 0049001")
    assert tail_lines(log, 3) == [f"line {i:07d} {'x' * 86}" for i in (49997, 49998, 49999)]


def test_a_log_without_newlines_gives_one_cut_line(tmp_path: Path) -> None:
    log = tmp_path / "bar.log"
    log.write_bytes(b"\r" + b"=" * 4_000_000)
    lines = tail_lines(log, 1)
    assert len(lines) == 1 and len(lines[0]) == MAX_LINE_CHARS


def test_metrics_are_read_incrementally(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    with open(path, "w") as f:
        f.write(json.dumps({"event": "start"}) + "\n")
        for step in range(10):
            f.write(json.dumps({"step": step, "loss": 1.0 / (step + 1)}) + "\n")
        f.write('{"step": 10, "lo')  # a line still being written
    tail = MetricsTail(path, keep=5)
    points = tail.read()
    assert [p["step"] for p in points] == [5, 6, 7, 8, 9]
    size = path.stat().st_size
    assert tail._offset == size
    with open(path, "a") as f:
        f.write('ss": 0.05}\n' + json.dumps({"step": 11, "loss": 0.04}) + "\n")
    assert [p["step"] for p in tail.read()] == [7, 8, 9, 10, 11]
    assert tail._offset == path.stat().st_size  # only the appended bytes were read
    path.write_text(json.dumps({"step": 0, "loss": 2.0}) + "\n")  # replaced (a new run): starts again
    assert tail.read() == [{"step": 0, "loss": 2.0}]


def test_a_first_read_of_a_big_metrics_file_parses_only_the_points_it_keeps(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    with open(path, "w") as f:  # ~5 MB, ~85 bytes a line
        for step in range(60_000):
            f.write(json.dumps({"step": step, "loss": 1 / (step + 1), "lr": 3e-4, "tokens_s": 1234.5}) + "\n")
    tail = MetricsTail(path, keep=2000)
    points = tail.read()
    assert [p["step"] for p in points] == list(range(58_000, 60_000))
    assert path.stat().st_size - first_offset(path, path.stat().st_size, 2000) <= 2001 * 90 + TAIL_BLOCK
    assert tail._offset == path.stat().st_size


def test_a_log_tail_is_reused_until_the_log_changes(tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    log.write_text("a\nb\n")
    tails = LogTails()
    first = tails.lines(log, 10)
    assert first == ["a", "b"] and tails.lines(log, 10) is first  # unchanged: the same list, nothing read
    with open(log, "a") as f:
        f.write("c\n")
    assert tails.lines(log, 2) == ["b", "c"] and tails.lines(log, 10) == ["a", "b", "c"]
