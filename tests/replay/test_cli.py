"""`vrcap replay` as a user runs it: refusal with the hint, --allow-invalid, skips and redos, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers import run_vrcap
from tests.replay.conftest import write_sim_session


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    for name in ("a", "b"):
        write_sim_session(
            root / "sessions" / name, 1.0, cameras=("left",), hands=False, camera_width=320, camera_height=240
        )
    return root


def _one_line_error(done: subprocess.CompletedProcess[str], code: int) -> str:
    """The error: one line, the last on stderr (progress lines of other sessions may precede it)."""
    err = done.stderr.strip()
    assert done.returncode == code, err
    errors = [line for line in err.splitlines() if "error" in line]
    assert "Traceback" not in err and len(errors) == 1 and err.splitlines()[-1] == errors[0], err
    return errors[0]


def test_convert_skip_and_redo(root: Path) -> None:
    out = root / "t"
    first = run_vrcap("replay", str(root / "sessions"), "--to-tensors", str(out), "--workers", "2")
    assert first.returncode == 0, first.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["sessions"]) == ["a", "b"] and manifest["sessions"]["a"]["steps"] == 30
    shard = out / "shards" / "a.safetensors"
    mtime = shard.stat().st_mtime_ns

    again = run_vrcap("replay", str(root / "sessions"), "--to-tensors", str(out))
    assert (
        again.returncode == 0
        and "2 session(s) already converted with this config, skipped: a, b" in again.stderr
    )
    assert shard.stat().st_mtime_ns == mtime

    os.utime(root / "sessions" / "a" / "packets-000000.vrc")  # the session changed (e.g. repaired, re-synced)
    changed = run_vrcap("replay", str(root / "sessions"), "--to-tensors", str(out))
    assert changed.returncode == 0 and "skipped: b" in changed.stderr and "replay: a:" in changed.stderr
    assert shard.stat().st_mtime_ns != mtime

    other = run_vrcap(
        "replay", str(root / "sessions"), "--to-tensors", str(out), "--rate", "15", "images.size=32"
    )
    assert other.returncode == 0 and "skipped" not in other.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["step_hz"] == 15 and manifest["sessions"]["b"]["steps"] == 15
    assert manifest["tensors"]["camera.left"]["shape"] == ["S", 3, 32, 32]


def test_an_invalid_session_is_refused_with_the_hint(root: Path, tmp_path: Path) -> None:
    bad = write_sim_session(tmp_path / "torn", 1.0, cameras=(), hands=False)
    segment = bad / "packets-000000.vrc"
    with open(segment, "r+b") as f:  # a torn tail, as a killed recorder leaves it
        f.truncate(segment.stat().st_size - 100)
    refused = run_vrcap("replay", str(bad), "--to-tensors", str(tmp_path / "t"))
    err = _one_line_error(refused, 1)
    assert f"session {bad} failed validation: packets-000000.vrc: torn tail" in err
    assert f"`vrcap validate --fix {bad}`" in err and "--allow-invalid" in err
    assert json.loads((tmp_path / "t" / "manifest.json").read_text())["sessions"] == {}

    allowed = run_vrcap("replay", str(bad), "--to-tensors", str(tmp_path / "t"), "--allow-invalid")
    assert allowed.returncode == 0, allowed.stderr
    entry = json.loads((tmp_path / "t" / "manifest.json").read_text())["sessions"]["torn"]
    assert entry["valid"] is False and "torn tail" in entry["problems"][0]
    assert entry["packets"] == 89 and entry["steps"] == 30  # frames 0..88 intact: up to 977.8 ms


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["/no/such/session"],
            "/no/such/session does not exist; give a session folder or a folder of sessions",
        ),
        (["{s}", "step.rate_hz=0"], "step.rate_hz must be between 1 and 1000 (got 0.0)"),
        (
            ["{s}", "images.colour=1"],
            "unknown setting 'images.colour'; known here: size, crop, tolerance_steps",
        ),
        (["{s}", "split.train=0.5"], "split.train + split.val + split.test must be 1"),
        (["{s}", "--workers", "0"], "--workers must be >= 1 (got 0)"),
        (["{s}", "--config", "/no/such.yaml"], "config file /no/such.yaml does not exist"),
        (["{s}", "convert.chunk_s=0"], "convert.chunk_s must be between 0.1 and 3600.0 (got 0.0)"),
        (["{s}", "--scheduler", "tcp://127.0.0.1:1"], "--scheduler needs --engine dask"),
        (["nosuch://bucket/x"], "nosuch://bucket/x: not a storage URL fsspec knows (Protocol not known"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(
    root: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    args = [a.format(s=root / "sessions" / "a") for a in args]
    done = run_vrcap("replay", *args, "--to-tensors", str(tmp_path / "t"))
    assert message in _one_line_error(done, 2)


def test_file_urls_are_local_paths(root: Path, tmp_path: Path) -> None:
    """file:// sessions and output: the same shard as plain paths, and a re-run skips by the same fingerprint."""
    session = f"file://{root / 'sessions' / 'a'}"
    first = run_vrcap("replay", session, "--to-tensors", f"file://{tmp_path / 'u'}")
    assert first.returncode == 0, first.stderr
    plain = run_vrcap("replay", str(root / "sessions" / "a"), "--to-tensors", str(tmp_path / "p"))
    assert plain.returncode == 0, plain.stderr
    shard = "shards/a.safetensors"
    assert (tmp_path / "u" / shard).read_bytes() == (tmp_path / "p" / shard).read_bytes()
    again = run_vrcap("replay", session, "--to-tensors", f"file://{tmp_path / 'u'}")
    assert "1 session(s) already converted with this config, skipped: a" in again.stderr, again.stderr


def test_output_that_is_a_file_is_refused(root: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    done = run_vrcap("replay", str(root / "sessions" / "a"), "--to-tensors", str(tmp_path / "file"))
    assert "is a file; give a folder" in _one_line_error(done, 2)
