"""While a session converts, a freed chunk-sized array stays in the heap for the next one instead of going
back to the OS (and faulting in again), and the process returns to glibc's defaults when the last conversion
ends (replay/heap.py). Observed through glibc's own accounting, mallinfo2."""

from __future__ import annotations

import ctypes

import numpy as np

from replay import heap
from tests.helpers import skip_or_fail

libc = heap._glibc()
if libc is None or not hasattr(libc, "mallinfo2"):
    skip_or_fail("only glibc >= 2.33 has mallopt and mallinfo2 (Linux)")

MB3 = 3 * 1024 * 1024  # a chunk's FFT frames or spectra are 1-5 MB


class MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost"
        )
    ]  # fmt: skip


def _info() -> MallInfo2:
    assert libc is not None
    libc.mallinfo2.restype = MallInfo2
    return libc.mallinfo2()


def _array_then_free() -> tuple[int, int]:
    """(separate mappings while a 3 MB array lives, bytes its freeing added to the heap's free space)."""
    mapped_before = _info().hblks
    a = np.empty(MB3, np.uint8)
    a.fill(1)
    during = _info()
    del a
    return during.hblks - mapped_before, _info().fordblks - during.fordblks


def test_kept_heap_keeps_freed_arrays_and_the_defaults_come_back() -> None:
    with heap.kept_heap():
        mapped, kept = _array_then_free()
        assert mapped == 0  # served from the heap, not a fresh mapping
        assert kept >= MB3  # and kept there once freed: the next chunk's array reuses these pages
    mapped, kept = _array_then_free()
    assert mapped == 1 and kept < MB3  # glibc's initial thresholds: a mapping of its own, unmapped on free


def test_the_last_of_nested_conversions_puts_the_defaults_back() -> None:
    with heap.kept_heap():
        with heap.kept_heap():  # a second session converting on another thread
            pass
        mapped, kept = _array_then_free()  # the first one still runs: still kept
        assert mapped == 0 and kept >= MB3
    assert heap._users == 0
    assert _array_then_free()[0] == 1
