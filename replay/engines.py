"""Where sessions are converted: this process, local worker processes, or a Dask distributed cluster.

Every engine runs the same task, ``convert_task(source, out, config, allow_invalid)``, one per session, and hands
each finished manifest entry to ``finish`` on the driver as it arrives (the driver alone writes the manifest,
last). A task writes its shard under a temp name and renames it (or uploads it in one put), then its manifest entry
beside it (``shards/<name>.entry.json``), so a task killed half-way leaves nothing a run would trust; Dask
retries a task whose worker died (``retries``), and a re-run of a killed driver skips every session whose entry
and shard are there with the same fingerprint and config.

Memory: each running task holds about three chunks of steps (convert.chunk_s); N local workers or a Dask
worker with N threads cost N times that.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from vrcap.errors import FormatError, UsageError

ENGINES = ("local", "dask")
Finish = Callable[[dict[str, Any]], None]
DASK_RETRIES = 3  # a task whose worker died is run again this many times


def entry_path(name: str) -> str:
    """Where a task leaves its session's manifest entry beside the shard: a driver killed before it wrote the
    manifest finds finished sessions there on the next run (same fingerprint and config: not converted again)."""
    return f"shards/{name}.entry.json"


def convert_task(
    source: str,
    out: str,
    config_data: dict[str, Any],
    allow_invalid: bool,
    progress: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """Convert one session (a local path or a URL) into ``out`` (a folder or a URL); its manifest entry.

    Format errors refuse that session only. Runs in a worker process or on a Dask worker: everything it needs
    comes in its arguments (plain strings and dicts). ``progress`` (in-process only) hears each chunk's
    recorded seconds as it is written.
    """
    from replay.config import ReplayConfig
    from replay.convert_session import SHARD_DIR, convert_session
    from replay.storage import (
        TensorStore,
        is_remote,
        local_path,
        remote_fingerprint,
        session_name,
        stage_session,
    )
    from vrcap.config import build as build_config

    config = build_config(ReplayConfig, config_data)
    store = TensorStore(out)
    name = session_name(source)
    rel = f"{SHARD_DIR}/{name}.safetensors"
    staged: Path | None = None
    shard_dir = store.local_dir(SHARD_DIR)
    try:
        if is_remote(source):
            staged = Path(tempfile.mkdtemp(prefix="vrcap-session-"))
            local = stage_session(source, staged)
            fp: str | None = remote_fingerprint(source)
        else:
            local, fp = local_path(source), None
        entry = convert_session(
            local, shard_dir / f"{name}.safetensors", shard_dir, config, allow_invalid, source=source, fp=fp,
            progress=progress,
        )  # fmt: skip
        if "refused" not in entry:
            if store.remote:
                store.put(shard_dir / f"{name}.safetensors", rel)
            store.write_atomic(entry_path(name), json.dumps(entry).encode(), durable=False)  # resumable
        return entry
    except FormatError as exc:
        return {"name": name, "path": source, "refused": str(exc)}
    finally:
        if staged is not None:
            shutil.rmtree(staged, ignore_errors=True)
        if store.remote:
            shutil.rmtree(shard_dir, ignore_errors=True)


def run_local(
    todo: list[str],
    out: str,
    data: dict[str, Any],
    allow_invalid: bool,
    workers: int,
    finish: Finish,
    progress: Callable[[float], None] | None = None,
) -> None:
    """In this process (chunk by chunk progress), or ``workers`` spawned processes (progress per session)."""
    if workers == 1 or len(todo) == 1:
        for source in todo:
            finish(convert_task(source, out, data, allow_invalid, progress))
        return
    with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(convert_task, s, out, data, allow_invalid) for s in todo]
        for future in as_completed(futures):
            finish(future.result())


def run_dask(
    todo: list[str],
    out: str,
    data: dict[str, Any],
    allow_invalid: bool,
    scheduler: str | None,
    finish: Finish,
) -> None:
    """One task per session on the cluster at ``scheduler`` (``tcp://host:port``); without one, a local
    cluster of one single-threaded worker per two cores (a conversion keeps about two cores busy: the reader
    and its chunk builder or JPEG decoders). Tasks are impure (``pure=False``): a retry really converts again."""
    try:
        from distributed import Client, LocalCluster
        from distributed import as_completed as dask_completed
    except ImportError as exc:
        raise UsageError(
            "--engine dask needs Dask's distributed scheduler; install it with `pip install 'vrcap[distributed]'`"
        ) from exc
    cluster = None
    try:
        if scheduler:
            try:
                client = Client(scheduler, timeout="5s")
            except OSError as exc:
                raise UsageError(
                    f"--scheduler {scheduler}: no Dask scheduler answers there ({exc}); start one with "
                    "`dask scheduler` or check the address"
                ) from exc
        else:
            workers = max(1, (os.cpu_count() or 2) // 2)
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None)
            client = Client(cluster)
        with client:
            futures = [
                client.submit(
                    convert_task,
                    s,
                    out,
                    data,
                    allow_invalid,
                    pure=False,
                    retries=DASK_RETRIES,
                    key=f"vrcap-replay-{i}-{Path(s).name}",
                )
                for i, s in enumerate(todo)
            ]
            for future in dask_completed(futures):
                finish(future.result())
    finally:
        if cluster is not None:
            cluster.close()
