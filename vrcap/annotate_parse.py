"""Reading timestamped text for `vrcap annotate --import`: SRT, WebVTT and JSON into one list of cues.

Why a module of its own: parsing is where user files go wrong, and every way they can is one line that names
the file, the cue and the fix (``AnnotationImportError``, exit 2). SRT and WebVTT are parsed by the ``srt`` and
``webvtt-py`` libraries, never by hand. JSON is ``[{"start", "end", "text", "kind", "channel"}]``; ``end``,
``kind`` and ``channel`` may be left out.

Times stay as the file gives them here (seconds from the session start, or wall-clock); vrcap/annotate.py maps
them onto the session's clock.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from vrcap.errors import UsageError
from vrcap.packets import ANNOTATION_CHANNELS, ANNOTATION_KINDS

KINDS, CHANNELS = ANNOTATION_KINDS, ANNOTATION_CHANNELS
FORMATS = {".srt": "srt", ".vtt": "vtt", ".json": "json"}
MAX_FILE_BYTES = (
    64 * 1024 * 1024
)  # a transcript this large is a mistake (a video file?), refused before reading


class AnnotationImportError(UsageError):
    """A file or value `vrcap annotate` cannot import; the message names where and how to fix it."""


@dataclass(frozen=True)
class Cue:
    """One piece of text: times in seconds (relative) or as Unix seconds (absolute), as the file gave them."""

    start: float
    end: float | None
    text: str
    kind: str
    channel: str


def detect_format(path: Path, given: str | None) -> str:
    if given:
        return given
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise AnnotationImportError(
            f"{path}: cannot tell the format from the name; use a .srt, .vtt or .json file or --format srt|vtt|json"
        )
    return fmt


def read_cues(path: Path, fmt: str, *, kind: str, channel: str, absolute: bool) -> list[Cue]:
    """Every cue of ``path``; ``kind`` and ``channel`` apply where the file does not say."""
    _check_label("--kind", kind, KINDS)
    _check_label("--channel", channel, CHANNELS)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise AnnotationImportError(f"{path}: {size} bytes is not a transcript (limit {MAX_FILE_BYTES})")
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise AnnotationImportError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise AnnotationImportError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise AnnotationImportError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    if fmt == "json":
        cues = _json_cues(path, text, kind, channel, absolute)
    elif fmt == "srt":
        cues = _srt_cues(path, text, kind, channel)
    else:
        cues = _vtt_cues(path, text, kind, channel)
    if not cues:
        raise AnnotationImportError(f"{path}: no cues found; nothing to import")
    return cues


def _check_label(what: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise AnnotationImportError(f"{what} must be one of {', '.join(allowed)}, got {value!r}")


def _srt_cues(path: Path, text: str, kind: str, channel: str) -> list[Cue]:
    import srt

    try:
        subs = list(srt.parse(text))
    except srt.SRTParseError as exc:
        raise AnnotationImportError(f"{path}: not valid SRT ({exc})") from None
    return [
        Cue(s.start.total_seconds(), s.end.total_seconds(), _one_line(s.content), kind, channel)
        for s in subs
        if s.content.strip()
    ]


def _vtt_cues(path: Path, text: str, kind: str, channel: str) -> list[Cue]:
    import webvtt
    from webvtt.errors import MalformedFileError

    try:
        captions = list(webvtt.from_string(text))
    except MalformedFileError as exc:
        raise AnnotationImportError(
            f"{path}: not valid WebVTT ({exc}); it must start with a WEBVTT line"
        ) from None

    def seconds(ts: Any) -> float:
        return ts.hours * 3600 + ts.minutes * 60 + ts.seconds + ts.milliseconds / 1000

    return [
        Cue(seconds(c.start_time), seconds(c.end_time), _one_line(c.text), kind, channel)
        for c in captions
        if c.text.strip()
    ]


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _json_cues(path: Path, text: str, kind: str, channel: str, absolute: bool) -> list[Cue]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AnnotationImportError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(data, list):
        raise AnnotationImportError(
            f"{path}: expected a JSON list of {{start, end, text, kind, channel}} objects"
        )
    cues = []
    for i, item in enumerate(data):
        where = f"{path}: entry {i}"
        if not isinstance(item, dict) or not isinstance(item.get("text"), str) or "start" not in item:
            raise AnnotationImportError(f'{where} needs at least "start" and a "text" string')
        item_kind, item_channel = item.get("kind", kind), item.get("channel", channel)
        _check_label(f'{where} "kind"', item_kind, KINDS)
        _check_label(f'{where} "channel"', item_channel, CHANNELS)
        start = _json_time(where, "start", item["start"], absolute)
        end = None if item.get("end") is None else _json_time(where, "end", item["end"], absolute)
        if end is not None and end < start:
            raise AnnotationImportError(f"{where} ends ({item['end']}) before it starts ({item['start']})")
        if item["text"].strip():
            cues.append(Cue(start, end, _one_line(item["text"]), item_kind, item_channel))
    return cues


def _json_time(where: str, key: str, value: object, absolute: bool) -> float:
    """Seconds: a number, or with ``absolute`` also an ISO 8601 time with its zone (-> Unix seconds)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if absolute and isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            when = None
        if when is not None and when.tzinfo is not None:
            return when.timestamp()
        raise AnnotationImportError(
            f'{where} "{key}" is {value!r}: use ISO 8601 with a zone, e.g. 2026-12-01T19:33:21.5Z, or Unix seconds'
        )
    raise AnnotationImportError(
        f'{where} "{key}" is {value!r}: use seconds since the session start'
        + ("" if absolute else " (or pass --absolute for wall-clock times)")
    )
