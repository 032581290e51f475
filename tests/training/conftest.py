"""Real data for the training tests: two simulator sessions recorded by `vrcap record` and converted by
`vrcap replay`, once per test session (about 10 s), shared by every test here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, run_vrcap

TINY = REPO / "vrcap" / "configs" / "train" / "tiny.yaml"
SECONDS = 4  # per session: 120 steps at 30 Hz, 54 windows of 16 steps (stride 4) over two sessions


@pytest.fixture(scope="session")
def sim_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tensor folder (manifest + shards) of two 4 s sim sessions, one with text; sessions in ../sessions."""
    root = tmp_path_factory.mktemp("training-data")
    sessions = root / "sessions"
    vrcap = str(Path(sys.executable).parent / "vrcap")
    # One session through `vrcap record`, one with text events (record_annotated.py), recorded at once.
    commands = [
        [
            vrcap,
            "record",
            "--session",
            "sim-0",
            "--root",
            str(sessions),
            "--source",
            "sim",
            "--duration",
            str(SECONDS),
        ],
        [
            sys.executable,
            str(Path(__file__).with_name("record_annotated.py")),
            str(sessions / "sim-text"),
            str(SECONDS),
        ],
    ]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
        for cmd in commands
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    out = root / "tensors"
    # Two sessions: time-block splits; gaps of one tiny window (16 steps) leave room for val and test.
    result = run_vrcap("replay", str(sessions), "--to-tensors", str(out), "split.gap_steps=16")
    assert result.returncode == 0, result.stderr
    return out
