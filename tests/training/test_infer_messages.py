"""Issue 13 §4: what `vrcap infer` says about a --checkpoint it cannot use (one line, with the fix)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run_vrcap, write_synthetic
from training.errors import CheckpointError
from training.infer_checks import check_checkpoint_path
from vrcap.errors import UsageError


def test_a_folder_names_the_checkpoint_to_pass(tmp_path: Path) -> None:
    (tmp_path / "ckpt-00000010.pt").write_bytes(b"")
    (tmp_path / "ckpt-00000020.pt").write_bytes(b"")
    with pytest.raises(UsageError, match=r"is a folder.*--checkpoint .*ckpt-00000020\.pt"):
        check_checkpoint_path(tmp_path)


def test_a_missing_final_pt_names_the_checkpoints_there(tmp_path: Path) -> None:
    (tmp_path / "ckpt-00000030.pt").write_bytes(b"")
    with pytest.raises(UsageError, match=r"final\.pt is written when training finishes.*ckpt-00000030\.pt"):
        check_checkpoint_path(tmp_path / "final.pt")


def test_the_json_sidecar_is_not_called_corrupt(tmp_path: Path) -> None:
    (tmp_path / "ckpt-00000030.json").write_text('{"size": 1, "sha256": "x"}')
    with pytest.raises(UsageError, match=r"JSON sidecar.*ckpt-00000030\.pt") as info:
        check_checkpoint_path(tmp_path / "ckpt-00000030.json")
    assert "corrupt" not in str(info.value)


def test_a_file_that_is_no_checkpoint_is_one_line(tmp_path: Path) -> None:
    session = write_synthetic(tmp_path / "s", 5)
    junk = tmp_path / "model.pt"
    junk.write_bytes(b"\x80\x04not a zip at all" * 10)
    with pytest.raises(CheckpointError, match="not a vrcap checkpoint"):
        check_checkpoint_path(junk)
    result = run_vrcap("infer", "--checkpoint", str(junk), "--session", str(session))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "weights_only" not in result.stderr
