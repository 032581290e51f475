"""Keep freed memory in the heap while a session converts, so the chunk arrays reuse pages instead of faulting.

Why: glibc serves an allocation of a few MB (a chunk's FFT frames, spectra, PCM windows: 1-5 MB each) with a
fresh mmap, or from heap it trims back to the OS as soon as a few MB at its top are free. Every such array
then starts on untouched pages, and the kernel's page faults (about 1 µs per 4 KiB page, zeroing included)
cost more than the arithmetic: building the chunks of 60 s of poses + audio took 139 ms with the defaults and
62 ms with the heap kept (docs/PERFORMANCE.md, fourth pass). Fixed thresholds keep those pages in the heap for
the next chunk. Peak memory is unchanged (the pages were in use at the peak anyway); what is kept after a
session is handed back by ``malloc_trim`` when the last conversion in the process ends.

Only glibc has these knobs; elsewhere (macOS, musl) this does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import threading
from collections.abc import Iterator

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
KEEP_BYTES = 256 * 1024 * 1024  # free heap kept before trimming: several chunks' worth of temporaries
MMAP_BYTES = 32 * 1024 * 1024  # glibc's own upper bound for its dynamic threshold; larger arrays still mmap
DEFAULT_BYTES = 128 * 1024  # glibc's initial value of both thresholds

_lock = threading.Lock()
_users = 0
_libc: ctypes.CDLL | None = None
_looked = False


def _glibc() -> ctypes.CDLL | None:
    global _libc, _looked
    if not _looked:
        _looked = True
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            if (
                hasattr(libc, "mallopt")
                and hasattr(libc, "malloc_trim")
                and hasattr(libc, "gnu_get_libc_version")
            ):
                _libc = libc
    return _libc


def keep_heap_now() -> bool:
    """Fix the thresholds for the rest of this process (the chunk-builder process, which only converts)."""
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_BYTES)) and bool(
        libc.mallopt(M_TRIM_THRESHOLD, KEEP_BYTES)
    )


@contextlib.contextmanager
def kept_heap() -> Iterator[None]:
    """The thresholds fixed while any conversion in this process runs (sessions may convert on several
    threads); when the last one ends they go back to glibc's initial values and the kept pages are trimmed."""
    global _users
    libc = _glibc()
    if libc is None:
        yield
        return
    with _lock:
        _users += 1
        if _users == 1:
            keep_heap_now()
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                libc.mallopt(M_MMAP_THRESHOLD, DEFAULT_BYTES)
                libc.mallopt(M_TRIM_THRESHOLD, DEFAULT_BYTES)
                libc.malloc_trim(0)
