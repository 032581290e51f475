"""OUT/manifest.json: what the tensor folder holds (schema in docs/TENSORS.md, "The manifest").

The manifest is the dataset: a shard not listed in it does not exist for the Dataset. It is written last and
atomically (temp file + rename), so a crash mid-conversion leaves the previous manifest in force.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

from replay.config import SplitConfig
from replay.errors import ManifestError
from vrcap.fsutil import atomic_write_bytes

MANIFEST_FILE = "manifest.json"
FORMAT_NAME = "vrcap-tensors"
VERSION = 1
SPLITS = ("train", "val", "test")
STD_FLOOR = 1e-3  # a component that never varies (a quaternion's w near 1) is divided by this, not by ~0


def split_of(name: str, config: SplitConfig) -> str:
    """Stable split by hash: the same name and salt give the same split on any machine, in any run."""
    digest = hashlib.sha256(f"{config.salt}\x00{name}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < config.train:
        return "train"
    return "val" if u < config.train + config.val else "test"


def assign_splits(names: list[str], config: SplitConfig) -> tuple[dict[str, list[str]], list[str]]:
    """{split: sorted names} and notes explaining small cases."""
    notes: list[str] = []
    splits: dict[str, list[str]] = {s: [] for s in SPLITS}
    if len(names) < config.min_sessions:
        splits["train"] = sorted(names)
        if names:
            notes.append(
                f"{len(names)} session(s) converted, fewer than split.min_sessions={config.min_sessions}: "
                "all in train; val and test are empty"
            )
        return splits, notes
    for name in sorted(names):
        splits[split_of(name, config)].append(name)
    for split in SPLITS:
        if not splits[split] and getattr(config, split) > 0:
            notes.append(
                f"split {split!r} drew 0 of {len(names)} sessions (hash split, {getattr(config, split):.0%})"
            )
    return splits, notes


def _combine(entries: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    """Mean and std from per-session (count, sum, sumsq), elementwise."""
    import numpy as np

    parts = [e["stats"][key] for e in entries if key in e.get("stats", {})]
    if not parts:
        return None
    count = sum(np.asarray(p["count"], np.float64) for p in parts)
    total = sum(np.asarray(p["sum"], np.float64) for p in parts)
    sumsq = sum(np.asarray(p["sumsq"], np.float64) for p in parts)
    safe = np.maximum(count, 1.0)
    mean = np.where(count > 0, total / safe, 0.0)
    var = np.where(count > 0, sumsq / safe - mean**2, 1.0)
    std = np.maximum(np.sqrt(np.maximum(var, 0.0)), STD_FLOOR)
    shape = list(mean.shape)
    return {"mean": mean.tolist(), "std": std.tolist(), "shape": shape, "count": float(np.min(count))}


def normalization(entries: dict[str, dict[str, Any]], train: list[str]) -> dict[str, Any]:
    """Per-tensor mean/std over the train split (all sessions if train is empty, with a flag)."""
    chosen = [entries[n] for n in train] or list(entries.values())
    out: dict[str, Any] = {
        "computed_over": "train" if train else "all (train is empty)",
        "sessions": len(chosen),
    }
    for key in ("pose", "hands", "audio.mel"):
        stats = _combine(chosen, key)
        if stats is not None:
            out[key] = stats
    return out


def write_manifest(out_dir: Path, manifest: dict[str, Any]) -> None:
    text = json.dumps(manifest, indent=1, sort_keys=False, allow_nan=False) + "\n"
    atomic_write_bytes(out_dir / MANIFEST_FILE, text.encode("utf-8"))


def read_manifest(out_dir: Path) -> dict[str, Any]:
    """The manifest, checked for format and version; ManifestError says what is wrong and what to do."""
    path = Path(out_dir) / MANIFEST_FILE
    if not path.is_file():
        hint = "is it the --to-tensors folder of `vrcap replay`?"
        if Path(out_dir).is_dir() and (Path(out_dir) / "shards").is_dir():
            hint = "a conversion was interrupted before it finished; run `vrcap replay` again"
        raise ManifestError(f"{path} does not exist; {hint}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path} cannot be read ({exc}); run `vrcap replay` again to rewrite it") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise ManifestError(f"{path} is not a vrcap tensor manifest (format {data.get('format')!r})")
    version = data.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise ManifestError(
            f"manifest version {version} is newer than this vrcap ({VERSION}); upgrade vrcap or convert again "
            "with this one"
        )
    return data


def previous_manifest(out_dir: Path) -> dict[str, Any] | None:
    """The manifest of an earlier run, or None (missing, unreadable, other version: then everything is redone)."""
    try:
        data = read_manifest(out_dir)
    except ManifestError:
        return None
    return data if data.get("version") == VERSION else None


def finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
