"""`vrcap replay --to-tensors`: sessions to safetensors shards plus manifest.json, in parallel, incrementally.

    OUT/
      manifest.json                  written last, atomically: the dataset is what it lists
      shards/<session>.safetensors   one per session, depends only on the session and the shard config

A session is skipped when its entry in the previous manifest has the same fingerprint (session.json bytes,
segment names, sizes and mtimes) and the same shard-config hash, and its shard is still there; otherwise it
is converted again. Sessions are independent, so ``workers`` processes convert them side by side.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from replay import tokenizer
from replay.config import ReplayConfig
from replay.errors import SessionRefused
from replay.manifest import (
    FORMAT_NAME,
    SPLITS,
    VERSION,
    assign_splits,
    normalization,
    previous_manifest,
    write_manifest,
)
from vrcap.errors import FormatError, UsageError, VrcapError

SHARD_DIR = "shards"
Log = Callable[[str], None]


def fingerprint(session: Path) -> str:
    """Cheap identity of a session's bytes: session.json's content and each segment's name, size and mtime.

    A repair rewrites session.json and segments; a resumed or longer recording changes sizes; either way the
    fingerprint changes and the session is converted again.
    """
    h = hashlib.sha256()
    h.update((session / "session.json").read_bytes())
    for seg in sorted(session.glob("packets-*.vrc")):
        st = seg.stat()
        h.update(f"{seg.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:24]


# --- one session (runs in a worker process) -------------------------------------------------------------


def convert_one(path: str, out_dir: str, config_data: dict[str, Any], allow_invalid: bool) -> dict[str, Any]:
    """Convert one session; returns its manifest entry, or ``{"name", "refused": reason}``."""
    from safetensors.numpy import save_file

    from replay.audio_stream import audio_layout
    from replay.extract import collect
    from replay.tensors import build
    from vrcap.config import build as build_config
    from vrcap.metadata import load_meta
    from vrcap.validate import SessionCheck

    started = time.perf_counter()
    session = Path(path)
    config = build_config(ReplayConfig, config_data)
    try:
        meta = load_meta(session)
    except VrcapError as exc:
        return {"name": session.name, "path": path, "refused": str(exc)}
    fp = fingerprint(session)
    step = 1e9 / config.step.rate_hz
    # One pass validates and gathers (SessionCheck hands out each packet it decoded); what an invalid session
    # gathered is thrown away unless --allow-invalid, in which case it is what was readable.
    check = SessionCheck(session)
    collected = collect(
        check.packets(), meta, config.step.rate_hz, config.images.tolerance_steps * step, config.images.size,
        config.images.crop, audio_layout(meta, config.step.rate_hz, config.audio),
    )  # fmt: skip
    report = check.finish()
    problems = [f.message for f in report.errors]
    if problems and not allow_invalid:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        collected.close()
        return {"name": session.name, "path": path, "refused": problems[0] + more}
    result = build(collected, meta, config)
    shard_rel = f"{SHARD_DIR}/{session.name}.safetensors"
    shard = Path(out_dir) / shard_rel
    tmp = shard.with_name(f".{shard.name}.tmp-{os.getpid()}")
    metadata = {"session": session.name, "config_hash": config.shard_config_hash(), "fingerprint": fp}
    try:
        save_file(result.tensors, str(tmp), metadata=metadata)
        os.replace(tmp, shard)
    finally:
        if tmp.exists():
            tmp.unlink()
    steps = int(result.tensors["time_ns"].shape[0])
    masked = {
        name.removesuffix(".mask"): round(1.0 - float(arr.mean()), 4) if arr.size else 1.0
        for name, arr in result.tensors.items()
        if name.endswith(".mask")
    }
    return {
        "name": session.name,
        "source": str(session.resolve()),
        "fingerprint": fp,
        "config_hash": config.shard_config_hash(),
        "shard": shard_rel,
        "shard_bytes": shard.stat().st_size,
        "steps": steps,
        "t0_ns": int(result.tensors["time_ns"][0]) if steps else None,
        "recorded_s": round((collected.last_t - collected.first_t) / 1e9, 3) if collected.first_t else 0.0,
        "packets": collected.packets,
        "valid": not problems,
        "problems": problems,
        "notes": result.notes,
        "masked": masked,
        "tensors": {n: {"dtype": str(a.dtype), "shape": list(a.shape)} for n, a in result.tensors.items()},
        "stats": result.stats,
        "convert_s": round(time.perf_counter() - started, 3),
    }


# --- many sessions --------------------------------------------------------------------------------------


def _recorded_seconds(session: Path) -> float:
    from vrcap.metadata import load_meta

    try:
        return max(float(load_meta(session).stats.get("duration_s") or 0.0), 0.01)
    except VrcapError:
        return 0.01


def _plan(
    sessions: list[Path], out: Path, config: ReplayConfig, allow_invalid: bool
) -> tuple[dict[str, dict[str, Any]], list[Path], dict[str, Any] | None]:
    """(entries kept from the previous run, sessions to convert, previous manifest)."""
    names: dict[str, Path] = {}
    for path in sessions:
        if path.name in names and names[path.name].resolve() != path.resolve():
            raise UsageError(
                f"two sessions are named {path.name!r} ({names[path.name]} and {path}); shards are named by "
                "session, so convert them into different --to-tensors folders"
            )
        names[path.name] = path
    prev = previous_manifest(out)
    old = dict(prev["sessions"]) if prev else {}
    chash = config.shard_config_hash()
    kept: dict[str, dict[str, Any]] = {}
    todo: list[Path] = []
    for name, path in sorted(names.items()):
        entry = old.pop(name, None)
        shard = out / entry["shard"] if entry else None
        same = (
            entry is not None
            and shard is not None
            and entry.get("config_hash") == chash
            and entry.get("fingerprint") == _safe_fingerprint(path)
            and shard.is_file()
            and shard.stat().st_size == entry.get("shard_bytes")
            and (entry.get("valid") or allow_invalid)
        )
        if same:
            assert entry is not None
            kept[name] = entry
        else:
            todo.append(path)
    for name, entry in old.items():  # converted earlier, not named this time: still part of the dataset
        if entry.get("config_hash") == chash and (out / entry["shard"]).is_file():
            kept[name] = entry
    return kept, todo, prev


def _safe_fingerprint(path: Path) -> str | None:
    try:
        return fingerprint(path)
    except OSError:
        return None


def convert_sessions(
    paths: list[str | Path],
    out: str | Path,
    config: ReplayConfig | None = None,
    *,
    workers: int = 1,
    allow_invalid: bool = False,
    progress: bool = True,
    log: Log | None = None,
) -> dict[str, Any]:
    """Convert sessions (or folders of sessions) into ``out``; returns the manifest written.

    Raises SessionRefused after writing the manifest of the others when a session fails validation and
    ``allow_invalid`` is False.
    """
    from vrcap.sessions import expand_session_paths

    config = config or ReplayConfig()
    log = log or (lambda msg: print(msg, file=sys.stderr))
    if workers < 1:
        raise UsageError(f"--workers must be >= 1 (got {workers})")
    sessions = expand_session_paths(list(paths))
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--to-tensors {out} is a file; give a folder (it is created if missing)")
    (out / SHARD_DIR).mkdir(parents=True, exist_ok=True)
    kept, todo, _prev = _plan(sessions, out, config, allow_invalid)
    skipped = sorted(n for n in kept if any(p.name == n for p in sessions))
    if skipped:
        log(
            f"replay: {len(skipped)} session(s) already converted with this config, skipped: {', '.join(skipped)}"
        )
    done, refused = _run(todo, out, config, workers, allow_invalid, progress, log)
    entries = {**kept, **done}
    manifest = build_manifest(entries, config)
    write_manifest(out, manifest)
    for note in manifest["notes"]:
        log(f"replay: note: {note}")
    if refused:
        raise SessionRefused(refused, len(done))
    return manifest


def _run(
    todo: list[Path],
    out: Path,
    config: ReplayConfig,
    workers: int,
    allow_invalid: bool,
    progress: bool,
    log: Log,
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    done: dict[str, dict[str, Any]] = {}
    refused: dict[str, str] = {}
    if not todo:
        return done, refused
    data = config.to_dict()
    seconds = {p.name: _recorded_seconds(p) for p in todo}
    bar = _progress_bar(progress and sys.stderr.isatty())
    started = time.perf_counter()
    with bar:
        task = bar.add_task("replay", total=sum(seconds.values()))

        def finish(entry: dict[str, Any]) -> None:
            name = entry["name"]
            if "refused" in entry:
                refused[entry["path"]] = entry["refused"]  # said once, in the error that ends the run
            else:
                done[name] = entry
                speed = entry["recorded_s"] / max(entry["convert_s"], 1e-6)
                state = (
                    ""
                    if entry["valid"]
                    else f" (invalid, converted what was readable: {entry['problems'][0]})"
                )
                log(
                    f"replay: {name}: {entry['steps']} steps, {entry['recorded_s']:.1f} s recorded, "
                    f"{entry['convert_s']:.2f} s ({speed:.0f}x real time){state}"
                )
            bar.advance(task, seconds.get(name, 0.0))

        if workers == 1 or len(todo) == 1:
            for path in todo:
                finish(_guarded(str(path), str(out), data, allow_invalid))
        else:
            with ProcessPoolExecutor(
                max_workers=min(workers, len(todo)), mp_context=get_context("spawn")
            ) as pool:
                futures: dict[Future[dict[str, Any]], Path] = {
                    pool.submit(_guarded, str(p), str(out), data, allow_invalid): p for p in todo
                }
                for future in as_completed(futures):
                    finish(future.result())
    total = sum(seconds[n] for n in done)
    wall = time.perf_counter() - started
    if done:
        log(
            f"replay: converted {len(done)} session(s), {total:.1f} s recorded, in {wall:.2f} s ({total / max(wall, 1e-6):.0f}x real time)"
        )
    return done, refused


def _guarded(path: str, out: str, data: dict[str, Any], allow_invalid: bool) -> dict[str, Any]:
    """convert_one, with format errors turned into a refusal of that session only."""
    try:
        return convert_one(path, out, data, allow_invalid)
    except FormatError as exc:
        return {"name": Path(path).name, "path": path, "refused": str(exc)}


def _progress_bar(enabled: bool) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

    class _Speed(TextColumn):
        def render(self, task: Any) -> Any:
            from rich.text import Text

            speed = task.speed
            return Text(f"{speed:.0f}x real time" if speed else "")

    return Progress(
        TextColumn("[bold]replay"), BarColumn(), TaskProgressColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} s recorded"), _Speed(""), TimeRemainingColumn(),
        console=Console(stderr=True), disable=not enabled, transient=True,
    )  # fmt: skip


# --- the manifest ---------------------------------------------------------------------------------------

TENSOR_UNITS = {
    "time_ns": "host CLOCK_MONOTONIC, ns",
    "pose": "m (xyz) + unit quaternion xyzw; head, controller_left, controller_right",
    "hands": "m (xyz) + unit quaternion xyzw; left, right x 26 XR_EXT_hand_tracking joints",
    "controls": "trigger, squeeze 0..1; thumbstick x, y -1..1; button_a, button_b, menu, thumbstick_click 0/1",
    "audio.pcm": "int16 PCM, full scale 32767",
    "audio.mel": "natural log of mel power (HTK mel, Hann window)",
    "audio.start_index": "audio sample index of the window's first sample, -1 where masked",
    "text.internal": "byte tokens (see tokenizer)",
    "text.external": "byte tokens (see tokenizer)",
}


def build_manifest(entries: dict[str, dict[str, Any]], config: ReplayConfig) -> dict[str, Any]:
    from vrcap import __version__

    splits, notes = assign_splits(sorted(entries), config.split)
    for name, entry in entries.items():
        entry["split"] = next(s for s in SPLITS if name in splits[s])
    tensors: dict[str, dict[str, Any]] = {}
    for entry in entries.values():
        for name, info in entry["tensors"].items():
            tensors.setdefault(name, {"dtype": info["dtype"], "shape": ["S", *info["shape"][1:]]})
    for name, info in tensors.items():
        base = name.removesuffix(".mask").removesuffix(".frame")
        if name.endswith(".mask"):
            info["units"] = "True where recorded"
        elif name.endswith(".frame"):
            info["units"] = "the camera's own frame number, -1 where masked"
        elif name.startswith("camera."):
            info["units"] = "RGB uint8; the Dataset scales to [-1, 1]"
        else:
            info["units"] = TENSOR_UNITS.get(base, "")
        info["normalized_by_dataset"] = name in ("pose", "hands", "audio.mel") or (
            name.startswith("camera.") and not (name.endswith(".mask") or name.endswith(".frame"))
        )
    audio = next((e["stats"].get("audio") for e in entries.values() if "audio" in e.get("stats", {})), None)
    for entry in entries.values():
        notes.extend(f"{entry['name']}: {n}" for n in entry.get("notes", []))
        if not entry.get("valid", True):
            notes.append(
                f"{entry['name']}: invalid session converted with --allow-invalid ({entry['problems'][0]})"
            )
    return {
        "format": FORMAT_NAME,
        "version": VERSION,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "vrcap": __version__,
        "config": config.to_dict(),
        "config_hash": config.shard_config_hash(),
        "step_hz": config.step.rate_hz,
        "pose_frame": config.pose.frame,
        "audio": audio,
        "tokenizer": tokenizer.describe(),
        "tensors": dict(sorted(tensors.items())),
        "normalization": normalization(entries, splits["train"]),
        "split_rule": {
            "by": "sha256(salt NUL name), first 8 bytes / 2^64",
            **config.to_dict()["split"],
        },
        "splits": splits,
        "sessions": dict(sorted(entries.items())),
        "notes": notes,
    }
