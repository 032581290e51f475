"""`vrcap validate --fix`: make a damaged session valid without losing a single intact record.

Nothing is thrown away: bytes cut from a segment (a torn tail, a damaged range) are moved to
``<session>/repair/`` first, named for the segment and offset they came from. Then the index is rebuilt by
a scan and session.json is finalized from what the segments really hold.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from vrcap import __version__
from vrcap.errors import FormatError
from vrcap.fsutil import atomic_write_bytes, fsync_dir
from vrcap.index import INDEX_FILE, SessionIndex
from vrcap.metadata import STATUS_RECORDING, STATUS_REPAIRED, load_meta, save_meta, utc_iso
from vrcap.packets import SAMPLES, SEQ, TIME
from vrcap.reader import decode_record, is_packet_record, list_segments
from vrcap.records import RECORD_HEADER_SIZE, encode_segment_header
from vrcap.scan import Damage, GoodRecord, scan_segment

REPAIR_DIR = "repair"


@dataclass
class RepairResult:
    path: Path
    actions: list[str] = field(default_factory=list)

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


def _fix_segment(session: Path, segment: Path, result: RepairResult) -> None:
    items = list(_summarise(scan_segment(segment)))
    damages = [d for d in items if isinstance(d, Damage)]
    if not damages:
        return
    data = segment.read_bytes()
    if len(damages) == 1 and damages[0].end == len(data):
        damage = damages[0]
        aside = _save_aside(session, segment, damage.start, data[damage.start :], "tail")
        if damage.start == 0:  # not even a header survived: the segment holds nothing
            segment.unlink()
            result.actions.append(
                f"removed {segment.name}, which held no intact record (bytes kept in {aside.relative_to(session)})"
            )
        else:
            with open(segment, "r+b") as f:
                f.truncate(damage.start)
                f.flush()
                os.fsync(f.fileno())
            result.actions.append(
                f"truncated {segment.name} at byte {damage.start}, cutting {len(data) - damage.start} bytes "
                f"of a torn tail (kept in {aside.relative_to(session)})"
            )
        fsync_dir(session)
        return
    # Damage in the middle (or to the file header): rewrite the segment from its intact records.
    keep = bytearray(encode_segment_header(int(segment.stem.split("-")[1])))
    for item in items:
        if isinstance(item, Damage):
            aside = _save_aside(session, segment, item.start, data[item.start : item.end], "damaged")
            result.actions.append(
                f"removed {item.end - item.start} damaged bytes at {segment.name}:{item.start} "
                f"(kept in {aside.relative_to(session)})"
            )
        else:
            start, end = item
            keep += data[start:end]
    atomic_write_bytes(segment, bytes(keep))
    result.actions.append(f"rewrote {segment.name} from its intact records")


def _summarise(scan: object) -> list[Damage | tuple[int, int]]:
    """Reduce the scan to byte ranges, so nothing outlives the memory mapping."""
    out: list[Damage | tuple[int, int]] = []
    for item in scan:  # type: ignore[attr-defined]
        if isinstance(item, GoodRecord):
            out.append((item.header.offset, item.header.offset + RECORD_HEADER_SIZE + item.header.length))
        else:
            out.append(item)
    return out


def _rebuild(session: Path, result: RepairResult) -> None:
    meta = load_meta(session)
    rows: list[tuple[int, int, int, int]] = []
    samples: dict[str, int] = {}
    segments_info = []
    total_bytes = 0
    for segment in list_segments(session):
        number = int(segment.stem.split("-")[1])
        info: dict[str, object] = {
            "file": segment.name,
            "number": number,
            "records": 0,
            "bytes": segment.stat().st_size,
        }
        total_bytes += segment.stat().st_size
        for item in scan_segment(segment):
            if not isinstance(item, GoodRecord) or not is_packet_record(item.header):
                continue
            try:
                packet = decode_record(segment, item.header, item.payload)
            except FormatError:
                continue
            seq, t = int(packet[SEQ]), int(packet[TIME])
            rows.append((seq, t, number, item.header.offset))
            info.setdefault("first_seq", seq)
            info.setdefault("first_t", t)
            info.update(last_seq=seq, last_t=t, records=int(info["records"]) + 1)  # type: ignore[call-overload]
            for name, items in (packet.get(SAMPLES) or {}).items():
                samples[name] = samples.get(name, 0) + len(items)
        segments_info.append(info)
    index = SessionIndex.from_entries(rows)
    old = (session / INDEX_FILE).read_bytes() if (session / INDEX_FILE).is_file() else b""
    new = index.save_bytes()
    if old != new:
        atomic_write_bytes(session / INDEX_FILE, new)
        result.actions.append(f"rebuilt {INDEX_FILE} ({len(rows)} entries)")
    stats = dict(meta.stats)
    first_t, last_t = (rows[0][1], rows[-1][1]) if rows else (None, None)
    stats.update(
        packets=len(rows),
        bytes=total_bytes,
        duration_s=round((last_t - first_t) / 1e9, 6) if rows else 0.0,
        first_seq=rows[0][0] if rows else None,
        last_seq=rows[-1][0] if rows else None,
        first_t=first_t,
        last_t=last_t,
        samples={**{s.name: 0 for s in meta.streams}, **samples},
    )
    stats.setdefault("drops", {})
    changed_stats = stats != meta.stats or segments_info != meta.segments
    if meta.status == STATUS_RECORDING:
        wall = time.time_ns()
        meta.stop = {
            "wall_utc": utc_iso(wall),
            "wall_ns": wall,
            "mono_ns": last_t,
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
        meta.repairs.append(
            {"wall_utc": utc_iso(time.time_ns()), "vrcap": __version__, "actions": list(result.actions)}
        )
        save_meta(session, meta)


def repair_session(session: Path) -> RepairResult:
    """Repair in place; returns what was done (nothing, for a healthy session)."""
    load_meta(session)  # NotASession / FormatError before anything is touched
    result = RepairResult(session)
    for segment in list_segments(session):
        _fix_segment(session, segment, result)
    _rebuild(session, result)
    return result
