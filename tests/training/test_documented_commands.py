"""The training commands of README.md and docs/TRAINING.md, run as written (torchrun included), on real sim data.

Only what cannot run here is changed: `--max-steps` is appended (so each run takes seconds), torchrun's rendezvous
goes to a free loopback port through its own PET_* variables, and the 1b config (GPUs, 224 px tensors) is
skipped. Paths are the documents' own: the run happens in a folder where `configs`, `data/t` and `tensors` exist.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

BIN = Path(sys.executable).parent
DOCS = (REPO / "README.md", REPO / "docs" / "TRAINING.md")


def training_commands(doc: Path) -> list[list[str]]:
    """`vrcap train` and `torchrun` lines of the document's code blocks, without comments or [optional] parts."""
    commands = []
    for block in re.findall(r"```(?:bash|sh)?\n(.*?)```", doc.read_text(), re.S):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line.startswith(("vrcap train", "torchrun")):
                commands.append(shlex.split(re.sub(r"\s*\[[^\]]*\]", "", line)))
    return commands


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def doc_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tensors of a 15 s offline sim session and an 8 s session with text, converted with the default settings."""
    root = tmp_path_factory.mktemp("doc-data")
    sessions = root / "sessions"
    procs = [
        subprocess.Popen([str(BIN / "vrcap"), "record", "--session", "sim-a", "--root", str(sessions), "--source",
                          "sim", "--duration", "15", "--offline"], stderr=subprocess.PIPE, text=True, cwd=REPO),
        subprocess.Popen([sys.executable, str(Path(__file__).with_name("record_annotated.py")),
                          str(sessions / "sim-text"), "8"], stderr=subprocess.PIPE, text=True, cwd=REPO),
    ]  # fmt: skip
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    out = root / "tensors"
    result = subprocess.run([str(BIN / "vrcap"), "replay", str(sessions), "--to-tensors", str(out)],
                            capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_documented_training_commands_run_as_written(doc: Path, doc_data: Path, tmp_path: Path) -> None:
    commands = training_commands(doc)
    assert any(c[0] == "torchrun" for c in commands) and any(c[:2] == ["vrcap", "train"] for c in commands)
    (tmp_path / "data").mkdir()
    for link in (tmp_path / "data" / "t", tmp_path / "tensors"):
        link.symlink_to(doc_data)
    ran = 0
    for command in commands:
        if "1b" in command or "vrcap/configs/train/1b.yaml" in command:
            continue  # 8 GPUs, FSDP and 224 px tensors: nothing here runs it
        args = list(command)
        args[0] = str(BIN / args[0])
        if "--max-steps" not in args:
            args += ["--max-steps", "4" if "auto" in args else "2"]
        env = dict(os.environ, PET_MASTER_ADDR="127.0.0.1", PET_MASTER_PORT=str(_free_port()))
        result = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
        assert result.returncode == 0, f"{shlex.join(command)}\n{result.stderr[-3000:]}"
        assert "Traceback" not in result.stderr
        ran += 1
    print(f"{doc.name}: ran {ran} of {len(commands)} training commands")
    assert ran >= 2
