"""Session listings and details without blocking the event loop: summaries cached by mtime, validation elsewhere.

A listing stats each ``session.json`` (a few microseconds each) and reuses the summary it built last time when
the file's mtime and size are unchanged, so 50 clients listing 200 sessions in a loop cost 200 ``lstat`` calls a
request, not 200 JSON parses and segment scans. A detail's validation reads every record: it runs in a worker
*process* (a thread would hold the API process's GIL for the whole scan), one at a time, and its report is
cached by the same key; concurrent requests for the same session share one run.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import stat
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from vrcap.errors import VrcapError
from vrcap.info import session_info
from vrcap.validate import validate_session

META = "session.json"
Key = tuple[int, int]  # session.json's (mtime_ns, size)
LISTING_TTL_S = 0.5  # a listing may be this old; a start, a stop or a deletion makes a new one at once
LIVE_PLACEHOLDER: dict[str, Any] = {
    "status": "recording", "duration_s": 0.0, "frames": 0, "size_bytes": 0, "start_utc": None, "error": None,
}  # fmt: skip


def meta_key(path: Path) -> Key | None:
    """The cache key of a session folder; None when it is not a session or any part of it is a link."""
    try:
        if stat.S_ISLNK(os.lstat(path).st_mode):
            return None
        st = os.lstat(path / META)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):  # a linked session.json is not read
        return None
    return st.st_mtime_ns, st.st_size


def summary(path: Path) -> dict[str, Any]:
    """What a listing shows of one session; an unreadable one says why."""
    try:
        info = session_info(path)
    except (VrcapError, OSError, ValueError) as exc:
        return {"status": "unreadable", "duration_s": 0.0, "frames": 0, "size_bytes": 0, "start_utc": None,
                "error": str(exc)}  # fmt: skip
    return {
        "status": str(info.get("status", "unreadable")), "duration_s": float(info.get("duration_s", 0.0)),
        "frames": int(info.get("frames", 0)), "size_bytes": int(info.get("size_bytes", 0)),
        "start_utc": info.get("start_utc"), "error": None,
    }  # fmt: skip


def validation(path: str) -> dict[str, Any]:
    """A session's validation report as plain data (runs in the worker process)."""
    report = validate_session(Path(path))
    return {
        "valid": report.ok, "packets": report.packets, "duration_s": report.duration_s,
        "dropped_frames": report.dropped_frames, "findings": [f.__dict__ for f in report.findings],
    }  # fmt: skip


class SessionCache:
    """One per app: summaries and validation reports by session name, valid while session.json is unchanged."""

    def __init__(self) -> None:
        self._summaries: dict[str, tuple[Key, dict[str, Any]]] = {}
        self._reports: dict[str, tuple[Key, dict[str, Any]]] = {}
        self._details: dict[str, tuple[Key, dict[str, Any]]] = {}
        self._running: dict[tuple[str, Key], asyncio.Future[dict[str, Any]]] = {}
        self._pool: ProcessPoolExecutor | None = None
        # One refresh of stale summaries at a time: ten clients listing a cold root at once built the same 200
        # summaries ten times over (1.4 s of GIL-holding work in threads while the event loop waited its turn).
        self._refresh = asyncio.Lock()
        # The last listing, reused for LISTING_TTL_S while the live session is the same: 10 clients listing in a
        # loop made 400 lstat calls each time in threads that took the GIL from the event loop (a profile
        # under the abuse mix: a quarter of the API process's samples); a page polls once a second.
        self._listing: tuple[float, Path, str | None, list[tuple[str, dict[str, Any]]]] | None = None

    def _workers(self) -> ProcessPoolExecutor:
        if self._pool is None:  # spawn: the API process has threads, and a forked copy of them is unsafe
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    async def list(self, root: Path, live: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """(name, summary) of every session folder under ``root``, sorted by name; links are left out.

        ``live``: the session being recorded. Its session.json changes with every flush, so a summary of it
        would be rebuilt (a scan of its segments) on every listing; the caller shows the recorder's own
        figures instead, and gets an empty summary for it here.
        """
        last = self._listing
        if (
            last is not None
            and (last[1], last[2]) == (root, live)
            and time.monotonic() - last[0] < LISTING_TTL_S
        ):
            return list(last[3])
        entries = await asyncio.to_thread(_scan, root)
        fresh, stale = self._split(entries, live)
        if stale:
            async with self._refresh:  # a refresh under way may have built these already: look again
                fresh, stale = self._split(entries, live)
                if stale:
                    built = await asyncio.to_thread(lambda: [(n, k, summary(root / n)) for n, k in stale])
                    for name, key, item in built:
                        fresh[name] = (key, item)
                        self._summaries[name] = (key, item)
        known = {name for name, _ in entries}
        for name in [n for n in self._summaries if n not in known]:
            del self._summaries[name]  # deleted sessions drop out of the cache here
        listing = [(name, fresh[name][1]) for name, _ in entries]
        self._listing = (time.monotonic(), root, live, listing)
        return list(listing)

    def _split(
        self, entries: list[tuple[str, Key]], live: str | None
    ) -> tuple[dict[str, tuple[Key, dict[str, Any]]], list[tuple[str, Key]]]:
        """The cached summaries still valid for ``entries``, and the (name, key) pairs to build."""
        fresh: dict[str, tuple[Key, dict[str, Any]]] = {}
        stale = []
        for name, key in entries:
            cached = self._summaries.get(name)
            if name == live:
                fresh[name] = ((-1, -1), LIVE_PLACEHOLDER)  # never equal to a real key: rebuilt once it ends
            elif cached is not None and cached[0] == key:
                fresh[name] = cached
            else:
                stale.append((name, key))
        return fresh, stale

    async def warm(self, root: Path) -> None:
        """Build the listing's summaries before the first client asks (started with the server, in the
        background): the first listing of a root of 200 sessions then costs stats, not 200 parses."""
        with contextlib.suppress(OSError, VrcapError):
            await self.list(root)

    async def detail(self, path: Path, build: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
        """``build(path)`` (a finished session's details, read in a thread), once per version of its
        session.json: 3 clients reading one session in a loop cost a ``stat`` each, not a segment scan."""
        key = meta_key(path)
        cached = self._details.get(path.name)
        if key is not None and cached is not None and cached[0] == key:
            return dict(cached[1])
        detail = await asyncio.to_thread(build, path)
        if key is not None and meta_key(path) == key:  # unchanged while it was read
            self._details[path.name] = (key, detail)
        return dict(detail)

    async def report(self, path: Path) -> dict[str, Any]:
        """The validation report of a finished session, computed once per version of its session.json."""
        key = meta_key(path)
        if key is None:
            raise FileNotFoundError(path)
        cached = self._reports.get(path.name)
        if cached is not None and cached[0] == key:
            return cached[1]
        running = self._running.get((path.name, key))
        if running is None:
            loop = asyncio.get_running_loop()
            running = asyncio.ensure_future(loop.run_in_executor(self._workers(), validation, str(path)))
            self._running[(path.name, key)] = running
            running.add_done_callback(lambda _: self._running.pop((path.name, key), None))
        report = await asyncio.shield(running)
        self._reports[path.name] = (key, report)
        return report

    def forget(self, name: str) -> None:
        self._listing = None
        self._summaries.pop(name, None)
        self._reports.pop(name, None)
        self._details.pop(name, None)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _scan(root: Path) -> list[tuple[str, Key]]:
    if not root.is_dir() or root.is_symlink():
        return []
    out = []
    with os.scandir(root) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                key = meta_key(Path(entry.path))
                if key is not None:
                    out.append((entry.name, key))
    return sorted(out)
