"""Issue 13 §4: a CLI that helps — usage of the subcommand, the closest spelling, help on every option."""

from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path

import pytest

from tests.helpers import REPO, run_vrcap, write_synthetic
from vrcap.cli import build_parser
from vrcap.wording import clock, dropped_words, plural


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    return dict(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]


def test_every_subcommand_of_every_package_is_registered() -> None:
    assert set(_subcommands()) == {
        "validate", "info", "config", "record", "devices", "replay", "train", "infer", "profile", "estimate",
        "serve", "annotate", "export", "eval",
    }  # fmt: skip


def test_every_option_and_argument_has_help() -> None:
    missing = [
        f"{name} {action.dest}"
        for name, sub in _subcommands().items()
        for action in sub._actions
        if not isinstance(action, argparse._HelpAction) and not action.help
    ]
    assert missing == []


def test_a_mistyped_option_gets_the_subcommand_usage_and_the_closest_option(tmp_path: Path) -> None:
    result = run_vrcap("record", "--session", "x", "--root", str(tmp_path), "--durration", "3")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: vrcap record ")
    assert (
        "unrecognized arguments: --durration" in result.stderr and "did you mean --duration?" in result.stderr
    )
    assert not (tmp_path / "x").exists()
    fix = run_vrcap("validate", "--fxi", str(tmp_path))
    assert fix.stderr.startswith("usage: vrcap validate ") and "did you mean --fix?" in fix.stderr


def test_a_mistyped_subcommand_gets_the_closest_one() -> None:
    result = run_vrcap("recrod")
    assert result.returncode == 2 and "did you mean 'record'?" in result.stderr
    assert "did you mean" not in run_vrcap("zzzzzz").stderr  # no near spelling: no guess


def test_an_output_folder_under_a_file_is_one_line_exit_2(tmp_path: Path) -> None:
    session = write_synthetic(tmp_path / "s", 30)
    (tmp_path / "crash.log").write_text("not a folder\n")
    result = run_vrcap("replay", str(session), "--to-tensors", str(tmp_path / "crash.log" / "x"))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert "internal error" not in result.stderr and "Not a directory" in lines[-1]
    assert (tmp_path / "crash.log").read_text() == "not a folder\n"


def test_devices_json_is_one_document_ending_in_a_newline() -> None:
    result = run_vrcap("devices", "--json")
    assert result.returncode == 0
    assert result.stdout.endswith("}\n") and not result.stdout.endswith("\n\n")
    assert set(json.loads(result.stdout)) == {"audio", "cameras", "openxr"}


def test_vrcap_cli_imports_no_other_package() -> None:
    """The packages register themselves (entry points): vrcap/cli.py neither imports nor names them."""
    source = (REPO / "vrcap" / "cli.py").read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            imported.update(a.name.split(".")[0] for a in node.names)
    assert not imported & {"capture", "replay", "training", "server"}
    for word in ("capture", "replay.", "training", "server."):
        assert word not in source.replace("# ", "#"), word


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.0, "00:00.0"), (59.94, "00:59.9"), (59.96, "01:00.0"), (61.25, "01:01.2")]
)
def test_the_status_clock_never_reads_60_seconds(seconds: float, text: str) -> None:
    assert clock(seconds) == text


def test_counts_are_spelled_for_their_number() -> None:
    assert [plural(n, "error") for n in (0, 1, 2)] == ["0 errors", "1 error", "2 errors"]
    assert plural(1, "optimizer step") == "1 optimizer step"
    assert dropped_words(67, {"audio": 2}) == "67 frames dropped, 2 samples dropped"
    assert dropped_words(1, {}) == "1 frame dropped"


def test_the_live_status_line_says_what_the_summary_says() -> None:
    from capture.engine import LiveStats

    stats = LiveStats(session="s", elapsed_s=59.97, frames=5000, dropped_frames=67, drops={"audio": 2})
    line = stats.line()
    assert "01:00.0" in line and "67 frames dropped, 2 samples dropped" in line
    assert "quiet dBFS" not in line and line.endswith("audio  quiet")
