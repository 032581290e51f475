"""One session to one shard, in memory bounded by a chunk of steps, whatever the session's length.

    packets ─► SessionCollector ─► ChunkInput ─► ChunkBuilder ─────────────────► ShardWriter.append
    (validation pass, reader)     every convert.chunk_s   a process of its own,     spill files
                                                          or a thread (workers)

The reader (Python: decoding, validation, gathering) and the chunk builder (numpy: interpolation, FFTs) overlap;
at most one chunk is being built while the next is read, so memory holds about three chunks: the one being
read, the one being built and its output. Camera frames are decoded on a thread pool as they are chosen. At
the end the spill files become the shard (ShardWriter). This runs in the CLI's process, a worker process
(local engine) or a Dask worker; it returns the session's manifest entry.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from replay.chunk_builder import ChunkBuilder
from replay.config import ReplayConfig
from replay.extract import ChunkInput, SessionCollector
from replay.gc_pause import collect_chunk, collections_paused
from replay.heap import kept_heap
from replay.shardwriter import ShardWriter
from replay.tensors import ChunkTensors, Periods, SessionTotals, audio_summary
from vrcap.annotate_format import imported_texts, list_sidecars
from vrcap.errors import FormatError, VrcapError

SHARD_DIR = "shards"


@contextlib.contextmanager
def one_thread_per_call() -> Iterator[None]:
    """BLAS and OpenCV on one thread per call while a session converts, put back afterwards.

    Why: the converter brings its own parallelism (the reader, a chunk builder and a pool of JPEG decoders).
    The log-mel product is small (512 x 601 x 80 a call) and OpenBLAS's extra threads spin between calls,
    taking the core the reader needs: one thread cut the conversion's CPU time by ~40% on 2 cores; OpenCV's
    own pool inside each resize cost another ~5-10% of the camera work. Results are the same: OpenBLAS splits
    rows, not sums (and the product is float64); OpenCV's resize gives the same pixels on any thread count.
    """
    import cv2
    from threadpoolctl import threadpool_limits

    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        cv2.setNumThreads(before)


def fingerprint(session: Path) -> str:
    """Cheap identity of a session's bytes: session.json's content and each segment's name, size and mtime.

    A repair rewrites session.json and segments; a resumed or longer recording changes sizes; either way the
    fingerprint changes and the session is converted again.
    """
    import hashlib

    h = hashlib.sha256()
    h.update((session / "session.json").read_bytes())
    for seg in sorted(session.glob("packets-*.vrc")):
        st = seg.stat()
        h.update(f"{seg.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    for sidecar in list_sidecars(session):  # imported annotations: named by their content
        h.update(f"{sidecar.name};".encode())
    return h.hexdigest()[:24]


def keep_ns(meta: Any, config: ReplayConfig) -> dict[str, float]:
    """How far back from a step a sample may still shape it, per stream: the longest gap interpolation or hold
    bridges (twice, for safety). Older samples are dropped as the chunks go by."""
    out: dict[str, float] = {}
    for s in meta.streams:
        period = 1e9 / s.rate_hz if s.rate_hz > 0 else 1e9
        out[s.name] = 2.0 * config.pose.max_gap_periods * period + 1e8
    return out


def convert_session(
    session: Path,
    shard: Path,
    spill_root: Path,
    config: ReplayConfig,
    allow_invalid: bool,
    source: str | None = None,
    fp: str | None = None,
    progress: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """Convert ``session`` into ``shard``; returns its manifest entry, or ``{"name", "path", "refused"}``.

    ``source`` is what the manifest records as the session's origin (a URL when it was staged from object
    storage); the fingerprint is the caller's when it knows better (object storage: sizes and ETags).
    """
    from replay.audio_stream import audio_layout
    from vrcap.metadata import load_meta
    from vrcap.validate import SessionCheck

    started = time.perf_counter()
    try:
        meta = load_meta(session)
    except VrcapError as exc:
        return {"name": session.name, "path": source or str(session), "refused": str(exc)}
    fp = fp or fingerprint(session)
    rate = config.step.rate_hz
    layout = audio_layout(meta, rate, config.audio)
    periods = Periods(meta)
    totals = SessionTotals()
    spill = spill_root / f".{session.name}.spill-{os.getpid()}-{time.monotonic_ns()}"
    with (
        ShardWriter(spill) as writer,
        ChunkBuilder(meta, config, layout, periods, config.convert.builder) as builder,
        one_thread_per_call(),
        kept_heap(),
        collections_paused(),
    ):
        pending: list[Callable[[], ChunkTensors]] = []

        def write(chunk: ChunkTensors) -> None:
            for name, rows in chunk.tensors.items():
                writer.append(name, rows)
            totals.add(chunk)
            if progress is not None:
                progress(chunk.tensors["time_ns"].shape[0] / rate)

        def emit(chunk: ChunkInput) -> None:
            while pending:  # one chunk in the builder at a time: memory stays at a few chunks
                write(pending.pop()())
            pending.append(builder.submit(chunk))
            collect_chunk()

        collector = SessionCollector(
            meta, rate, config.images.tolerance_steps * 1e9 / rate, config.images.size, config.images.crop,
            layout, max(1, round(config.convert.chunk_s * rate)), config.convert.lookahead_s * 1e9,
            keep_ns(meta, config), emit,
        )  # fmt: skip
        # One pass validates and gathers (SessionCheck hands out each packet it decoded); what an invalid
        # session gathered is thrown away unless --allow-invalid, in which case it is what was readable.
        check = SessionCheck(session)
        with contextlib.suppress(FormatError):  # a damaged sidecar is refused by the check like the rest
            collector.texts = sorted(imported_texts(session))  # `vrcap annotate --import`, placed by time
        try:
            for packet in check.packets():
                collector.add(packet)
            report = check.finish()
            problems = [f.message for f in report.errors]
            if problems and not allow_invalid:
                more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
                return {"name": session.name, "path": source or str(session), "refused": problems[0] + more}
            steps = collector.finish()
            while pending:
                write(pending.pop()())
        finally:
            collector.close()
        notes = list(totals.notes)
        if collector.audio is not None:
            notes.extend(collector.audio.notes)
        notes.extend(f"{s}: {n} frames did not decode; masked" for s, n in sorted(totals.undecodable.items()))
        if totals.text_cut:
            notes.append(f"text: {totals.text_cut} tokens cut at text.max_tokens={config.text.max_tokens}")
        shapes = writer.shapes()
        # no fingerprint here (it has mtimes or ETags): a shard's bytes depend only on the session and config
        metadata = {"session": session.name, "config_hash": config.shard_config_hash()}
        shard_bytes = writer.finish(shard, metadata)
    stats = totals.stats_json()
    stats["audio"] = audio_summary(layout)
    first, last = collector.first_t, collector.last_t
    return {
        "name": session.name,
        "source": source or str(session.resolve()),
        "fingerprint": fp,
        "config_hash": config.shard_config_hash(),
        "shard": f"{SHARD_DIR}/{session.name}.safetensors",
        "shard_bytes": shard_bytes,
        "steps": steps,
        "t0_ns": first if steps else None,
        "recorded_s": round((last - first) / 1e9, 3) if first and last else 0.0,
        "packets": collector.packets,
        "valid": not problems,
        "problems": problems,
        "notes": notes,
        "masked": totals.masked_fractions(),
        "tensors": {n: {"dtype": d, "shape": shape} for n, (d, shape) in shapes.items()},
        "stats": stats,
        "convert_s": round(time.perf_counter() - started, 3),
    }
