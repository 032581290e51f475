"""`vrcap replay --to-tensors`: sessions to safetensors shards plus manifest.json, in parallel, incrementally.

    OUT/
      manifest.json                  written last, atomically: the dataset is what it lists
      shards/<session>.safetensors   one per session, depends only on the session and the shard config

A session is skipped when its entry in the previous manifest has the same fingerprint (session.json bytes,
segment names, sizes and mtimes) and the same shard-config hash, and its shard is still there; otherwise it
is converted again. Sessions are independent, so ``workers`` processes convert them side by side.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from replay import tokenizer
from replay.config import ReplayConfig
from replay.convert_session import SHARD_DIR, fingerprint
from replay.engines import ENGINES, convert_task, entry_path, run_dask, run_local
from replay.errors import ReplayError, SessionRefused
from replay.manifest import (
    FORMAT_NAME,
    MANIFEST_FILE,
    VERSION,
    manifest_bytes,
    normalization,
)
from replay.splits import assign as assign_splits
from replay.storage import (
    TensorStore,
    expand_session_urls,
    filesystem,
    is_remote,
    is_url,
    local_path,
    remote_fingerprint,
    session_name,
)
from vrcap.errors import UsageError

Log = Callable[[str], None]
STATS_FILE = "stats.json"  # per-session count/sum/sumsq behind the manifest's normalization


# --- one session (runs in a worker process) -------------------------------------------------------------


def convert_one(path: str, out_dir: str, config_data: dict[str, Any], allow_invalid: bool) -> dict[str, Any]:
    """Convert one session into ``out_dir/shards``; returns its manifest entry, or ``{"name", "refused": reason}``."""
    return convert_task(str(path), str(out_dir), config_data, allow_invalid)


# --- many sessions --------------------------------------------------------------------------------------


def _recorded_seconds(source: str) -> float:
    """Recorded seconds by session.json (the progress bar's unit); 0.01 when it cannot tell."""
    try:
        if is_url(source):
            fs, root = filesystem(source)
            meta = json.loads(fs.cat_file(f"{root.rstrip('/')}/session.json"))
        else:
            meta = json.loads((Path(source) / "session.json").read_text(encoding="utf-8"))
        return max(float((meta.get("stats") or {}).get("duration_s") or 0.0), 0.01)
    except (OSError, ValueError, TypeError, AttributeError):
        return 0.01


def expand_sources(paths: list[str | Path]) -> list[str]:
    """Session folders, folders of sessions and session URLs (or folders of them), as sources."""
    from vrcap.sessions import expand_session_paths

    out: list[str] = []
    for path in paths:
        if is_url(path):
            out.extend(expand_session_urls(str(path)))
        else:
            out.extend(str(p) for p in expand_session_paths([path]))
    return out


def _fingerprint_of(source: str) -> str | None:
    try:
        return remote_fingerprint(source) if is_remote(source) else fingerprint(local_path(source))
    except OSError:
        return None


def _previous(store: TensorStore) -> dict[str, Any] | None:
    """The manifest of an earlier run, or None (missing, unreadable, other version: then everything is redone)."""
    try:
        data = store.read_json(MANIFEST_FILE)
    except (OSError, ValueError):
        return None
    ok = isinstance(data, dict) and data.get("format") == FORMAT_NAME and data.get("version") == VERSION
    return data if ok else None


def _with_stats(entries: dict[str, dict[str, Any]], store: TensorStore) -> dict[str, dict[str, Any]]:
    """Entries kept from the previous manifest get their per-session sums back from stats.json (or from the
    entry their task left); one whose sums cannot be found is an error the next run repairs by converting."""
    missing = [n for n, e in entries.items() if "stats" not in e]
    if not missing:
        return entries
    try:
        saved = store.read_json(STATS_FILE)
    except (OSError, ValueError):
        saved = {}
    for name in missing:
        entry, old = entries[name], saved.get(name) or {}
        same = old.get("fingerprint") == entry.get("fingerprint") and old.get("config_hash") == entry.get(
            "config_hash"
        )
        stats = old.get("stats") if same else (_left_by_task(store, name) or {}).get("stats")
        if stats is None:
            raise ReplayError(
                f"{store.path(STATS_FILE)} has no statistics for session {name}; delete "
                f"{store.path(MANIFEST_FILE)} and run `vrcap replay` again (finished shards are kept)"
            )
        entry["stats"] = stats
    return entries


def _left_by_task(store: TensorStore, name: str) -> dict[str, Any] | None:
    """The entry a task wrote beside its shard (a run whose driver died before the manifest), or None."""
    try:
        entry = store.read_json(entry_path(name))
    except (OSError, ValueError):
        return None
    return entry if isinstance(entry, dict) and entry.get("name") == name else None


def _plan(
    sources: list[str], store: TensorStore, config: ReplayConfig, allow_invalid: bool
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """(entries kept from the previous run, sessions to convert)."""
    names: dict[str, str] = {}
    for source in sources:
        name = session_name(source)
        if name in names and names[name] != source:
            raise UsageError(
                f"two sessions are named {name!r} ({names[name]} and {source}); shards are named by "
                "session, so convert them into different --to-tensors folders"
            )
        names[name] = source
    prev = _previous(store)
    old = dict(prev["sessions"]) if prev else {}
    chash = config.shard_config_hash()
    kept: dict[str, dict[str, Any]] = {}
    todo: list[str] = []
    for name, source in sorted(names.items()):
        entry = old.pop(name, None) or _left_by_task(store, name)
        same = (
            entry is not None
            and entry.get("config_hash") == chash
            and entry.get("fingerprint") == _fingerprint_of(source)
            and store.size(entry["shard"]) == entry.get("shard_bytes")
            and (entry.get("valid") or allow_invalid)
        )
        if same:
            assert entry is not None
            kept[name] = entry
        else:
            todo.append(source)
    for name, entry in old.items():  # converted earlier, not named this time: still part of the dataset
        if entry.get("config_hash") == chash and store.size(entry["shard"]) is not None:
            kept[name] = entry
    return kept, todo


def convert_sessions(
    paths: list[str | Path],
    out: str | Path,
    config: ReplayConfig | None = None,
    *,
    workers: int = 1,
    allow_invalid: bool = False,
    progress: bool = True,
    log: Log | None = None,
    engine: str = "local",
    scheduler: str | None = None,
) -> dict[str, Any]:
    """Convert sessions (or folders of sessions; paths or URLs) into ``out`` (a folder or a URL); returns the
    manifest written.

    Raises SessionRefused after writing the manifest of the others when a session fails validation and
    ``allow_invalid`` is False.
    """
    config = config or ReplayConfig()
    log = log or (lambda msg: print(msg, file=sys.stderr))
    if workers < 1:
        raise UsageError(f"--workers must be >= 1 (got {workers})")
    if engine not in ENGINES:
        raise UsageError(f"--engine must be one of {', '.join(ENGINES)} (got {engine!r})")
    if scheduler and engine != "dask":
        raise UsageError("--scheduler needs --engine dask")
    sources = expand_sources(list(paths))
    store = TensorStore(out)
    if store.local is not None:
        (store.local / SHARD_DIR).mkdir(parents=True, exist_ok=True)
    kept, todo = _plan(sources, store, config, allow_invalid)
    named = {session_name(s) for s in sources}
    skipped = sorted(n for n in kept if n in named)
    if skipped:
        log(
            f"replay: {len(skipped)} session(s) already converted with this config, skipped: {', '.join(skipped)}"
        )
    done, refused = _run(todo, store.spec, config, workers, allow_invalid, progress, log, engine, scheduler)
    if store.local is not None:
        _remove_leftovers(store.local / SHARD_DIR)
    entries = _with_stats({**kept, **done}, store)
    manifest = build_manifest(entries, config)
    stats = {
        n: {"fingerprint": e["fingerprint"], "config_hash": e["config_hash"], "stats": e["stats"]}
        for n, e in sorted(entries.items())
    }
    store.write_atomic(STATS_FILE, json.dumps(stats).encode())  # first: the manifest is the last word
    store.write_atomic(MANIFEST_FILE, manifest_bytes(manifest))
    for note in manifest["notes"]:
        log(f"replay: note: {note}")
    if refused:
        raise SessionRefused(refused, len(done))
    return manifest


def _remove_leftovers(shards: Path) -> None:
    """Spill folders and temp shards of tasks that died (a killed worker or driver); every task is over now."""
    import shutil

    for left in shards.glob(".*"):
        if ".spill-" in left.name:
            shutil.rmtree(left, ignore_errors=True)
        elif ".tmp-" in left.name:
            left.unlink(missing_ok=True)


def _run(
    todo: list[str],
    out: str,
    config: ReplayConfig,
    workers: int,
    allow_invalid: bool,
    progress: bool,
    log: Log,
    engine: str,
    scheduler: str | None,
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    done: dict[str, dict[str, Any]] = {}
    refused: dict[str, str] = {}
    if not todo:
        return done, refused
    data = config.to_dict()
    seconds = {session_name(s): _recorded_seconds(s) for s in todo}
    bar = _progress_bar(progress and sys.stderr.isatty())
    started = time.perf_counter()
    with bar:
        task = bar.add_task("replay", total=sum(seconds.values()))

        advanced: dict[str, float] = {"": 0.0}  # recorded seconds the chunks of the running session moved

        def chunk_done(seconds_written: float) -> None:
            advanced[""] += seconds_written
            bar.advance(task, seconds_written)

        def finish(entry: dict[str, Any]) -> None:
            name = entry["name"]
            if "refused" in entry:
                refused[entry["path"]] = entry["refused"]  # said once, in the error that ends the run
            else:
                done[name] = entry
                speed = entry["recorded_s"] / max(entry["convert_s"], 1e-6)
                pace = f" ({speed:.0f}x real time)" if entry["recorded_s"] > 0 else ""
                state = (
                    ""
                    if entry["valid"]
                    else f" (invalid, converted what was readable: {entry['problems'][0]})"
                )
                log(
                    f"replay: {name}: {entry['steps']} steps, {entry['recorded_s']:.1f} s recorded, "
                    f"{entry['convert_s']:.2f} s{pace}{state}"
                )
            bar.advance(task, max(0.0, seconds.get(name, 0.0) - advanced[""]))
            advanced[""] = 0.0

        if engine == "dask":
            run_dask(todo, out, data, allow_invalid, scheduler, finish)
        else:
            run_local(todo, out, data, allow_invalid, workers, finish, chunk_done)
    total = sum(seconds[n] for n in done)
    wall = time.perf_counter() - started
    if done:
        log(
            f"replay: converted {len(done)} session(s), {total:.1f} s recorded, in {wall:.2f} s"
            + (f" ({total / max(wall, 1e-6):.0f}x real time)" if total > 0 else "")
        )
    return done, refused


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

    split = assign_splits({n: int(e["steps"]) for n, e in entries.items()}, config.split)
    splits, notes = split.sessions, list(split.notes)
    for name, entry in entries.items():
        entry["split"] = split.split_of(name)
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
        "split_rule": split.rule(config.split),
        "splits": splits,
        "split_ranges": split.ranges,
        # per-session sums live in OUT/stats.json: they are 95% of an entry, and a Dataset never reads them
        "sessions": {n: {k: v for k, v in e.items() if k != "stats"} for n, e in sorted(entries.items())},
        "notes": notes,
    }
