"""Python's cyclic garbage collector paused while sessions convert, and run by the converter once per chunk.

Why: msgpack builds every packet as a dozen dicts and lists, so the reader allocates containers by the
hundred thousand and the collector ran a young-generation pass every ~40 packets, over samples that are
kept for the chunk anyway. Collected once per chunk instead, 60 s of poses + audio converted ~10% faster
(docs/PERFORMANCE.md). Nothing the converter holds forms cycles; what other code in the process leaves is
still collected: the young generations at every chunk, all of them every ``FULL_EVERY`` chunks, and
automatically again once the last conversion in the process ends.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

FULL_EVERY = 64  # chunks (~10 minutes of session at the default convert.chunk_s) between full collections

_lock = threading.Lock()
_users = 0
_was_enabled = True
_chunks = 0


@contextlib.contextmanager
def collections_paused() -> Iterator[None]:
    """Automatic collection off while any conversion in this process runs (sessions may convert on several
    threads at once); back as it was when the last one ends."""
    global _users, _was_enabled
    with _lock:
        if _users == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0 and _was_enabled:
                gc.enable()  # the automatic collections take it from here (no full pass per session)


def collect_chunk() -> None:
    """The collection a chunk owes: the young generations, and now and then all of them."""
    global _chunks
    if not _was_enabled:  # the program turned collection off itself: not ours to run
        return
    _chunks += 1
    gc.collect(2 if _chunks % FULL_EVERY == 0 else 1)
