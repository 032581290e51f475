"""Session summaries are read once per version of session.json; validation runs in a worker process."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from server import session_cache
from server.session_cache import SessionCache
from tests.helpers import write_synthetic


def test_summaries_are_reused_until_session_json_changes(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(session_cache, "LISTING_TTL_S", 0.0)  # every listing looks at the disk again
    sessions = tmp_path / "sessions"
    write_synthetic(sessions / "a", 20)
    write_synthetic(sessions / "b", 30)
    (sessions / "not-a-session").mkdir()
    cache = SessionCache()
    first = dict(asyncio.run(cache.list(sessions)))
    assert sorted(first) == ["a", "b"] and first["b"]["frames"] == 30
    meta = sessions / "b" / "session.json"
    st = meta.stat()
    meta.write_bytes(
        b"x" * st.st_size
    )  # garbage of the same size, the same mtime: the cache must not re-read
    os.utime(meta, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert dict(asyncio.run(cache.list(sessions)))["b"] == first["b"]
    os.utime(meta, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # a new version: read again
    again = dict(asyncio.run(cache.list(sessions)))["b"]
    assert again["status"] == "unreadable" and again["error"]


def test_validation_runs_in_a_worker_process_once_per_version(tmp_path: Path) -> None:
    path = write_synthetic(tmp_path / "s", 25)
    cache = SessionCache()

    async def twice() -> tuple[dict[str, object], dict[str, object]]:
        first, second = await asyncio.gather(cache.report(path), cache.report(path))  # one shared run
        return first, second

    try:
        first, second = asyncio.run(twice())
        assert first["valid"] is True and first["packets"] == 25 and first is second
        assert cache._pool is not None and len(cache._pool._processes) == 1  # a process, not a thread
    finally:
        cache.close()


def test_concurrent_cold_listings_build_each_summary_once_and_a_fresh_listing_is_reused(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """Ten clients listing a cold root at once built the same summaries ten times over (issue 12's abuse mix);
    a listing younger than LISTING_TTL_S is reused unless the live session changed."""
    sessions = tmp_path / "sessions"
    for i in range(5):
        write_synthetic(sessions / f"s{i}", 10)
    built: list[str] = []
    scans: list[Path] = []
    real_summary, real_scan = session_cache.summary, session_cache._scan
    monkeypatch.setattr(session_cache, "summary", lambda path: built.append(path.name) or real_summary(path))
    monkeypatch.setattr(session_cache, "_scan", lambda root: scans.append(root) or real_scan(root))
    monkeypatch.setattr(session_cache, "LISTING_TTL_S", 60.0)
    cache = SessionCache()

    async def ten() -> list[list[tuple[str, dict[str, Any]]]]:
        return await asyncio.gather(*(cache.list(sessions) for _ in range(10)))

    results = asyncio.run(ten())
    assert sorted(built) == [f"s{i}" for i in range(5)]  # each once, not 50 times
    assert all([name for name, _ in r] == [f"s{i}" for i in range(5)] for r in results)
    scanned = len(scans)
    assert [name for name, _ in asyncio.run(cache.list(sessions))] == [f"s{i}" for i in range(5)]
    assert len(scans) == scanned  # within the TTL: no new scan
    live = dict(asyncio.run(cache.list(sessions, live="s0")))  # a recording started: a new listing at once
    assert len(scans) == scanned + 1 and live["s0"]["status"] == "recording"
    cache.forget("s1")  # a deletion: the next listing looks again
    asyncio.run(cache.list(sessions, live="s0"))
    assert len(scans) == scanned + 2
