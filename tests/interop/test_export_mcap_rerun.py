"""MCAP export read by a third implementation: Rerun's `rerun mcap check` and `rerun mcap info` (Rust).

`check` reads the whole file, summary included, and reports any structural or timeline problem per topic;
`info` gives the message count and the chunk compression it saw. Rerun asks about anonymous analytics on its
first run, so the test turns them off in a home of its own (nothing is written outside tmp_path).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import in_ci, run_vrcap
from tests.interop.conftest import session_samples


def _rerun() -> str:
    found = shutil.which("rerun") or shutil.which("rerun", path=str(Path(sys.executable).parent))
    if found is None:
        message = "rerun (rerun-sdk) is not installed: pip install -e '.[dev]'"
        if in_ci():
            pytest.fail(f"{message} (CI must have it)")
        pytest.skip(message)
    return found


def test_rerun_checks_the_file_and_counts_every_message(interop_session: Path, tmp_path: Path) -> None:
    rerun = _rerun()
    home = tmp_path / "home"
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "XDG_DATA_HOME": str(home / ".local")}  # fmt: skip
    run = lambda *args: subprocess.run([rerun, *args], capture_output=True, text=True, timeout=120, env=env,  # noqa: E731
                                       stdin=subprocess.DEVNULL, check=False)  # fmt: skip
    assert run("analytics", "disable").returncode == 0
    out = tmp_path / "cups.mcap"
    done = run_vrcap("export", str(interop_session), "--format", "mcap", "--out", str(out))
    assert done.returncode == 0, done.stderr
    check = run("mcap", "check", str(out))
    assert check.returncode == 0, check.stderr
    truth = {
        f"/{name}": len(samples) for name, samples in session_samples(interop_session).items() if samples
    }
    rows = {
        m.group(2): m.group(1) for m in re.finditer(r"^(\w+)\s+\d+\s+\d+\s+(/\S+)\s+", check.stdout, re.M)
    }
    assert rows == dict.fromkeys(truth, "ok"), check.stdout
    info = run("mcap", "info", str(out))
    assert info.returncode == 0, info.stderr
    messages = re.search(r"^\s*Messages\s+(\d+)", info.stdout, re.M)
    assert messages is not None and int(messages.group(1)) == sum(truth.values()), info.stdout
    assert re.search(r"lz4", info.stdout, re.I), info.stdout
