"""Checkpoints: written atomically, verified on load, the last K kept, the newest valid one found on resume.

    OUT/checkpoints/
      ckpt-00000500.pt      torch.save of {model, optimizer, scheduler, step, rng (per rank), data, config, ...}
      ckpt-00000500.json    size + sha256 of the .pt, written after it: no .json = the save never finished
      final.pt              a hard link to the last step's checkpoint, never pruned
      best.pt (+ best.json) the checkpoint of the best validation pass so far (train's best_metric), never pruned

Everything is stored as tensors and plain Python values, so ``torch.load(weights_only=True)`` reads it: loading
a checkpoint never runs pickled code.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.errors import CheckpointError

NAME = re.compile(r"^ckpt-(\d{8})\.pt$")


def rng_state() -> dict[str, Any]:
    """This process's python, numpy and torch (and CUDA) generators, as weights_only-loadable values."""
    version, internal, gauss = random.getstate()
    key, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [key, torch.from_numpy(np.asarray(keys, dtype=np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    key, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((key, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _write_atomic(path: Path, write: Any) -> None:
    """Write through a temp file in the same folder, fsync, rename: a crash leaves the old file or none."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Checkpointer:
    def __init__(self, directory: Path, keep_last: int) -> None:
        self.directory, self.keep_last = directory, keep_last

    def path_for(self, step: int) -> Path:
        return self.directory / f"ckpt-{step:08d}.pt"

    def save(self, step: int, state: dict[str, Any], final: bool = False) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path_for(step)
        _write_atomic(path, lambda f: torch.save(state, f))
        info = {"step": step, "size": path.stat().st_size, "sha256": _sha256(path)}
        _write_atomic(path.with_suffix(".json"), lambda f: f.write(json.dumps(info).encode()))
        if final:
            link = self.directory / "final.pt"
            link.unlink(missing_ok=True)
            os.link(path, link)
        self._prune()
        return path

    def save_best(self, step: int, state: dict[str, Any]) -> Path:
        """best.pt, replaced atomically; its .json (size, sha256, step) is written after it, like every checkpoint."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / "best.pt"
        _write_atomic(path, lambda f: torch.save(state, f))
        info = {"step": step, "size": path.stat().st_size, "sha256": _sha256(path)}
        _write_atomic(path.with_suffix(".json"), lambda f: f.write(json.dumps(info).encode()))
        return path

    def _prune(self) -> None:
        for _, old in self.list()[self.keep_last :]:
            old.with_suffix(".json").unlink(missing_ok=True)
            old.unlink(missing_ok=True)

    def list(self) -> list[tuple[int, Path]]:
        """(step, path) of every checkpoint file, newest first."""
        if not self.directory.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.directory.iterdir() if (m := NAME.match(p.name))]
        return sorted(found, reverse=True)

    def load_latest(self) -> tuple[dict[str, Any], Path, list[str]] | None:
        """The newest checkpoint that verifies and loads, and one note per newer one that did not."""
        notes: list[str] = []
        for _, path in self.list():
            try:
                return load_checkpoint(path, verify=True), path, notes
            except CheckpointError as exc:
                notes.append(str(exc))
        return None


def load_checkpoint(path: Path, verify: bool = False) -> dict[str, Any]:
    """Read a checkpoint; with ``verify``, its .json must exist and match (size and sha256) first."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if verify:
        try:
            info = json.loads(path.with_suffix(".json").read_text())
        except (OSError, ValueError):
            raise CheckpointError(
                f"checkpoint {path} is incomplete (no valid {path.stem}.json): skipped"
            ) from None
        size = path.stat().st_size
        if size != info.get("size") or _sha256(path) != info.get("sha256"):
            raise CheckpointError(
                f"checkpoint {path} is corrupt ({size} bytes, checksum does not match {path.stem}.json): skipped"
            )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, pickle/zip errors, EOFError... for a bad file
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc}): skipped"
        ) from exc
