"""Job state in SQLite (``<root>/.vrcap/jobs.sqlite3``), so it survives the server.

A row is written when a job starts and updated when it ends. At start-up, rows still saying "running" belong
to a server that died: they are marked failed with the reason, never left "running".

SQLite calls are short (one row) and made from the event loop's thread only; WAL mode keeps readers and the
writer from blocking each other if someone inspects the file while the server runs.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    created_utc TEXT NOT NULL,
    finished_utc TEXT,
    pid INTEGER,
    exit_code INTEGER,
    error TEXT,
    argv TEXT NOT NULL,
    params TEXT NOT NULL,
    output TEXT NOT NULL,
    log TEXT NOT NULL
)
"""
RUNNING = "running"
FINAL_STATES = ("succeeded", "failed", "cancelled")


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class JobRecord:
    id: str
    kind: str
    state: str
    created_utc: str
    argv: list[str]
    params: dict[str, Any]
    output: str  # relative to the root
    log: str  # relative to the root
    finished_utc: str | None = None
    pid: int | None = None
    exit_code: int | None = None
    error: str | None = None


class JobStore:
    """The jobs table. A context manager; ``close()`` is idempotent."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()  # sqlite3 connections are not safe to share across threads unguarded
        self._db: sqlite3.Connection | None = sqlite3.connect(
            path, check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(SCHEMA)

    def __enter__(self) -> JobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("JobStore is closed")
        return self._db

    def add(self, job: JobRecord) -> None:
        with self._lock:
            self.db.execute(
                "INSERT INTO jobs (id, kind, state, created_utc, pid, argv, params, output, log) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (job.id, job.kind, job.state, job.created_utc, job.pid, json.dumps(job.argv),
                 json.dumps(job.params), job.output, job.log),
            )  # fmt: skip

    def set_pid(self, job_id: str, pid: int) -> None:
        with self._lock:
            self.db.execute("UPDATE jobs SET pid = ? WHERE id = ?", (pid, job_id))

    def finish(self, job_id: str, state: str, exit_code: int | None, error: str | None) -> None:
        """Record how a job ended; a job already final keeps its first ending (a cancel beats the exit)."""
        with self._lock:
            self.db.execute(
                "UPDATE jobs SET state = ?, exit_code = ?, error = ?, finished_utc = ? "
                "WHERE id = ? AND state = ?",
                (state, exit_code, error, utc_now(), job_id, RUNNING),
            )

    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            row = self.db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            names = [d[0] for d in self.db.execute("SELECT * FROM jobs LIMIT 0").description]
        return _record(dict(zip(names, row, strict=False))) if row else None

    def list(self, limit: int = 200) -> list[JobRecord]:
        with self._lock:
            cursor = self.db.execute(
                "SELECT * FROM jobs ORDER BY created_utc DESC, rowid DESC LIMIT ?", (limit,)
            )
            names = [d[0] for d in cursor.description]
            rows = cursor.fetchall()
        return [_record(dict(zip(names, row, strict=False))) for row in rows]

    def running(self) -> list[JobRecord]:
        return [j for j in self.list(limit=10_000) if j.state == RUNNING]

    def mark_orphans(self) -> list[JobRecord]:
        """Jobs left "running" by a server that died: failed, with the reason. Returns them."""
        orphans = self.running()
        for job in orphans:
            self.finish(
                job.id,
                "failed",
                None,
                f"the server stopped while this job was running (pid {job.pid}); start it again",
            )
        return orphans


def _record(row: dict[str, Any]) -> JobRecord:
    return JobRecord(
        id=row["id"],
        kind=row["kind"],
        state=row["state"],
        created_utc=row["created_utc"],
        argv=json.loads(row["argv"]),
        params=json.loads(row["params"]),
        output=row["output"],
        log=row["log"],
        finished_utc=row["finished_utc"],
        pid=row["pid"],
        exit_code=row["exit_code"],
        error=row["error"],
    )
