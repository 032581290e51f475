"""Imported annotations on disk: one sidecar file per import, named by a hash of its content (docs/FORMAT.md,
"Imported annotations").

    sessions/<name>/
    ├── session.json, packets-*.vrc, index.vri      never touched by an import
    └── annotations-<sha256 of the events, 16 hex>.vra
            segment header (as packets-*.vrc, number 0) + one record of kind ANNOTATIONS:
            msgpack {"annotations": [{"t", "st", "e"?, "d": {"text", "kind", "channel"}}...], "source", ...}

Why a sidecar: a recorded session is append-only and its segments carry checksums and an index; rewriting them
to add text would put recorded data at risk. A new file written to a temp name, fsynced, renamed and the folder
fsynced is either there whole or not at all. The name is the hash of the events alone, so importing the same
text twice (even from another format) finds the file already there and writes nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from vrcap.errors import FormatError
from vrcap.fsutil import atomic_write_bytes
from vrcap.packets import ANNOTATION_CHANNELS, ANNOTATION_KINDS, S_DATA, S_SOURCE_TIME, S_TIME
from vrcap.records import (
    DEFAULT_MAX_RECORD_BYTES,
    RECORD_HEADER_SIZE,
    RecordFlags,
    RecordKind,
    decode_record_header,
    decode_segment_header,
    encode_record,
    encode_segment_header,
    verify_payload,
)

SIDECAR_PREFIX, SIDECAR_SUFFIX = "annotations-", ".vra"
DIGEST_CHARS = 16  # 64 bits of SHA-256: a collision between two imports into one session is not a concern
S_END = "e"  # host monotonic ns where the cue ends (optional)


@dataclass(frozen=True)
class Sidecar:
    path: Path
    events: list[dict[str, Any]]  # annotation samples as in packets, plus "e" where the cue has an end
    source: str


def events_digest(events: list[dict[str, Any]]) -> str:
    """SHA-256 of the events in canonical msgpack (sorted by time, then text): the sidecar's name."""
    return hashlib.sha256(msgpack.packb(_canonical(events))).hexdigest()[:DIGEST_CHARS]


def _canonical(events: list[dict[str, Any]]) -> list[Any]:
    rows = [
        (e[S_TIME], e.get(S_END), e[S_DATA]["text"], e[S_DATA]["kind"], e[S_DATA]["channel"]) for e in events
    ]
    return sorted(rows, key=lambda r: (r[0], r[2], r[3], r[4], -1 if r[1] is None else r[1]))


def sidecar_path(session: Path, digest: str) -> Path:
    return session / f"{SIDECAR_PREFIX}{digest}{SIDECAR_SUFFIX}"


def list_sidecars(session: Path) -> list[Path]:
    return sorted(session.glob(f"{SIDECAR_PREFIX}*{SIDECAR_SUFFIX}"))


def write_sidecar(session: Path, events: list[dict[str, Any]], meta: dict[str, Any]) -> tuple[Path, bool]:
    """Write the events crash-safely; returns (path, False) when the same events are already imported."""
    path = sidecar_path(session, events_digest(events))
    if path.exists():
        return path, False
    payload = msgpack.packb({"annotations": sorted(events, key=lambda e: e[S_TIME]), **meta})
    data = (
        encode_segment_header(0) + encode_record(RecordKind.ANNOTATIONS, RecordFlags.NONE, payload) + payload
    )
    atomic_write_bytes(path, data)  # temp file, fsync, rename, fsync the folder: whole or absent
    return path, True


def read_sidecar(path: Path) -> Sidecar:
    """The sidecar's events, after checking its header, record, checksum, name and every event."""
    data = path.read_bytes()
    decode_segment_header(data, path)
    offset = len(encode_segment_header(0))
    header = decode_record_header(data, offset, len(data), path, DEFAULT_MAX_RECORD_BYTES)
    if header.kind != RecordKind.ANNOTATIONS or header.flags:
        raise FormatError(f"{path.name}: record kind {header.kind} is not an annotations record")
    payload = memoryview(data)[offset + RECORD_HEADER_SIZE : header.end]
    verify_payload(header, payload, path)
    if header.end != len(data):
        raise FormatError(f"{path.name}: {len(data) - header.end} bytes after its one record")
    try:
        body = msgpack.unpackb(payload)
    except (ValueError, msgpack.ExtraData) as exc:
        raise FormatError(f"{path.name}: payload does not decode ({exc})") from None
    events = body.get("annotations") if isinstance(body, dict) else None
    if not isinstance(events, list) or not all(_valid_event(e) for e in events):
        raise FormatError(f"{path.name}: annotations are not a list of {{t, st, d: {{text, kind, channel}}}}")
    if path.name != sidecar_path(path.parent, events_digest(events)).name:
        raise FormatError(f"{path.name}: content does not match its name (edited or damaged)")
    return Sidecar(path, events, str(body.get("source", "")))


def _valid_event(e: object) -> bool:
    if (
        not isinstance(e, dict)
        or not isinstance(e.get(S_TIME), int)
        or not isinstance(e.get(S_SOURCE_TIME), int)
    ):
        return False
    d = e.get(S_DATA)
    end = e.get(S_END)
    return (
        isinstance(d, dict)
        and isinstance(d.get("text"), str)
        and d.get("kind") in ANNOTATION_KINDS
        and d.get("channel") in ANNOTATION_CHANNELS
        and (end is None or (isinstance(end, int) and end >= e[S_TIME]))
    )


def imported_texts(session: Path) -> list[tuple[int, str, str]]:
    """(t, channel, text) of every imported event, for replay; a damaged sidecar raises FormatError."""
    return [
        (int(e[S_TIME]), e[S_DATA]["channel"], e[S_DATA]["text"])
        for path in list_sidecars(session)
        for e in read_sidecar(path).events
    ]


def check_sidecars(session: Path, first_t: int | None, last_t: int | None) -> list[tuple[str, str, str]]:
    """Findings (level, code, message) for `vrcap validate`: damaged sidecars, events outside the recording,
    temp files an interrupted import left behind."""
    findings = []
    for path in list_sidecars(session):
        try:
            sidecar = read_sidecar(path)
        except (FormatError, OSError) as exc:
            findings.append(("error", "annotations", f"{exc}; delete {path.name} and import its file again"))
            continue
        if first_t is not None and last_t is not None:
            outside = [e for e in sidecar.events if not first_t <= e[S_TIME] <= last_t]
            if outside:
                findings.append(
                    ("warning", "annotations-outside",
                     f"{path.name}: {len(outside)} of {len(sidecar.events)} events lie outside the recording; "
                     "replay puts them at its first or last step")
                )  # fmt: skip
    for tmp in sorted(session.glob(f".{SIDECAR_PREFIX}*{SIDECAR_SUFFIX}.tmp-*")):
        findings.append(
            ("warning", "annotations-tmp",
             f"{tmp.name} is what an interrupted import left; it is ignored: delete it, or import again")
        )  # fmt: skip
    return findings
