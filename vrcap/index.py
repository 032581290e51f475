"""index.vri: sequence number → (segment, offset, time), for random access without a scan.

The index is an accelerator, never the truth: the segments are. A missing, short or stale index is rebuilt
by scanning, and `vrcap validate --fix` writes the rebuilt one back.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vrcap.errors import CorruptRecord, UnsupportedVersion
from vrcap.records import FORMAT_MAJOR, FORMAT_MINOR

INDEX_FILE = "index.vri"
INDEX_MAGIC = b"\x89VRI\r\n\x1a\n"
INDEX_HEADER = struct.Struct("<8sHHI")  # magic, major, minor, entry size
ENTRY = struct.Struct("<QqIIQ")  # seq, frame time (monotonic ns), segment number, reserved, byte offset
ENTRY_DTYPE = np.dtype(
    [("seq", "<u8"), ("t", "<i8"), ("segment", "<u4"), ("reserved", "<u4"), ("offset", "<u8")]
)
assert ENTRY_DTYPE.itemsize == ENTRY.size == 32


def encode_index_header() -> bytes:
    return INDEX_HEADER.pack(INDEX_MAGIC, FORMAT_MAJOR, FORMAT_MINOR, ENTRY.size)


def encode_entry(seq: int, t_ns: int, segment: int, offset: int) -> bytes:
    return ENTRY.pack(seq, t_ns, segment, 0, offset)


@dataclass(frozen=True)
class IndexEntry:
    seq: int
    t_ns: int
    segment: int
    offset: int


class SessionIndex:
    """Sorted entries held as numpy columns: 32 bytes a frame, ~10 MB for an hour at 90 Hz."""

    def __init__(self, entries: np.ndarray) -> None:
        self._entries = entries
        self._seq = entries["seq"]
        self._t = entries["t"]

    def __len__(self) -> int:
        return len(self._entries)

    @classmethod
    def from_entries(cls, rows: list[tuple[int, int, int, int]]) -> SessionIndex:
        arr = np.zeros(len(rows), dtype=ENTRY_DTYPE)
        if rows:
            cols = list(zip(*rows, strict=True))
            arr["seq"], arr["t"], arr["segment"], arr["offset"] = cols
        return cls(arr)

    @classmethod
    def load(cls, path: Path) -> SessionIndex:
        """Read an index file; a torn last entry (crash mid-append) is ignored, not an error."""
        data = path.read_bytes()
        if len(data) < INDEX_HEADER.size:
            raise CorruptRecord(path, 0, "index header is missing")
        magic, major, _minor, entry_size = INDEX_HEADER.unpack_from(data, 0)
        if magic != INDEX_MAGIC:
            raise CorruptRecord(path, 0, "not a vrcap index (bad magic)")
        if major > FORMAT_MAJOR:
            raise UnsupportedVersion(path, f"{major}.{_minor}", str(FORMAT_MAJOR))
        if entry_size != ENTRY.size:
            raise CorruptRecord(path, 12, f"entry size {entry_size}, expected {ENTRY.size}")
        body = data[INDEX_HEADER.size :]
        whole = len(body) // ENTRY.size * ENTRY.size
        return cls(np.frombuffer(body[:whole], dtype=ENTRY_DTYPE).copy())

    def save_bytes(self) -> bytes:
        return encode_index_header() + self._entries.tobytes()

    def entry(self, i: int) -> IndexEntry:
        e = self._entries[i]
        return IndexEntry(int(e["seq"]), int(e["t"]), int(e["segment"]), int(e["offset"]))

    def find_seq(self, seq: int) -> IndexEntry | None:
        i = int(np.searchsorted(self._seq, np.uint64(seq), side="left"))
        if i < len(self._seq) and int(self._seq[i]) == seq:
            return self.entry(i)
        return None

    def find_time(self, t_ns: int) -> IndexEntry | None:
        """The last frame at or before ``t_ns`` (the frame that was current at that instant)."""
        i = int(np.searchsorted(self._t, np.int64(t_ns), side="right")) - 1
        return self.entry(i) if i >= 0 else None

    def is_sorted(self) -> bool:
        return bool(np.all(np.diff(self._seq.astype(np.int64)) > 0))

    @property
    def seqs(self) -> np.ndarray:
        return self._seq

    @property
    def times(self) -> np.ndarray:
        return self._t
