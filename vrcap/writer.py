"""SessionWriter: appends packets to segments with a bounded crash loss (docs/FORMAT.md, "Crash safety").

    sessions/<name>/
    ├── session.json          written atomically at create() and at close()
    ├── packets-000000.vrc    append-only segments, rotated by size or duration
    ├── packets-000001.vrc
    └── index.vri             seq → (segment, offset, time), appended at every flush

Each record goes to the OS as it is written (one ``writev``, no copy of the payload), so a killed process loses
nothing; ``fsync`` runs every ``flush_interval_s``, so a power cut loses at most the last interval. The index is
appended at each flush, after the data it points to. A reserve file set aside at start is released when the disk
fills up, so session.json and the index can still be finalized.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic.dataclasses import dataclass

from vrcap.errors import ConfigError, SessionExists, WriterError
from vrcap.fsutil import fsync_dir
from vrcap.index import INDEX_FILE, encode_entry, encode_index_header
from vrcap.layout import RESERVE_FILE, segment_name
from vrcap.metadata import STATUS_COMPLETE, SessionMeta, host_facts, save_meta, utc_iso
from vrcap.packets import SAMPLES, SEQ, TIME, encode_packet
from vrcap.records import (
    DEFAULT_MAX_RECORD_BYTES,
    RECORD_HEADER_SIZE,
    RecordKind,
    encode_record,
    encode_segment_header,
)
from vrcap.streams import StreamDescriptor


@dataclass
class WriterConfig:
    """How the writer trades durability, file size and speed."""

    flush_interval_s: float = Field(
        0.5, gt=0, le=3600, description="crash loss bound: packets newer than the last flush may be lost"
    )
    segment_max_bytes: int = Field(
        256 * 1024 * 1024, ge=1048576, le=2**40, description="rotate to a new segment past this size"
    )
    segment_max_seconds: float = Field(
        600.0, ge=0, le=86400, description="... or past this much recorded time (0 = size only)"
    )
    compress: bool = Field(
        True, description="LZ4 where it saves >= compress_min_saving; JPEG-heavy packets stay raw"
    )
    compress_min_bytes: int = Field(
        512,
        ge=0,
        le=2**26,
        description="smaller packets are never worth compressing (a 200-byte pose packet)",
    )
    compress_min_saving: float = Field(
        0.1, ge=0, lt=1, description="compress only when LZ4 saves at least this share of the size"
    )
    max_record_bytes: int = Field(
        DEFAULT_MAX_RECORD_BYTES,
        ge=1024,
        le=2**32 - 1,
        description="refuse to write what readers would refuse to read",
    )
    fsync: bool = Field(
        True,
        description="False only for benchmarks and throwaway sessions: a crash then loses OS buffers too",
    )
    reserve_bytes: int = Field(
        256 * 1024,
        ge=0,
        le=64 * 2**20,
        description="set aside at start, freed on a full disk to finalize session.json",
    )

    def __post_init__(self) -> None:
        if not self.flush_interval_s > 0:
            raise ConfigError(
                f"flush_interval_s must be > 0 (got {self.flush_interval_s}); 0.5 is the default"
            )
        if self.segment_max_bytes < 1024 * 1024:
            raise ConfigError(f"segment_max_bytes must be >= 1 MiB (got {self.segment_max_bytes})")
        if self.segment_max_seconds < 0:
            raise ConfigError(
                f"segment_max_seconds must be >= 0, 0 meaning no limit (got {self.segment_max_seconds})"
            )
        if not 0.0 <= self.compress_min_saving < 1.0:
            raise ConfigError(f"compress_min_saving must be in [0, 1) (got {self.compress_min_saving})")
        if self.max_record_bytes > 2**32 - 1:
            raise ConfigError("max_record_bytes must fit the 32-bit record length (<= 4294967295)")


class SessionWriter:
    """Writes one session. Use ``SessionWriter.create(...)`` as a context manager; close() is idempotent."""

    def __init__(self, path: Path, meta: SessionMeta, config: WriterConfig) -> None:
        self.path = path
        self.meta = meta
        self.config = config
        self._closed = False
        self._segment_number = -1
        self._segment_fd = -1
        self._segment_bytes = 0
        self._segment_first_t: int | None = None
        self._segment_first_seq: int | None = None
        self._segment_records = 0
        self._pending_index = bytearray()
        self._last_flush = time.monotonic()
        self._last_seq: int | None = None
        self._index_fd = -1
        self.packets = 0
        self.bytes_written = 0
        self.samples: dict[str, int] = {s.name: 0 for s in meta.streams}
        self._image_streams = frozenset(s.name for s in meta.streams if s.encoding in ("jpeg", "png"))
        self.drops: dict[str, int] = {}
        self.first_t: int | None = None
        self.last_t: int | None = None
        self.first_seq: int | None = None

    @classmethod
    def create(
        cls,
        path: Path,
        streams: list[StreamDescriptor],
        *,
        config: WriterConfig | None = None,
        clocks: dict[str, Any] | None = None,
        capture_config: dict[str, Any] | None = None,
        start_mono_ns: int | None = None,
        start_wall_ns: int | None = None,
    ) -> SessionWriter:
        """Claim ``path`` (it must not exist) and write the first session.json."""
        path = Path(path)
        names = [s.name for s in streams]
        if len(set(names)) != len(names):
            raise ConfigError(f"stream names must be unique, got {names}")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir()  # atomic claim: two recorders cannot share a session folder
        except FileExistsError:
            raise SessionExists(path) from None
        meta = SessionMeta(
            name=path.name,
            streams=list(streams),
            start=SessionMeta.new_start(start_mono_ns, start_wall_ns),
            created_by=host_facts(),
            clocks=dict(clocks or {}),
            config=dict(capture_config or {}),
        )
        writer = cls(path, meta, config or WriterConfig())
        try:
            save_meta(path, meta)
            writer._index_fd = os.open(path / INDEX_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            writer._write_fd(writer._index_fd, encode_index_header())
            writer._open_segment(0)
            if writer.config.reserve_bytes:
                (path / RESERVE_FILE).write_bytes(bytes(writer.config.reserve_bytes))
            fsync_dir(path)
        except OSError as exc:
            writer._abandon()
            raise writer._os_error(exc, "creating the session") from exc
        return writer

    # --- writing ------------------------------------------------------------------------------------

    def write_packet(self, packet: dict[str, Any]) -> int:
        """Append one packet; returns its encoded size. ``seq`` must increase; gaps mean dropped frames."""
        if self._closed:
            raise WriterError(f"session {self.path} is closed; open a new SessionWriter to record more")
        seq = int(packet[SEQ])
        t = int(packet[TIME])
        if self._last_seq is not None and seq <= self._last_seq:
            raise WriterError(
                f"packet seq {seq} does not follow {self._last_seq}: sequence numbers must increase"
            )
        samples = packet.get(SAMPLES)
        # An LZ4 pass over a packet of JPEG frames saves ~2% for ~55 µs: not worth it, nor the readers' time.
        images = bool(samples) and not self._image_streams.isdisjoint(samples)
        flags, payload = encode_packet(
            packet,
            compress=self.config.compress and not images,
            min_bytes=self.config.compress_min_bytes,
            min_saving=self.config.compress_min_saving,
        )
        if len(payload) > self.config.max_record_bytes:
            raise WriterError(
                f"packet {seq} encodes to {len(payload)} bytes, over max_record_bytes={self.config.max_record_bytes}; "
                "lower the camera resolution or JPEG quality"
            )
        if self._should_rotate(t, len(payload)):
            self._rotate()
        offset = self._segment_bytes
        self._append_record(encode_record(RecordKind.PACKET, flags, payload), payload, offset)
        self._pending_index += encode_entry(seq, t, self._segment_number, offset)
        size = RECORD_HEADER_SIZE + len(payload)
        self._segment_bytes += size
        self._note_packet(packet, seq, t)
        self.bytes_written += size
        self.maybe_flush()
        return size

    def note_drops(self, stream: str, count: int) -> None:
        """Count samples a source lost before they reached the writer (they show in stats and validation)."""
        self.drops[stream] = self.drops.get(stream, 0) + count

    def add_incident(self, stream: str, kind: str, message: str, t_ns: int | None = None) -> None:
        """Record a device failure or gap in session.json (written at close)."""
        when = time.monotonic_ns() if t_ns is None else t_ns
        self.meta.incidents.append({"t": when, "stream": stream, "kind": kind, "message": message})

    def maybe_flush(self) -> None:
        if time.monotonic() - self._last_flush >= self.config.flush_interval_s:
            self.flush()

    def flush(self) -> None:
        """Data first, then the index that points into it: the index never names an unwritten record."""
        self._last_flush = time.monotonic()
        try:
            if self.config.fsync:
                os.fsync(self._segment_fd)
            if self._pending_index:
                self._write_fd(self._index_fd, bytes(self._pending_index))
                self._pending_index.clear()
                if self.config.fsync:
                    os.fsync(self._index_fd)
        except OSError as exc:
            raise self._os_error(exc, "flushing") from exc

    # --- closing ------------------------------------------------------------------------------------

    def close(self, reason: str = "stopped") -> None:
        if self._closed:
            return
        self._closed = True
        (self.path / RESERVE_FILE).unlink(missing_ok=True)  # on a full disk, this is the room to finish in
        problem: WriterError | None = None
        try:
            self.flush()
        except WriterError as exc:
            problem = exc  # the records are whole (see _append_record); finalize what is there
        try:
            self._finish_segment()
            self.meta.status = STATUS_COMPLETE
            wall = time.time_ns()
            self.meta.stop = {
                "wall_utc": utc_iso(wall),
                "wall_ns": wall,
                "mono_ns": time.monotonic_ns(),
                "reason": reason,
            }
            self.meta.stats = self.stats()
            save_meta(self.path, self.meta)
        except OSError as exc:
            raise self._os_error(exc, "closing") from exc
        finally:
            self._abandon()
        if problem is not None:
            raise problem

    def __enter__(self) -> SessionWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is None or isinstance(exc, KeyboardInterrupt):
            self.close("stopped" if exc is None else "interrupted")
            return
        # The original error says more than a second one from close() (a full disk fails both): keep it.
        with contextlib.suppress(WriterError):
            self.close(f"error: {exc}")

    @property
    def closed(self) -> bool:
        return self._closed

    def stats(self) -> dict[str, Any]:
        duration = 0.0 if self.first_t is None or self.last_t is None else (self.last_t - self.first_t) / 1e9
        return {
            "packets": self.packets,
            "bytes": self.bytes_written,
            "duration_s": round(duration, 6),
            "first_seq": self.first_seq,
            "last_seq": self._last_seq,
            "first_t": self.first_t,
            "last_t": self.last_t,
            "samples": dict(self.samples),
            "drops": dict(self.drops),
        }

    # --- internals ----------------------------------------------------------------------------------

    def _note_packet(self, packet: dict[str, Any], seq: int, t: int) -> None:
        if self.first_t is None:
            self.first_t, self.first_seq = t, seq
        if self._segment_first_t is None:
            self._segment_first_t, self._segment_first_seq = t, seq
        self._segment_records += 1
        self.last_t = t
        self._last_seq = seq
        self.packets += 1
        samples = packet.get(SAMPLES)
        if samples:
            counts = self.samples
            for name, items in samples.items():
                counts[name] = counts.get(name, 0) + len(items)

    def _should_rotate(self, t: int, size: int) -> bool:
        if self._segment_records == 0:
            return False
        if self._segment_bytes + RECORD_HEADER_SIZE + size > self.config.segment_max_bytes:
            return True
        limit = self.config.segment_max_seconds
        return (
            bool(limit) and self._segment_first_t is not None and (t - self._segment_first_t) >= limit * 1e9
        )

    def _rotate(self) -> None:
        self.flush()
        self._finish_segment()
        self._open_segment(self._segment_number + 1)
        fsync_dir(self.path)

    def _open_segment(self, number: int) -> None:
        self._segment_number = number
        name = segment_name(number)
        self._segment_fd = os.open(self.path / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        header = encode_segment_header(number)
        self._write_fd(self._segment_fd, header)
        self._segment_bytes = len(header)
        self.bytes_written += len(header)  # stats.bytes is the size of the segment files, headers included
        self._segment_first_t = self._segment_first_seq = None
        self._segment_records = 0

    def _finish_segment(self) -> None:
        if self._segment_fd < 0:
            return
        info: dict[str, Any] = {
            "file": segment_name(self._segment_number),
            "number": self._segment_number,
            "records": self._segment_records,  # every record in the file; this writer writes only packets
            "packets": self._segment_records,
            "bytes": self._segment_bytes,
        }
        if self._segment_records:
            info.update(
                first_seq=self._segment_first_seq,
                last_seq=self._last_seq,
                first_t=self._segment_first_t,
                last_t=self.last_t,
            )
        self.meta.segments.append(info)
        os.close(self._segment_fd)
        self._segment_fd = -1

    def _append_record(self, header: bytes, payload: bytes, offset: int) -> None:
        """Write one record whole, or leave the segment as it was: a failed write never leaves a torn record."""
        try:
            written = os.writev(self._segment_fd, [header, payload])
            if written < len(header) + len(payload):
                self._write_fd(self._segment_fd, (header + payload)[written:])
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._segment_fd, offset)
                os.lseek(self._segment_fd, offset, os.SEEK_SET)
            raise self._os_error(exc, "writing") from exc

    @staticmethod
    def _write_fd(fd: int, data: bytes | bytearray) -> None:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]

    def _abandon(self) -> None:
        for attr in ("_segment_fd", "_index_fd"):
            fd = getattr(self, attr)
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
                setattr(self, attr, -1)

    def _os_error(self, exc: OSError, doing: str) -> WriterError:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return WriterError(
                f"disk full while {doing} {self.path}: the recording stopped; "
                f"what was flushed before is intact — free space, then run `vrcap validate --fix {self.path}`"
            )
        return WriterError(f"cannot write {self.path} while {doing}: {exc.strerror or exc}")
