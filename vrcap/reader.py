"""SessionReader: read-only access to a session — streaming, by sequence number, by time.

Segments are memory-mapped, so iteration runs in constant memory (pages are the OS's file cache, not the
heap) and checksums and msgpack read straight from the mapping. On a torn or corrupt record iteration
stops after yielding every intact record before it, and then raises the format's own error naming the file
and byte offset (or, with ``errors="stop"``, keeps it in ``reader.problem``).
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from vrcap.errors import CorruptRecord, FormatError, RecordTooLarge, TruncatedRecord, WriterError
from vrcap.index import INDEX_FILE, IndexEntry, SessionIndex
from vrcap.layout import list_segments, segment_name, segment_number
from vrcap.metadata import STATUS_RECORDING, SessionMeta, load_meta
from vrcap.packets import SEQ, TIME, decode_payload
from vrcap.records import (
    DEFAULT_MAX_RECORD_BYTES,
    KNOWN_FLAGS,
    RECORD_HEADER,
    RECORD_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
    RecordHeader,
    RecordKind,
    decode_record_header,
    decode_segment_header,
    header_check,
    payload_crc,
)

ErrorMode = Literal["raise", "stop"]


def is_session_dir(path: Path) -> bool:
    return (path / "session.json").is_file()


class _Mapping:
    """An mmap of one segment plus its size; an empty file cannot be mapped, so it gets an empty buffer."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with open(path, "rb") as f:
            self.size = os.fstat(f.fileno()).st_size
            self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if self.size else None
        if self._mm is not None and hasattr(self._mm, "madvise"):
            self._mm.madvise(mmap.MADV_SEQUENTIAL)
        self.view = memoryview(self._mm) if self._mm is not None else memoryview(b"")

    def close(self) -> None:
        self.view.release()
        if self._mm is not None:
            self._mm.close()


def iter_packet_payloads(
    path: Path,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    verify: bool = True,
    skipped: list[tuple[int, int, int]] | None = None,
) -> Iterator[tuple[int, int, memoryview]]:
    """(offset, flags, payload view) of each packet record: the hot path of every reader, kept flat.

    Every check of docs/FORMAT.md §3 in one loop with no per-record objects; records of kinds or flags this
    version does not know are skipped by their length. ``verify=False`` skips the payload CRC (the header check
    still runs) for trusted bulk reads of sessions that `vrcap validate` has passed. Each skipped record's
    (offset, kind, flags) is appended to ``skipped``, so callers can tell unreadable records from dropped frames.
    """
    unpack, check, seeds = RECORD_HEADER.unpack_from, header_check, _PACKET_SEEDS
    mapping = _Mapping(path)
    try:
        buf, size = mapping.view, mapping.size
        try:
            expected: int | None = segment_number(path)
        except ValueError:
            expected = None
        decode_segment_header(buf, path, expected)
        offset = SEGMENT_HEADER_SIZE
        while offset < size:
            if size - offset < RECORD_HEADER_SIZE:
                raise TruncatedRecord(path, offset, RECORD_HEADER_SIZE, size - offset)
            length, crc, kind, flags, hcheck = unpack(buf, offset)
            if check(length, crc, kind, flags) != hcheck:
                raise CorruptRecord(path, offset, "record header check failed")
            if length > max_record_bytes:
                raise RecordTooLarge(path, offset, length, max_record_bytes)
            start = offset + RECORD_HEADER_SIZE
            end = start + length
            if end > size:
                raise TruncatedRecord(path, offset, RECORD_HEADER_SIZE + length, size - offset)
            payload = buf[start:end]
            try:
                known = (kind, flags) in seeds
                if (verify or not known) and payload_crc(kind, flags, payload) != crc:
                    raise CorruptRecord(path, offset, "payload checksum (CRC-32) mismatch")
                if known:
                    yield offset, flags, payload
                elif skipped is not None:
                    skipped.append((offset, kind, flags))
            finally:
                payload.release()
            offset = end
    finally:
        mapping.close()


def decode_record(path: Path, header: RecordHeader, payload: bytes | memoryview) -> dict[str, Any]:
    return decode_packet(path, header.offset, header.flags, payload)


def decode_packet(path: Path, offset: int, flags: int, payload: bytes | memoryview) -> dict[str, Any]:
    try:
        packet = decode_payload(flags, payload)
    except Exception as exc:  # lz4 and msgpack raise many types; all mean "these bytes are not a packet"
        raise CorruptRecord(path, offset, f"payload does not decode ({type(exc).__name__}: {exc})") from exc
    if SEQ not in packet or TIME not in packet:
        raise CorruptRecord(path, offset, "packet lacks 'seq' or 't'")
    return packet


_PACKET_SEEDS = frozenset((int(RecordKind.PACKET), f) for f in range(KNOWN_FLAGS + 1))


def is_packet_record(header: RecordHeader) -> bool:
    """Unknown record kinds and flag bits come from a newer minor version: skip them by their length."""
    return header.kind == RecordKind.PACKET and not (header.flags & ~KNOWN_FLAGS)


class SessionReader:
    """Opening is read-only; to record, use ``SessionWriter.create``; to repair, ``vrcap.repair``."""

    def __init__(self, path: Path | str, *, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> None:
        self.path = Path(path)
        self.meta: SessionMeta = load_meta(self.path)
        self.segments = list_segments(self.path)
        self.max_record_bytes = max_record_bytes
        self.problem: FormatError | None = None
        self.skipped: list[
            tuple[int, int, int]
        ] = []  # (offset, kind, flags) of records this version cannot read
        self._index: SessionIndex | None = None
        self._index_from_disk = False
        self._maps: dict[int, _Mapping] = {}

    # --- streaming ----------------------------------------------------------------------------------

    def records(
        self, errors: ErrorMode = "raise", verify: bool = True
    ) -> Iterator[tuple[int, int, dict[str, Any]]]:
        """(segment number, byte offset, packet) of every packet, in file order."""
        self.problem = None
        self.skipped = []
        try:
            for segment in self.segments:
                number = segment_number(segment)
                payloads = iter_packet_payloads(segment, self.max_record_bytes, verify, self.skipped)
                for offset, flags, payload in payloads:
                    yield number, offset, decode_packet(segment, offset, flags, payload)
        except FormatError as exc:
            if errors == "raise":
                raise
            self.problem = exc

    def packets(self, errors: ErrorMode = "raise", verify: bool = True) -> Iterator[dict[str, Any]]:
        """Every packet in order; ``verify=False`` trusts payload checksums (for sessions already validated)."""
        for _, _, packet in self.records(errors, verify):
            yield packet

    # --- random access ------------------------------------------------------------------------------

    @property
    def index(self) -> SessionIndex:
        if self._index is None:
            self._index = self._load_index()
            self._index_from_disk = self._index is not None
            if self._index is None:
                self._index = self.scan_index(errors="stop")
        return self._index

    def scan_index(self, errors: ErrorMode = "raise") -> SessionIndex:
        rows = [(int(p[SEQ]), int(p[TIME]), number, offset) for number, offset, p in self.records(errors)]
        return SessionIndex.from_entries(rows)

    def packet_at(self, seq: int) -> dict[str, Any]:
        return self._lookup(lambda index: index.find_seq(seq), f"no packet with seq {seq} in {self.path}")

    def packet_at_time(self, t_ns: int) -> dict[str, Any]:
        """The frame current at monotonic time ``t_ns``: the last one at or before it."""
        return self._lookup(
            lambda index: index.find_time(t_ns),
            f"no packet at or before t={t_ns} ns in {self.path} (it starts later)",
        )

    def _lookup(self, find: Callable[[SessionIndex], IndexEntry | None], missing: str) -> dict[str, Any]:
        """Look up in the index; a stored index that points wrong is dropped for a scan, never blamed on the data."""
        entry = find(self.index)
        try:
            if entry is None:
                raise KeyError(missing)
            return self._read_at(entry.segment, entry.offset, expect_seq=entry.seq)
        except (FormatError, KeyError):
            if not self._index_from_disk:
                raise
        self._index, self._index_from_disk = self.scan_index(errors="stop"), False
        entry = find(self._index)
        if entry is None:
            raise KeyError(missing)
        return self._read_at(entry.segment, entry.offset, expect_seq=entry.seq)

    def __len__(self) -> int:
        return len(self.index)

    def close(self) -> None:
        for mapping in self._maps.values():
            mapping.close()
        self._maps.clear()

    def __enter__(self) -> SessionReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write_packet(self, packet: dict[str, Any]) -> None:
        raise WriterError("SessionReader is read-only; record with SessionWriter.create(path, streams)")

    # --- internals ----------------------------------------------------------------------------------

    def _load_index(self) -> SessionIndex | None:
        """The stored index if it can be trusted for this session, else None (a scan rebuilds it)."""
        path = self.path / INDEX_FILE
        if self.meta.status == STATUS_RECORDING or not path.is_file():
            return None
        try:
            index = SessionIndex.load(path)
        except (OSError, FormatError):
            return None
        expected = self.meta.stats.get("packets")
        if expected is None or len(index) != int(expected) or not index.is_sorted():
            return None
        return index

    def _read_at(self, number: int, offset: int, expect_seq: int) -> dict[str, Any]:
        path = self.path / segment_name(number)
        mapping = self._maps.get(number)
        if mapping is None:
            if not path.is_file():
                raise FormatError(f"{self.path}: the index names {path.name}, which is missing")
            mapping = self._maps[number] = _Mapping(path)
        header = decode_record_header(mapping.view, offset, mapping.size, path, self.max_record_bytes)
        payload = mapping.view[offset + RECORD_HEADER_SIZE : header.end]
        try:
            if payload_crc(header.kind, header.flags, payload) != header.crc:
                raise CorruptRecord(path, offset, "payload checksum (CRC-32) mismatch")
            packet = decode_record(path, header, payload)
        finally:
            payload.release()
        if int(packet[SEQ]) != expect_seq:
            raise CorruptRecord(path, offset, f"index says seq {expect_seq}, record holds {packet[SEQ]}")
        return packet


__all__ = ["SessionReader", "TruncatedRecord", "is_session_dir", "iter_packet_payloads", "list_segments"]
