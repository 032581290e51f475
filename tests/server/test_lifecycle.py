"""The server's life: SIGTERM finalizes a running recording and ends jobs; a crash leaves no job "running"."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import run_vrcap, wait_for
from tests.server.live import SHORT_SPLIT, ServeProcess, record
from vrcap.metadata import load_meta


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")


@pytest.fixture(scope="module")
def root_with_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root holding one recorded session converted to the dataset 'ds'."""
    root = tmp_path_factory.mktemp("lifecycle")
    with ServeProcess(root) as server, server.client() as client:
        rec_id = record(client, "s", duration_s=3.5)["id"]
        wait_for(
            lambda: client.get("/api/v1/recordings/current").json()["state"] == "stopped", 20, "recording end"
        )
        assert client.post(f"/api/v1/recordings/{rec_id}/stop").json()["result"]["frames"] >= 130
        job_id = client.post(
            "/api/v1/jobs/replay", json={"session": "s", "dataset": "ds", "overrides": SHORT_SPLIT}
        ).json()["id"]
        wait_for(lambda: client.get(f"/api/v1/jobs/{job_id}").json()["state"] != "running", 120, "replay")
        assert client.get(f"/api/v1/jobs/{job_id}").json()["state"] == "succeeded"
    return root


def _start_long_training(client: httpx.Client) -> tuple[str, int]:
    """A training job that would run for minutes; its id and pid once it is running for real."""
    body = {"config": "tiny", "dataset": "ds", "max_steps": 1_000_000}
    job = client.post("/api/v1/jobs/train", json=body)
    assert job.status_code == 201, job.text
    job_id = job.json()["id"]
    wait_for(
        lambda: client.get(f"/api/v1/jobs/{job_id}/log").json()["lines"][1:], 60, "the job's first output"
    )
    assert client.get(f"/api/v1/jobs/{job_id}").json()["state"] == "running"
    return job_id, _job_pid(client, job_id)


def _job_pid(client: httpx.Client, job_id: str) -> int:
    """The job's pid, read from its process table entry: children of the server running `vrcap train`."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"train" in cmdline and any(job_id.encode() in part for part in cmdline):
                return int(entry.name)
    raise AssertionError(f"no process for {job_id}")


def test_sigterm_finalizes_the_recording_and_ends_jobs(root_with_dataset: Path) -> None:
    server = ServeProcess(root_with_dataset)
    with server.client() as client:
        job_id, pid = _start_long_training(client)
        record(client, "sigterm")
        wait_for(
            lambda: client.get("/api/v1/recordings/current").json()["stats"]["frames"] >= 90, 20, "frames"
        )
    # uvicorn shuts down cleanly, then re-raises the signal so the exit status says SIGTERM (systemd: success)
    assert server.stop() == -signal.SIGTERM
    meta = load_meta(root_with_dataset / "sessions" / "sigterm")
    assert meta.status == "complete" and meta.stop["reason"] == "server shutting down"
    assert meta.stats["packets"] >= 90
    assert run_vrcap("validate", str(root_with_dataset / "sessions" / "sigterm")).returncode == 0
    assert not _alive(pid)
    with ServeProcess(root_with_dataset) as again, again.client() as client:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
    assert job["state"] == "failed" and "shut down" in job["error"]


def test_job_killed_with_the_server_is_failed_after_restart(root_with_dataset: Path) -> None:
    server = ServeProcess(root_with_dataset)
    with server.client() as client:
        job_id, pid = _start_long_training(client)
    server.kill()  # SIGKILL: no shutdown code runs; the job (its own process group) lives on as an orphan
    assert _alive(pid)
    with ServeProcess(root_with_dataset) as again, again.client() as client:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        assert job["state"] == "failed" and "server stopped while this job was running" in job["error"]
        assert all(j["state"] != "running" for j in client.get("/api/v1/jobs").json()["jobs"])
        wait_for(lambda: not _alive(pid), 10, "the orphaned job to be ended")  # recover() ended it


def test_cancel_ends_a_job(root_with_dataset: Path) -> None:
    with ServeProcess(root_with_dataset) as server, server.client() as client:
        job_id, pid = _start_long_training(client)
        started = time.monotonic()
        job = client.post(f"/api/v1/jobs/{job_id}/cancel").json()
        assert job["state"] == "cancelled" and time.monotonic() - started < 10
        assert not _alive(pid)
        assert client.post(f"/api/v1/jobs/{job_id}/cancel").json()["state"] == "cancelled"  # idempotent


def test_cancel_ends_every_torchrun_worker(root_with_dataset: Path) -> None:
    """torchrun's workers start sessions of their own: a signal to the leader's group alone leaves them running."""
    import psutil

    with ServeProcess(root_with_dataset, "max_nproc=2") as server, server.client() as client:
        body = {"config": "tiny", "dataset": "ds", "max_steps": 1_000_000, "nproc": 2,
                "overrides": {"optim.grad_accum": 2}}  # fmt: skip
        job = client.post("/api/v1/jobs/train", json=body)
        assert job.status_code == 201, job.text
        job_id = job.json()["id"]
        leader = psutil.Process(_job_pid(client, job_id))
        workers = wait_for(lambda: [p for p in leader.children(recursive=True)] if len(leader.children()) >= 2 else [],
                           60, "two torchrun workers")  # fmt: skip
        assert len({os.getsid(w.pid) for w in workers} - {os.getsid(leader.pid)}) >= 1  # their own sessions
        assert client.post(f"/api/v1/jobs/{job_id}/cancel").json()["state"] == "cancelled"
        tree = [leader, *workers]
        wait_for(
            lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in tree),
            20,
            "the tree",
        )
