"""`vrcap export` on bad input: one line naming the problem and the fix, the right exit code, nothing left."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import run_vrcap
from tests.interop.conftest import write_interop_session
from tests.interop.require import require

require("mcap")


def _lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def _corrupt_copy(good: Path, path: Path) -> Path:
    """A copy of ``good`` with a byte flipped in the middle of its segment: a corrupt record half-way."""
    shutil.copytree(good, path)
    segment = path / "packets-000000.vrc"
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0xFF
    segment.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("fmt", ["mcap", "xdf"])
def test_a_corrupt_session_is_one_line_and_leaves_nothing(
    interop_session: Path, tmp_path: Path, fmt: str
) -> None:
    root = tmp_path / "sessions"
    root.mkdir()
    shutil.copytree(interop_session, root / "a-good")
    bad = _corrupt_copy(interop_session, root / "b-bad")
    before = {p.name: p.read_bytes() for p in bad.iterdir()}
    out = tmp_path / "out"
    done = run_vrcap("export", str(root), "--format", fmt, "--out", str(out))
    assert done.returncode == 1
    errors = [line for line in _lines(done.stderr) if "error" in line]
    assert len(errors) == 1 and "b-bad" in errors[0] and "vrcap validate --fix" in errors[0], done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in out.iterdir()) == [f"a-good.{fmt}"]  # no partial file, no temp file
    assert {p.name: p.read_bytes() for p in bad.iterdir()} == before  # the session is untouched


def test_only_bad_sessions_is_exit_1_with_no_output(interop_session: Path, tmp_path: Path) -> None:
    bad = _corrupt_copy(interop_session, tmp_path / "bad")
    done = run_vrcap("export", str(bad), "--format", "mcap", "--out", str(tmp_path / "bad.mcap"))
    assert done.returncode == 1 and len(_lines(done.stderr)) == 1, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad"]


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["--format", "mcap", "--out", "{tmp}/x.mcap"], "is not a vrcap session"),
        (["--format", "lerobot", "--out", "{tmp}/ds", "--set", "lerobot.codec=vp9"], "lerobot.codec must be"),
        (["--format", "xdf", "--out", "{tmp}/x.xdf", "--set", "xdf.nope=1"], "unknown setting 'xdf.nope'"),
    ],
)
def test_usage_errors_are_exit_2_in_one_line(tmp_path: Path, args: list[str], expect: str) -> None:
    (tmp_path / "empty").mkdir()
    done = run_vrcap("export", str(tmp_path / "empty"), *[a.format(tmp=tmp_path) for a in args])
    assert done.returncode == 2, done.stderr
    assert len(_lines(done.stderr)) == 1 and expect in done.stderr, done.stderr


def test_an_existing_output_is_never_replaced(interop_session: Path, tmp_path: Path) -> None:
    target = tmp_path / "keep.xdf"
    target.write_bytes(b"earlier work")
    done = run_vrcap("export", str(interop_session), "--format", "xdf", "--out", str(target))
    assert done.returncode == 2 and "already exists" in done.stderr and len(_lines(done.stderr)) == 1
    assert target.read_bytes() == b"earlier work"


@pytest.mark.parametrize(("fmt", "out"), [("mcap", "a.mcap"), ("xdf", "deeper/a.xdf"), ("lerobot", "ds")])
def test_an_output_under_a_file_is_refused_before_reading(
    interop_session: Path, tmp_path: Path, fmt: str, out: str
) -> None:
    """--out inside something that is a file: one line that says so (not "File exists"), exit 2, nothing made."""
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    done = run_vrcap("export", str(interop_session), "--format", fmt, "--out", str(blocker / out))
    assert done.returncode == 2, done.stderr
    assert _lines(done.stderr) == [
        f"vrcap export: error: {blocker} is a file, not a folder, so {blocker / out} cannot be written; "
        "pick another --out"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert blocker.read_text() == "a file, not a folder"


def test_a_failed_write_names_the_fix_for_its_cause() -> None:
    """The hint follows the errno: "free some space" only when space is what is missing."""
    import errno

    from replay.export.errors import OutputFailed

    def message(code: int) -> str:
        return str(OutputFailed(Path("out.mcap"), OSError(code, os.strerror(code))))

    assert message(errno.ENOSPC).endswith("nothing was left behind. Free some space or pick another --out")
    assert "pick a folder you can write to" in message(errno.EACCES)
    assert "read-only" in message(errno.EROFS)
    assert "Free some space" not in message(errno.ENOENT) and "Free some space" not in message(errno.EIO)
    assert message(errno.EIO).startswith(
        "cannot write out.mcap: Input/output error; nothing was left behind."
    )


def test_a_session_still_recording_exports_what_it_holds(tmp_path: Path) -> None:
    """A crashed recording (status "recording", no stats) is readable: the export uses its index scan."""
    path = write_interop_session(tmp_path / "crashed", 0.5)
    meta = path / "session.json"
    text = meta.read_text().replace('"status": "complete"', '"status": "recording"')
    meta.write_text(text)
    done = run_vrcap("export", str(path), "--format", "xdf", "--out", str(tmp_path / "c.xdf"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "c.xdf").stat().st_size > 10_000


@pytest.mark.parametrize("fmt", ["xdf", "mcap"])
def test_an_unwritable_output_is_one_line_and_leaves_nothing(
    interop_session: Path, tmp_path: Path, fmt: str
) -> None:
    """A full disk, stood in for by RLIMIT_FSIZE = 64 KiB: the export's writes fail with EFBIG half-way."""
    out = tmp_path / f"big.{fmt}"
    script = (
        "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        "resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536)); from vrcap.cli import main; sys.exit(main())"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, "export", str(interop_session), "--format", fmt, "--out", str(out)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert len(_lines(done.stderr)) == 1 and "cannot write" in done.stderr and "File too large" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_missing_export_package_is_one_line_naming_the_extra(interop_session: Path, tmp_path: Path) -> None:
    """foxglove-sdk hidden from the import system, as on an install without the interop extra."""
    script = "import sys; sys.modules['foxglove'] = None; from vrcap.cli import main; sys.exit(main())"
    out = tmp_path / "x.mcap"
    done = subprocess.run(
        [sys.executable, "-c", script, "export", str(interop_session), "--format", "mcap", "--out", str(out)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert len(_lines(done.stderr)) == 1 and "pip install 'vrcap[interop]'" in done.stderr, done.stderr
    assert not out.exists()
