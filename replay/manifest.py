"""OUT/manifest.json: what the tensor folder holds (schema in docs/TENSORS.md, "The manifest").

The manifest is the dataset: a shard not listed in it does not exist for the Dataset. It is written last and
atomically (temp file + rename), so a crash mid-conversion leaves the previous manifest in force.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from replay.errors import ManifestError
from replay.splits import SPLITS as SPLITS  # re-exported: readers import it from here
from vrcap.fsutil import atomic_write_bytes

MANIFEST_FILE = "manifest.json"
FORMAT_NAME = "vrcap-tensors"
VERSION = 1
STD_FLOOR = 1e-3  # a component that never varies (a quaternion's w near 1) is divided by this, not by ~0


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


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=1, sort_keys=False, allow_nan=False) + "\n").encode("utf-8")


def write_manifest(out_dir: Path, manifest: dict[str, Any]) -> None:
    atomic_write_bytes(out_dir / MANIFEST_FILE, manifest_bytes(manifest))


def read_manifest(out_dir: str | Path) -> dict[str, Any]:
    """The manifest, checked for format and version; ManifestError says what is wrong and what to do.

    ``out_dir`` may be a URL (``s3://bucket/tensors``): the manifest is read through fsspec."""
    from replay.storage import TensorStore, is_url

    if is_url(out_dir):
        path: Any = f"{str(out_dir).rstrip('/')}/{MANIFEST_FILE}"
        try:
            data = TensorStore(out_dir).read_json(MANIFEST_FILE)
        except FileNotFoundError as exc:
            raise ManifestError(
                f"{path} does not exist; is it the --to-tensors URL of `vrcap replay`?"
            ) from exc
        except (OSError, ValueError) as exc:
            raise ManifestError(
                f"{path} cannot be read ({exc}); run `vrcap replay` again to rewrite it"
            ) from exc
        return _checked(data, path)
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
    return _checked(data, path)


def _checked(data: Any, path: Any) -> dict[str, Any]:
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
