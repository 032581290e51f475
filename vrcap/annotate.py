"""`vrcap annotate SESSION --import FILE`: timestamped text from a transcript or instruction file into a session.

Times map onto the session's host-monotonic clock:
- relative (default): seconds from the session's first frame, the instant replay calls step 0;
- ``--absolute``: wall-clock, mapped through session.json's start pair (``start.wall_ns`` was read back to
  back with ``start.mono_ns``). JSON gives ISO 8601 times with a zone or Unix seconds; SRT and WebVTT cue
  times are then UTC times of day on the session's start date (a cue earlier in the day than the start is
  taken as the next day).
The events are written as one sidecar (vrcap/annotate_format.py); the session's recorded files are never
opened for writing, so whatever goes wrong, the recording stays as it was.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from vrcap.annotate_format import S_END, write_sidecar
from vrcap.annotate_parse import AnnotationImportError, Cue, detect_format, read_cues
from vrcap.metadata import SessionMeta, load_meta, utc_iso
from vrcap.packets import S_DATA, S_SOURCE_TIME, S_TIME

DAY_S = 86400
SLACK_S = 1.0  # cues this close outside the recording are kept (replay puts them at the first/last step)


@dataclass(frozen=True)
class ImportResult:
    sidecar: Path
    written: bool  # False: the same events were imported before, nothing was written
    events: int
    first_s: float  # relative to the session's first frame
    last_s: float


def import_annotations(
    session: Path,
    file: Path,
    *,
    fmt: str | None = None,
    absolute: bool = False,
    kind: str = "transcript",
    channel: str = "external",
) -> ImportResult:
    """Parse ``file``, map its times, refuse cues outside the recording, and write them crash-safely."""
    meta = load_meta(session)
    zero_ns, span_s = _recording_span(session, meta)
    fmt = detect_format(file, fmt)
    cues = read_cues(file, fmt, kind=kind, channel=channel, absolute=absolute)
    events = [_event(cue, meta, zero_ns, absolute, fmt) for cue in cues]
    for cue, event in zip(cues, events, strict=True):
        at = (event[S_TIME] - zero_ns) / 1e9
        if not -SLACK_S <= at <= span_s + SLACK_S:
            hint = "" if absolute else "; are its times wall-clock? then add --absolute"
            raise AnnotationImportError(
                f"{file}: the cue {cue.text[:40]!r} is at {at:.3f} s, outside the recording (0 to {span_s:.3f} s){hint}"
            )
    info = {
        "source": file.name,
        "format": fmt,
        "imported_utc": utc_iso(time.time_ns()),
        "times": "absolute" if absolute else "relative",
    }
    path, written = write_sidecar(session, events, info)
    offsets = [(e[S_TIME] - zero_ns) / 1e9 for e in events]
    return ImportResult(path, written, len(events), min(offsets), max(offsets))


def _recording_span(session: Path, meta: SessionMeta) -> tuple[int, float]:
    """Host ns of the first frame and the recording's length in seconds."""
    stats = meta.stats or {}
    first, last = stats.get("first_t"), stats.get("last_t")
    if first is None or last is None:
        raise AnnotationImportError(
            f"{session}: session.json has no recorded span (still recording, or never finalized); "
            f"run `vrcap validate --fix {session}` first"
        )
    return int(first), (int(last) - int(first)) / 1e9


def _event(cue: Cue, meta: SessionMeta, zero_ns: int, absolute: bool, fmt: str) -> dict[str, Any]:
    start = _to_mono(cue.start, meta, zero_ns, absolute, fmt)
    event: dict[str, Any] = {
        S_TIME: start,
        S_SOURCE_TIME: start,
        S_DATA: {"text": cue.text, "kind": cue.kind, "channel": cue.channel},
    }
    if cue.end is not None:
        event[S_END] = max(start, _to_mono(cue.end, meta, zero_ns, absolute, fmt))
    return event


def _to_mono(value: float, meta: SessionMeta, zero_ns: int, absolute: bool, fmt: str) -> int:
    if not absolute:
        return zero_ns + round(value * 1e9)
    wall_ns, mono_ns = int(meta.start["wall_ns"]), int(meta.start["mono_ns"])
    if fmt != "json":  # a time of day (UTC) on the start date
        start = datetime.fromtimestamp(wall_ns / 1e9, tz=timezone.utc)
        midnight = start.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
        value = midnight + value % DAY_S
        if value < wall_ns / 1e9 - 60:  # earlier in the day than the start, by more than clock slack
            value += DAY_S
    return mono_ns + round(value * 1e9) - wall_ns
