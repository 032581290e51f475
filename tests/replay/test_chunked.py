"""A shard built chunk by chunk holds what building the whole session at once holds, in a file any safetensors
reader opens; and converting one session's memory does not grow with its length."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file

from replay.config import load_replay_config
from replay.convert import convert_sessions
from replay.shardwriter import ShardWriter
from tests.replay.conftest import write_sim_session

SKIP = set(range(100, 112)) | {181, 270}  # dropped frames across chunk boundaries (1 s = 90 frames)
ANNOTATIONS = [
    (995_000_000, "at the end of chunk 0", "internal"),  # 5 ms before the first boundary
    (1_000_000_000, "on the boundary", "external"),
    (2_500_000_000, "x" * 100, "internal"),  # longer than a row: cut
]


def _convert(session: Path, out: Path, *overrides: str) -> dict[str, np.ndarray]:
    config = load_replay_config(None, list(overrides))
    convert_sessions([session], out, config, progress=False, log=lambda m: None)
    return load_file(str(out / "shards" / f"{session.name}.safetensors"))


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("chunked")
    return write_sim_session(
        root / "s", 3.5, skip=SKIP, annotations=ANNOTATIONS, cameras=("left",), camera_width=320,
        camera_height=240, tasks=False,
    )  # fmt: skip


def test_chunks_of_any_size_give_the_same_tensors(session: Path, tmp_path: Path) -> None:
    whole = _convert(session, tmp_path / "whole", "convert.chunk_s=3600")
    parts = _convert(session, tmp_path / "parts", "convert.chunk_s=0.3", "convert.lookahead_s=0.2")
    assert sorted(whole) == sorted(parts) and whole["time_ns"].size == 105
    for name, value in whole.items():
        assert np.array_equal(parts[name], value), name
    assert 90 < parts["camera.left.mask"].sum() < 105 and parts["pose.mask"][:, 0].sum() < 105
    internal = np.flatnonzero(parts["text.internal.mask"]).tolist()
    assert internal == [29, 75] and np.flatnonzero(parts["text.external.mask"]).tolist() == [30]
    manifest = json.loads((tmp_path / "parts" / "manifest.json").read_text())
    entry = manifest["sessions"]["s"]
    assert any("tokens cut at text.max_tokens=64" in n for n in entry["notes"])
    other = json.loads((tmp_path / "whole" / "manifest.json").read_text())["sessions"]["s"]
    assert entry["masked"] == other["masked"] and entry["shard_bytes"] == other["shard_bytes"]
    assert "stats" not in entry  # the per-session sums are in stats.json, which a Dataset never reads
    sums = [json.loads((tmp_path / d / "stats.json").read_text())["s"]["stats"] for d in ("parts", "whole")]
    assert np.allclose(sums[0]["pose"]["sum"], sums[1]["pose"]["sum"], rtol=1e-12)
    assert sums[0]["audio.mel"]["count"] == sums[1]["audio.mel"]["count"]


def test_shard_writer_output_opens_with_safetensors(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((7, 3, 2)).astype(np.float32)
    b = rng.integers(0, 255, (7, 5), dtype=np.uint8)
    c = np.arange(7, dtype=np.int64)
    with ShardWriter(tmp_path / "spill") as w:
        for lo, hi in ((0, 3), (3, 3), (3, 7)):  # an empty chunk in the middle
            w.append("a", a[lo:hi])
            w.append("b.mask", b[lo:hi])
            w.append("time_ns", c[lo:hi])
        size = w.finish(tmp_path / "x.safetensors", {"session": "x"})
    assert not (tmp_path / "spill").exists() and size == (tmp_path / "x.safetensors").stat().st_size
    with safe_open(str(tmp_path / "x.safetensors"), "numpy") as f:
        assert f.metadata() == {"session": "x"}
        assert np.array_equal(f.get_tensor("a"), a) and np.array_equal(f.get_tensor("b.mask"), b)
        assert np.array_equal(f.get_tensor("time_ns"), c)
    header_len = int.from_bytes((tmp_path / "x.safetensors").read_bytes()[:8], "little")
    assert header_len % 8 == 0


def _peak_rss_mb(session: Path, out: Path, *overrides: str) -> tuple[float, float]:
    """(peak RSS, peak anonymous RSS) in MB of converting ``session`` in a fresh process."""
    done = subprocess.run(
        [sys.executable, "-m", "tools.bench.peak_rss", str(session), str(out), *overrides],
        capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    result = json.loads(done.stdout.splitlines()[-1])
    return float(result["peak_rss_mb"]), float(result["peak_anon_mb"])


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_session_length(tmp_path: Path) -> None:
    """1 vs 10 minutes of poses, controls and 48 kHz audio at the same config, in a fresh process each.

    Held whole, the 10-minute session cost ~450 MB more than the 1-minute one (0.69 MB per recorded second);
    chunked, anonymous memory grew ~2 MB a minute by the validator's per-packet index rows; since those are a
    running hash, what is left is 8 bytes a packet and allocator noise (+18 MB from 1 to 10 minutes, +4 MB from
    10 to 60, docs/PERFORMANCE.md)."""
    # no hands: a third of the writing time; audio alone grew memory 0.2 MB per second when held whole
    short = write_sim_session(tmp_path / "one", 60.0, cameras=(), hands=False)
    long = write_sim_session(tmp_path / "ten", 600.0, cameras=(), hands=False)
    _, anon_short = _peak_rss_mb(short, tmp_path / "t1")
    rss_long, anon_long = _peak_rss_mb(long, tmp_path / "t10")
    steps = json.loads((tmp_path / "t10" / "manifest.json").read_text())["sessions"]["ten"]["steps"]
    assert steps == 18000
    assert rss_long < 500, f"peak RSS {rss_long:.0f} MB for 10 minutes (goal <= 500 MB)"
    # anonymous memory is what the converter holds; the rest is the mapped segment (<= 256 MB, the page cache)
    # held whole (the converter before chunking): 73 -> 391 MB; chunked: 58 -> 84 MB (the validator's index)
    assert anon_long - anon_short < 40, f"anonymous: 1 min {anon_short:.0f} MB, 10 min {anon_long:.0f} MB"
