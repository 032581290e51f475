"""Replay and training jobs: child processes started from argument lists (never a shell), watched until they end.

Each job runs ``python -m vrcap ...`` with this server's interpreter (under ``torch.distributed.run`` when more
than one process is asked for), in its own process group, at a lower priority (``job_nice``) so a recording
keeps its CPU. Cancelling ends the whole tree: torchrun's workers start sessions of their own, so the signal
goes to every descendant found with psutil, not just the leader's group. Output goes to
``<root>/jobs/<id>.log``; state to the JobStore. A watcher thread per job waits for its exit: waiting must not
block the event loop.

The job limit and the one-writer-per-output rule are checked and registered in one step, before the first
``await``: concurrent requests cannot all pass the check.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil

from server.errors import ApiError
from server.jobstore import RUNNING, JobRecord, JobStore, utc_now
from server.settings import ServerSettings
from server.tails import MAX_METRIC_POINTS, LogTails, MetricsTail

log = logging.getLogger("vrcap.server")
METRICS_FILE = "metrics.jsonl"
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def new_job_id() -> str:
    return "job-" + secrets.token_hex(6)


class JobRunner:
    """Starts, watches, cancels and reports jobs; one per app, built in the lifespan."""

    def __init__(self, settings: ServerSettings, store: JobStore) -> None:
        self.settings = settings
        self.store = store
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._slots: dict[
            str, tuple[str, str | None]
        ] = {}  # job id → (output, session read), from the check on
        self._trees: dict[str, list[psutil.Process]] = {}  # descendants seen when a job was signalled
        self._metrics: dict[str, MetricsTail] = {}
        self._logs = LogTails()

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
            self._signal_tree(job_id, proc, signal.SIGTERM)
        for job_id in list(self._procs):
            await self._reap(job_id)

    # --- starting ----------------------------------------------------------------------------------------

    def check_capacity(self) -> None:
        running = len(self._slots)
        if running >= self.settings.max_running_jobs:
            raise ApiError(
                409,
                "too-many-jobs",
                f"{running} jobs are running (max_running_jobs = {self.settings.max_running_jobs})",
                "wait for one to finish or cancel one: POST /api/v1/jobs/{id}/cancel",
            )

    def output_in_use(self, output: str) -> str | None:
        return next((job_id for job_id, (out, _) in self._slots.items() if out == output), None)

    def reading(self, session: str) -> str | None:
        """The running job that reads ``session`` (a replay), if any: deleting it now would break that job."""
        return next((job_id for job_id, (_, read) in self._slots.items() if read == session), None)

    async def start(
        self,
        job_id: str,
        kind: str,
        vrcap_args: list[str],
        params: dict[str, Any],
        output: Path,
        nproc: int = 1,
        reads: str | None = None,
    ) -> JobRecord:
        root = self.settings.root_dir
        relative_output = str(output.relative_to(root))
        # Check and register with no await in between: the event loop runs one request's code at a time.
        self.check_capacity()
        busy = self.output_in_use(relative_output)
        if busy is not None:
            raise ApiError(
                409, "output-busy", f"job {busy} is writing {relative_output}",
                f"wait for it or cancel it: /api/v1/jobs/{busy}",
            )  # fmt: skip
        self._slots[job_id] = (relative_output, reads)
        try:
            return await self._launch(job_id, kind, vrcap_args, params, output, nproc)
        except BaseException:
            self._slots.pop(job_id, None)
            raise

    async def _launch(
        self, job_id: str, kind: str, vrcap_args: list[str], params: dict[str, Any], output: Path, nproc: int
    ) -> JobRecord:
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
        try:
            proc = await asyncio.to_thread(self._spawn, argv, log_path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                if log_path.stat().st_size == 0 or exc.errno in DISK_FULL:
                    log_path.unlink()  # no empty or half-written log is left behind
            if exc.errno in DISK_FULL:
                raise ApiError(
                    507, "disk-full", f"no space left on the disk holding {log_path.parent.name}/ to start the job",
                    "free space under the server's root (old sessions, datasets, runs) and start the job again",
                ) from None  # fmt: skip
            raise ApiError(
                503, "spawn-failed", f"the job could not be started: {exc.strerror or exc}",
                "see the server log; check the server's interpreter and the root's permissions",
            ) from None  # fmt: skip
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
        self._slots.pop(job_id, None)
        _kill(self._trees.pop(job_id, []))  # workers left behind by a leader that exited

    async def _reap(self, job_id: str) -> None:
        """Wait for a signalled job; SIGKILL its group after the grace period."""
        proc, watcher = self._procs.get(job_id), self._watchers.get(job_id)
        if proc is None or watcher is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(watcher), self.settings.cancel_grace_s)
        except asyncio.TimeoutError:
            self._signal_tree(job_id, proc, signal.SIGKILL)
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
        self._signal_tree(job_id, proc, signal.SIGTERM)
        await self._reap(job_id)
        return self.get(job_id)

    def metrics(self, job: JobRecord, limit: int = MAX_METRIC_POINTS) -> list[dict[str, float | int]]:
        """The job's last ``limit`` points; only what was appended since the last call is read."""
        path = self.settings.root_dir / job.output / METRICS_FILE
        if job.kind != "train":
            return []
        tail = self._metrics.get(job.id)
        if tail is None:
            if len(self._metrics) >= 4 * self.settings.max_running_jobs + 16:  # old jobs' tails are dropped
                self._metrics.pop(next(iter(self._metrics)))
            tail = self._metrics[job.id] = MetricsTail(path)
        return tail.read()[-limit:]

    def log_tail(self, job: JobRecord, lines: int) -> list[str]:
        path = self.settings.root_dir / job.log
        return self._logs.lines(path, lines) if path.is_file() else []

    def _signal_tree(self, job_id: str, proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        """Signal the job's group and every descendant, remembered: orphaned workers are reparented to 1."""
        with contextlib.suppress(psutil.Error):
            known = {p.pid: p for p in self._trees.get(job_id, [])}
            for child in psutil.Process(proc.pid).children(recursive=True):
                known.setdefault(child.pid, child)
            self._trees[job_id] = list(known.values())
        _signal_group(proc, sig)
        for child in self._trees.get(job_id, []):
            with contextlib.suppress(psutil.Error):
                child.send_signal(sig)  # psutil checks the pid still belongs to the process it saw


def _kill(processes: list[psutil.Process]) -> None:
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.kill()


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
