"""`vrcap validate --fix`: make a damaged session valid without losing a single intact record.

Nothing is thrown away: bytes cut from a segment (a torn tail, a damaged range) are moved to
``<session>/repair/`` first, named for the segment and offset they came from. Segments are renumbered when one
is missing, an empty one keeps a valid header, then the index is rebuilt by a scan and session.json is
finalized from what the segments really hold (or rebuilt from them, when it was lost). What repair does is
specified in docs/FORMAT.md §8; the promise is that a session it finishes with is one `validate` calls valid.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from vrcap import __version__
from vrcap.errors import FormatError, UnsupportedVersion
from vrcap.fsutil import atomic_write_bytes, fsync_dir
from vrcap.index import INDEX_FILE, INDEX_HEADER, INDEX_MAGIC, SessionIndex
from vrcap.layout import RESERVE_FILE, list_segments, segment_name, segment_number
from vrcap.metadata import SESSION_FILE, STATUS_RECORDING, STATUS_REPAIRED, load_meta, save_meta, utc_iso
from vrcap.packets import SAMPLES, SEQ, TIME
from vrcap.reader import decode_record, is_packet_record
from vrcap.records import (
    FORMAT_MAJOR,
    SEGMENT_HEADER,
    SEGMENT_HEADER_SIZE,
    SEGMENT_MAGIC,
    encode_segment_header,
)
from vrcap.recover import recover_meta
from vrcap.scan import Damage, GoodRecord, scan_segment

REPAIR_DIR = "repair"


@dataclass
class RepairResult:
    path: Path
    actions: list[str] = field(default_factory=list)  # what was changed on disk
    notes: list[str] = field(default_factory=list)  # what was deliberately left alone, and why

    @property
    def changed(self) -> bool:
        return bool(self.actions)


def _save_aside(session: Path, segment: Path, start: int, data: bytes, what: str) -> Path:
    """Keep removed bytes: a later, smarter tool may still recover something from them."""
    folder = session / REPAIR_DIR
    folder.mkdir(exist_ok=True)
    target = folder / f"{segment.name}.{what}-at-{start}"
    atomic_write_bytes(target, data)
    return target


def _refuse_newer_major(session: Path) -> None:
    """A segment of a newer major version is not ours to rewrite: refuse before anything is touched."""
    for segment in list_segments(session):
        with open(segment, "rb") as f:
            head = f.read(SEGMENT_HEADER_SIZE)
        if len(head) == SEGMENT_HEADER_SIZE:
            magic, major, minor, _ = SEGMENT_HEADER.unpack(head)
            if magic == SEGMENT_MAGIC and major > FORMAT_MAJOR:
                raise UnsupportedVersion(segment, f"{major}.{minor}", str(FORMAT_MAJOR))


def _fix_segment(session: Path, segment: Path, result: RepairResult) -> None:
    items = _summarise(scan_segment(segment))
    damages = [d for d in items if isinstance(d, Damage)]
    if not damages:
        return
    data = segment.read_bytes()
    rel = segment.relative_to(session)
    if len(damages) == 1 and damages[0].end == len(data) and damages[0].start >= SEGMENT_HEADER_SIZE:
        damage = damages[0]
        aside = _save_aside(session, segment, damage.start, data[damage.start :], "tail")
        with open(segment, "r+b") as f:
            f.truncate(damage.start)
            f.flush()
            os.fsync(f.fileno())
        result.actions.append(
            f"truncated {rel} at byte {damage.start}, cutting {len(data) - damage.start} bytes "
            f"of a torn tail (kept in {aside.relative_to(session)})"
        )
        fsync_dir(session)
        return
    # Damage in the middle or to the file header: rewrite the segment from its intact records. A segment with
    # none keeps a valid 16-byte header rather than vanishing, so the numbering stays contiguous.
    keep = bytearray(encode_segment_header(segment_number(segment)))
    for item in items:
        if isinstance(item, Damage):
            if item.end > item.start:
                what = "tail" if item.torn else "damaged"
                aside = _save_aside(session, segment, item.start, data[item.start : item.end], what)
                result.actions.append(
                    f"removed {item.end - item.start} damaged bytes at {rel}:{item.start} "
                    f"(kept in {aside.relative_to(session)})"
                )
        else:
            start, end = item
            keep += data[start:end]
    atomic_write_bytes(segment, bytes(keep))
    intact = sum(1 for i in items if not isinstance(i, Damage))
    result.actions.append(f"rewrote {rel} from its {intact} intact records")


def _summarise(scan: Iterator[GoodRecord | Damage]) -> list[Damage | tuple[int, int]]:
    """Reduce the scan to byte ranges, so nothing outlives the memory mapping.

    An intact packet record whose payload does not decode (an LZ4 frame claiming a terabyte, say) is damage
    too: left in place it would keep the session invalid after every repair.
    """
    out: list[Damage | tuple[int, int]] = []
    for item in scan:
        if isinstance(item, Damage):
            out.append(item)
            continue
        header = item.header
        if is_packet_record(header):
            try:
                decode_record(item.segment, header, item.payload)
            except FormatError as exc:
                out.append(Damage(item.segment, header.offset, header.end, False, exc))
                continue
        out.append((header.offset, header.end))
    return out


def _renumber(session: Path, result: RepairResult) -> None:
    """Close gaps in the numbering (a lost segment): later segments move down, their headers rewritten."""
    for expected, segment in enumerate(list_segments(session)):
        number = segment_number(segment)
        if number == expected:
            continue
        target = session / segment_name(expected)
        os.rename(segment, target)  # ascending order: the target number is always free
        with open(target, "r+b") as f:
            f.seek(12)
            f.write(expected.to_bytes(4, "little"))
            f.flush()
            os.fsync(f.fileno())
        result.actions.append(f"renumbered {segment.name} to {target.name} (segment {expected} was missing)")
    fsync_dir(session)


def _index_is_newer(path: Path) -> str | None:
    """The version of an index written by a newer major version (§9: refuse it, never overwrite it)."""
    if not path.is_file():
        return None
    with open(path, "rb") as f:
        head = f.read(INDEX_HEADER.size)
    if len(head) < INDEX_HEADER.size:
        return None
    magic, major, minor, _ = INDEX_HEADER.unpack(head)
    return f"{major}.{minor}" if magic == INDEX_MAGIC and major > FORMAT_MAJOR else None


def _rebuild(session: Path, result: RepairResult, guesses: list[str]) -> None:
    meta = load_meta(session)
    rows: list[tuple[int, int, int, int]] = []
    samples: dict[str, int] = {}
    segments_info = []
    for segment in list_segments(session):
        number = segment_number(segment)
        info: dict[str, object] = {
            "file": segment.name,
            "number": number,
            "records": 0,
            "packets": 0,
            "bytes": segment.stat().st_size,
        }
        for item in scan_segment(segment):
            if not isinstance(item, GoodRecord):
                continue
            info["records"] = int(info["records"]) + 1  # type: ignore[call-overload]
            if not is_packet_record(item.header):
                continue
            try:
                packet = decode_record(segment, item.header, item.payload)
            except FormatError:
                continue
            seq, t = int(packet[SEQ]), int(packet[TIME])
            rows.append((seq, t, number, item.header.offset))
            info.setdefault("first_seq", seq)
            info.setdefault("first_t", t)
            info.update(last_seq=seq, last_t=t, packets=int(info["packets"]) + 1)  # type: ignore[call-overload]
            for name, items in (packet.get(SAMPLES) or {}).items():
                samples[name] = samples.get(name, 0) + len(items)
        segments_info.append(info)
    _write_index(session, SessionIndex.from_entries(rows), result)
    stats = dict(meta.stats)
    first_t, last_t = (rows[0][1], rows[-1][1]) if rows else (None, None)
    stats.update(
        packets=len(rows),
        bytes=sum(int(s["bytes"]) for s in segments_info),  # type: ignore[call-overload]
        duration_s=round((last_t - first_t) / 1e9, 6) if first_t is not None and last_t is not None else 0.0,
        first_seq=rows[0][0] if rows else None,
        last_seq=rows[-1][0] if rows else None,
        first_t=first_t,
        last_t=last_t,
        samples={**{s.name: 0 for s in meta.streams}, **samples},
    )
    stats.setdefault("drops", {})
    changed_stats = stats != meta.stats or segments_info != meta.segments
    if meta.status == STATUS_RECORDING:
        # The stop instant is the last frame's, on both clocks: wall time mapped through start (FORMAT.md §5).
        mono = last_t if last_t is not None else int(meta.start.get("mono_ns", 0))
        wall = int(meta.start.get("wall_ns", 0)) + (mono - int(meta.start.get("mono_ns", mono)))
        meta.stop = {
            "wall_utc": utc_iso(wall),
            "wall_ns": wall,
            "mono_ns": mono,
            "reason": "recorder died; finalized by vrcap validate --fix",
        }
        result.actions.append(
            "finalized session.json, which still said 'recording' (the recorder did not close it)"
        )
    elif changed_stats:
        result.actions.append(f"updated session.json to what the segments hold ({len(rows)} packets)")
    if result.changed:
        meta.stats, meta.segments = stats, segments_info
        meta.status = STATUS_REPAIRED
        entry = {"wall_utc": utc_iso(time.time_ns()), "vrcap": __version__, "actions": list(result.actions)}
        if guesses:
            entry["guessed"] = guesses
        meta.repairs.append(entry)
        save_meta(session, meta)


def _write_index(session: Path, index: SessionIndex, result: RepairResult) -> None:
    path = session / INDEX_FILE
    newer = _index_is_newer(path)
    if newer is not None:
        result.notes.append(
            f"left {INDEX_FILE} untouched: it is version {newer}, newer than this vrcap; readers scan instead"
        )
        return
    old = path.read_bytes() if path.is_file() else b""
    new = index.save_bytes()
    if old != new:
        atomic_write_bytes(path, new)
        result.actions.append(f"rebuilt {INDEX_FILE} ({len(index)} entries)")


def repair_session(session: Path) -> RepairResult:
    """Repair in place; returns what was done (nothing, for a healthy session)."""
    result = RepairResult(session)
    guesses: list[str] = []
    if not (session / SESSION_FILE).is_file() and session.is_dir() and list_segments(session):
        _refuse_newer_major(session)
        meta, guesses = recover_meta(session)
        save_meta(session, meta)
        result.actions.append(
            f"rebuilt the missing {SESSION_FILE} from the segments ({len(meta.streams)} streams)"
        )
        result.notes.extend(guesses[1:])  # said on the terminal too, not only in session.json
    load_meta(session)  # NotASession / FormatError before anything is touched
    _refuse_newer_major(session)
    for segment in list_segments(session):
        _fix_segment(session, segment, result)
    _renumber(session, result)
    reserve = session / RESERVE_FILE
    if reserve.is_file():
        reserve.unlink()
        result.actions.append(f"removed {RESERVE_FILE}, the disk-full reserve a killed recorder left behind")
    _rebuild(session, result, guesses)
    return result
