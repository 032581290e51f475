"""Rebuild a lost session.json from the segments alone, as `mcap recover` rebuilds a summary from the records.

Packets carry their stream names and sample data but not the descriptors, clocks or start instant, so some of
session.json must be guessed. Every guess is named in the returned list, which `vrcap validate --fix` records
in ``repairs`` so a reader of the session knows which facts were measured and which were inferred.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vrcap.errors import FormatError, NotASession
from vrcap.layout import list_segments
from vrcap.metadata import SessionMeta, utc_iso
from vrcap.packets import S_COUNT, S_DATA, S_TIME, SAMPLES, TIME
from vrcap.reader import decode_record, is_packet_record
from vrcap.scan import GoodRecord, scan_segment
from vrcap.streams import StreamDescriptor

# A raw float32 sample of this many values is taken for the stream kind the simulator writes with that shape.
_RAW_KINDS = {13: ("pose", (13,)), 8: ("controls", (8,)), 208: ("hand", (26, 8))}


@dataclass
class _Seen:
    """What the scan learned about one stream."""

    count: int = 0
    frames: int = 0  # audio: frames over all blocks
    last_frames: int = 0  # audio: frames of the last block (its span is not inside first_t..last_t)
    first_t: int | None = None
    last_t: int | None = None
    sample: dict[str, Any] = field(default_factory=dict)


def _describe(name: str, seen: _Seen) -> StreamDescriptor:
    """A descriptor guessed from one sample's keys and data, and the stream's sample rate over the session."""
    data, span = seen.sample.get(S_DATA), ((seen.last_t or 0) - (seen.first_t or 0)) / 1e9
    rate = round((seen.count - 1) / span, 3) if span > 0 and seen.count > 1 else 0.0
    if isinstance(data, dict):
        return StreamDescriptor(name, "text", 0.0, (), "", "utf8", source="recovered")
    raw = bytes(data or b"")
    if S_COUNT in seen.sample:  # audio blocks carry a frame count: channels = bytes / 2 / frames
        frames = max(1, int(seen.sample[S_COUNT]))
        return StreamDescriptor(
            name, "audio", round((seen.frames - seen.last_frames) / span) if span > 0 else 0.0,
            (-1, max(1, len(raw) // 2 // frames)),
            "int16", "pcm_s16le", source="recovered", clock="sample_index",
        )  # fmt: skip
    if raw[:2] == b"\xff\xd8":
        return StreamDescriptor(name, "video", rate, (-1, -1, 3), "uint8", "jpeg", source="recovered")
    if raw[:8] == b"\x89PNG\r\n\x1a\n":
        return StreamDescriptor(name, "video", rate, (-1, -1, 3), "uint8", "png", source="recovered")
    kind, shape = _RAW_KINDS.get(len(raw) // 4, ("pose" if name.startswith("aim") else "", (len(raw) // 4,)))
    if not kind or len(raw) % 4:
        return StreamDescriptor(name, "controls", rate, (len(raw),), "uint8", "raw", source="recovered")
    return StreamDescriptor(name, kind, rate, shape, "float32", "raw", source="recovered")


def recover_meta(session: Path) -> tuple[SessionMeta, list[str]]:
    """A session.json for ``session`` built from its segments, and the list of what had to be guessed."""
    segments = list_segments(session)
    if not segments:
        raise NotASession(session, "no session.json and no packets-*.vrc files to rebuild it from")
    seen: dict[str, _Seen] = {}
    first_t: int | None = None
    for segment in segments:
        for item in scan_segment(segment):
            if not isinstance(item, GoodRecord) or not is_packet_record(item.header):
                continue
            try:
                packet = decode_record(segment, item.header, item.payload)
            except FormatError:
                continue
            first_t = int(packet[TIME]) if first_t is None else first_t
            for name, samples in (packet.get(SAMPLES) or {}).items():
                s = seen.setdefault(name, _Seen(sample=dict(samples[0]) if samples else {}))
                for sample in samples:
                    t = int(sample.get(S_TIME, packet[TIME]))
                    s.first_t = t if s.first_t is None else s.first_t
                    s.last_t, s.count = t, s.count + 1
                    s.last_frames = int(sample.get(S_COUNT, 0))
                    s.frames += s.last_frames
    if first_t is None:
        raise NotASession(session, "no session.json, and no intact packet in the segments to rebuild it from")
    # The last segment was last written at the last frame: its mtime anchors monotonic time to wall time.
    last = segments[-1]
    last_t = max((s.last_t or first_t) for s in seen.values()) if seen else first_t
    wall_at_first = os.stat(last).st_mtime_ns - (last_t - first_t)
    meta = SessionMeta(
        name=session.name,
        streams=[_describe(name, s) for name, s in sorted(seen.items())],
        start={"wall_utc": utc_iso(wall_at_first), "wall_ns": wall_at_first, "mono_ns": first_t},
        created_by={"vrcap": "unknown (session.json was lost)"},
    )
    guesses = [
        "session.json was missing: rebuilt from the segments",
        "guessed stream kinds, shapes and encodings from each stream's first sample",
        "guessed stream rates from the sample times",
        f"guessed the start wall clock from the modification time of {last.name}",
        "no clocks, config or incidents survive",
    ]
    return meta, guesses
