"""The command as a user meets it: exit codes, one-line errors, nothing touched on refusal, fast start."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, run_vrcap, write_synthetic


def _tree_digest(path: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        h.update(str(p.relative_to(path)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_existing_session_is_refused_and_untouched(tmp_path: Path) -> None:
    session = write_synthetic(tmp_path / "taken", 20)
    before = _tree_digest(session)
    result = run_vrcap("record", "--session", "taken", "--root", str(tmp_path), "--duration", "1")
    assert result.returncode == 2
    line = _one_line_error(result)
    assert "already exists" in line and "nothing was touched" in line
    assert _tree_digest(session) == before


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", "", ".hidden", "x" * 200, "tab\tname"])
def test_unsafe_session_names_are_refused(tmp_path: Path, name: str) -> None:
    result = run_vrcap("record", "--session", name, "--root", str(tmp_path / "root"), "--duration", "1")
    assert result.returncode == 2
    assert "not allowed" in _one_line_error(result)
    assert not (tmp_path / "root").exists() and not (tmp_path / "escape").exists()


def test_vrcap_root_environment_variable(tmp_path: Path) -> None:
    result = run_vrcap(
        "record", "--session", "envroot", "--duration", "0.5", env={"VRCAP_ROOT": str(tmp_path)}
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "envroot" / "session.json").is_file()


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("sim.camera_fps=-5", "camera_fps"),
        ("writer.flush_interval_s=0", "flush_interval_s must be in (0, 3600]"),
        ("sim.no_such_key=1", "unknown setting 'sim.no_such_key'"),
        ("record.jpeg_quality=high", "must be an integer"),
        ("writer.flush_interval_s=soon", "must be a number"),
        ("writer.flush_interval_s=nan", "must be a number"),
        ("justakey", "not KEY=VALUE"),
    ],
)
def test_bad_config_values_are_one_clear_line(tmp_path: Path, override: str, expected: str) -> None:
    result = run_vrcap("record", "--session", "x", "--root", str(tmp_path), override)
    assert result.returncode == 2
    assert expected in _one_line_error(result)
    assert not (tmp_path / "x").exists()


def test_a_float_written_1e_3_is_a_number(tmp_path: Path) -> None:
    """YAML 1.1 reads 1e-3 (no dot) as a string; a config value that must be a number takes it as one."""
    from capture.config import CaptureConfig
    from vrcap.config import load_config

    config = load_config(CaptureConfig, None, ["writer.flush_interval_s=25e-2"])
    assert config.writer.flush_interval_s == 0.25


def test_missing_config_file(tmp_path: Path) -> None:
    result = run_vrcap(
        "record", "--session", "x", "--root", str(tmp_path), "--config", str(tmp_path / "nope.yaml")
    )
    assert result.returncode == 2 and "does not exist" in _one_line_error(result)


def test_validate_usage_errors_exit_2(tmp_path: Path) -> None:
    missing = run_vrcap("validate", str(tmp_path / "missing"))
    assert missing.returncode == 2 and "does not exist" in _one_line_error(missing)
    (tmp_path / "empty").mkdir()
    empty = run_vrcap("validate", str(tmp_path / "empty"))
    assert empty.returncode == 2 and "is not a vrcap session" in _one_line_error(empty)
    (tmp_path / "file.txt").write_text("hi")
    assert run_vrcap("info", str(tmp_path / "file.txt")).returncode == 2


def test_corrupt_session_json_is_reported_not_crashed(tmp_path: Path) -> None:
    session = write_synthetic(tmp_path / "s", 5)
    (session / "session.json").write_text("{ not json")
    result = run_vrcap("validate", str(session))
    assert result.returncode == 1 and "cannot be read as JSON" in result.stdout
    info = run_vrcap("info", str(session))
    assert info.returncode == 1 and "cannot be read as JSON" in _one_line_error(info)


def test_validate_a_folder_of_sessions_with_summary_and_json(tmp_path: Path) -> None:
    write_synthetic(tmp_path / "a", 30)
    write_synthetic(tmp_path / "b", 40)
    summary = run_vrcap("validate", "--summary", str(tmp_path))
    assert summary.returncode == 0
    assert "a " in summary.stdout and "b " in summary.stdout and summary.stdout.count("valid") == 2
    data = json.loads(run_vrcap("validate", "--json", str(tmp_path)).stdout)
    assert [d["packets"] for d in data] == [30, 40] and all(d["valid"] for d in data)
    seg = tmp_path / "b" / "packets-000000.vrc"
    seg.write_bytes(seg.read_bytes()[:-3])
    mixed = run_vrcap("validate", "--summary", str(tmp_path))
    assert mixed.returncode == 1 and "invalid" in mixed.stdout


def test_info_json_keys(tmp_path: Path) -> None:
    write_synthetic(tmp_path / "s", 91)
    info = json.loads(run_vrcap("info", "--json", str(tmp_path / "s")).stdout)
    assert info["frames"] == 91
    assert info["duration_s"] == pytest.approx(90 * 11_111_111 / 1e9)
    assert {s["name"] for s in info["streams"]} == {"head", "audio"}
    assert info["format_version"] == "1.0"


def test_help_and_validate_import_no_heavy_modules(tmp_path: Path) -> None:
    session = write_synthetic(tmp_path / "s", 10)
    code = (
        "import sys\nfrom vrcap.cli import main\n"
        f"rc = main(['validate', {str(session)!r}])\n"
        "heavy = sorted(m for m in ('torch', 'cv2', 'xr', 'sounddevice', 'fastapi') if m in sys.modules)\n"
        "print('HEAVY', heavy, rc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert "HEAVY [] 0" in out.stdout
    assert run_vrcap("--help").returncode == 0


def test_no_command_prints_help_and_exits_2() -> None:
    result = run_vrcap()
    assert result.returncode == 2 and "record" in result.stdout
