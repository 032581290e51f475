"""Replay and training jobs: child processes started from argument lists (never a shell), watched until they end.

Each job runs ``python -m vrcap ...`` with this server's interpreter (under ``torch.distributed.run`` when more
than one process is asked for), in its own process group so cancelling reaches torchrun's workers too, at a
lower priority (``job_nice``) so a recording keeps its CPU. Output goes to ``<root>/jobs/<id>.log``; state to
the JobStore. A watcher thread per job waits for its exit: waiting must not block the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from server.errors import ApiError
from server.jobstore import RUNNING, JobRecord, JobStore, utc_now
from server.settings import ServerSettings

log = logging.getLogger("vrcap.server")
METRICS_FILE = "metrics.jsonl"
MAX_METRIC_POINTS = 2000
LOG_TAIL_BLOCK = 8192


def new_job_id() -> str:
    return "job-" + secrets.token_hex(6)


class JobRunner:
    """Starts, watches, cancels and reports jobs; one per app, built in the lifespan."""

    def __init__(self, settings: ServerSettings, store: JobStore) -> None:
        self.settings = settings
        self.store = store
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._watchers: dict[str, asyncio.Task[None]] = {}

    # --- life cycle ------------------------------------------------------------------------------------

    def recover(self) -> list[JobRecord]:
        """At start-up: jobs a dead server left "running" are marked failed; their processes, if alive, ended."""
        orphans = self.store.mark_orphans()
        for job in orphans:
            if job.pid and _is_our_process(job.pid, job.argv):
                log.warning("ending orphaned job %s (pid %s)", job.id, job.pid)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(job.pid, signal.SIGTERM)
        return orphans

    async def shutdown(self) -> None:
        """The server is exiting: running jobs are ended and marked failed with the reason."""
        for job_id, proc in list(self._procs.items()):
            self.store.finish(job_id, "failed", None, "the server shut down while this job was running")
            _signal_group(proc, signal.SIGTERM)
        for job_id in list(self._procs):
            await self._reap(job_id)

    # --- starting ----------------------------------------------------------------------------------------

    def check_capacity(self) -> None:
        running = len(self._procs)
        if running >= self.settings.max_running_jobs:
            raise ApiError(
                409,
                "too-many-jobs",
                f"{running} jobs are running (max_running_jobs = {self.settings.max_running_jobs})",
                "wait for one to finish or cancel one: POST /api/v1/jobs/{id}/cancel",
            )

    def output_in_use(self, output: str) -> str | None:
        for job_id in self._procs:
            job = self.store.get(job_id)
            if job is not None and job.output == output:
                return job_id
        return None

    async def start(
        self,
        job_id: str,
        kind: str,
        vrcap_args: list[str],
        params: dict[str, Any],
        output: Path,
        nproc: int = 1,
    ) -> JobRecord:
        self.check_capacity()
        root = self.settings.root_dir
        log_path = self.settings.logs_dir / f"{job_id}.log"
        if nproc > 1:  # torchrun: the same module in nproc processes, rendezvous on a free local port
            argv = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                "--nproc-per-node",
                str(nproc),
            ]
            argv += ["-m", "vrcap", *vrcap_args]
        else:
            argv = [sys.executable, "-m", "vrcap", *vrcap_args]
        job = JobRecord(
            id=job_id, kind=kind, state=RUNNING, created_utc=utc_now(), argv=argv, params=params,
            output=str(output.relative_to(root)), log=str(log_path.relative_to(root)),
        )  # fmt: skip
        proc = await asyncio.to_thread(self._spawn, argv, log_path)
        job.pid = proc.pid
        self.store.add(job)
        self._procs[job_id] = proc
        self._watchers[job_id] = asyncio.create_task(self._watch(job_id, proc), name=f"watch {job_id}")
        return job

    def _spawn(self, argv: list[str], log_path: Path) -> subprocess.Popen[bytes]:
        env = dict(os.environ, PYTHONUNBUFFERED="1")  # log lines appear as they are printed
        env.pop("VRCAP_TOKEN", None)  # a job has no business with the server's credential
        with open(log_path, "ab") as log_file:
            log_file.write(f"$ {' '.join(argv)}\n".encode())
            log_file.flush()
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                cwd=self.settings.root_dir, env=env, start_new_session=True,
            )  # fmt: skip
        with contextlib.suppress(OSError):  # the whole group, before torchrun spawns its workers
            os.setpriority(os.PRIO_PGRP, proc.pid, self.settings.job_nice)
        return proc

    async def _watch(self, job_id: str, proc: subprocess.Popen[bytes]) -> None:
        code = await asyncio.to_thread(proc.wait)
        if code == 0:
            self.store.finish(job_id, "succeeded", 0, None)
        else:
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
            self.store.finish(job_id, "failed", code, f"{how}; see GET /api/v1/jobs/{job_id}/log")
        self._procs.pop(job_id, None)

    async def _reap(self, job_id: str) -> None:
        """Wait for a signalled job; SIGKILL its group after the grace period."""
        proc, watcher = self._procs.get(job_id), self._watchers.get(job_id)
        if proc is None or watcher is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(watcher), self.settings.cancel_grace_s)
        except asyncio.TimeoutError:
            _signal_group(proc, signal.SIGKILL)
            await watcher

    # --- control and reports -------------------------------------------------------------------------------

    def get(self, job_id: str) -> JobRecord:
        job = self.store.get(job_id) if len(job_id) <= 64 else None
        if job is None:
            raise ApiError(404, "no-such-job", f"no job {job_id!r}", "list jobs with GET /api/v1/jobs")
        return job

    async def cancel(self, job_id: str) -> JobRecord:
        job = self.get(job_id)
        proc = self._procs.get(job_id)
        if job.state != RUNNING or proc is None:
            return job  # already over: cancelling is idempotent
        self.store.finish(job_id, "cancelled", None, "cancelled through the API")
        _signal_group(proc, signal.SIGTERM)
        await self._reap(job_id)
        return self.get(job_id)

    def metrics(self, job: JobRecord, limit: int = MAX_METRIC_POINTS) -> list[dict[str, float | int]]:
        path = self.settings.root_dir / job.output / METRICS_FILE
        if job.kind != "train" or not path.is_file():
            return []
        points = []
        for line in tail_lines(path, 2 * limit + 16):  # event lines are interleaved: read a margin more
            with contextlib.suppress(ValueError):
                data = json.loads(line)
                if (
                    isinstance(data, dict) and "event" not in data
                ):  # events (start, checkpoint, done) aren't points
                    points.append(
                        {
                            k: v
                            for k, v in data.items()
                            if isinstance(v, (int, float)) and not isinstance(v, bool)
                        }
                    )
        return points[-limit:]

    def log_tail(self, job: JobRecord, lines: int) -> list[str]:
        path = self.settings.root_dir / job.log
        return tail_lines(path, lines) if path.is_file() else []


def tail_lines(path: Path, count: int) -> list[str]:
    """The last ``count`` lines of a file, reading backwards in blocks (logs can be large)."""
    if count <= 0:
        return []
    with open(path, "rb") as f:
        pos = f.seek(0, os.SEEK_END)
        data = b""
        while pos > 0 and data.count(b"\n") <= count:
            step = min(LOG_TAIL_BLOCK, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
    lines = data.decode("utf-8", errors="replace").splitlines()
    return lines[-count:]


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _is_our_process(pid: int, argv: list[str]) -> bool:
    """The pid still runs the command we started (pids are reused: compare the command line)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return [c.decode(errors="replace") for c in cmdline if c] == argv
