"""`vrcap validate`: everything that can be checked about a session without trusting any of it.

Errors make a session invalid (exit 1): damaged records, a torn tail, time running backwards, a declared
stream with no data, metadata that disagrees with the segments, an unfinalized session. Warnings describe
a valid session's imperfections: dropped frames, audio gaps, rates off their declared value.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vrcap.errors import FormatError
from vrcap.index import INDEX_FILE, SessionIndex
from vrcap.metadata import STATUS_RECORDING, SessionMeta, load_meta
from vrcap.packets import S_COUNT, S_INDEX, S_TIME, SAMPLES, SEQ, TIME
from vrcap.reader import decode_packet, is_packet_record, iter_packet_payloads, list_segments
from vrcap.scan import Damage, scan_segment

RATE_TOLERANCE = 0.05  # measured rate within 5% of the declared one


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

    def packets(self) -> Iterator[dict[str, Any]]:
        report, meta, path = self.report, self.meta, self.path
        if meta is None:
            return
        report.name, report.status, report.format_version = meta.name, meta.status, meta.version
        segments = list_segments(path)
        report.size_bytes = sum(p.stat().st_size for p in segments)
        _check_segment_files(report, meta, segments)
        tracker = self._tracker = _StreamTracker(report, meta)
        times, rows = self._times, self._rows = array("q"), []
        last_seq: int | None = None
        for segment in segments:
            number = int(segment.stem.split("-")[1])
            for item in _packet_records(segment):
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
                rows.append((seq, t, number, offset))
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
                tracker.feed(packet.get(SAMPLES) or {})
                yield packet
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
        _check_metadata(report, meta, self.path, self._rows)
        return report


def _packet_records(segment: Path) -> Iterator[tuple[int, int, memoryview] | Damage]:
    """(offset, flags, payload) of each packet record, or the Damage found, in file order.

    An intact segment (the usual case) goes through the reader's flat loop, which checks the same CRCs with a
    third of the per-record cost; at the first problem the rest is scanned record by record, resyncing past
    damage, and records already handed out are not handed out again.
    """
    done_to = -1
    try:
        for offset, flags, payload in iter_packet_payloads(segment):
            done_to = offset
            yield offset, flags, payload
        return
    except FormatError:
        pass  # from here on, the careful scan says where the damage is and where intact records resume
    for item in scan_segment(segment):
        if isinstance(item, Damage):
            yield item
        elif item.header.offset > done_to and is_packet_record(item.header):
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
    numbers = [int(p.stem.split("-")[1]) for p in segments]
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


def _check_metadata(
    report: ValidationReport, meta: SessionMeta, path: Path, rows: list[tuple[int, int, int, int]]
) -> None:
    if meta.status == STATUS_RECORDING:
        report.add(
            "error",
            "not-finalized",
            "session.json still says 'recording': the recorder did not close it (crash or kill)",
            fixable=True,
        )
        return
    stated = meta.stats.get("packets")
    if stated is not None and int(stated) != report.packets:
        report.add(
            "error",
            "stats-mismatch",
            f"session.json says {stated} packets, the segments hold {report.packets}",
            fixable=True,
        )
    listed = sorted(s.get("file", "") for s in meta.segments)
    present = sorted(p.name for p in list_segments(path))
    if listed != present:
        report.add(
            "error",
            "segments-mismatch",
            f"session.json lists segments {listed}, found {present}",
            fixable=True,
        )
    _check_index(report, path, rows)


def _check_index(report: ValidationReport, path: Path, rows: list[tuple[int, int, int, int]]) -> None:
    index_path = path / INDEX_FILE
    if not index_path.is_file():
        report.add("error", "index-missing", f"{INDEX_FILE} is missing", fixable=True)
        return
    try:
        index = SessionIndex.load(index_path)
    except FormatError as exc:
        report.add("error", "index-corrupt", str(exc), fixable=True)
        return
    expected = SessionIndex.from_entries(rows)
    if index.save_bytes() != expected.save_bytes():
        report.add(
            "error",
            "index-stale",
            f"{INDEX_FILE} disagrees with the segments ({len(index)} entries, {len(rows)} records)",
            fixable=True,
        )
