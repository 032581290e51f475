"""`vrcap validate`: everything that can be checked about a session without trusting any of it.

Errors make a session invalid (exit 1): damaged records, a torn tail, time running backwards, a declared
stream with no data, metadata that disagrees with the segments, an unfinalized session. Warnings describe
a valid session's imperfections: dropped frames, audio gaps, rates off their declared value.
"""

from __future__ import annotations

import hashlib
import os
from array import array
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from itertools import chain, repeat
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np

from vrcap.annotate_format import check_sidecars
from vrcap.errors import FormatError, NotASession, UnsupportedVersion
from vrcap.index import ENTRY_DTYPE, INDEX_FILE, INDEX_HEADER, INDEX_MAGIC, SessionIndex, encode_index_header
from vrcap.layout import list_segments, segment_number
from vrcap.metadata import STATUS_RECORDING, SessionMeta, load_meta
from vrcap.packets import S_COUNT, S_INDEX, S_TIME, SAMPLES, SEQ, TIME
from vrcap.reader import decode_packet, is_packet_record, iter_packet_payloads
from vrcap.records import FORMAT_MAJOR, SEGMENT_HEADER_SIZE, decode_segment_header
from vrcap.scan import Damage, scan_segment

RATE_TOLERANCE = 0.05  # measured rate within 5% of the declared one
BATCH_PACKETS = 128  # packets checked at once (feed_batch): few calls; ~6 MB of camera frames held
# itemgetter, not methodcaller("get", ...): a bound method per call cost 4x; a missing key raises, and the batch
# goes the per-packet way, which reads it as 0 as it always did
_get_time = itemgetter(S_TIME)
_get_index = itemgetter(S_INDEX)
_get_count = itemgetter(S_COUNT)


def _int64(values: Iterator[Any]) -> np.ndarray:
    """Integers into an int64 array, in C; TypeError for anything else (a float, a bool, one past 2**63), so
    the caller takes the per-packet path, which reports exactly what it always did. Why not ``array("q")``:
    it parses every item as a function argument, 2.5x the cost of numpy reading the list."""
    out = np.array(list(values))
    if out.dtype == np.int64:
        return out
    if out.size == 0:
        return np.zeros(0, np.int64)
    raise TypeError(f"sample fields are not all 64-bit integers ({out.dtype})")


@dataclass
class Finding:
    level: str  # "error" or "warning"
    code: str  # stable identifier, e.g. "torn-tail", "dropped-frames"
    message: str
    segment: str | None = None
    offset: int | None = None
    fixable: bool = False


@dataclass
class StreamReport:
    declared_hz: float
    samples: int = 0  # samples (audio: frames)
    measured_hz: float | None = None
    gaps: int = 0  # audio: discontinuities in the sample counter
    gap_samples: int = 0
    drops: int = 0  # as counted by the recorder


@dataclass
class ValidationReport:
    path: str
    name: str = ""
    status: str = ""
    format_version: str = ""
    packets: int = 0
    duration_s: float = 0.0
    first_seq: int | None = None
    last_seq: int | None = None
    dropped_frames: int = 0
    skipped_records: int = 0  # intact records of a kind or with flags this version cannot read (not drops)
    size_bytes: int = 0
    interval_ms: dict[str, float] = field(default_factory=dict)  # frame interval p50 / p99 / max
    jitter_ms: dict[str, float] = field(default_factory=dict)  # |interval − median| p50 / p99
    streams: dict[str, StreamReport] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.level == "error" for f in self.findings)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]

    def add(self, level: str, code: str, message: str, **where: Any) -> None:
        self.findings.append(Finding(level, code, message, **where))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["valid"] = self.ok
        return out


def _percentiles(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {}
    p50, p99 = np.percentile(values, [50, 99])
    return {"p50": round(float(p50), 4), "p99": round(float(p99), 4), "max": round(float(values.max()), 4)}


class _StreamTracker:
    """Per-stream running checks, fed one packet at a time so memory stays flat."""

    def __init__(self, report: ValidationReport, meta: SessionMeta) -> None:
        self.report = report
        self.kinds = {s.name: s.kind for s in meta.streams}
        self.last_t: dict[str, int] = {}
        self.first_t: dict[str, int] = {}
        self.next_index: dict[str, int] = {}
        self.backwards: dict[str, int] = {}
        self.unknown: set[str] = set()
        self.audio = {s.name for s in meta.streams if s.kind == "audio"}
        for s in meta.streams:
            report.streams[s.name] = StreamReport(declared_hz=float(s.rate_hz))

    def feed_batch(self, batch: list[dict[str, list[dict[str, Any]]]]) -> None:
        """Feed the samples of many packets at once: each stream's fields go into arrays in C (``map`` with
        ``itemgetter``) and the checks run on whole arrays. Why: per-sample Python was most of validation's
        cost. Samples the fast path cannot read (a missing key, a float where an int belongs) send the whole
        batch through ``feed``, packet by packet, so the findings are exactly what they always were."""
        try:
            # each stream's sample lists gathered in C (map over the packets), not a Python loop per packet;
            # iterating a packet's samples dict yields its stream names
            names = set(chain.from_iterable(batch))
            columns = {name: self._columns(name, batch) for name in names}
        except (KeyError, TypeError, AttributeError, OverflowError, ValueError):
            for samples in batch:
                self.feed(samples)
            return
        for name, cols in columns.items():
            self._apply(name, cols)

    def _columns(
        self, name: str, batch: list[dict[str, list[dict[str, Any]]]]
    ) -> tuple[np.ndarray, ...] | None:
        """(times, indices, counts) of one stream's samples in a batch (indices and counts: audio only);
        None for an undeclared stream. Raises on a sample the arrays cannot hold."""
        if name not in self.report.streams:
            return None
        flat = list(chain.from_iterable(filter(None, map(dict.get, batch, repeat(name)))))
        times = _int64(map(_get_time, flat))
        if name not in self.audio:
            return (times,)
        return times, _int64(map(_get_index, flat)), _int64(map(_get_count, flat))

    def _apply(self, name: str, cols: tuple[np.ndarray, ...] | None) -> None:
        if cols is None:
            self.unknown.add(name)
            return
        times = cols[0]
        if times.size == 0:
            return
        rep = self.report.streams[name]
        prev = self.last_t.get(name)
        if prev is None:
            prev = self.first_t[name] = int(times[0])
        backwards = int(np.count_nonzero(times[1:] < times[:-1])) + int(times[0] < prev)
        if backwards:
            self.backwards[name] = self.backwards.get(name, 0) + backwards
        self.last_t[name] = int(times[-1])
        if name not in self.audio:
            rep.samples += int(times.size)
            return
        index, count = cols[1], cols[2]
        ends = index + count
        expected = self.next_index.get(name)
        want = ends[:-1] if expected is None else np.concatenate([[expected], ends[:-1]])
        got = index[1:] if expected is None else index
        off = got != want
        rep.gaps += int(np.count_nonzero(off))
        rep.gap_samples += int(np.abs(got[off] - want[off]).sum())
        rep.samples += int(count.sum())
        self.next_index[name] = int(ends[-1])

    def feed(self, samples: dict[str, list[dict[str, Any]]]) -> None:
        # The hot loop of validation (every sample of every packet): locals, and one branch per stream.
        reports, last_t, audio = self.report.streams, self.last_t, self.audio
        for name, items in samples.items():
            rep = reports.get(name)
            if rep is None:
                self.unknown.add(name)
                continue
            if not items:
                continue
            prev = last_t.get(name)
            if prev is None:
                prev = self.first_t[name] = int(items[0].get(S_TIME, 0))
            if name in audio:
                self._feed_audio(name, rep, items, prev)
                continue
            backwards = 0
            for sample in items:
                t = sample.get(S_TIME, 0)
                if t < prev:
                    backwards += 1
                prev = t
            if backwards:
                self.backwards[name] = self.backwards.get(name, 0) + backwards
            last_t[name] = prev
            rep.samples += len(items)

    def _feed_audio(
        self, name: str, rep: StreamReport, items: list[dict[str, Any]], prev: int | None
    ) -> None:
        expected = self.next_index.get(name)
        for sample in items:
            t = int(sample.get(S_TIME, 0))
            if prev is not None and t < prev:
                self.backwards[name] = self.backwards.get(name, 0) + 1
            prev = t
            n, i = int(sample.get(S_COUNT, 0)), int(sample.get(S_INDEX, 0))
            if expected is not None and i != expected:
                rep.gaps += 1
                rep.gap_samples += abs(i - expected)
            expected = i + n
            rep.samples += n
        self.next_index[name] = expected  # type: ignore[assignment]
        self.last_t[name] = int(prev)  # type: ignore[arg-type]

    def finish(self, meta: SessionMeta) -> None:
        report = self.report
        recorded_drops = meta.stats.get("drops") or {}
        failed = {i.get("stream") for i in meta.incidents}
        for name, rep in report.streams.items():
            rep.drops = int(recorded_drops.get(name, 0))
            if rep.samples == 0:
                if not rep.declared_hz:
                    continue  # irregular streams (annotations) may well be empty
                level = "warning" if name in failed else "error"
                report.add(level, "missing-stream", f"stream {name!r} is declared but holds no samples")
                continue
            span = (self.last_t[name] - self.first_t[name]) / 1e9
            if span > 0 and rep.samples > 1:
                count = rep.samples if self.kinds.get(name) == "audio" else rep.samples - 1
                rep.measured_hz = round(count / span, 3)
            if rep.gaps:
                report.add(
                    "warning",
                    "audio-gap",
                    f"stream {name!r}: {rep.gaps} gaps in the sample counter ({rep.gap_samples} samples missing)",
                )
            if self.backwards.get(name):
                report.add(
                    "error",
                    "time-backwards",
                    f"stream {name!r}: {self.backwards[name]} samples go back in time",
                )
            self._check_rate(name, rep, span)
        for name in sorted(self.unknown):
            report.add(
                "warning",
                "undeclared-stream",
                f"packets hold samples of {name!r}, which session.json does not declare",
            )

    def _check_rate(self, name: str, rep: StreamReport, span: float) -> None:
        if not rep.declared_hz or rep.measured_hz is None or span < 1.0:
            return
        if self.kinds.get(name) == "audio":
            return  # audio's rate is the device's; the clock fit in session.json describes its drift
        deviation = abs(rep.measured_hz - rep.declared_hz) / rep.declared_hz
        if deviation > RATE_TOLERANCE:
            self.report.add(
                "warning",
                "rate-off",
                f"stream {name!r}: measured {rep.measured_hz:.2f} Hz against {rep.declared_hz:g} Hz declared "
                f"({deviation:.0%} off)",
            )


def validate_session(path: Path) -> ValidationReport:
    """Check one session. Raises NotASession when ``path`` is not one; every other problem is a finding."""
    check = SessionCheck(path)
    for _ in check.packets():
        pass
    return check.finish()


class SessionCheck:
    """Validation as one pass that also hands out every packet it decoded.

    Why: a consumer that must validate before using a session (``vrcap replay``) would otherwise read and
    decode every record twice. ``packets()`` yields each decodable packet in file order, damaged ranges skipped
    (they are findings); ``finish()`` completes the report once the pass is over. A consumer that refuses
    invalid sessions simply discards what it gathered when ``finish().ok`` is False.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.report = ValidationReport(path=str(path))
        self.meta: SessionMeta | None = None
        try:
            self.meta = load_meta(path)
        except FormatError as exc:
            self.report.add("error", "metadata", str(exc))
        except NotASession:
            if not (path.is_dir() and list_segments(path)):
                raise
            self.report.add(
                "error",
                "metadata-missing",
                f"no session.json, but {len(list_segments(path))} segment files: "
                f"`vrcap validate --fix {path}` rebuilds it from them",
                fixable=True,
            )

    def packets(self) -> Iterator[dict[str, Any]]:
        report, meta, path = self.report, self.meta, self.path
        if meta is None:
            return
        report.name, report.status, report.format_version = meta.name, meta.status, meta.version
        segments = list_segments(path)
        report.size_bytes = sum(p.stat().st_size for p in segments)
        _check_segment_files(report, meta, segments)
        tracker = self._tracker = _StreamTracker(report, meta)
        times, entries = self._times, self._entries = array("q"), _EntryDigest()
        batch: list[dict[str, list[dict[str, Any]]]] = []
        last_seq: int | None = None
        skipped = self._skipped = []
        for segment in segments:
            number = segment_number(segment)
            newer = _newer_major(segment)
            if newer is not None:  # a reader stops here for the whole session (FORMAT.md §9)
                report.add("error", "unsupported-version", str(newer), segment=segment.name, offset=0)
                break
            for item in _packet_records(segment, skipped):
                if isinstance(item, Damage):
                    _report_damage(report, item)
                    continue
                offset, flags, payload = item
                try:
                    packet = decode_packet(segment, offset, flags, payload)
                except FormatError as exc:
                    report.add(
                        "error", "undecodable", str(exc), segment=segment.name, offset=offset, fixable=True
                    )
                    continue
                seq, t = int(packet[SEQ]), int(packet[TIME])
                entries.add(seq, t, number, offset)
                if last_seq is not None:
                    if seq <= last_seq:
                        report.add(
                            "error",
                            "seq-order",
                            f"seq {seq} follows {last_seq}",
                            segment=segment.name,
                            offset=offset,
                        )
                    else:
                        report.dropped_frames += seq - last_seq - 1
                    if times and t <= times[-1]:
                        report.add(
                            "error",
                            "time-backwards",
                            f"frame {seq} time does not increase",
                            segment=segment.name,
                            offset=offset,
                        )
                if report.first_seq is None:
                    report.first_seq = seq
                last_seq = seq
                times.append(t)
                batch.append(packet.get(SAMPLES) or {})
                if len(batch) >= BATCH_PACKETS:
                    tracker.feed_batch(batch)
                    batch = []
                yield packet
        tracker.feed_batch(batch)
        entries.flush()
        report.last_seq = last_seq
        self._done = True

    def finish(self) -> ValidationReport:
        """The report; only complete after ``packets()`` ran to its end."""
        report, meta = self.report, self.meta
        if meta is None:
            return report
        if not getattr(self, "_done", False):
            raise RuntimeError("SessionCheck.finish() before packets() was read to the end")
        times = self._times
        report.packets = len(times)
        report.skipped_records = len(self._skipped)
        if self._skipped:
            kinds = sorted({f"kind {k} flags {f:#04x}" for _, k, f in self._skipped})
            report.add(
                "warning",
                "unreadable-records",
                f"{len(self._skipped)} intact records this version cannot read were skipped ({', '.join(kinds)}); "
                "a newer vrcap may read them, so gaps in seq around them need not be drops",
            )
        _timing(report, np.frombuffer(times, dtype=np.int64) if times else np.zeros(0, np.int64))
        self._tracker.finish(meta)
        for incident in meta.incidents:
            report.add(
                "warning",
                "incident",
                f"{incident.get('stream')}: {incident.get('kind')}: {incident.get('message')}",
            )
        if report.dropped_frames:
            report.add("warning", "dropped-frames", f"{report.dropped_frames} frames dropped (gaps in seq)")
        _check_metadata(report, meta, self.path, self._entries)
        for level, code, message in check_sidecars(
            self.path, meta.stats.get("first_t"), meta.stats.get("last_t")
        ):
            report.add(level, code, message)  # imported annotations (vrcap/annotate_format.py)
        return report


class _EntryDigest:
    """The index entries the segments call for, kept as a running hash instead of a list.

    Why: a list of (seq, t, segment, offset) tuples cost ~190 bytes a packet, ~1 MB per recorded minute, for
    one comparison at the end. Entries are packed in the index's own layout (vrcap/index.py) every
    ``_FLUSH`` packets and hashed, so validating a long session holds a few hundred KB, whatever its length.
    """

    _FLUSH = 4096

    def __init__(self) -> None:
        self._count = 0  # entries hashed so far
        self.first_t: int | None = None
        self.last_t: int | None = None
        self._hash = hashlib.blake2b(digest_size=32)
        self._cols: tuple[array[int], ...] = (array("q"), array("q"), array("q"), array("q"))

    def add(self, seq: int, t: int, segment: int, offset: int) -> None:
        if self.first_t is None:
            self.first_t = t
        self.last_t = t
        cols = self._cols
        cols[0].append(seq)
        cols[1].append(t)
        cols[2].append(segment)
        cols[3].append(offset)
        if len(cols[0]) >= self._FLUSH:
            self.flush()

    def flush(self) -> None:
        seq, t, segment, offset = self._cols
        if not seq:
            return
        arr = np.zeros(len(seq), dtype=ENTRY_DTYPE)  # the index file's layout, one numpy pass
        arr["seq"], arr["t"], arr["segment"], arr["offset"] = seq, t, segment, offset
        self._hash.update(arr.tobytes())
        self._count += len(seq)
        self._cols = (array("q"), array("q"), array("q"), array("q"))

    @property
    def count(self) -> int:
        return self._count + len(self._cols[0])

    def digest(self) -> bytes:
        self.flush()
        return self._hash.digest()


def _newer_major(segment: Path) -> UnsupportedVersion | None:
    """The refusal for a segment of a newer major version; other header damage shows up as a Damage later."""
    with open(segment, "rb") as f:
        head = f.read(SEGMENT_HEADER_SIZE)
    try:
        decode_segment_header(head, segment)
    except UnsupportedVersion as exc:
        return exc
    except FormatError:
        pass
    return None


def _packet_records(
    segment: Path, skipped: list[tuple[int, int, int]]
) -> Iterator[tuple[int, int, memoryview] | Damage]:
    """(offset, flags, payload) of each packet record, or the Damage found, in file order.

    An intact segment (the usual case) goes through the reader's flat loop, which checks the same CRCs with a
    third of the per-record cost; at the first problem the rest is scanned record by record, resyncing past
    damage, and records already handed out are not handed out again.
    """
    done_to = -1
    mark = len(skipped)
    try:
        for offset, flags, payload in iter_packet_payloads(segment, skipped=skipped):
            done_to = offset
            yield offset, flags, payload
        return
    except FormatError:
        pass  # from here on, the careful scan says where the damage is and where intact records resume
    del skipped[mark:]  # the scan below counts this segment's skipped records again, all of them
    for item in scan_segment(segment):
        if isinstance(item, Damage):
            yield item
        elif not is_packet_record(item.header):
            skipped.append((item.header.offset, item.header.kind, item.header.flags))
        elif item.header.offset > done_to:
            yield item.header.offset, item.header.flags, item.payload


def _report_damage(report: ValidationReport, damage: Damage) -> None:
    code = "torn-tail" if damage.torn else "corrupt"
    what = "torn tail" if damage.torn else "damaged bytes"
    report.add(
        "error",
        code,
        f"{damage.segment.name}: {what} at byte {damage.start} ({damage.end - damage.start} bytes): {damage.error}",
        segment=damage.segment.name,
        offset=damage.start,
        fixable=True,
    )


def _check_segment_files(report: ValidationReport, meta: SessionMeta, segments: list[Path]) -> None:
    if not segments:
        report.add("error", "no-segments", "no packets-*.vrc files: the session holds no data")
        return
    numbers = [segment_number(p) for p in segments]
    if numbers != list(range(len(numbers))):
        report.add(
            "error",
            "segment-missing",
            f"segment files are numbered {numbers}, expected 0..{len(numbers) - 1}",
        )


def _timing(report: ValidationReport, times: np.ndarray) -> None:
    if times.size < 2:
        return
    report.duration_s = round(float(times[-1] - times[0]) / 1e9, 6)
    intervals = np.diff(times) / 1e6
    report.interval_ms = _percentiles(intervals)
    report.jitter_ms = _percentiles(np.abs(intervals - np.median(intervals)))


def _check_metadata(report: ValidationReport, meta: SessionMeta, path: Path, entries: _EntryDigest) -> None:
    if meta.status == STATUS_RECORDING:
        report.add(
            "error",
            "not-finalized",
            "session.json still says 'recording': the recorder did not close it (crash or kill)",
            fixable=True,
        )
        return
    actual = {
        "packets": report.packets,
        "first_seq": report.first_seq,
        "last_seq": report.last_seq,
        "first_t": entries.first_t,
        "last_t": entries.last_t,
    }
    for key, value in actual.items():
        stated = meta.stats.get(key)
        if stated is not None and stated != value:
            report.add(
                "error",
                "stats-mismatch",
                f"session.json says stats.{key} = {stated}, the segments hold {value}",
                fixable=True,
            )
    size = sum(p.stat().st_size for p in list_segments(path))
    if meta.stats.get("bytes") is not None and meta.stats["bytes"] != size:
        report.add(
            "warning",
            "stats-bytes",
            f"session.json says stats.bytes = {meta.stats['bytes']}, the segment files hold {size} bytes",
            fixable=True,
        )
    _check_wall_clock(report, meta)
    listed = sorted(s.get("file", "") for s in meta.segments)
    present = sorted(p.name for p in list_segments(path))
    if listed != present:
        report.add(
            "error",
            "segments-mismatch",
            f"session.json lists segments {listed}, found {present}",
            fixable=True,
        )
    _check_index(report, path, entries)


def _check_wall_clock(report: ValidationReport, meta: SessionMeta) -> None:
    """``wall_utc`` is ``wall_ns`` written for people: the two must name the same instant (to 1 ms)."""
    for key in ("start", "stop"):
        instant = getattr(meta, key) or {}
        try:
            utc_ns = datetime.fromisoformat(str(instant["wall_utc"])).timestamp() * 1e9
            wall_ns = int(instant["wall_ns"])
        except (KeyError, TypeError, ValueError):
            continue
        if abs(utc_ns - wall_ns) > 1e6:
            report.add(
                "warning",
                "wall-clock-mismatch",
                f"{key}.wall_utc {instant['wall_utc']} is {(utc_ns - wall_ns) / 1e9:+.3f} s from {key}.wall_ns",
            )


def _check_index(report: ValidationReport, path: Path, entries: _EntryDigest) -> None:
    index_path = path / INDEX_FILE
    if not index_path.is_file():
        report.add(
            "warning", "index-missing", f"{INDEX_FILE} is missing (optional; readers scan)", fixable=True
        )
        return
    try:
        count, digest = _stored_index_digest(index_path)
    except UnsupportedVersion as exc:  # refused, and never overwritten (FORMAT.md §9)
        report.add("warning", "index-newer", f"{exc}; readers scan the segments instead")
        return
    except FormatError as exc:
        report.add("error", "index-corrupt", str(exc), fixable=True)
        return
    if count != entries.count or digest != entries.digest():
        report.add(
            "error",
            "index-stale",
            f"{INDEX_FILE} disagrees with the segments ({count} entries, {entries.count} records)",
            fixable=True,
        )


def _stored_index_digest(index_path: Path) -> tuple[int, bytes]:
    """(entries, BLAKE2b of their bytes) of the stored index, read a block at a time: what
    ``SessionIndex.load`` would hold, a torn last entry ignored, without holding it. A header that load would
    refuse goes through load itself, so the refusal is word for word the same."""
    header_size = len(encode_index_header())
    with open(index_path, "rb") as f:
        head = f.read(header_size)
        ok = len(head) == header_size
        if ok:
            magic, major, _minor, entry_size = INDEX_HEADER.unpack_from(head, 0)
            ok = magic == INDEX_MAGIC and major <= FORMAT_MAJOR and entry_size == ENTRY_DTYPE.itemsize
        if not ok:  # load raises the refusal; should it accept the header after all, its entries decide
            index = SessionIndex.load(index_path)
            stored = index.save_bytes()[header_size:]
            return len(index), hashlib.blake2b(stored, digest_size=32).digest()
        size = os.fstat(f.fileno()).st_size - header_size
        whole = size // ENTRY_DTYPE.itemsize * ENTRY_DTYPE.itemsize
        h = hashlib.blake2b(digest_size=32)
        left = whole
        while left > 0:
            block = f.read(min(left, 1 << 20))
            if not block:
                break
            h.update(block)
            left -= len(block)
    return whole // ENTRY_DTYPE.itemsize, h.digest()
