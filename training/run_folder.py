"""The run folder (``--out``): one run per folder, and the resolved config written into it at start.

Why refuse a folder that holds a run: a second run there used to append to the first one's metrics.jsonl and
TensorBoard files, and pruning deleted the new checkpoints because the old ones had higher step numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from training.checkpoint import Checkpointer
from training.config import TrainConfig
from training.errors import RunFolderInUse
from vrcap.config import to_dict
from vrcap.fsutil import atomic_write_bytes

CONFIG_FILE = "config.yaml"


def held_step(out_dir: Path, checkpointer: Checkpointer) -> int | None:
    """The newest step the folder's run reached (checkpoint or metrics line), or None when it holds no run."""
    steps = [step for step, _ in checkpointer.list()]
    metrics = out_dir / "metrics.jsonl"
    if metrics.is_file():
        for line in metrics.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                steps.append(int(json.loads(line).get("step", 0)))
            except (ValueError, AttributeError):
                continue
        if not steps:
            steps.append(0)
    return max(steps) if steps else None


def guard_run_folder(out_dir: Path, resume: str | None, checkpointer: Checkpointer) -> None:
    """Refuse ``out_dir`` when it holds a run and this one does not resume."""
    if resume:
        return
    step = held_step(out_dir, checkpointer)
    if step is not None:
        raise RunFolderInUse(out_dir, step)


def write_resolved_config(cfg: TrainConfig, out_dir: Path) -> Path:
    """Every field with its value in force (defaults, file and overrides merged): the run can be redone from it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / CONFIG_FILE
    text = "# the resolved config of this run (vrcap train writes it at start)\n"
    text += yaml.safe_dump(to_dict(cfg), sort_keys=False)
    atomic_write_bytes(path, text.encode("utf-8"))
    return path
