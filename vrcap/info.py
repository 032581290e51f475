"""`vrcap info`: what a session holds, from session.json — and from a scan when the recorder never finalized it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vrcap.metadata import STATUS_RECORDING, load_meta
from vrcap.reader import SessionReader, list_segments


def session_info(path: Path) -> dict[str, Any]:
    meta = load_meta(path)
    stats = dict(meta.stats)
    if meta.status == STATUS_RECORDING or "packets" not in stats:
        with SessionReader(path) as reader:  # a crashed recorder left no stats: count what is there
            index = reader.scan_index(errors="stop")
        times = index.times
        stats["packets"] = len(index)
        stats["duration_s"] = float(times[-1] - times[0]) / 1e9 if len(index) > 1 else 0.0
    samples = stats.get("samples") or {}
    return {
        "path": str(path),
        "name": meta.name,
        "status": meta.status,
        "format_version": meta.version,
        "start_utc": meta.start.get("wall_utc"),
        "frames": int(stats.get("packets", 0)),
        "duration_s": float(stats.get("duration_s", 0.0)),
        "size_bytes": sum(p.stat().st_size for p in list_segments(path)),
        "segments": len(list_segments(path)),
        "drops": stats.get("drops") or {},
        "streams": [{**s.to_dict(), "samples": int(samples.get(s.name, 0))} for s in meta.streams],
        "clocks": meta.clocks,
        "incidents": meta.incidents,
        "created_by": meta.created_by,
    }
